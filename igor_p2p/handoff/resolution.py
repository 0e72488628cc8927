"""The recover exchange, as a pure table: local durable record + peer's STATUS_REPLY → outcome.

Only two local situations need it: a target HANDOFF_PENDING that never saw COMMIT or ABORT,
and a source RETIRED whose CONFIRM never came (FS-2). Everything else answers ``None`` (nothing
to resolve). Every outcome is idempotent: applying it twice through the authority table does
nothing more. Anything the table below does not explain is RECOVERY_REQUIRED, never a guess.

| local | peer reply | outcome |
|---|---|---|
| target PENDING(m, e) | RETIRED, m, epoch e, transfer record | COMMIT |
| target PENDING(m, e) | HANDOFF_INITIATED, m, epoch e | WAIT (source has not decided) |
| target PENDING(m, e) | any other holding at epoch e (m aborted or never decided) | DISCARD |
| target PENDING(m, e) | any holding but PENDING at an epoch above e | DISCARD |
| target PENDING(m, e) | epoch < e | RECOVERY (PEER_STALE) |
| target PENDING(m, e) | ABSENT | RECOVERY (PEER_LOST_STATE) |
| target PENDING(m, e) | RECOVERY_REQUIRED | RECOVERY (PEER_IN_RECOVERY) |
| target PENDING(m, e) | anything else | RECOVERY (PEER_CONTRADICTS) |
| source RETIRED-unconfirmed(m, e) | PENDING, m, epoch e | RESEND_COMMIT |
| source RETIRED-unconfirmed(m, e) | not PENDING/ABSENT/RECOVERY, epoch ≥ e+1 | CONFIRMED |
| source RETIRED-unconfirmed(m, e) | ABSENT | RECOVERY (PEER_LOST_STATE) |
| source RETIRED-unconfirmed(m, e) | RECOVERY_REQUIRED | RECOVERY (PEER_IN_RECOVERY) |
| source RETIRED-unconfirmed(m, e) | anything else | RECOVERY (PEER_CONTRADICTS) |
"""

from __future__ import annotations

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ABSENT,
    AuthorityRecord,
    MigrationPhase,
    RecoveryReason,
    ResolutionKind,
    ResolutionOutcome,
    Role,
)
from igor_p2p.handoff.messages import StatusQuery, StatusReply

S = AuthorityState


def status_query(record: AuthorityRecord, *, agent: str, sender: str) -> StatusQuery:
    ctx = record.migration
    return StatusQuery(sender, agent, ctx.migration_id if ctx else None, record.epoch)


def status_reply(record: AuthorityRecord, *, agent: str, sender: str) -> StatusReply:
    """Answer a STATUS_QUERY from the replier's DURABLE record (never from unflushed state)."""
    ctx = record.migration
    transfer = None
    if (
        record.state is S.RETIRED
        and ctx is not None
        and ctx.role is Role.SOURCE
        and ctx.phase in (MigrationPhase.DECIDED, MigrationPhase.CONFIRMED)
    ):
        transfer = ctx.transfer_record
    if record.state is ABSENT:
        return StatusReply(sender, agent, ABSENT, record.epoch, None, None, None)
    return StatusReply(
        sender,
        agent,
        record.state,
        record.epoch,
        ctx.migration_id if ctx else None,
        transfer,
        ctx.head_digest if ctx else None,
    )


def _outcome(
    mid: bytes,
    kind: ResolutionKind,
    reason: RecoveryReason | None = None,
    detail: str = "",
    record: bytes | None = None,
) -> ResolutionOutcome:
    return ResolutionOutcome(mid, kind, reason, record, detail)


def _recovery(mid: bytes, reply: StatusReply) -> ResolutionOutcome:
    if reply.state is ABSENT:
        reason = RecoveryReason.PEER_LOST_STATE
    elif reply.state is S.RECOVERY_REQUIRED:
        reason = RecoveryReason.PEER_IN_RECOVERY
    else:
        reason = RecoveryReason.PEER_CONTRADICTS
    detail = f"peer {reply.sender} says {reply.state} at epoch {reply.epoch}"
    return _outcome(mid, ResolutionKind.RECOVERY, reason, detail)


def resolve(local: AuthorityRecord, reply: StatusReply) -> ResolutionOutcome | None:
    """What to do about ``local`` given the peer's reply; None when nothing needs resolving."""
    ctx = local.migration
    if ctx is None or reply.agent is None:
        return None
    mid, e = ctx.migration_id, ctx.offer_epoch
    if reply.sender != ctx.peer:
        return None
    if local.state is S.HANDOFF_PENDING and ctx.phase is MigrationPhase.PREPARED:
        return _resolve_pending(mid, e, reply)
    if local.state is S.RETIRED and ctx.phase is MigrationPhase.DECIDED:
        return _resolve_unconfirmed(mid, e, reply)
    return None


def _resolve_pending(mid: bytes, e: int, reply: StatusReply) -> ResolutionOutcome:
    if reply.state is ABSENT or reply.state is S.RECOVERY_REQUIRED:
        return _recovery(mid, reply)
    if reply.epoch < e:
        return _outcome(
            mid,
            ResolutionKind.RECOVERY,
            RecoveryReason.PEER_STALE,
            f"source at epoch {reply.epoch} below offer epoch {e}",
        )
    same = reply.migration_id == mid
    if reply.epoch == e and same and reply.state is S.RETIRED:
        if reply.transfer_record is None:
            return _recovery(mid, reply)
        return _outcome(mid, ResolutionKind.COMMIT, record=reply.transfer_record)
    if reply.epoch == e and same and reply.state is S.HANDOFF_INITIATED:
        return _outcome(mid, ResolutionKind.WAIT)
    if reply.epoch == e and reply.state in (
        S.ACTIVE_OWNER,
        S.HANDOFF_INITIATED,
        S.RETIRED,
        S.HALTED,
        S.BUDGET_EXHAUSTED,
    ):
        # The source holds epoch e and is not retired for m: it never decided for m (it can
        # decide once per epoch, and a decision for m would show RETIRED with m).
        return _outcome(mid, ResolutionKind.DISCARD, detail=f"source {reply.state} at {e}")
    if reply.epoch > e and reply.state is not S.HANDOFF_PENDING:
        return _outcome(mid, ResolutionKind.DISCARD, detail=f"source moved on to {reply.epoch}")
    return _recovery(mid, reply)


def _resolve_unconfirmed(mid: bytes, e: int, reply: StatusReply) -> ResolutionOutcome:
    if reply.state is ABSENT or reply.state is S.RECOVERY_REQUIRED:
        return _recovery(mid, reply)
    if reply.state is S.HANDOFF_PENDING and reply.migration_id == mid and reply.epoch == e:
        return _outcome(mid, ResolutionKind.RESEND_COMMIT)
    if reply.state is not S.HANDOFF_PENDING and reply.epoch >= e + 1:
        return _outcome(mid, ResolutionKind.CONFIRMED, detail=f"target at epoch {reply.epoch}")
    return _recovery(mid, reply)
