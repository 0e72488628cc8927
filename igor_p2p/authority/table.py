"""The one table that owns every authority transition rule, for both migration roles.

Pure (sans-IO): events in, actions out. A :class:`AuthorityMachine` holds one node's belief
about one agent: ``(state, epoch, fence, migration context)``. ``handle(event)`` looks the pair
``(state, type(event))`` up in :data:`TRANSITIONS`, picks the first :class:`Rule` whose guard
holds, and returns that rule's actions. Pairs the table does not list raise
:class:`IllegalTransition`.

Before any lookup the machine applies the fence: an event that carries an epoch lower than the
highest epoch this node has seen is rejected (``LogRejected``) with no state change.

Ordering contract of every rule's actions (write-ahead): ``StopTicking`` comes before the
``PersistAuthority`` that leaves ``ACTIVE_OWNER``; every ``Send*``, ``StartTicking`` and
``PublishClaim`` that depends on a new record comes *after* its ``PersistAuthority``. A driver
must not execute an action that follows a ``PersistAuthority`` before that write is durable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError

# --------------------------------------------------------------------------- holdings


class Absent(enum.StrEnum):
    """The implicit state of an agent this node never held (no record)."""

    ABSENT = "ABSENT"


ABSENT = Absent.ABSENT
Holding = AuthorityState | Absent
"""What a node's record says about one agent: an authority state, or no record at all."""


class Role(enum.StrEnum):
    SOURCE = "SOURCE"
    TARGET = "TARGET"


class MigrationPhase(enum.StrEnum):
    """Where one migration stands, as far as this node's durable record knows."""

    OFFERED = "OFFERED"
    """Source: handoff initiated, no decision yet."""
    ABORTED = "ABORTED"
    """Source: aborted before the decision; authority kept at the same epoch."""
    DECIDED = "DECIDED"
    """Source: retired and signed the transfer record; the target's confirm is missing."""
    CONFIRMED = "CONFIRMED"
    """Source: the target confirmed it owns the next epoch."""
    PREPARED = "PREPARED"
    """Target: validated and durably pending, waiting for the commit."""
    COMMITTED = "COMMITTED"
    """Target: owns the next epoch."""
    DISCARDED = "DISCARDED"
    """Target: dropped its pending copy because the source never decided."""


@dataclass(frozen=True)
class MigrationContext:
    """The migration a record refers to (the last one this node took part in)."""

    migration_id: bytes
    role: Role
    peer: str
    """The other side: the target for a source, the source for a target."""
    offer_epoch: int
    """The epoch being handed over; the target owns ``offer_epoch + 1`` after the commit."""
    phase: MigrationPhase
    transfer_record: bytes | None = None
    """The signed transfer record, once the source decided (kept by both sides)."""
    head_digest: bytes | None = None
    """Digest of the handed-over checkpoint (offered by the source, prepared by the target)."""


class RecoveryReason(enum.StrEnum):
    """Why a node halted an agent in RECOVERY_REQUIRED."""

    HIGHER_EPOCH_SEEN = "HIGHER_EPOCH_SEEN"
    CONFLICTING_CLAIM = "CONFLICTING_CLAIM"
    INTEGRITY_FAILURE = "INTEGRITY_FAILURE"
    PEER_LOST_STATE = "PEER_LOST_STATE"
    PEER_CONTRADICTS = "PEER_CONTRADICTS"
    PEER_STALE = "PEER_STALE"
    PEER_IN_RECOVERY = "PEER_IN_RECOVERY"


class RejectReason(enum.StrEnum):
    """Why an event was logged and ignored."""

    STALE_EPOCH = "STALE_EPOCH"
    UNKNOWN_MIGRATION = "UNKNOWN_MIGRATION"
    MIGRATION_IN_FLIGHT = "MIGRATION_IN_FLIGHT"
    NOT_OWNER = "NOT_OWNER"
    ALREADY_HELD = "ALREADY_HELD"
    ABORTED_MIGRATION = "ABORTED_MIGRATION"
    NOT_HIGHER_THAN_FENCE = "NOT_HIGHER_THAN_FENCE"
    RECOVERING = "RECOVERING"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class RejectCode(enum.StrEnum):
    """Reason codes a target puts on the wire in REJECT."""

    BUSY = "BUSY"
    ALREADY_HELD = "ALREADY_HELD"
    RECOVERING = "RECOVERING"
    STALE_EPOCH = "STALE_EPOCH"
    MALFORMED = "MALFORMED"
    WRONG_SENDER = "WRONG_SENDER"
    HASH_MISMATCH = "HASH_MISMATCH"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    LINEAGE_GAP = "LINEAGE_GAP"
    CAPABILITY_MISSING = "CAPABILITY_MISSING"
    BUDGET_INSUFFICIENT = "BUDGET_INSUFFICIENT"
    NO_CAPACITY = "NO_CAPACITY"
    POLICY_DENIED = "POLICY_DENIED"


class AbortReason(enum.StrEnum):
    TIMEOUT = "TIMEOUT"
    REJECTED = "REJECTED"
    RESTARTED = "RESTARTED"
    OPERATOR = "OPERATOR"


class ResolutionKind(enum.StrEnum):
    """What the recover exchange concluded (see ``igor_p2p.handoff.resolution``)."""

    COMMIT = "COMMIT"
    """Target: the source decided for this migration; take authority."""
    DISCARD = "DISCARD"
    """Target: the source provably did not decide; drop the pending copy."""
    CONFIRMED = "CONFIRMED"
    """Source: the target owns (or has owned) the next epoch."""
    RESEND_COMMIT = "RESEND_COMMIT"
    """Source: the target is still pending; send COMMIT again."""
    WAIT = "WAIT"
    """The peer has not decided yet; ask again later."""
    RECOVERY = "RECOVERY"
    """Contradiction or lost state: halt in RECOVERY_REQUIRED."""


@dataclass(frozen=True)
class AuthorityRecord:
    """Everything a node persists about its authority over one agent."""

    state: Holding
    epoch: int
    fence: int
    """The highest epoch this node has seen for the agent (≥ ``epoch``)."""
    migration: MigrationContext | None = None
    reason: RecoveryReason | None = None
    detail: str = ""
    version: int = 0
    """Write counter; ``Durable(version)`` acknowledges the write of this record."""


NO_RECORD = AuthorityRecord(state=ABSENT, epoch=0, fence=0)

# --------------------------------------------------------------------------- errors


class IllegalTransition(IgorError):
    """The table has no rule for this (state, event) pair."""

    def __init__(self, state: Holding, event: Event) -> None:
        super().__init__(f"no rule for {type(event).__name__} in {state}")
        self.state = state
        self.event = event


class TableInconsistency(IgorError):
    """A rule produced actions or a state other than the ones it declares (a bug in the table)."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    EPOCH_FIELD: ClassVar[str | None] = None
    """Name of the field the fence applies to, if the event carries an epoch."""

    def fenced_epoch(self) -> int | None:
        if self.EPOCH_FIELD is None:
            return None
        value: int = getattr(self, self.EPOCH_FIELD)
        return value


@dataclass(frozen=True)
class Launched(Event):
    """A fresh agent was launched on this node (genesis)."""

    epoch: int = 1


@dataclass(frozen=True)
class Restarted(Event):
    """The node came back and rebuilt the machine from its last durable record."""


@dataclass(frozen=True)
class ClaimsChecked(Event):
    """After a restart or resume: the highest epoch any peer claim shows for the agent."""

    highest_epoch: int


@dataclass(frozen=True)
class Resumed(Event):
    """An operator resumes an agent this node halted."""


@dataclass(frozen=True)
class BeginHandoff(Event):
    target: str
    migration_id: bytes
    head_digest: bytes | None = None


@dataclass(frozen=True)
class HandoffAborted(Event):
    """Source, before the decision: timeout, REJECT or restart."""

    migration_id: bytes
    reason: AbortReason


@dataclass(frozen=True)
class OfferPrepared(Event):
    """Target: an OFFER for ``epoch`` was validated; prepare it (persist HANDOFF_PENDING)."""

    EPOCH_FIELD: ClassVar[str | None] = "epoch"
    source: str
    migration_id: bytes
    epoch: int
    head_digest: bytes | None = None


@dataclass(frozen=True)
class DecideRetire(Event):
    """Source: the target acked; durably retire epoch ``epoch`` to the target (decision).

    Not fenced: after the decision the fence is ``epoch + 1`` and a duplicate ACK must still
    reach the rule that re-sends COMMIT; the guards compare the epoch exactly.
    """

    migration_id: bytes
    epoch: int
    transfer_record: bytes
    transfer_digest: bytes


@dataclass(frozen=True)
class CommitReceived(Event):
    """Target: COMMIT with a verified transfer record to this node at ``new_epoch``."""

    EPOCH_FIELD: ClassVar[str | None] = "new_epoch"
    migration_id: bytes
    new_epoch: int
    transfer_record: bytes


@dataclass(frozen=True)
class PendingDiscarded(Event):
    """Target: the source aborted this migration (ABORT)."""

    migration_id: bytes


@dataclass(frozen=True)
class ConfirmReceived(Event):
    EPOCH_FIELD: ClassVar[str | None] = "new_epoch"
    migration_id: bytes
    new_epoch: int


@dataclass(frozen=True)
class HigherEpochSeen(Event):
    EPOCH_FIELD: ClassVar[str | None] = "epoch"
    epoch: int
    evidence: str


@dataclass(frozen=True)
class ConflictingClaim(Event):
    """Two different heads were seen for one epoch."""

    EPOCH_FIELD: ClassVar[str | None] = "epoch"
    epoch: int
    evidence: str


@dataclass(frozen=True)
class IntegrityFailure(Event):
    reason: str


@dataclass(frozen=True)
class BudgetExhausted(Event):
    pass


@dataclass(frozen=True)
class Halt(Event):
    pass


@dataclass(frozen=True)
class ResolutionOutcome(Event):
    """The conclusion of the recover exchange for one migration."""

    migration_id: bytes
    kind: ResolutionKind
    reason: RecoveryReason | None = None
    transfer_record: bytes | None = None
    detail: str = ""


@dataclass(frozen=True)
class ForceRecover(Event):
    """An operator forces this node owner at ``new_epoch`` (must exceed the fence)."""

    operator: str
    new_epoch: int


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class PersistAuthority(Action):
    record: AuthorityRecord


@dataclass(frozen=True)
class StopTicking(Action):
    pass


@dataclass(frozen=True)
class StartTicking(Action):
    epoch: int


@dataclass(frozen=True)
class SendOffer(Action):
    peer: str
    migration_id: bytes
    epoch: int


@dataclass(frozen=True)
class SendAck(Action):
    peer: str
    migration_id: bytes
    epoch: int


@dataclass(frozen=True)
class SendReject(Action):
    peer: str
    migration_id: bytes
    code: RejectCode


@dataclass(frozen=True)
class SendCommit(Action):
    peer: str
    migration_id: bytes
    transfer_record: bytes


@dataclass(frozen=True)
class SendConfirm(Action):
    peer: str
    migration_id: bytes
    new_epoch: int


@dataclass(frozen=True)
class SendAbort(Action):
    peer: str
    migration_id: bytes


@dataclass(frozen=True)
class PublishClaim(Action):
    epoch: int


@dataclass(frozen=True)
class RecordFence(Action):
    epoch: int


@dataclass(frozen=True)
class EnterRecovery(Action):
    reason: RecoveryReason
    detail: str


@dataclass(frozen=True)
class LogRejected(Action):
    reason: RejectReason
    detail: str


@dataclass(frozen=True)
class DiscardPending(Action):
    migration_id: bytes


@dataclass(frozen=True)
class QueryStatus(Action):
    """Start the recover exchange with ``peer`` about ``migration_id``."""

    peer: str
    migration_id: bytes


@dataclass(frozen=True)
class CheckClaims(Action):
    """Before ticking again after a restart: look up the peers' claims for the agent."""

    epoch: int


SEND_ACTIONS: tuple[type[Action], ...] = (
    SendOffer,
    SendAck,
    SendReject,
    SendCommit,
    SendConfirm,
    SendAbort,
)

# --------------------------------------------------------------------------- rules

Effect = Callable[[AuthorityRecord, Event], tuple[AuthorityRecord, list[Action]]]
Test = Callable[[AuthorityRecord, Event], bool]


@dataclass(frozen=True)
class Guard:
    name: str
    """Rendered in docs/authority.md."""
    test: Test


@dataclass(frozen=True)
class Rule:
    guard: Guard
    next_state: Holding | None
    """``None`` means the state is unchanged."""
    actions: tuple[type[Action], ...]
    """The action types the effect emits, in order (checked at run time)."""
    effect: Effect


ALWAYS = Guard("", lambda rec, ev: True)


def _g(name: str, test: Test) -> Guard:
    return Guard(name, test)


def _mid(ev: Event) -> bytes | None:
    value = getattr(ev, "migration_id", None)
    return value if isinstance(value, bytes) else None


def _same_migration(rec: AuthorityRecord, ev: Event) -> bool:
    return rec.migration is not None and rec.migration.migration_id == _mid(ev)


def _phase_is(*phases: MigrationPhase) -> Test:
    def test(rec: AuthorityRecord, ev: Event) -> bool:
        return (
            _same_migration(rec, ev)
            and rec.migration is not None
            and (rec.migration.phase in phases)
        )

    return test


def _kind_is(kind: ResolutionKind, *phases: MigrationPhase) -> Test:
    def test(rec: AuthorityRecord, ev: Event) -> bool:
        assert isinstance(ev, ResolutionOutcome)
        return ev.kind is kind and _phase_is(*phases)(rec, ev)

    return test


# -- effect helpers


def _bump(rec: AuthorityRecord, **changes: object) -> AuthorityRecord:
    return replace(rec, version=rec.version + 1, **changes)  # type: ignore[arg-type]


def _peer(rec: AuthorityRecord) -> str:
    assert rec.migration is not None
    return rec.migration.peer


def _need_mid(rec: AuthorityRecord) -> bytes:
    assert rec.migration is not None
    return rec.migration.migration_id


def _nothing(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    return rec, []


def _reject(reason: RejectReason) -> Effect:
    def effect(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
        return rec, [LogRejected(reason, f"{type(ev).__name__} in {rec.state}")]

    return effect


def _reject_offer(code: RejectCode, reason: RejectReason) -> Effect:
    def effect(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
        assert isinstance(ev, OfferPrepared)
        return rec, [
            SendReject(ev.source, ev.migration_id, code),
            LogRejected(reason, f"offer at epoch {ev.epoch} in {rec.state}"),
        ]

    return effect


def _launch(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, Launched)
    new = _bump(rec, state=AuthorityState.ACTIVE_OWNER, epoch=ev.epoch, fence=ev.epoch)
    return new, [PersistAuthority(new), StartTicking(ev.epoch), PublishClaim(ev.epoch)]


def _begin_handoff(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, BeginHandoff)
    ctx = MigrationContext(
        ev.migration_id,
        Role.SOURCE,
        ev.target,
        rec.epoch,
        MigrationPhase.OFFERED,
        head_digest=ev.head_digest,
    )
    new = _bump(rec, state=AuthorityState.HANDOFF_INITIATED, migration=ctx)
    return new, [
        StopTicking(),
        PersistAuthority(new),
        SendOffer(ev.target, ev.migration_id, rec.epoch),
    ]


def _abort_handoff(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    ctx = replace(rec.migration, phase=MigrationPhase.ABORTED)
    new = _bump(rec, state=AuthorityState.ACTIVE_OWNER, migration=ctx)
    return new, [
        PersistAuthority(new),
        SendAbort(ctx.peer, ctx.migration_id),
        StartTicking(new.epoch),
    ]


def _abort_on_restart(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    ctx = replace(rec.migration, phase=MigrationPhase.ABORTED)
    new = _bump(rec, state=AuthorityState.ACTIVE_OWNER, migration=ctx)
    return new, [
        PersistAuthority(new),
        SendAbort(ctx.peer, ctx.migration_id),
        CheckClaims(new.epoch),
    ]


def _send_abort_again(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    return rec, [
        LogRejected(RejectReason.ABORTED_MIGRATION, "ack for an aborted migration"),
        SendAbort(_peer(rec), _need_mid(rec)),
    ]


def _decide(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, DecideRetire) and rec.migration is not None
    ctx = replace(rec.migration, phase=MigrationPhase.DECIDED, transfer_record=ev.transfer_record)
    new = _bump(rec, state=AuthorityState.RETIRED, fence=rec.epoch + 1, migration=ctx)
    return new, [
        PersistAuthority(new),
        RecordFence(new.fence),
        SendCommit(ctx.peer, ctx.migration_id, ev.transfer_record),
    ]


def _resend_commit(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None and rec.migration.transfer_record is not None
    return rec, [
        SendCommit(rec.migration.peer, rec.migration.migration_id, rec.migration.transfer_record)
    ]


def _confirm(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    new = _bump(rec, migration=replace(rec.migration, phase=MigrationPhase.CONFIRMED))
    return new, [PersistAuthority(new)]


def _prepare(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, OfferPrepared)
    ctx = MigrationContext(
        ev.migration_id,
        Role.TARGET,
        ev.source,
        ev.epoch,
        MigrationPhase.PREPARED,
        head_digest=ev.head_digest,
    )
    new = _bump(
        rec,
        state=AuthorityState.HANDOFF_PENDING,
        epoch=ev.epoch,
        fence=max(rec.fence, ev.epoch),
        migration=ctx,
        reason=None,
        detail="",
    )
    return new, [PersistAuthority(new), SendAck(ev.source, ev.migration_id, ev.epoch)]


def _ack_again(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    return rec, [SendAck(rec.migration.peer, rec.migration.migration_id, rec.migration.offer_epoch)]


def _take_authority() -> Effect:
    def effect(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
        assert rec.migration is not None
        transfer = getattr(ev, "transfer_record", None)
        ctx = replace(rec.migration, phase=MigrationPhase.COMMITTED, transfer_record=transfer)
        new_epoch = rec.migration.offer_epoch + 1
        new = _bump(
            rec,
            state=AuthorityState.ACTIVE_OWNER,
            epoch=new_epoch,
            fence=max(rec.fence, new_epoch),
            migration=ctx,
        )
        return new, [
            PersistAuthority(new),
            SendConfirm(ctx.peer, ctx.migration_id, new_epoch),
            StartTicking(new_epoch),
            PublishClaim(new_epoch),
        ]

    return effect


def _confirm_again(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    return rec, [SendConfirm(rec.migration.peer, rec.migration.migration_id, rec.epoch)]


def _discard(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert rec.migration is not None
    ctx = replace(rec.migration, phase=MigrationPhase.DISCARDED)
    new = _bump(rec, state=AuthorityState.RETIRED, migration=ctx)
    return new, [PersistAuthority(new), DiscardPending(ctx.migration_id)]


def _recovery(reason: RecoveryReason | None, *, stop: bool, fence: bool) -> Effect:
    """Enter RECOVERY_REQUIRED; ``reason`` None means take it from the event."""

    def effect(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
        why = reason if reason is not None else getattr(ev, "reason", None)
        assert isinstance(why, RecoveryReason)
        seen = _event_epoch(ev)
        detail = str(
            getattr(ev, "evidence", None) or getattr(ev, "detail", None) or type(ev).__name__
        )
        new = _bump(
            rec,
            state=AuthorityState.RECOVERY_REQUIRED,
            fence=max(rec.fence, seen),
            reason=why,
            detail=detail,
        )
        actions: list[Action] = [StopTicking()] if stop else []
        actions.append(PersistAuthority(new))
        if fence:
            actions.append(RecordFence(new.fence))
        actions.append(EnterRecovery(why, detail))
        return new, actions

    return effect


def _integrity(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, IntegrityFailure)
    new = _bump(
        rec,
        state=AuthorityState.RECOVERY_REQUIRED,
        reason=RecoveryReason.INTEGRITY_FAILURE,
        detail=ev.reason,
    )
    return new, [StopTicking(), PersistAuthority(new), EnterRecovery(new.reason, ev.reason)]  # type: ignore[arg-type]


def _event_epoch(ev: Event) -> int:
    for name in ("epoch", "highest_epoch", "new_epoch"):
        value = getattr(ev, name, None)
        if isinstance(value, int):
            return value
    return 0


def _raise_fence(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    new = _bump(rec, fence=max(rec.fence, _event_epoch(ev)))
    return new, [PersistAuthority(new), RecordFence(new.fence)]


def _to(state: AuthorityState) -> Effect:
    def effect(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
        new = _bump(rec, state=state)
        return new, [StopTicking(), PersistAuthority(new)]

    return effect


def _start_after_check(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    return rec, [StartTicking(rec.epoch), PublishClaim(rec.epoch)]


def _check_claims(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    return rec, [CheckClaims(rec.epoch)]


def _resume(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    new = _bump(rec, state=AuthorityState.ACTIVE_OWNER)
    return new, [PersistAuthority(new), CheckClaims(new.epoch)]


def _query(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    return rec, [QueryStatus(_peer(rec), _need_mid(rec))]


def _force(rec: AuthorityRecord, ev: Event) -> tuple[AuthorityRecord, list[Action]]:
    assert isinstance(ev, ForceRecover)
    new = _bump(
        rec,
        state=AuthorityState.ACTIVE_OWNER,
        epoch=ev.new_epoch,
        fence=ev.new_epoch,
        reason=None,
        detail=f"forced by {ev.operator}",
    )
    return new, [PersistAuthority(new), PublishClaim(ev.new_epoch), StartTicking(ev.new_epoch)]


# -- guards


def _epoch_above_fence(rec: AuthorityRecord, ev: Event) -> bool:
    return _event_epoch(ev) > rec.fence


def _epoch_above_owned(rec: AuthorityRecord, ev: Event) -> bool:
    return _event_epoch(ev) > rec.epoch


def _epoch_at_or_above_owned(rec: AuthorityRecord, ev: Event) -> bool:
    return _event_epoch(ev) >= rec.epoch


def _above_pending_claim(rec: AuthorityRecord, ev: Event) -> bool:
    return _event_epoch(ev) > rec.epoch + 1


def _decision_matches(rec: AuthorityRecord, ev: Event) -> bool:
    assert isinstance(ev, DecideRetire)
    return _phase_is(MigrationPhase.OFFERED)(rec, ev) and ev.epoch == rec.epoch


def _commit_matches(rec: AuthorityRecord, ev: Event) -> bool:
    assert isinstance(ev, CommitReceived)
    return (
        _phase_is(MigrationPhase.PREPARED)(rec, ev)
        and rec.migration is not None
        and ev.new_epoch == rec.migration.offer_epoch + 1
    )


def _duplicate_commit(rec: AuthorityRecord, ev: Event) -> bool:
    new_epoch = getattr(ev, "new_epoch", rec.epoch)
    return _phase_is(MigrationPhase.COMMITTED)(rec, ev) and new_epoch == rec.epoch


def _confirm_matches(rec: AuthorityRecord, ev: Event) -> bool:
    assert isinstance(ev, ConfirmReceived)
    return _phase_is(MigrationPhase.DECIDED)(rec, ev) and ev.new_epoch == rec.epoch + 1


def _unconfirmed(rec: AuthorityRecord, ev: Event) -> bool:
    return rec.migration is not None and rec.migration.phase is MigrationPhase.DECIDED


def _claims_not_higher(rec: AuthorityRecord, ev: Event) -> bool:
    assert isinstance(ev, ClaimsChecked)
    return ev.highest_epoch <= rec.epoch


def _other_migration(rec: AuthorityRecord, ev: Event) -> bool:
    return not _same_migration(rec, ev)


def _outcome(kind: ResolutionKind) -> Test:
    def test(rec: AuthorityRecord, ev: Event) -> bool:
        assert isinstance(ev, ResolutionOutcome)
        return ev.kind is kind

    return test


# --------------------------------------------------------------------------- the table

S = AuthorityState
_REJ_UNKNOWN = _reject(RejectReason.UNKNOWN_MIGRATION)
_LOG = (LogRejected,)
_RECOVER_STOP = (StopTicking, PersistAuthority, RecordFence, EnterRecovery)
_RECOVER_IDLE = (PersistAuthority, EnterRecovery)
_TAKE = (PersistAuthority, SendConfirm, StartTicking, PublishClaim)
_FORCE_RULES = (
    Rule(
        _g("new_epoch > fence", _epoch_above_fence),
        S.ACTIVE_OWNER,
        (PersistAuthority, PublishClaim, StartTicking),
        _force,
    ),
    Rule(
        _g("otherwise", lambda r, e: True), None, _LOG, _reject(RejectReason.NOT_HIGHER_THAN_FENCE)
    ),
)
_FENCE_ONLY = (
    Rule(
        _g("epoch > fence", _epoch_above_fence), None, (PersistAuthority, RecordFence), _raise_fence
    ),
    Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
)
_NOT_OWNER = (Rule(ALWAYS, None, _LOG, _reject(RejectReason.NOT_OWNER)),)


def _offer_rejected(code: RejectCode, reason: RejectReason) -> tuple[Rule, ...]:
    return (Rule(ALWAYS, None, (SendReject, LogRejected), _reject_offer(code, reason)),)


def _only_for_migration(*rules: Rule) -> tuple[Rule, ...]:
    """Prefix: events about a migration this record does not refer to are logged and ignored."""
    return (Rule(_g("unknown migration", _other_migration), None, _LOG, _REJ_UNKNOWN), *rules)


TRANSITIONS: Mapping[tuple[Holding, type[Event]], tuple[Rule, ...]] = {
    # ---- no record
    (ABSENT, Launched): (
        Rule(
            _g("epoch > fence", _epoch_above_fence),
            S.ACTIVE_OWNER,
            (PersistAuthority, StartTicking, PublishClaim),
            _launch,
        ),
        Rule(
            _g("otherwise", lambda r, e: True),
            None,
            _LOG,
            _reject(RejectReason.NOT_HIGHER_THAN_FENCE),
        ),
    ),
    (ABSENT, OfferPrepared): (
        Rule(ALWAYS, S.HANDOFF_PENDING, (PersistAuthority, SendAck), _prepare),
    ),
    (ABSENT, HigherEpochSeen): _FENCE_ONLY,
    (ABSENT, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (ABSENT, CommitReceived): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (ABSENT, PendingDiscarded): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (ABSENT, BeginHandoff): _NOT_OWNER,
    # ---- owner
    (S.ACTIVE_OWNER, BeginHandoff): (
        Rule(
            ALWAYS, S.HANDOFF_INITIATED, (StopTicking, PersistAuthority, SendOffer), _begin_handoff
        ),
    ),
    (S.ACTIVE_OWNER, DecideRetire): (
        Rule(
            _g("aborted migration", _phase_is(MigrationPhase.ABORTED)),
            None,
            (LogRejected, SendAbort),
            _send_abort_again,
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.ACTIVE_OWNER, CommitReceived): (
        Rule(
            _g("duplicate of our commit", _duplicate_commit), None, (SendConfirm,), _confirm_again
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.ACTIVE_OWNER, ConfirmReceived): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.ACTIVE_OWNER, PendingDiscarded): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.ACTIVE_OWNER, OfferPrepared): _offer_rejected(
        RejectCode.ALREADY_HELD, RejectReason.ALREADY_HELD
    ),
    (S.ACTIVE_OWNER, HigherEpochSeen): (
        Rule(
            _g("epoch > owned epoch", _epoch_above_owned),
            S.RECOVERY_REQUIRED,
            _RECOVER_STOP,
            _recovery(RecoveryReason.HIGHER_EPOCH_SEEN, stop=True, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
    ),
    (S.ACTIVE_OWNER, ConflictingClaim): (
        Rule(
            _g("epoch >= owned epoch", _epoch_at_or_above_owned),
            S.RECOVERY_REQUIRED,
            _RECOVER_STOP,
            _recovery(RecoveryReason.CONFLICTING_CLAIM, stop=True, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _reject(RejectReason.STALE_EPOCH)),
    ),
    (S.ACTIVE_OWNER, IntegrityFailure): (
        Rule(
            ALWAYS, S.RECOVERY_REQUIRED, (StopTicking, PersistAuthority, EnterRecovery), _integrity
        ),
    ),
    (S.ACTIVE_OWNER, BudgetExhausted): (
        Rule(ALWAYS, S.BUDGET_EXHAUSTED, (StopTicking, PersistAuthority), _to(S.BUDGET_EXHAUSTED)),
    ),
    (S.ACTIVE_OWNER, Halt): (
        Rule(ALWAYS, S.HALTED, (StopTicking, PersistAuthority), _to(S.HALTED)),
    ),
    (S.ACTIVE_OWNER, Restarted): (Rule(ALWAYS, None, (CheckClaims,), _check_claims),),
    (S.ACTIVE_OWNER, ClaimsChecked): (
        Rule(
            _g("no claim above owned epoch", _claims_not_higher),
            None,
            (StartTicking, PublishClaim),
            _start_after_check,
        ),
        Rule(
            _g("otherwise", lambda r, e: True),
            S.RECOVERY_REQUIRED,
            _RECOVER_STOP,
            _recovery(RecoveryReason.HIGHER_EPOCH_SEEN, stop=True, fence=True),
        ),
    ),
    (S.ACTIVE_OWNER, ResolutionOutcome): (
        Rule(
            _g(
                "commit we already took",
                lambda r, e: _outcome(ResolutionKind.COMMIT)(r, e) and _duplicate_commit(r, e),
            ),
            None,
            (SendConfirm,),
            _confirm_again,
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _reject(RejectReason.NOT_APPLICABLE)),
    ),
    # ---- source, handoff in flight, no decision yet
    (S.HANDOFF_INITIATED, BeginHandoff): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.MIGRATION_IN_FLIGHT)),
    ),
    (S.HANDOFF_INITIATED, HandoffAborted): _only_for_migration(
        Rule(ALWAYS, S.ACTIVE_OWNER, (PersistAuthority, SendAbort, StartTicking), _abort_handoff),
    ),
    (S.HANDOFF_INITIATED, DecideRetire): (
        Rule(
            _g("same migration and epoch", _decision_matches),
            S.RETIRED,
            (PersistAuthority, RecordFence, SendCommit),
            _decide,
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.HANDOFF_INITIATED, OfferPrepared): _offer_rejected(
        RejectCode.BUSY, RejectReason.MIGRATION_IN_FLIGHT
    ),
    (S.HANDOFF_INITIATED, CommitReceived): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.HANDOFF_INITIATED, ConfirmReceived): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.HANDOFF_INITIATED, PendingDiscarded): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.HANDOFF_INITIATED, HigherEpochSeen): (
        Rule(
            _g("epoch > owned epoch", _epoch_above_owned),
            S.RECOVERY_REQUIRED,
            _RECOVER_STOP,
            _recovery(RecoveryReason.HIGHER_EPOCH_SEEN, stop=True, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
    ),
    (S.HANDOFF_INITIATED, ConflictingClaim): (
        Rule(
            _g("epoch >= owned epoch", _epoch_at_or_above_owned),
            S.RECOVERY_REQUIRED,
            _RECOVER_STOP,
            _recovery(RecoveryReason.CONFLICTING_CLAIM, stop=True, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _reject(RejectReason.STALE_EPOCH)),
    ),
    (S.HANDOFF_INITIATED, IntegrityFailure): (
        Rule(
            ALWAYS, S.RECOVERY_REQUIRED, (StopTicking, PersistAuthority, EnterRecovery), _integrity
        ),
    ),
    (S.HANDOFF_INITIATED, Restarted): (
        Rule(ALWAYS, S.ACTIVE_OWNER, (PersistAuthority, SendAbort, CheckClaims), _abort_on_restart),
    ),
    # ---- target, prepared, waiting for the commit
    (S.HANDOFF_PENDING, OfferPrepared): (
        Rule(
            _g("same migration (duplicate offer)", _phase_is(MigrationPhase.PREPARED)),
            None,
            (SendAck,),
            _ack_again,
        ),
        Rule(
            _g("otherwise", lambda r, e: True),
            None,
            (SendReject, LogRejected),
            _reject_offer(RejectCode.BUSY, RejectReason.MIGRATION_IN_FLIGHT),
        ),
    ),
    (S.HANDOFF_PENDING, CommitReceived): (
        Rule(
            _g("same migration, epoch = offered + 1", _commit_matches),
            S.ACTIVE_OWNER,
            _TAKE,
            _take_authority(),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.HANDOFF_PENDING, PendingDiscarded): _only_for_migration(
        Rule(ALWAYS, S.RETIRED, (PersistAuthority, DiscardPending), _discard),
    ),
    (S.HANDOFF_PENDING, HigherEpochSeen): (
        Rule(
            _g("epoch > offered + 1", _above_pending_claim),
            S.RECOVERY_REQUIRED,
            (PersistAuthority, RecordFence, EnterRecovery),
            _recovery(RecoveryReason.HIGHER_EPOCH_SEEN, stop=False, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
    ),
    (S.HANDOFF_PENDING, ConflictingClaim): (
        Rule(
            ALWAYS,
            S.RECOVERY_REQUIRED,
            _RECOVER_IDLE,
            _recovery(RecoveryReason.CONFLICTING_CLAIM, stop=False, fence=False),
        ),
    ),
    (S.HANDOFF_PENDING, IntegrityFailure): (
        Rule(
            ALWAYS, S.RECOVERY_REQUIRED, (StopTicking, PersistAuthority, EnterRecovery), _integrity
        ),
    ),
    (S.HANDOFF_PENDING, Restarted): (Rule(ALWAYS, None, (QueryStatus,), _query),),
    (S.HANDOFF_PENDING, ResolutionOutcome): _only_for_migration(
        Rule(
            _g("COMMIT", _kind_is(ResolutionKind.COMMIT, MigrationPhase.PREPARED)),
            S.ACTIVE_OWNER,
            _TAKE,
            _take_authority(),
        ),
        Rule(
            _g("DISCARD", _outcome(ResolutionKind.DISCARD)),
            S.RETIRED,
            (PersistAuthority, DiscardPending),
            _discard,
        ),
        Rule(
            _g("RECOVERY", _outcome(ResolutionKind.RECOVERY)),
            S.RECOVERY_REQUIRED,
            _RECOVER_IDLE,
            _recovery(None, stop=False, fence=False),
        ),
        Rule(_g("otherwise (WAIT)", lambda r, e: True), None, (), _nothing),
    ),
    (S.HANDOFF_PENDING, ForceRecover): _FORCE_RULES,
    (S.HANDOFF_PENDING, BeginHandoff): _NOT_OWNER,
    # ---- retired (source after the decision, target after a discard, or passed on)
    (S.RETIRED, DecideRetire): (
        Rule(
            _g(
                "same migration, decided (duplicate ack)",
                _phase_is(MigrationPhase.DECIDED, MigrationPhase.CONFIRMED),
            ),
            None,
            (SendCommit,),
            _resend_commit,
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.RETIRED, ConfirmReceived): (
        Rule(
            _g("same migration, epoch = retired + 1", _confirm_matches),
            None,
            (PersistAuthority,),
            _confirm,
        ),
        Rule(_g("already confirmed", _phase_is(MigrationPhase.CONFIRMED)), None, (), _nothing),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _REJ_UNKNOWN),
    ),
    (S.RETIRED, OfferPrepared): (
        Rule(ALWAYS, S.HANDOFF_PENDING, (PersistAuthority, SendAck), _prepare),
    ),
    (S.RETIRED, CommitReceived): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.RETIRED, PendingDiscarded): (Rule(ALWAYS, None, _LOG, _REJ_UNKNOWN),),
    (S.RETIRED, HigherEpochSeen): _FENCE_ONLY,
    (S.RETIRED, ConflictingClaim): (
        Rule(
            _g("unconfirmed", _unconfirmed),
            S.RECOVERY_REQUIRED,
            _RECOVER_IDLE,
            _recovery(RecoveryReason.CONFLICTING_CLAIM, stop=False, fence=False),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, _LOG, _reject(RejectReason.NOT_APPLICABLE)),
    ),
    (S.RETIRED, Restarted): (
        Rule(_g("unconfirmed", _unconfirmed), None, (QueryStatus,), _query),
        Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
    ),
    (S.RETIRED, ResolutionOutcome): _only_for_migration(
        Rule(
            _g(
                "CONFIRMED, unconfirmed", _kind_is(ResolutionKind.CONFIRMED, MigrationPhase.DECIDED)
            ),
            None,
            (PersistAuthority,),
            _confirm,
        ),
        Rule(
            _g(
                "RESEND_COMMIT, unconfirmed",
                _kind_is(ResolutionKind.RESEND_COMMIT, MigrationPhase.DECIDED),
            ),
            None,
            (SendCommit,),
            _resend_commit,
        ),
        Rule(
            _g("RECOVERY, unconfirmed", _kind_is(ResolutionKind.RECOVERY, MigrationPhase.DECIDED)),
            S.RECOVERY_REQUIRED,
            _RECOVER_IDLE,
            _recovery(None, stop=False, fence=False),
        ),
        Rule(_g("otherwise (settled already)", lambda r, e: True), None, (), _nothing),
    ),
    (S.RETIRED, ForceRecover): _FORCE_RULES,
    (S.RETIRED, BeginHandoff): _NOT_OWNER,
    # ---- recovery required
    (S.RECOVERY_REQUIRED, ForceRecover): _FORCE_RULES,
    (S.RECOVERY_REQUIRED, HigherEpochSeen): _FENCE_ONLY,
    (S.RECOVERY_REQUIRED, ConflictingClaim): (Rule(ALWAYS, None, (), _nothing),),
    (S.RECOVERY_REQUIRED, IntegrityFailure): (Rule(ALWAYS, None, (), _nothing),),
    (S.RECOVERY_REQUIRED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.RECOVERY_REQUIRED, OfferPrepared): _offer_rejected(
        RejectCode.RECOVERING, RejectReason.RECOVERING
    ),
    (S.RECOVERY_REQUIRED, DecideRetire): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.RECOVERING)),
    ),
    (S.RECOVERY_REQUIRED, CommitReceived): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.RECOVERING)),
    ),
    (S.RECOVERY_REQUIRED, ConfirmReceived): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.RECOVERING)),
    ),
    (S.RECOVERY_REQUIRED, PendingDiscarded): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.RECOVERING)),
    ),
    (S.RECOVERY_REQUIRED, ResolutionOutcome): (
        Rule(ALWAYS, None, _LOG, _reject(RejectReason.RECOVERING)),
    ),
    (S.RECOVERY_REQUIRED, BeginHandoff): _NOT_OWNER,
    # ---- terminal / halted
    (S.BUDGET_EXHAUSTED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.BUDGET_EXHAUSTED, HigherEpochSeen): _FENCE_ONLY,
    (S.BUDGET_EXHAUSTED, OfferPrepared): _offer_rejected(
        RejectCode.ALREADY_HELD, RejectReason.ALREADY_HELD
    ),
    (S.BUDGET_EXHAUSTED, BeginHandoff): _NOT_OWNER,
    (S.HALTED, Resumed): (Rule(ALWAYS, S.ACTIVE_OWNER, (PersistAuthority, CheckClaims), _resume),),
    (S.HALTED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.HALTED, HigherEpochSeen): (
        Rule(
            _g("epoch > owned epoch", _epoch_above_owned),
            S.RECOVERY_REQUIRED,
            (PersistAuthority, RecordFence, EnterRecovery),
            _recovery(RecoveryReason.HIGHER_EPOCH_SEEN, stop=False, fence=True),
        ),
        Rule(_g("otherwise", lambda r, e: True), None, (), _nothing),
    ),
    (S.HALTED, OfferPrepared): _offer_rejected(RejectCode.ALREADY_HELD, RejectReason.ALREADY_HELD),
    (S.HALTED, BeginHandoff): _NOT_OWNER,
}


STALE_RULE_TEXT = (
    "LogRejected(STALE_EPOCH), no change (OfferPrepared also SendReject(STALE_EPOCH) first)"
)
"""The fence check that runs before any table lookup (rendered in docs/authority.md)."""


def _stale(rec: AuthorityRecord, ev: Event, epoch: int) -> list[Action]:
    actions: list[Action] = []
    if isinstance(ev, OfferPrepared):
        actions.append(SendReject(ev.source, ev.migration_id, RejectCode.STALE_EPOCH))
    actions.append(
        LogRejected(
            RejectReason.STALE_EPOCH, f"{type(ev).__name__} epoch {epoch} < fence {rec.fence}"
        )
    )
    return actions


# --------------------------------------------------------------------------- the machine


class AuthorityMachine:
    """One node's authority over one agent. Pure: no I/O, no clock."""

    def __init__(self, record: AuthorityRecord = NO_RECORD) -> None:
        self._record = record
        self._durable = record
        self._ticking = False

    @classmethod
    def restore(cls, record: AuthorityRecord | None) -> AuthorityMachine:
        """Rebuild after a restart from the last durable record (never ticking yet)."""
        return cls(record if record is not None else NO_RECORD)

    @property
    def record(self) -> AuthorityRecord:
        """The latest record, including writes that may not be durable yet."""
        return self._record

    @property
    def durable_record(self) -> AuthorityRecord:
        """The latest record the driver reported durable; answer peers from this one only."""
        return self._durable

    @property
    def state(self) -> Holding:
        return self._record.state

    @property
    def epoch(self) -> int:
        return self._record.epoch

    @property
    def fence(self) -> int:
        return self._record.fence

    @property
    def migration(self) -> MigrationContext | None:
        return self._record.migration

    @property
    def may_tick(self) -> bool:
        """True only between a StartTicking and the next StopTicking, in ACTIVE_OWNER."""
        return self._ticking and self._record.state is AuthorityState.ACTIVE_OWNER

    def mark_durable(self, version: int) -> None:
        """The write of record ``version`` is durable."""
        if version == self._record.version:
            self._durable = self._record
        elif version > self._durable.version and version > self._record.version:
            raise TableInconsistency(f"durable version {version} was never written")

    def handle(self, event: Event) -> list[Action]:
        rec = self._record
        epoch = event.fenced_epoch()
        if epoch is not None and epoch < rec.fence:
            return _stale(rec, event, epoch)
        rules = TRANSITIONS.get((rec.state, type(event)))
        if rules is None:
            raise IllegalTransition(rec.state, event)
        rule = next((r for r in rules if r.guard.test(rec, event)), None)
        if rule is None:
            raise IllegalTransition(rec.state, event)
        new, actions = rule.effect(rec, event)
        expected_state = rule.next_state if rule.next_state is not None else rec.state
        if tuple(type(a) for a in actions) != rule.actions or new.state != expected_state:
            raise TableInconsistency(f"rule for {type(event).__name__} in {rec.state} drifted")
        self._record = new
        for action in actions:
            if isinstance(action, StopTicking):
                self._ticking = False
            elif isinstance(action, StartTicking):
                self._ticking = True
        return actions
