"""A world for the authority-table tests: reachable situations, events that hit every rule, and
the contract every step must keep.

The machine under test is node A's. Every :class:`EpochStart` an event carries is real (signed
and certified through the production codecs), because guards decode the records they carry.

- :class:`Driven` wraps an :class:`AuthorityMachine` the way the gate does: it notes the node's
  head before ``ClaimStale``/``Superseded``, keeps the last durable record, and models the agent
  runner (ticking or not) from ``StartTicking``/``StopTicking``.
- :func:`check_step` is the contract: write-ahead order, one reply per request, the runner ticks
  exactly when the table says the node may, versions and fences never go back, and a record
  changes only through ``PersistAuthority``.
- :data:`SITUATIONS` are built by feeding events from an empty or a reloaded record, so each is a
  state a node can really be in.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import (
    REPLY_ACTIONS,
    AbortReason,
    AbortReceived,
    Action,
    AgentFailed,
    BeginHandoff,
    BudgetExhausted,
    ClaimResolved,
    ClaimStale,
    CommitReceived,
    CopyImported,
    Event,
    ExportedToGo,
    ForceRecover,
    Halt,
    HandoffAborted,
    Imported,
    IntegrityFailure,
    Launched,
    Learn,
    OfferPrepared,
    OfferRefused,
    PersistAuthority,
    PublishClaim,
    Restarted,
    Resume,
    SendCommit,
    SourceAborted,
    StartClaim,
    StartTicking,
    StopTicking,
    Superseded,
    TickFailed,
)
from igor_p2p.authority.record import AuthorityRecord, Phase
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import TRANSITIONS, AuthorityMachine, Rule, View
from igor_p2p.lineage.identity import Keypair
from igor_p2p.wire.messages import RejectCode

from .chain import A, B, C, Custody, D, E, F, G, certify, make_transfer, pks

S = AuthorityState
ME = A.public_key
SOURCE = E
"""The node that hands the agent to us."""
TARGET = F
"""The node we hand the agent to."""
THIRD = G
M1 = b"\x01" * 16
M2 = b"\x02" * 16
H_OURS = b"\x0a" * 32
"""The digest of the last entry this node holds (the gate notes it before stale events)."""
H_OFFER = b"\x0b" * 32
"""The digest of the HANDOFF checkpoint offered to us."""
H_ELSE = b"\x0c" * 32
WITNESSES = pks(B, C, D)
OUR_CUSTODY = Custody(A, (B, C, D))
GENESIS = OUR_CUSTODY.genesis.encode()

REQUEST_EVENTS = (OfferPrepared, OfferRefused, CommitReceived, AbortReceived)
"""Events that answer a peer's request: each gets exactly one reply action."""
DEPENDENT_ACTIONS = (*REPLY_ACTIONS, StartTicking, SendCommit, PublishClaim, Learn, StartClaim)
"""Actions that rely on the record their rule persists: they run only after it is durable."""


@functools.cache
def _base(epochs: int) -> Custody:
    custody = Custody(SOURCE, (B, C, D))
    for i in range(epochs - 1):
        custody.hand((THIRD, SOURCE)[i % 2])
    return custody


@functools.cache
@functools.cache
def _ours(epochs: int) -> Custody:
    """A custody whose epoch ``epochs`` is ours (A's)."""
    if epochs == 1:
        return OUR_CUSTODY
    custody = _base(epochs - 1).copy()
    custody.hand(A)
    return custody


def our_handoff(epoch: int, to: Keypair, prev: bytes = H_OURS) -> EpochStart:
    """A certified start of ``epoch``: our own handoff of epoch - 1 to ``to``."""
    previous = _ours(epoch - 1).at(epoch - 1)
    return certify(previous, make_transfer(previous, to, prev=prev))


def start(epoch: int, owner: Keypair, prev: bytes = H_ELSE) -> EpochStart:
    """A certified start of ``epoch`` owned by ``owner`` whose record names ``prev``."""
    if epoch == 1:
        return OUR_CUSTODY.at(1) if owner is A else Custody(owner, (B, C, D)).at(1)
    previous = _base(epoch - 1).at(epoch - 1)
    return certify(previous, make_transfer(previous, owner, prev=prev))


def starts_around(epoch: int) -> dict[str, EpochStart]:
    """Certified starts relative to a node's epoch ``e``, named by what they mean to it."""
    e = max(epoch, 1)
    out = {
        "next, ours, for our head": start(e + 1, A, H_OURS),
        "next, ours, for the offered copy": start(e + 1, A, H_OFFER),
        "next, ours, another copy": start(e + 1, A, H_ELSE),
        "next, to our target": start(e + 1, TARGET, H_OURS),
        "next, to a third node": start(e + 1, THIRD, H_ELSE),
        "next, our own handoff to a third node": our_handoff(e + 1, THIRD),
        "later, ours": start(e + 2, A, H_ELSE),
        "later, a third node's": start(e + 2, THIRD, H_ELSE),
    }
    if e >= 2:
        out["same epoch, a third node's"] = start(e, THIRD, H_ELSE)
    if e >= 3:
        out["earlier, a third node's"] = start(e - 1, THIRD, H_ELSE)
    return out


def events_for(record: AuthorityRecord) -> list[Event]:
    """Events of every type, in the variants the guards tell apart, for a node at ``record``.

    ``Restarted`` is not among them: it is fed only to a machine rebuilt from disk
    (:meth:`Driven.crash`), never to a running one.
    """
    e = max(record.epoch, 1)
    starts = starts_around(record.epoch)
    out: list[Event] = [
        Launched(WITNESSES, GENESIS),
        Imported(1, WITNESSES, (GENESIS,), True),
        Imported(e, WITNESSES, (GENESIS,), False),
        BeginHandoff(TARGET.public_key, M1),
        HandoffAborted(M1, AbortReason.NO_QUORUM),
        HandoffAborted(M2, AbortReason.TIMEOUT),
        OfferRefused(M1, RejectCode.BAD_CUSTODY, "does not verify"),
        CommitReceived(M1, starts["next, ours, for the offered copy"]),
        CommitReceived(M1, starts["next, ours, another copy"]),
        CommitReceived(M1, starts["next, to a third node"]),
        CommitReceived(M1, None),
        CommitReceived(M2, starts["next, ours, for the offered copy"]),
        AbortReceived(M1),
        AbortReceived(M2),
        SourceAborted(M1),
        SourceAborted(M2),
        Halt("operator"),
        Resume(),
        BudgetExhausted(b"final"),
        TickFailed("trap", b"final"),
        TickFailed("timeout", None),
        IntegrityFailure("damaged"),
        AgentFailed("a bug"),
        ForceRecover("operator@example"),
        ExportedToGo(b"export-record"),
        CopyImported(e, WITNESSES, (GENESIS,), SOURCE.public_key),
    ]
    for epoch in sorted({e - 1, e, e + 1, record.fence} - {0}):
        for source, mid in ((SOURCE, M1), (SOURCE, M2), (THIRD, M2)):
            out.append(OfferPrepared(source.public_key, mid, epoch, H_OFFER, WITNESSES, (b"x",)))
    for name, s in starts.items():
        if name.startswith("next"):  # a claim resolves only the slot it claimed: epoch e + 1
            out.append(ClaimResolved(s))
        if s.epoch > e:  # a claim is stale only on proof of its slot or a later one
            out.append(ClaimStale(s))
        out.append(Superseded(s))
    out.append(ClaimResolved(starts["next, to our target"], b"handoff-checkpoint"))
    return out


# --------------------------------------------------------------------------- the driven machine


@dataclass
class Driven:
    """A machine fed the way the gate feeds it, with a model of the agent runner."""

    machine: AuthorityMachine
    durable: AuthorityRecord
    ticking: bool = False
    history: list[str] = field(default_factory=list)

    @classmethod
    def fresh(cls) -> Driven:
        machine = AuthorityMachine(ME)
        machine.note_head(H_OURS)
        return cls(machine, machine.record)

    @classmethod
    def loaded(cls, record: AuthorityRecord) -> Driven:
        """A node (re)started from ``record`` on disk: the runner is not ticking."""
        machine = AuthorityMachine(ME, record)
        machine.note_head(H_OURS)
        return cls(machine, record, history=[f"loaded {record.state}"])

    def copy(self) -> Driven:
        return copy.deepcopy(self)

    def rule_for(self, event: Event) -> tuple[int, Rule] | None:
        """The rule ``event`` hits now (index in its pair's rules), or None."""
        rules = TRANSITIONS.get((self.machine.state, type(event)), ())
        view = View(self.machine.record, self.machine.run, ME)
        for i, rule in enumerate(rules):
            if rule.guard.test(view, event):
                return i, rule
        return None

    def feed(self, event: Event) -> list[Action]:
        before = Snapshot.of(self)
        actions = self.machine.handle(event)
        check_step(before, event, actions, self)
        for action in actions:
            if isinstance(action, PersistAuthority):
                self.durable = action.record
            elif isinstance(action, StopTicking):
                self.ticking = False
            elif isinstance(action, StartTicking):
                self.ticking = True
        self.history.append(type(event).__name__)
        return actions

    def crash(
        self, restore: AuthorityRecord | None = None, latest: EpochStart | None = None
    ) -> Driven:
        """The node process dies (and its disk is optionally restored to ``restore``); it comes
        back and is fed ``Restarted`` (with ``latest``, the last custody start it stores, as the
        gate reads it for a node that handed the agent on)."""
        back = Driven.loaded(self.durable if restore is None else restore)
        back.history = [*self.history, "crash" if restore is None else "restore"]
        back.feed(Restarted(latest))
        return back


@dataclass(frozen=True)
class Snapshot:
    """What a step's contract compares against: the machine and runner before the step."""

    record: AuthorityRecord
    may_tick: bool
    ticking: bool
    phase: Phase
    state: object

    @classmethod
    def of(cls, d: Driven) -> Snapshot:
        m = d.machine
        return cls(m.record, m.may_tick, d.ticking, m.run.phase, m.state)


class ContractBroken(AssertionError):
    """A step broke the table's contract (see :func:`check_step`)."""


def check_step(before: Snapshot, event: Event, actions: list[Action], after: Driven) -> None:
    """The contract of one ``handle`` call (raises :class:`ContractBroken` with the reason)."""
    machine = after.machine
    record = machine.record
    kinds = [type(a) for a in actions]
    where = (
        f"{type(event).__name__} in {before.state} ({before.phase}): {[k.__name__ for k in kinds]}"
    )

    def require(ok: bool, why: str) -> None:
        if not ok:
            raise ContractBroken(f"{where}: {why}")

    persists = [i for i, a in enumerate(actions) if isinstance(a, PersistAuthority)]
    require(len(persists) <= 1, "more than one PersistAuthority in one step")
    if persists:
        p = persists[0]
        written = actions[p]
        assert isinstance(written, PersistAuthority)
        require(written.record == record, "the persisted record is not the machine's record")
        require(record.version == before.record.version + 1, "the version did not step by one")
        for i, action in enumerate(actions):
            if isinstance(action, DEPENDENT_ACTIONS):
                require(i > p, f"{type(action).__name__} runs before the record is durable")
            if isinstance(action, StopTicking):
                require(i < p, "StopTicking after the write that leaves ownership")
    else:
        require(record == before.record, "the record changed without a PersistAuthority")
    require(record.fence >= before.record.fence, "the fence went down")

    replies = [a for a in actions if isinstance(a, REPLY_ACTIONS)]
    if isinstance(event, REQUEST_EVENTS):
        require(len(replies) == 1, "a request must get exactly one reply")
    else:
        require(not replies, "a reply to an event that is no request")

    # The runner ticks exactly when the table says this node may tick.
    ticking = before.ticking
    for action in actions:
        if isinstance(action, StopTicking):
            ticking = False
        elif isinstance(action, StartTicking):
            require(action.epoch == record.epoch, "StartTicking for another epoch than owned")
            ticking = True
    require(ticking == machine.may_tick, f"runner ticking={ticking}, may_tick={machine.may_tick}")
    if machine.may_tick:
        require(record.state is S.ACTIVE_OWNER, "may tick outside ACTIVE_OWNER")
        require(machine.run.certified == record.epoch, "may tick an epoch not certified here")
    if machine.run.phase is Phase.TICKING:
        require(record.state is S.ACTIVE_OWNER, "a TICKING phase outside ACTIVE_OWNER")
    require(
        (machine.run.phase is Phase.HANDING_OFF) == (machine.run.handoff is not None),
        "a handoff in flight without the HANDING_OFF phase, or the reverse",
    )


# --------------------------------------------------------------------------- situations


def _fed(*events: Event, base: Driven | None = None) -> Driven:
    d = (base or Driven.fresh()).copy()
    for event in events:
        d.feed(event)
    return d


def _loaded(state: AuthorityState, epoch: int = 2, **fields: object) -> Driven:
    from igor_p2p.authority.record import PendingCopy, RecoveryReason, Successor

    defaults: dict[str, object] = {"witnesses": WITNESSES, "version": 7}
    if state is S.HANDOFF_PENDING:
        defaults["pending"] = PendingCopy(M1, SOURCE.public_key, H_OFFER)
    if state is S.RETIRED:
        defaults["successor"] = Successor(epoch + 1, TARGET.public_key)
    if state is S.RECOVERY_REQUIRED:
        defaults["reason"] = RecoveryReason.INTEGRITY_FAILURE
    defaults.update(fields)
    return Driven.loaded(AuthorityRecord(state=state, epoch=epoch, **defaults))  # type: ignore[arg-type]


def _situations() -> dict[str, Callable[[], Driven]]:
    owner = lambda: _fed(Launched(WITNESSES, GENESIS))  # noqa: E731
    handing = lambda: _fed(BeginHandoff(TARGET.public_key, M1), base=owner())  # noqa: E731
    pending = lambda: _fed(  # noqa: E731
        OfferPrepared(SOURCE.public_key, M1, 2, H_OFFER, WITNESSES, (b"x",))
    )
    restarted = lambda state, **kw: _loaded(state, **kw).crash()  # noqa: E731
    return {
        "no record": Driven.fresh,
        "owner, ticking": owner,
        "owner, handing off": handing,
        "owner, ticking again after an aborted handoff": lambda: _fed(
            HandoffAborted(M1, AbortReason.NO_QUORUM), base=handing()
        ),
        "owner, restarted, claiming": lambda: restarted(S.ACTIVE_OWNER),
        "owner, imported, claiming": lambda: _fed(Imported(3, WITNESSES, (GENESIS,), False)),
        "owner, claiming after its next epoch proved ours": lambda: _fed(
            ClaimStale(start(3, A, H_OURS)), base=restarted(S.ACTIVE_OWNER)
        ),
        "owner, ticking a committed epoch": lambda: _fed(
            CommitReceived(M1, start(3, A, H_OFFER)), base=pending()
        ),
        "owner, claiming after a commit that came after a restart": lambda: _fed(
            CommitReceived(M1, start(3, A, H_OFFER)), base=restarted(S.HANDOFF_PENDING)
        ),
        "pending, prepared in this incarnation": pending,
        "pending, restarted": lambda: restarted(S.HANDOFF_PENDING),
        "pending, forcing": lambda: _fed(
            ForceRecover("operator@example"), base=restarted(S.HANDOFF_PENDING)
        ),
        "retired source": lambda: _fed(ClaimResolved(start(2, TARGET, H_OURS)), base=handing()),
        "retired, discarded copy": lambda: _fed(AbortReceived(M1), base=pending()),
        "retired, restarted": lambda: restarted(S.RETIRED),
        "recovery, from a ticking owner": lambda: _fed(IntegrityFailure("bad"), base=owner()),
        "recovery, restarted": lambda: restarted(S.RECOVERY_REQUIRED),
        "recovery, a restored copy": lambda: _fed(
            ClaimStale(start(4, A, H_ELSE)), base=restarted(S.ACTIVE_OWNER)
        ),
        "recovery, forcing a restored copy": lambda: _fed(
            ClaimStale(start(4, A, H_ELSE)),
            ForceRecover("operator@example"),
            base=restarted(S.ACTIVE_OWNER),
        ),
        "recovery, forcing": lambda: _fed(
            ForceRecover("operator@example"), base=restarted(S.RECOVERY_REQUIRED)
        ),
        "halted": lambda: _fed(Halt("operator"), base=owner()),
        "halted, resuming": lambda: _fed(Resume(), base=_fed(Halt("operator"), base=owner())),
        "halted, restarted": lambda: restarted(S.HALTED),
        "budget exhausted": lambda: _fed(BudgetExhausted(b"final"), base=owner()),
        "budget exhausted, restarted": lambda: restarted(S.BUDGET_EXHAUSTED),
        "exported to Go Igor": lambda: _fed(ExportedToGo(b"export-record"), base=owner()),
        "exported, restarted": lambda: restarted(S.EXPORTED),
    }


SITUATIONS = _situations()


@dataclass(frozen=True)
class Outcome:
    situation: str
    event: Event
    rule: tuple[object, type[Event], int] | None
    """(state, event type, index of the rule) that fired, or None (no rule: IllegalTransition)."""
    error: BaseException | None


def walk() -> list[Outcome]:
    """Every event variant in every situation, each on a fresh copy."""
    out: list[Outcome] = []
    for name, build in SITUATIONS.items():
        base = build()
        latest_variants: list[EpochStart | None] = [None]
        if base.durable.state is S.RETIRED:  # it may have handed the agent on itself
            latest_variants.append(our_handoff(max(base.durable.epoch, 1) + 1, TARGET))
        for latest in latest_variants:
            back = Driven.loaded(base.durable)
            event = Restarted(latest)
            hit = back.rule_for(event)
            key = (back.machine.state, Restarted, hit[0]) if hit else None
            try:
                base.copy().crash(latest=latest)
            except Exception as exc:
                out.append(Outcome(name, event, key, exc))
            else:
                out.append(Outcome(name, event, key, None))
        for event in events_for(base.machine.record):
            d = base.copy()
            hit = d.rule_for(event)
            key = (d.machine.state, type(event), hit[0]) if hit else None
            try:
                d.feed(event)
            except Exception as exc:
                out.append(Outcome(name, event, key, exc))
            else:
                out.append(Outcome(name, event, key, None))
    return out
