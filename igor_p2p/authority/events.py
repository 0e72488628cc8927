"""The vocabulary of the authority table: the events a node feeds it and the actions it returns.

Rules live in :mod:`igor_p2p.authority.table`; this module only names things (h11's
``_events.py`` beside ``_state.py``). Every event has exactly one producer in the node, and every
action one handler in the interpreter (:mod:`igor_p2p.core.gate`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord, ClaimPurpose, RecoveryReason
from igor_p2p.wire.messages import RejectCode


class AbortReason(enum.StrEnum):
    TIMEOUT = "TIMEOUT"
    REJECTED = "REJECTED"
    NO_QUORUM = "NO_QUORUM"
    OPERATOR = "OPERATOR"
    UNREACHABLE = "UNREACHABLE"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class Launched(Event):
    """A new agent was created here: its genesis names this node owner of epoch 1."""

    witnesses: tuple[bytes, ...]
    genesis: bytes


@dataclass(frozen=True)
class Imported(Event):
    """An agent's lineage was imported from a file (a Go Igor history or a bundle).

    ``fresh`` is true for a new genesis this node just signed (it may tick epoch 1 at once); an
    imported custody chain ending at this node is not: the node claims the next epoch first.
    """

    epoch: int
    witnesses: tuple[bytes, ...]
    entries: tuple[bytes, ...]
    fresh: bool


@dataclass(frozen=True)
class CopyImported(Event):
    """A read-only copy of an agent another node owns (a bundle whose custody ends elsewhere):
    kept for inspection, never ticked."""

    epoch: int
    witnesses: tuple[bytes, ...]
    entries: tuple[bytes, ...]
    owner: bytes


@dataclass(frozen=True)
class ExportedToGo(Event):
    """The owner signed a terminal export record: the agent continues in Go Igor, never here."""

    record: bytes


@dataclass(frozen=True)
class Restarted(Event):
    """The node came back and rebuilt the machine from its durable record."""

    latest: EpochStart | None = None
    """For a node that retired by handing the agent on: the last custody start it stores (the
    gate reads it only then), so that a COMMIT a crash cut off is sent again."""


@dataclass(frozen=True)
class ClaimResolved(Event):
    """A claim (or a handoff) got a certificate: ``start`` is chosen for its epoch."""

    start: EpochStart
    handoff_checkpoint: bytes | None = None
    """Source of a handoff: the HANDOFF checkpoint the chosen transfer names."""


@dataclass(frozen=True)
class ClaimStale(Event):
    """The witnesses proved a later epoch than the one claimed (``latest`` is verified)."""

    latest: EpochStart


@dataclass(frozen=True)
class BeginHandoff(Event):
    target: bytes
    migration_id: bytes


@dataclass(frozen=True)
class HandoffAborted(Event):
    """Source, before any ACCEPT left: the handoff did not happen."""

    migration_id: bytes
    reason: AbortReason


@dataclass(frozen=True)
class OfferPrepared(Event):
    """Target: an OFFER for ``epoch`` was validated; its copy is ``entries``."""

    source: bytes
    migration_id: bytes
    epoch: int
    head: bytes
    witnesses: tuple[bytes, ...]
    entries: tuple[bytes, ...]


@dataclass(frozen=True)
class OfferRefused(Event):
    """Target: an OFFER did not validate (logged; the reply carries ``code``)."""

    migration_id: bytes
    code: RejectCode
    reason: str


@dataclass(frozen=True)
class CommitReceived(Event):
    """Target: COMMIT for a migration; ``start`` is its verified record and certificate (None
    when the node holds nothing the commit could be checked against)."""

    migration_id: bytes
    start: EpochStart | None


@dataclass(frozen=True)
class AbortReceived(Event):
    migration_id: bytes


@dataclass(frozen=True)
class SourceAborted(Event):
    """Target: the source says it still owns the epoch and is not handing it to us."""

    migration_id: bytes


@dataclass(frozen=True)
class Superseded(Event):
    """Verified custody shows a later epoch (or another record for this one)."""

    latest: EpochStart


@dataclass(frozen=True)
class Halt(Event):
    reason: str


@dataclass(frozen=True)
class Resume(Event):
    """An operator resumes an agent halted on this node."""


@dataclass(frozen=True)
class BudgetExhausted(Event):
    final: bytes
    reason: str = "budget exhausted"
    """Words for the record (status and ``agent run`` show them)."""


@dataclass(frozen=True)
class TickFailed(Event):
    """A tick trapped, timed out or produced an unusable snapshot: halt it."""

    reason: str
    final: bytes | None


@dataclass(frozen=True)
class IntegrityFailure(Event):
    reason: str


@dataclass(frozen=True)
class AgentFailed(Event):
    """An unexpected error (a bug) while handling this agent: halt it, keep the node."""

    detail: str


@dataclass(frozen=True)
class ForceRecover(Event):
    """An operator forces this node owner of the next epoch (must win a witness quorum)."""

    operator: str


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class PersistAuthority(Action):
    """Make ``record`` durable with the lineage entries ``append`` (one transaction).

    ``discard_copy`` drops a pending copy that never became the agent (its entries after the
    last entry this node held before the offer).
    """

    record: AuthorityRecord
    append: tuple[bytes, ...] = ()
    discard_copy: bool = False
    final_checkpoint: bool = False
    """Append a FINAL checkpoint of the stopped agent (taken by the interpreter) first."""


@dataclass(frozen=True)
class StopTicking(Action):
    pass


@dataclass(frozen=True)
class StartTicking(Action):
    epoch: int


@dataclass(frozen=True)
class StartClaim(Action):
    purpose: ClaimPurpose
    slot: int
    operator: str = ""
    """For a forced recovery: who forced it (recorded in the lineage)."""


@dataclass(frozen=True)
class PublishClaim(Action):
    """Tell the network (gossip, DHT) this node owns ``start.epoch``, with the proof."""

    start: EpochStart | None
    epoch: int


@dataclass(frozen=True)
class Learn(Action):
    """Tell the witnesses (old and new) that ``start`` was chosen (repair; off the path)."""

    start: EpochStart


@dataclass(frozen=True)
class SendCommit(Action):
    target: bytes
    migration_id: bytes
    start: EpochStart


@dataclass(frozen=True)
class SendAbort(Action):
    target: bytes
    migration_id: bytes


@dataclass(frozen=True)
class ReplyAck(Action):
    migration_id: bytes
    epoch: int
    head: bytes


@dataclass(frozen=True)
class ReplyReject(Action):
    migration_id: bytes
    code: RejectCode
    reason: str = ""


@dataclass(frozen=True)
class ReplyConfirm(Action):
    migration_id: bytes
    epoch: int


@dataclass(frozen=True)
class ReplyDone(Action):
    pass


@dataclass(frozen=True)
class EnterRecovery(Action):
    reason: RecoveryReason
    detail: str


@dataclass(frozen=True)
class LogRejected(Action):
    detail: str


REPLY_ACTIONS: tuple[type[Action], ...] = (ReplyAck, ReplyReject, ReplyConfirm, ReplyDone)
"""Exactly one of these answers each request-driven event (offer, commit, abort)."""
