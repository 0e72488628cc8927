"""The one table that owns every authority rule of a node, for every role (pure).

Rule 1 (after h11): everything that changes what a node believes about its authority over an
agent lives in this file. Rule 2: the table does not care why an event arrived — a source and a
target, a restart and an operator all feed the same machine.

An :class:`AuthorityMachine` holds one node's belief about one agent: the durable
:class:`~igor_p2p.authority.record.AuthorityRecord` and the volatile
:class:`~igor_p2p.authority.record.Run`. ``handle(event)`` looks ``(state, type(event))`` up in
:data:`TRANSITIONS`, takes the first :class:`Rule` whose guard holds and returns its actions.
A pair the table does not list raises :class:`IllegalTransition` (a typed error the caller turns
into words: "the agent is RETIRED on this node").

Theory of operation:

- Authority over epoch ``s`` exists only as a witness certificate for the record that starts
  ``s`` (:mod:`igor_p2p.authority.claim`). A node ticks only an epoch it got the certificate for
  *in this incarnation* (``Run.certified``). After a restart, a resume, an import or a forced
  recovery it claims a new epoch first; it never continues an old one, because a node restored
  from a backup may have ticked, or signed away, what its disk no longer remembers.
- A source hands over without writing anything first: it stops ticking, offers, and proposes
  the transfer to the witnesses. Before any ACCEPT has left it may still abort and tick on (the
  incarnation knows it signed nothing that could be chosen); after that only the witnesses'
  answer settles it.
- A target makes its copy durable (HANDOFF_PENDING) before it acks, and owns the next epoch only
  with the certificate in hand.
- Proven facts move a node forward (ClaimStale, Superseded: RETIRED with the new owner); only
  damage or contradiction sends it to RECOVERY_REQUIRED.

Ordering contract of every rule's actions (write-ahead): ``StopTicking`` comes before the
``PersistAuthority`` that leaves ownership; every reply, ``StartTicking``, ``SendCommit``,
``PublishClaim`` and ``Learn`` that depends on a new record comes after its ``PersistAuthority``,
and the interpreter runs none of them before that write is durable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from igor_p2p.authority.custody import EpochStart, decode_record
from igor_p2p.authority.events import (
    AbortReceived,
    Action,
    AgentFailed,
    BeginHandoff,
    BudgetExhausted,
    ClaimResolved,
    ClaimStale,
    CommitReceived,
    CopyImported,
    EnterRecovery,
    Event,
    ExportedToGo,
    ForceRecover,
    Halt,
    HandoffAborted,
    Imported,
    IntegrityFailure,
    Launched,
    Learn,
    LogRejected,
    OfferPrepared,
    OfferRefused,
    PersistAuthority,
    PublishClaim,
    ReplyAck,
    ReplyConfirm,
    ReplyDone,
    ReplyReject,
    Restarted,
    Resume,
    SendAbort,
    SendCommit,
    SourceAborted,
    StartClaim,
    StartTicking,
    StopTicking,
    Superseded,
    TickFailed,
)
from igor_p2p.authority.record import (
    ABSENT,
    NO_RECORD,
    AuthorityRecord,
    ClaimPurpose,
    Holding,
    PendingCopy,
    Phase,
    RecoveryReason,
    Run,
    Successor,
)
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.lineage.custody import TransferRecord
from igor_p2p.wire.messages import RejectCode

S = AuthorityState


class IllegalTransition(IgorError):
    """The table has no rule for this (state, event) pair."""

    def __init__(self, state: Holding, event: Event) -> None:
        super().__init__(f"no rule for {type(event).__name__} in {state}")
        self.state = state
        self.event = event


class TableInconsistency(IgorError):
    """A rule produced actions or a state other than the ones it declares (a bug in the table)."""


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class View:
    """What a guard or an effect sees: the record, the run and this node's key."""

    record: AuthorityRecord
    run: Run
    me: bytes


@dataclass
class Out:
    """What an effect produces: the next record, the run changes and the actions."""

    record: AuthorityRecord
    actions: list[Action]
    run: dict[str, object] = field(default_factory=dict)


Effect = Callable[[View, Event], Out]
Test = Callable[[View, Event], bool]


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


ALWAYS = Guard("", lambda v, e: True)
OTHERWISE = Guard("otherwise", lambda v, e: True)


def _bump(record: AuthorityRecord, **changes: object) -> AuthorityRecord:
    return replace(record, version=record.version + 1, **changes)  # type: ignore[arg-type]


_IDLE: dict[str, object] = {"phase": Phase.IDLE, "claim": None, "certified": 0, "handoff": None}
"""The volatile run after a rule that leaves ticking, claiming and handing off behind."""


def _owner_record(view: View, start: EpochStart, **changes: object) -> AuthorityRecord:
    return _bump(
        view.record,
        state=S.ACTIVE_OWNER,
        epoch=start.epoch,
        witnesses=start.witnesses,
        pending=None,
        successor=None,
        reason=None,
        detail="forced recovery" if start.forced else "",
        **changes,
    )


def _retired(view: View, latest: EpochStart, **changes: object) -> AuthorityRecord:
    epoch = view.record.epoch
    return _bump(
        view.record,
        state=S.RETIRED,
        epoch=epoch,
        pending=None,
        successor=Successor(latest.epoch, latest.owner),
        reason=None,
        detail="",
        **changes,
    )


# -- guards


def _g(name: str, test: Test) -> Guard:
    return Guard(name, test)


def _ticking(v: View, e: Event) -> bool:
    return v.run.phase is Phase.TICKING and v.run.certified == v.record.epoch


def _claiming(v: View, e: Event) -> bool:
    return v.run.phase is Phase.CLAIMING


def _handing_off(v: View, e: Event) -> bool:
    mid = getattr(e, "migration_id", None)
    return (
        v.run.phase is Phase.HANDING_OFF
        and v.run.handoff is not None
        and (mid is None or v.run.handoff[0] == mid)
    )


def _resolved_for_me(v: View, e: Event) -> bool:
    """The claim chose a record naming this node for the next epoch, made from the head this
    node holds (its own proposal, or an earlier incarnation's from the same copy)."""
    assert isinstance(e, ClaimResolved)
    return (
        e.start.owner == v.me
        and e.start.epoch == v.record.epoch + 1
        and _made_from_our_head(v, e.start)
    )


def _resolved_for_a_lost_copy(v: View, e: Event) -> bool:
    """The claim adopted a record naming this node that an earlier incarnation made from a head
    this copy does not hold: the copy was restored and lost committed ticks."""
    assert isinstance(e, ClaimResolved)
    return (
        e.start.owner == v.me
        and e.start.epoch == v.record.epoch + 1
        and not _made_from_our_head(v, e.start)
    )


def _made_from_our_head(v: View, start: EpochStart) -> bool:
    if start.is_genesis or "head" not in v.run.extra:
        return True  # a genesis has no prev; a machine never told its head trusts the record
    return decode_record(start.record).prev == v.run.extra["head"]


def _runs(v: View, e: Event) -> bool:
    """The runner may be ticking the agent: a rule leaving that phase stops it first."""
    return v.run.phase is Phase.TICKING


def _handoff_chosen(v: View, e: Event) -> bool:
    assert isinstance(e, ClaimResolved)
    return (
        _handing_off(v, e)
        and v.run.handoff is not None
        and e.start.owner == v.run.handoff[1]
        and e.start.epoch == v.record.epoch + 1
    )


def _next_epoch_chosen_for_another(v: View, e: Event) -> bool:
    assert isinstance(e, ClaimResolved)
    return e.start.owner != v.me and e.start.epoch == v.record.epoch + 1


def _our_transfer(v: View, start: EpochStart) -> TransferRecord | None:
    """The record that starts ``start``, when it is a handoff from this node to another one for
    the epoch after ours (an earlier handoff of ours that a claim or the witnesses decided)."""
    if start.is_genesis or start.owner == v.me or start.epoch != v.record.epoch + 1:
        return None
    record = decode_record(start.record)
    if isinstance(record, TransferRecord) and record.from_node == v.me:
        return record
    return None


def _our_handoff_chosen_late(v: View, e: Event) -> bool:
    """The next epoch went to our own earlier handoff's target, and nobody has told it yet: this
    incarnation no longer runs that handoff (a restart, or its deadline passed), so its COMMIT
    was never sent; only the target's own settlement would find out, much later."""
    start = e.start if isinstance(e, ClaimResolved) else e.latest  # type: ignore[attr-defined]
    return _our_transfer(v, start) is not None


def _earlier_handoff_chosen(v: View, e: Event) -> bool:
    """The next epoch went to a handoff of ours other than the one in progress."""
    assert isinstance(e, ClaimStale) and v.run.handoff is not None
    transfer = _our_transfer(v, e.latest)
    return transfer is not None and transfer.migration_id != v.run.handoff[0]


def _stale_is_ours(v: View, e: Event) -> bool:
    """The witnesses' latest epoch is ours, chosen for the very copy this node holds (a claim
    of ours completed by someone else, or by an earlier incarnation before a plain restart)."""
    assert isinstance(e, ClaimStale | Superseded)
    latest = e.latest
    if latest.owner != v.me or latest.epoch != v.record.epoch + 1 or latest.is_genesis:
        return False
    record = decode_record(latest.record)
    head = v.run.extra.get("head")
    return record.prev == head


def _stale_names_us(v: View, e: Event) -> bool:
    assert isinstance(e, ClaimStale | Superseded)
    return e.latest.owner == v.me


def _same_pending(v: View, e: Event) -> bool:
    pending = v.record.pending
    return pending is not None and pending.migration_id == getattr(e, "migration_id", None)


def _commit_for_pending(v: View, e: Event) -> bool:
    """The certified record hands our pending copy (its head) to us. The migration id is not
    compared: the record is the authority, and a stale OFFER of the same head from the same
    source (a retry's first attempt, delivered late) may have renamed the copy."""
    assert isinstance(e, CommitReceived)
    return (
        e.start is not None
        and v.record.pending is not None
        and e.start.owner == v.me
        and e.start.epoch == v.record.epoch + 1
        and not e.start.is_genesis
        and decode_record(e.start.record).prev == v.record.pending.head  # type: ignore[union-attr]
    )


def _settled_for_me(v: View, e: Event) -> bool:
    """A chosen record (by COMMIT, or a settle claim) that hands this pending copy to us."""
    start = e.latest if isinstance(e, ClaimStale | Superseded) else e.start  # type: ignore[attr-defined]
    pending = v.record.pending
    return (
        pending is not None
        and start.owner == v.me
        and start.epoch == v.record.epoch + 1
        and not start.is_genesis
        and decode_record(start.record).prev == pending.head
    )


def _fresh(v: View, e: Event) -> bool:
    return v.run.pending_fresh


def _supersedes_pending(v: View, e: Event) -> bool:
    """The source offers again at the same or a later epoch: its earlier handoff is over."""
    assert isinstance(e, OfferPrepared)
    pending = v.record.pending
    return pending is not None and e.source == pending.source and e.epoch >= v.record.epoch


def _offer_not_stale(v: View, e: Event) -> bool:
    assert isinstance(e, OfferPrepared)
    return e.epoch >= v.record.fence


def _later_epoch(v: View, e: Event) -> bool:
    assert isinstance(e, Superseded)
    return e.latest.epoch > v.record.epoch


def _duplicate_commit(v: View, e: Event) -> bool:
    assert isinstance(e, CommitReceived)
    return v.record.last_migration == e.migration_id


def _later_than_pending(v: View, e: Event) -> bool:
    assert isinstance(e, Superseded | ClaimStale)
    return e.latest.epoch > v.record.epoch + 1 or (
        e.latest.epoch == v.record.epoch + 1 and e.latest.owner != v.me
    )


# -- effects


def _launch(v: View, e: Event) -> Out:
    assert isinstance(e, Launched)
    record = _bump(v.record, state=S.ACTIVE_OWNER, epoch=1, witnesses=e.witnesses)
    return Out(
        record,
        [PersistAuthority(record, (e.genesis,)), StartTicking(1), PublishClaim(None, 1)],
        {"phase": Phase.TICKING, "certified": 1},
    )


def _import_fresh(v: View, e: Event) -> Out:
    assert isinstance(e, Imported)
    record = _bump(v.record, state=S.ACTIVE_OWNER, epoch=e.epoch, witnesses=e.witnesses)
    return Out(
        record,
        [PersistAuthority(record, e.entries), StartTicking(e.epoch), PublishClaim(None, e.epoch)],
        {"phase": Phase.TICKING, "certified": e.epoch},
    )


def _import_then_claim(v: View, e: Event) -> Out:
    assert isinstance(e, Imported)
    record = _bump(v.record, state=S.ACTIVE_OWNER, epoch=e.epoch, witnesses=e.witnesses)
    return Out(
        record,
        [PersistAuthority(record, e.entries), StartClaim(ClaimPurpose.RESUME, e.epoch + 1)],
        {"phase": Phase.CLAIMING, "claim": ClaimPurpose.RESUME, "certified": 0},
    )


def _copy_imported(v: View, e: Event) -> Out:
    assert isinstance(e, CopyImported)
    record = _bump(
        v.record,
        state=S.RETIRED,
        epoch=e.epoch,
        witnesses=e.witnesses,
        successor=Successor(e.epoch, e.owner),
        detail="imported read-only copy; custody is with another node",
    )
    return Out(record, [PersistAuthority(record, e.entries)])


def _exported(v: View, e: Event) -> Out:
    assert isinstance(e, ExportedToGo)
    record = _bump(v.record, state=S.EXPORTED, detail="exported to Go Igor")
    actions: list[Action] = []
    if v.run.phase is Phase.TICKING:
        actions.append(StopTicking())
    actions.append(PersistAuthority(record, (e.record,)))
    return Out(record, actions, {"phase": Phase.IDLE, "claim": None, "certified": 0})


def _claim(purpose: ClaimPurpose) -> Effect:
    def effect(v: View, e: Event) -> Out:
        operator = e.operator if isinstance(e, ForceRecover) else ""
        return Out(
            v.record,
            [StartClaim(purpose, v.record.epoch + 1, operator)],
            {"phase": Phase.CLAIMING, "claim": purpose, "certified": 0},
        )

    return effect


def _failed(v: View, e: Event) -> Out:
    assert isinstance(e, AgentFailed)
    record = _bump(
        v.record,
        state=S.RECOVERY_REQUIRED,
        reason=RecoveryReason.UNEXPECTED_ERROR,
        detail=e.detail[:500],
    )
    actions: list[Action] = []
    if v.run.phase in (Phase.TICKING, Phase.HANDING_OFF):
        actions.append(StopTicking())
    actions += [PersistAuthority(record), EnterRecovery(RecoveryReason.UNEXPECTED_ERROR, e.detail)]
    return Out(
        record, actions, {"phase": Phase.IDLE, "claim": None, "certified": 0, "handoff": None}
    )


def _own_chosen(v: View, e: Event) -> Out:
    """Our record won: own the new epoch and tick it (this incarnation holds the certificate)."""
    assert isinstance(e, ClaimResolved)
    record = _owner_record(v, e.start)
    return Out(
        record,
        [
            PersistAuthority(record, e.start.links()),
            StartTicking(e.start.epoch),
            PublishClaim(e.start, e.start.epoch),
            Learn(e.start),
        ],
        {"phase": Phase.TICKING, "certified": e.start.epoch, "claim": None, "waiting": ""},
    )


def _retire_to(v: View, e: Event) -> Out:
    """Another node owns a later epoch (proven): retire, remember where the agent went."""
    latest: EpochStart = e.latest if not isinstance(e, ClaimResolved) else e.start  # type: ignore[attr-defined]
    record = _retired(v, latest)
    actions: list[Action] = []
    if v.run.phase is Phase.TICKING:
        actions.append(StopTicking())
    actions.append(PersistAuthority(record, discard_copy=v.record.pending is not None))
    return Out(record, actions, _IDLE)


def _retire_adopted(v: View, e: Event) -> Out:
    """Our claim completed another node's record (an earlier handoff of ours): it owns it."""
    assert isinstance(e, ClaimResolved)
    record = _retired(v, e.start)
    return Out(
        record,
        [PersistAuthority(record, discard_copy=v.record.pending is not None), Learn(e.start)],
        {"phase": Phase.IDLE, "claim": None, "certified": 0},
    )


def _commit_late(v: View, e: Event) -> Out:
    """Retire to our own earlier handoff's target and send it the COMMIT it is waiting for."""
    start: EpochStart = e.start if isinstance(e, ClaimResolved) else e.latest  # type: ignore[attr-defined]
    transfer = _our_transfer(v, start)
    assert transfer is not None
    out = _retire_adopted(v, e) if isinstance(e, ClaimResolved) else _retire_to(v, e)
    at = next(i for i, a in enumerate(out.actions) if isinstance(a, PersistAuthority)) + 1
    out.actions.insert(at, SendCommit(transfer.to_node, transfer.migration_id, start))
    return out


def _stale_lost(v: View, e: Event) -> Out:
    """Handing off, the witnesses proved the next epoch another node's (a restore or a forced
    recovery won): retire to it, and tell our target to drop the copy it can never own."""
    assert v.run.handoff is not None
    mid, target = v.run.handoff
    out = _retire_to(v, e)
    out.actions.insert(0, SendAbort(target, mid))
    return out


def _stale_lost_to_earlier(v: View, e: Event) -> Out:
    """Handing off, the witnesses proved the next epoch an earlier handoff of ours to another
    target: abort this one, and send the earlier target its COMMIT."""
    assert v.run.handoff is not None
    mid, target = v.run.handoff
    out = _commit_late(v, e)
    out.actions.insert(0, SendAbort(target, mid))
    return out


def _commit_again(v: View, e: Event) -> Out:
    """A restarted source that retired to its target: send the COMMIT once more (a crash may
    have cut it off; a target that has it already confirms again)."""
    assert isinstance(e, Restarted) and e.latest is not None
    transfer = _our_transfer(v, e.latest)
    assert transfer is not None
    return Out(v.record, [SendCommit(transfer.to_node, transfer.migration_id, e.latest)])


def _stale_but_ours(v: View, e: Event) -> Out:
    """The next epoch is ours already (proven): record it, then claim one more before ticking."""
    assert isinstance(e, ClaimStale | Superseded)
    latest = e.latest
    record = _owner_record(v, latest)
    stop: list[Action] = [StopTicking()] if v.run.phase is Phase.TICKING else []
    return Out(
        record,
        [
            *stop,
            PersistAuthority(record, latest.links()),
            StartClaim(ClaimPurpose.RESUME, latest.epoch + 1),
        ],
        {"phase": Phase.CLAIMING, "claim": ClaimPurpose.RESUME, "certified": 0, "handoff": None},
    )


def _restored(v: View, e: Event) -> Out:
    """The witnesses say we own a later epoch than our copy holds: we were restored."""
    assert isinstance(e, ClaimStale | Superseded | ClaimResolved)
    latest = e.start if isinstance(e, ClaimResolved) else e.latest
    detail = (
        f"the witnesses certify epoch {latest.epoch} to this node, but its copy is older: "
        "it was restored from a backup and lost what it committed since"
    )
    record = _bump(
        v.record,
        state=S.RECOVERY_REQUIRED,
        reason=RecoveryReason.RESTORED_COPY,
        detail=detail,
        successor=Successor(latest.epoch, latest.owner),
    )
    actions: list[Action] = []
    if v.run.phase is Phase.TICKING:
        actions.append(StopTicking())
    actions += [PersistAuthority(record), EnterRecovery(RecoveryReason.RESTORED_COPY, detail)]
    return Out(record, actions, _IDLE)


def _begin_handoff(v: View, e: Event) -> Out:
    assert isinstance(e, BeginHandoff)
    return Out(
        v.record,
        [StopTicking()],
        {"phase": Phase.HANDING_OFF, "handoff": (e.migration_id, e.target)},
    )


def _abort_handoff(v: View, e: Event) -> Out:
    assert isinstance(e, HandoffAborted) and v.run.handoff is not None
    return Out(
        v.record,
        [SendAbort(v.run.handoff[1], e.migration_id), StartTicking(v.record.epoch)],
        {"phase": Phase.TICKING, "handoff": None},
    )


def _handed_off(v: View, e: Event) -> Out:
    """Our transfer is chosen: retire with the handoff checkpoint, record and certificate."""
    assert isinstance(e, ClaimResolved) and v.run.handoff is not None
    mid, target = v.run.handoff
    record = _retired(v, e.start)
    append = ((e.handoff_checkpoint,) if e.handoff_checkpoint else ()) + e.start.links()
    return Out(
        record,
        [PersistAuthority(record, append), SendCommit(target, mid, e.start), Learn(e.start)],
        {"phase": Phase.IDLE, "handoff": None, "certified": 0},
    )


def _handoff_lost(v: View, e: Event) -> Out:
    """Phase 1 of our handoff adopted another record (a restore or a forced recovery happened)
    and it won: the agent is that record's owner's; tell our target to drop its copy."""
    assert isinstance(e, ClaimResolved) and v.run.handoff is not None
    mid, target = v.run.handoff
    out = _retire_adopted(v, e)
    out.actions.insert(0, SendAbort(target, mid))
    out.run["handoff"] = None
    return out


def _handoff_lost_to_earlier(v: View, e: Event) -> Out:
    """Phase 1 of our handoff adopted an earlier handoff of ours to another target, which won:
    abort this one, and send the earlier target the COMMIT it waits for."""
    out = _handoff_lost(v, e)
    transfer = _our_transfer(v, e.start)  # type: ignore[attr-defined]
    assert transfer is not None
    at = next(i for i, a in enumerate(out.actions) if isinstance(a, PersistAuthority)) + 1
    out.actions.insert(at, SendCommit(transfer.to_node, transfer.migration_id, e.start))  # type: ignore[attr-defined]
    return out


def _handoff_became_resume(v: View, e: Event) -> Out:
    """Phase 1 of our handoff adopted our own earlier self-transfer, which won: we own the new
    epoch in this incarnation; the target's copy is for the old one."""
    assert isinstance(e, ClaimResolved) and v.run.handoff is not None
    mid, target = v.run.handoff
    out = _own_chosen(v, e)
    out.actions.insert(0, SendAbort(target, mid))
    out.run["handoff"] = None
    return out


def _handoff_found_restore(v: View, e: Event) -> Out:
    """Phase 1 of our handoff adopted a record of ours made from a head we no longer hold."""
    assert isinstance(e, ClaimResolved) and v.run.handoff is not None
    mid, target = v.run.handoff
    out = _restored(v, e)
    out.actions.insert(0, SendAbort(target, mid))
    return out


def _to_terminal(state: AuthorityState) -> Effect:
    def effect(v: View, e: Event) -> Out:
        final = getattr(e, "final", None)
        reason = getattr(e, "reason", "")
        record = _bump(v.record, state=state, detail=str(reason or ""))
        actions: list[Action] = []
        if v.run.phase is Phase.TICKING:
            actions.append(StopTicking())
        take_final = isinstance(e, Halt) and v.run.phase is Phase.TICKING
        actions.append(
            PersistAuthority(record, (final,) if final else (), final_checkpoint=take_final)
        )
        return Out(record, actions, _IDLE)

    return effect


def _integrity(v: View, e: Event) -> Out:
    assert isinstance(e, IntegrityFailure)
    record = _bump(
        v.record,
        state=S.RECOVERY_REQUIRED,
        reason=RecoveryReason.INTEGRITY_FAILURE,
        detail=e.reason,
    )
    actions: list[Action] = []
    if v.run.phase is Phase.TICKING:
        actions.append(StopTicking())
    actions += [
        PersistAuthority(record),
        EnterRecovery(RecoveryReason.INTEGRITY_FAILURE, e.reason),
    ]
    return Out(record, actions, _IDLE)


def _conflict(v: View, e: Event) -> Out:
    assert isinstance(e, Superseded)
    detail = f"another record was certified for epoch {e.latest.epoch}, which this node owns"
    record = _bump(
        v.record,
        state=S.RECOVERY_REQUIRED,
        reason=RecoveryReason.CONFLICTING_CUSTODY,
        detail=detail,
    )
    actions: list[Action] = []
    if v.run.phase is Phase.TICKING:
        actions.append(StopTicking())
    actions += [
        PersistAuthority(record),
        EnterRecovery(RecoveryReason.CONFLICTING_CUSTODY, detail),
    ]
    return Out(record, actions, _IDLE)


def _prepare(v: View, e: Event) -> Out:
    assert isinstance(e, OfferPrepared)
    record = _bump(
        v.record,
        state=S.HANDOFF_PENDING,
        epoch=e.epoch,
        witnesses=e.witnesses,
        pending=PendingCopy(e.migration_id, e.source, e.head),
        successor=None,
        reason=None,
        detail="",
    )
    return Out(
        record,
        [
            PersistAuthority(record, e.entries, discard_copy=v.record.pending is not None),
            ReplyAck(e.migration_id, e.epoch, e.head),
            StartClaim(ClaimPurpose.SETTLE, e.epoch + 1),
        ],
        {"phase": Phase.CLAIMING, "claim": ClaimPurpose.SETTLE, "pending_fresh": True},
    )


def _ack_again(v: View, e: Event) -> Out:
    pending = v.record.pending
    assert pending is not None
    return Out(v.record, [ReplyAck(pending.migration_id, v.record.epoch, pending.head)])


def _reject(code: RejectCode, why: str) -> Effect:
    def effect(v: View, e: Event) -> Out:
        mid = getattr(e, "migration_id", b"")
        return Out(
            v.record,
            [ReplyReject(mid, code, why), LogRejected(f"{type(e).__name__}: {why}")],
        )

    return effect


def _refuse_offer(v: View, e: Event) -> Out:
    assert isinstance(e, OfferRefused)
    return Out(
        v.record,
        [ReplyReject(e.migration_id, e.code, e.reason), LogRejected(f"offer: {e.reason}")],
    )


def _done(note: str) -> Effect:
    def effect(v: View, e: Event) -> Out:
        return Out(v.record, [ReplyDone(), LogRejected(note)])

    return effect


def _take_committed(v: View, e: Event) -> Out:
    """Own the epoch a COMMIT or a settle claim gave us; tick it if this incarnation prepared
    the copy, otherwise claim one more epoch first."""
    start: EpochStart = e.latest if isinstance(e, ClaimStale | Superseded) else e.start  # type: ignore[attr-defined]
    mid = v.record.pending.migration_id if v.record.pending else None
    record = _owner_record(v, start, last_migration=mid)
    actions: list[Action] = [PersistAuthority(record, start.links())]
    if isinstance(e, CommitReceived):
        actions.append(ReplyConfirm(e.migration_id, start.epoch))
    if v.run.pending_fresh:
        actions += [StartTicking(start.epoch), PublishClaim(start, start.epoch), Learn(start)]
        run = {"phase": Phase.TICKING, "certified": start.epoch, "claim": None}
    else:
        actions.append(StartClaim(ClaimPurpose.RESUME, start.epoch + 1))
        run = {"phase": Phase.CLAIMING, "certified": 0, "claim": ClaimPurpose.RESUME}
    return Out(record, actions, {**run, "pending_fresh": False, "waiting": ""})


def _confirm_again(v: View, e: Event) -> Out:
    assert isinstance(e, CommitReceived)
    return Out(v.record, [ReplyConfirm(e.migration_id, v.record.epoch)])


def _discard(reply: bool) -> Effect:
    def effect(v: View, e: Event) -> Out:
        record = _bump(v.record, state=S.RETIRED, pending=None)
        actions: list[Action] = [PersistAuthority(record, discard_copy=True)]
        if reply:
            actions.append(ReplyDone())
        return Out(record, actions, {"phase": Phase.IDLE, "pending_fresh": False, "claim": None})

    return effect


def _nothing(v: View, e: Event) -> Out:
    return Out(v.record, [])


def _ignore(note: str) -> Effect:
    def effect(v: View, e: Event) -> Out:
        return Out(v.record, [LogRejected(note)])

    return effect


def _remember_successor(v: View, e: Event) -> Out:
    assert isinstance(e, Superseded)
    record = _bump(v.record, successor=Successor(e.latest.epoch, e.latest.owner))
    return Out(record, [PersistAuthority(record)])


def _settle(v: View, e: Event) -> Out:
    return Out(
        v.record,
        [StartClaim(ClaimPurpose.SETTLE, v.record.epoch + 1)],
        {"phase": Phase.CLAIMING, "claim": ClaimPurpose.SETTLE, "pending_fresh": False},
    )


# --------------------------------------------------------------------------- the table

_PERSIST = PersistAuthority
_OWN = (_PERSIST, StartTicking, PublishClaim, Learn)
_SETTLED_FOR_ME = (
    Rule(
        _g(
            "hands our copy to us, this incarnation prepared it",
            lambda v, e: _settled_for_me(v, e) and _fresh(v, e),
        ),
        S.ACTIVE_OWNER,
        _OWN,
        _take_committed,
    ),
    Rule(
        _g("hands our copy to us", _settled_for_me),
        S.ACTIVE_OWNER,
        (_PERSIST, StartClaim),
        _take_committed,
    ),
)
"""A proven start (a settle claim's, a proof's) that hands the pending copy to us."""
_COMMIT_LATE_RULE = Rule(
    _g("our own earlier handoff was chosen: tell its target", _our_handoff_chosen_late),
    S.RETIRED,
    (_PERSIST, SendCommit),
    _commit_late,
)
_RETIRE_RULE = Rule(OTHERWISE, S.RETIRED, (_PERSIST,), _retire_to)
_STALE_RULES = (
    Rule(
        _g("the next epoch is ours, for this copy", _stale_is_ours),
        S.ACTIVE_OWNER,
        (_PERSIST, StartClaim),
        _stale_but_ours,
    ),
    Rule(
        _g("a later epoch is ours: this copy was restored", _stale_names_us),
        S.RECOVERY_REQUIRED,
        (_PERSIST, EnterRecovery),
        _restored,
    ),
    _COMMIT_LATE_RULE,
    _RETIRE_RULE,
)
_CLAIM_RESULT_RULES = (
    Rule(_g("chosen for us, claiming", _resolved_for_me), S.ACTIVE_OWNER, _OWN, _own_chosen),
    Rule(
        _g("chosen for us from a copy this node lost", _resolved_for_a_lost_copy),
        S.RECOVERY_REQUIRED,
        (_PERSIST, EnterRecovery),
        _restored,
    ),
    Rule(
        _g("our own earlier handoff was chosen: tell its target", _our_handoff_chosen_late),
        S.RETIRED,
        (_PERSIST, SendCommit, Learn),
        _commit_late,
    ),
    Rule(
        _g("the next epoch chosen for another node", _next_epoch_chosen_for_another),
        S.RETIRED,
        (_PERSIST, Learn),
        _retire_adopted,
    ),
)


def _only_claiming(*rules: Rule) -> tuple[Rule, ...]:
    """Claim results count only while this node is making that claim."""
    guarded = tuple(
        Rule(
            _g(
                f"claiming, {r.guard.name}" if r.guard.name else "claiming",
                lambda v, e, t=r.guard.test: _claiming(v, e) and t(v, e),
            ),
            r.next_state,
            r.actions,
            r.effect,
        )
        for r in rules
    )
    return (*guarded, Rule(OTHERWISE, None, (LogRejected,), _ignore("no claim in progress")))


_OFFER_WHEN_HELD = (
    Rule(
        ALWAYS,
        None,
        (ReplyReject, LogRejected),
        _reject(RejectCode.ALREADY_HELD, "this node holds the agent"),
    ),
)
_COMMIT_UNKNOWN = (
    Rule(
        ALWAYS,
        None,
        (ReplyReject, LogRejected),
        _reject(RejectCode.UNKNOWN_MIGRATION, "no pending copy for this migration"),
    ),
)
_ABORT_IGNORED = (Rule(ALWAYS, None, (ReplyDone, LogRejected), _done("abort of nothing here")),)
_REFUSE_OFFER = (Rule(ALWAYS, None, (ReplyReject, LogRejected), _refuse_offer),)
_SUPERSEDED_OWNER = (
    Rule(
        _g("the same epoch certified to another record", lambda v, e: not _later_epoch(v, e)),
        S.RECOVERY_REQUIRED,
        (_PERSIST, EnterRecovery),
        _conflict,
    ),
    *_STALE_RULES,
)


def _TICK_ENDED(state: AuthorityState) -> tuple[Rule, ...]:
    """A tick ended the agent (budget spent, trap, timeout): terminal, unless a handoff is in
    flight — then its checkpoint is the last committed state and the handoff decides; if it
    aborts, the agent ticks again and the same end comes back."""
    return (
        Rule(_g("ticking", _runs), state, (StopTicking, _PERSIST), _to_terminal(state)),
        Rule(_g("claiming", _claiming), state, (_PERSIST,), _to_terminal(state)),
        Rule(
            OTHERWISE,
            None,
            (LogRejected,),
            _ignore("a tick ended while a handoff is in flight: the handoff decides"),
        ),
    )


def _split_on_running(*rules: Rule) -> tuple[Rule, ...]:
    """Each rule twice: while the runner may be ticking (StopTicking comes first), and not."""
    out: list[Rule] = []
    for r in rules:
        test = r.guard.test
        name = r.guard.name or "otherwise"
        out.append(
            Rule(
                _g(f"ticking, {name}", lambda v, e, t=test: _runs(v, e) and t(v, e)),
                r.next_state,
                (StopTicking, *r.actions),
                r.effect,
            )
        )
        out.append(
            Rule(
                _g(f"not ticking, {name}", lambda v, e, t=test: not _runs(v, e) and t(v, e)),
                r.next_state,
                r.actions,
                r.effect,
            )
        )
    return tuple(out)


def _failure_rules() -> dict[tuple[Holding, type[Event]], tuple[Rule, ...]]:
    """Every held state: an unexpected error halts the agent in RECOVERY_REQUIRED (an owner
    that is ticking or handing off stops first; no other state ticks)."""
    held = [s for s in AuthorityState if s is not S.HANDOFF_INITIATED]
    ticking_or_handing = Rule(
        _g(
            "ticking or handing off",
            lambda v, e: v.run.phase in (Phase.TICKING, Phase.HANDING_OFF),
        ),
        S.RECOVERY_REQUIRED,
        (StopTicking, _PERSIST, EnterRecovery),
        _failed,
    )
    otherwise = Rule(OTHERWISE, S.RECOVERY_REQUIRED, (_PERSIST, EnterRecovery), _failed)
    return {
        (state, AgentFailed): (ticking_or_handing, otherwise)
        if state is S.ACTIVE_OWNER
        else (otherwise,)
        for state in held
    }


TRANSITIONS: Mapping[tuple[Holding, type[Event]], tuple[Rule, ...]] = {
    **_failure_rules(),
    # ---- no record
    (ABSENT, Launched): (
        Rule(ALWAYS, S.ACTIVE_OWNER, (_PERSIST, StartTicking, PublishClaim), _launch),
    ),
    (ABSENT, Imported): (
        Rule(
            _g("a fresh genesis", lambda v, e: e.fresh),  # type: ignore[attr-defined]
            S.ACTIVE_OWNER,
            (_PERSIST, StartTicking, PublishClaim),
            _import_fresh,
        ),
        Rule(OTHERWISE, S.ACTIVE_OWNER, (_PERSIST, StartClaim), _import_then_claim),
    ),
    (ABSENT, CopyImported): (Rule(ALWAYS, S.RETIRED, (_PERSIST,), _copy_imported),),
    (ABSENT, OfferPrepared): (
        Rule(ALWAYS, S.HANDOFF_PENDING, (_PERSIST, ReplyAck, StartClaim), _prepare),
    ),
    (ABSENT, OfferRefused): _REFUSE_OFFER,
    (ABSENT, CommitReceived): _COMMIT_UNKNOWN,
    (ABSENT, AbortReceived): _ABORT_IGNORED,
    (ABSENT, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (ABSENT, Superseded): (Rule(ALWAYS, None, (), _nothing),),
    # ---- owner
    (S.ACTIVE_OWNER, Restarted): (Rule(ALWAYS, None, (StartClaim,), _claim(ClaimPurpose.RESUME)),),
    (S.ACTIVE_OWNER, ClaimResolved): (
        Rule(
            _g("our transfer to the target is chosen", _handoff_chosen),
            S.RETIRED,
            (_PERSIST, SendCommit, Learn),
            _handed_off,
        ),
        Rule(
            _g(
                "handing off, our own earlier handoff to another target was chosen",
                lambda v, e: _handing_off(v, e) and _our_handoff_chosen_late(v, e),
            ),
            S.RETIRED,
            (SendAbort, _PERSIST, SendCommit, Learn),
            _handoff_lost_to_earlier,
        ),
        Rule(
            _g(
                "handing off, another record was chosen for a third node",
                lambda v, e: _handing_off(v, e) and _next_epoch_chosen_for_another(v, e),
            ),
            S.RETIRED,
            (SendAbort, _PERSIST, Learn),
            _handoff_lost,
        ),
        Rule(
            _g(
                "handing off, our own earlier record was chosen",
                lambda v, e: _handing_off(v, e) and _resolved_for_me(v, e),
            ),
            S.ACTIVE_OWNER,
            (SendAbort, _PERSIST, StartTicking, PublishClaim, Learn),
            _handoff_became_resume,
        ),
        Rule(
            _g(
                "handing off, a record of ours from a lost copy was chosen",
                lambda v, e: _handing_off(v, e) and _resolved_for_a_lost_copy(v, e),
            ),
            S.RECOVERY_REQUIRED,
            (SendAbort, _PERSIST, EnterRecovery),
            _handoff_found_restore,
        ),
        *_only_claiming(*_CLAIM_RESULT_RULES),
    ),
    (S.ACTIVE_OWNER, ClaimStale): (
        Rule(
            _g(
                "claiming or handing off, the next epoch is ours for this copy",
                lambda v, e: (_claiming(v, e) or _handing_off(v, e)) and _stale_is_ours(v, e),
            ),
            S.ACTIVE_OWNER,
            (_PERSIST, StartClaim),
            _stale_but_ours,
        ),
        Rule(
            _g(
                "claiming or handing off, a later epoch is ours",
                lambda v, e: (_claiming(v, e) or _handing_off(v, e)) and _stale_names_us(v, e),
            ),
            S.RECOVERY_REQUIRED,
            (_PERSIST, EnterRecovery),
            _restored,
        ),
        Rule(
            _g(
                "handing off, our own earlier handoff to another target was chosen",
                lambda v, e: _handing_off(v, e) and _earlier_handoff_chosen(v, e),
            ),
            S.RETIRED,
            (SendAbort, _PERSIST, SendCommit),
            _stale_lost_to_earlier,
        ),
        Rule(
            _g(
                "claiming or handing off, our own handoff was chosen",
                lambda v, e: (
                    (_claiming(v, e) or _handing_off(v, e)) and _our_handoff_chosen_late(v, e)
                ),
            ),
            S.RETIRED,
            (_PERSIST, SendCommit),
            _commit_late,
        ),
        Rule(
            _g("handing off, another node owns the next epoch", _handing_off),
            S.RETIRED,
            (SendAbort, _PERSIST),
            _stale_lost,
        ),
        Rule(_g("claiming", _claiming), S.RETIRED, (_PERSIST,), _retire_to),
        Rule(OTHERWISE, None, (LogRejected,), _ignore("no claim in progress")),
    ),
    (S.ACTIVE_OWNER, BeginHandoff): (
        Rule(_g("ticking", _ticking), None, (StopTicking,), _begin_handoff),
    ),
    (S.ACTIVE_OWNER, HandoffAborted): (
        Rule(
            _g("handing off this migration", _handing_off),
            None,
            (SendAbort, StartTicking),
            _abort_handoff,
        ),
        Rule(OTHERWISE, None, (LogRejected,), _ignore("no such handoff in flight")),
    ),
    (S.ACTIVE_OWNER, ExportedToGo): (
        Rule(
            _g("ticking an epoch certified here", _ticking),
            S.EXPORTED,
            (StopTicking, _PERSIST),
            _exported,
        ),
    ),
    (S.ACTIVE_OWNER, OfferPrepared): _OFFER_WHEN_HELD,
    (S.ACTIVE_OWNER, OfferRefused): _REFUSE_OFFER,
    (S.ACTIVE_OWNER, CommitReceived): (
        Rule(
            _g("repeat of the commit that made us owner", _duplicate_commit),
            None,
            (ReplyConfirm,),
            _confirm_again,
        ),
        *_COMMIT_UNKNOWN,
    ),
    (S.ACTIVE_OWNER, AbortReceived): _ABORT_IGNORED,
    (S.ACTIVE_OWNER, Halt): (
        Rule(_g("ticking", _runs), S.HALTED, (StopTicking, _PERSIST), _to_terminal(S.HALTED)),
        Rule(
            _g("claiming (the claim is dropped)", _claiming),
            S.HALTED,
            (_PERSIST,),
            _to_terminal(S.HALTED),
        ),
    ),
    (S.ACTIVE_OWNER, BudgetExhausted): _TICK_ENDED(S.BUDGET_EXHAUSTED),
    (S.ACTIVE_OWNER, TickFailed): _TICK_ENDED(S.HALTED),
    (S.ACTIVE_OWNER, IntegrityFailure): (
        Rule(
            _g("ticking", _runs),
            S.RECOVERY_REQUIRED,
            (StopTicking, _PERSIST, EnterRecovery),
            _integrity,
        ),
        Rule(OTHERWISE, S.RECOVERY_REQUIRED, (_PERSIST, EnterRecovery), _integrity),
    ),
    (S.ACTIVE_OWNER, Superseded): (
        Rule(
            _g("not about a later or our own epoch", lambda v, e: e.latest.epoch < v.record.epoch),  # type: ignore[attr-defined]
            None,
            (),
            _nothing,
        ),
        *_split_on_running(*_SUPERSEDED_OWNER),
    ),
    # ---- target, prepared, waiting for the decision
    (S.HANDOFF_PENDING, Restarted): (Rule(ALWAYS, None, (StartClaim,), _settle),),
    (S.HANDOFF_PENDING, OfferPrepared): (
        Rule(_g("the same migration (repeat)", _same_pending), None, (ReplyAck,), _ack_again),
        Rule(
            _g("the same source offers again", _supersedes_pending),
            S.HANDOFF_PENDING,
            (_PERSIST, ReplyAck, StartClaim),
            _prepare,
        ),
        Rule(
            OTHERWISE,
            None,
            (ReplyReject, LogRejected),
            _reject(RejectCode.BUSY, "another handoff of this agent is pending here"),
        ),
    ),
    (S.HANDOFF_PENDING, OfferRefused): _REFUSE_OFFER,
    (S.HANDOFF_PENDING, CommitReceived): (
        Rule(
            _g(
                "for our copy, this incarnation prepared it",
                lambda v, e: _commit_for_pending(v, e) and _fresh(v, e),
            ),
            S.ACTIVE_OWNER,
            (_PERSIST, ReplyConfirm, StartTicking, PublishClaim, Learn),
            _take_committed,
        ),
        Rule(
            _g("for our copy, prepared before a restart", _commit_for_pending),
            S.ACTIVE_OWNER,
            (_PERSIST, ReplyConfirm, StartClaim),
            _take_committed,
        ),
        *_COMMIT_UNKNOWN,
    ),
    (S.HANDOFF_PENDING, AbortReceived): (
        Rule(
            _g("the same migration", _same_pending),
            S.RETIRED,
            (_PERSIST, ReplyDone),
            _discard(True),
        ),
        *_ABORT_IGNORED,
    ),
    (S.HANDOFF_PENDING, SourceAborted): (
        Rule(_g("the same migration", _same_pending), S.RETIRED, (_PERSIST,), _discard(False)),
        Rule(OTHERWISE, None, (LogRejected,), _ignore("about another migration")),
    ),
    (S.HANDOFF_PENDING, ClaimResolved): (
        *_SETTLED_FOR_ME,
        Rule(OTHERWISE, S.RETIRED, (_PERSIST,), _retire_to),
    ),
    (S.HANDOFF_PENDING, ClaimStale): (
        *_SETTLED_FOR_ME,
        Rule(
            _g(
                "a later epoch, or the next one for another copy, is ours: this copy was restored",
                lambda v, e: _stale_names_us(v, e) and e.latest.epoch > v.record.epoch,  # type: ignore[attr-defined]
            ),
            S.RECOVERY_REQUIRED,
            (_PERSIST, EnterRecovery),
            _restored,
        ),
        Rule(
            _g("a later epoch, or the next one for another node", _later_than_pending),
            S.RETIRED,
            (_PERSIST,),
            _retire_to,
        ),
    ),
    (S.HANDOFF_PENDING, Superseded): (
        *_SETTLED_FOR_ME,
        Rule(
            _g("a later epoch, or the next one for another node", _later_than_pending),
            S.RETIRED,
            (_PERSIST,),
            _retire_to,
        ),
        Rule(OTHERWISE, None, (), _nothing),
    ),
    (S.HANDOFF_PENDING, ForceRecover): (
        Rule(ALWAYS, None, (StartClaim,), _claim(ClaimPurpose.FORCE)),
    ),
    (S.HANDOFF_PENDING, IntegrityFailure): (
        Rule(ALWAYS, S.RECOVERY_REQUIRED, (_PERSIST, EnterRecovery), _integrity),
    ),
    # ---- retired (gave the agent away, discarded a copy, or learned it moved on)
    (S.RETIRED, OfferPrepared): (
        Rule(
            _g("epoch >= fence", _offer_not_stale),
            S.HANDOFF_PENDING,
            (_PERSIST, ReplyAck, StartClaim),
            _prepare,
        ),
        Rule(
            OTHERWISE,
            None,
            (ReplyReject, LogRejected),
            _reject(RejectCode.STALE_EPOCH, "a later epoch is known here"),
        ),
    ),
    (S.RETIRED, OfferRefused): _REFUSE_OFFER,
    (S.RETIRED, CommitReceived): _COMMIT_UNKNOWN,
    (S.RETIRED, AbortReceived): _ABORT_IGNORED,
    (S.RETIRED, Restarted): (
        Rule(
            _g(
                "we handed the agent on: the COMMIT may not have reached the target",
                lambda v, e: e.latest is not None and _our_transfer(v, e.latest) is not None,  # type: ignore[attr-defined]
            ),
            None,
            (SendCommit,),
            _commit_again,
        ),
        Rule(OTHERWISE, None, (), _nothing),
    ),
    (S.RETIRED, Superseded): (
        Rule(
            _g("a later epoch than we know", lambda v, e: e.latest.epoch > v.record.fence),  # type: ignore[attr-defined]
            None,
            (_PERSIST,),
            _remember_successor,
        ),
        Rule(OTHERWISE, None, (), _nothing),
    ),
    (S.RETIRED, ClaimResolved): (Rule(ALWAYS, None, (LogRejected,), _ignore("retired")),),
    (S.RETIRED, ClaimStale): (Rule(ALWAYS, None, (LogRejected,), _ignore("retired")),),
    # ---- recovery required
    (S.RECOVERY_REQUIRED, ForceRecover): (
        Rule(
            _g(
                "this copy is behind a proven later epoch",
                lambda v, e: v.record.fence > v.record.epoch,
            ),
            None,
            (LogRejected,),
            _ignore(
                "refused: this copy is older than an epoch the witnesses proved; forcing it "
                "would fork the lineage (bring back the lost data, or force on the node that "
                "holds the latest epoch)"
            ),
        ),
        Rule(OTHERWISE, None, (StartClaim,), _claim(ClaimPurpose.FORCE)),
    ),
    (S.RECOVERY_REQUIRED, ClaimResolved): _only_claiming(*_CLAIM_RESULT_RULES),
    (S.RECOVERY_REQUIRED, ClaimStale): _only_claiming(_COMMIT_LATE_RULE, _RETIRE_RULE),
    (S.RECOVERY_REQUIRED, OfferPrepared): (
        Rule(
            ALWAYS,
            None,
            (ReplyReject, LogRejected),
            _reject(RejectCode.RECOVERING, "the agent is in RECOVERY_REQUIRED here"),
        ),
    ),
    (S.RECOVERY_REQUIRED, OfferRefused): _REFUSE_OFFER,
    (S.RECOVERY_REQUIRED, CommitReceived): _COMMIT_UNKNOWN,
    (S.RECOVERY_REQUIRED, AbortReceived): _ABORT_IGNORED,
    (S.RECOVERY_REQUIRED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.RECOVERY_REQUIRED, IntegrityFailure): (Rule(ALWAYS, None, (), _nothing),),
    (S.RECOVERY_REQUIRED, Superseded): (
        Rule(
            _g(
                "an epoch beyond the fence, our own earlier handoff's: tell its target",
                lambda v, e: e.latest.epoch > v.record.fence and _our_handoff_chosen_late(v, e),  # type: ignore[attr-defined]
            ),
            S.RETIRED,
            (_PERSIST, SendCommit),
            _commit_late,
        ),
        Rule(
            _g(
                "an epoch beyond the fence, for another node",
                lambda v, e: e.latest.epoch > v.record.fence and not _stale_names_us(v, e),  # type: ignore[attr-defined]
            ),
            S.RETIRED,
            (_PERSIST,),
            _retire_to,
        ),
        Rule(OTHERWISE, None, (), _nothing),
    ),
    # ---- halted by an operator or a failing tick
    (S.HALTED, Resume): (Rule(ALWAYS, None, (StartClaim,), _claim(ClaimPurpose.RESUME)),),
    (S.HALTED, ClaimResolved): _only_claiming(*_CLAIM_RESULT_RULES),
    (S.HALTED, ClaimStale): _only_claiming(*_STALE_RULES),
    (S.HALTED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.HALTED, OfferPrepared): _OFFER_WHEN_HELD,
    (S.HALTED, OfferRefused): _REFUSE_OFFER,
    (S.HALTED, CommitReceived): _COMMIT_UNKNOWN,
    (S.HALTED, AbortReceived): _ABORT_IGNORED,
    (S.HALTED, IntegrityFailure): (
        Rule(ALWAYS, S.RECOVERY_REQUIRED, (_PERSIST, EnterRecovery), _integrity),
    ),
    (S.HALTED, Superseded): (
        Rule(
            _g(
                "a later epoch, our own earlier handoff's: tell its target",
                lambda v, e: _later_epoch(v, e) and _our_handoff_chosen_late(v, e),
            ),
            S.RETIRED,
            (_PERSIST, SendCommit),
            _commit_late,
        ),
        Rule(
            _g(
                "a later epoch for another node",
                lambda v, e: _later_epoch(v, e) and not _stale_names_us(v, e),
            ),
            S.RETIRED,
            (_PERSIST,),
            _retire_to,
        ),
        Rule(OTHERWISE, None, (), _nothing),
    ),
    # ---- terminal
    (S.EXPORTED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.EXPORTED, OfferPrepared): _OFFER_WHEN_HELD,
    (S.EXPORTED, OfferRefused): _REFUSE_OFFER,
    (S.EXPORTED, CommitReceived): _COMMIT_UNKNOWN,
    (S.EXPORTED, AbortReceived): _ABORT_IGNORED,
    (S.EXPORTED, Superseded): (Rule(ALWAYS, None, (), _nothing),),
    (S.BUDGET_EXHAUSTED, Restarted): (Rule(ALWAYS, None, (), _nothing),),
    (S.BUDGET_EXHAUSTED, OfferPrepared): _OFFER_WHEN_HELD,
    (S.BUDGET_EXHAUSTED, OfferRefused): _REFUSE_OFFER,
    (S.BUDGET_EXHAUSTED, CommitReceived): _COMMIT_UNKNOWN,
    (S.BUDGET_EXHAUSTED, AbortReceived): _ABORT_IGNORED,
    (S.BUDGET_EXHAUSTED, Superseded): (Rule(ALWAYS, None, (), _nothing),),
    (S.BUDGET_EXHAUSTED, IntegrityFailure): (Rule(ALWAYS, None, (), _nothing),),
}


# --------------------------------------------------------------------------- the machine


class AuthorityMachine:
    """One node's authority over one agent. Pure: no I/O, no clock."""

    def __init__(self, me: bytes, record: AuthorityRecord = NO_RECORD) -> None:
        self.me = me
        self._record = record
        self.run = Run()

    @property
    def record(self) -> AuthorityRecord:
        return self._record

    @property
    def state(self) -> Holding:
        return self._record.state

    @property
    def epoch(self) -> int:
        return self._record.epoch

    @property
    def may_tick(self) -> bool:
        """Only an owner ticking an epoch it was certified for in this incarnation."""
        return (
            self._record.state is S.ACTIVE_OWNER
            and self.run.phase is Phase.TICKING
            and self.run.certified == self._record.epoch
        )

    def note_head(self, head: bytes | None) -> None:
        """The digest of the last entry this node holds of the agent (guards compare it)."""
        self.run.extra["head"] = head

    def rules_for(self, event: Event) -> tuple[Rule, ...]:
        return TRANSITIONS.get((self._record.state, type(event)), ())

    def handle(self, event: Event) -> list[Action]:
        rules = TRANSITIONS.get((self._record.state, type(event)))
        if rules is None:
            raise IllegalTransition(self._record.state, event)
        view = View(self._record, self.run, self.me)
        rule = next((r for r in rules if r.guard.test(view, event)), None)
        if rule is None:
            raise IllegalTransition(self._record.state, event)
        out = rule.effect(view, event)
        expected = rule.next_state if rule.next_state is not None else self._record.state
        if tuple(type(a) for a in out.actions) != rule.actions or out.record.state != expected:
            raise TableInconsistency(
                f"rule for {type(event).__name__} in {self._record.state} drifted: "
                f"{[type(a).__name__ for a in out.actions]} -> {out.record.state}"
            )
        self._record = out.record
        for name, value in out.run.items():
            setattr(self.run, name, value)
        return out.actions
