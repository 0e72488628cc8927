"""Events and actions shared by the source and target sessions (pure, one migration each)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from igor_p2p.authority.table import Action, RejectCode
from igor_p2p.handoff.messages import Message, Offer


class TimerKind(enum.StrEnum):
    ACK = "ACK"
    """Source: no ACK (or REJECT) before the decision; abort and resume (FS-1)."""
    CONFIRM = "CONFIRM"
    """Source: no CONFIRM after the decision; ask the target (FS-2)."""
    COMMIT = "COMMIT"
    """Target: no COMMIT or ABORT while pending; ask the source (FS-2)."""


class Outcome(enum.StrEnum):
    TRANSFERRED = "TRANSFERRED"
    """Source: retired and confirmed."""
    ABORTED = "ABORTED"
    """Source: aborted before the decision and resumed; target: the source aborted."""
    REFUSED = "REFUSED"
    """Source: the authority table refused to begin (in flight, not owner)."""
    COMMITTED = "COMMITTED"
    """Target: owns the next epoch."""
    REJECTED = "REJECTED"
    """Target: refused the offer."""
    DISCARDED = "DISCARDED"
    """Target: dropped its pending copy."""
    HALTED = "HALTED"
    """Either side ended in RECOVERY_REQUIRED."""


# -- events


@dataclass(frozen=True)
class SessionEvent:
    pass


@dataclass(frozen=True)
class StreamOpened(SessionEvent):
    pass


@dataclass(frozen=True)
class MessageReceived(SessionEvent):
    message: Message


@dataclass(frozen=True)
class Timeout(SessionEvent):
    kind: TimerKind


@dataclass(frozen=True)
class Durable(SessionEvent):
    """The write of authority record ``version`` you asked for is durable."""

    version: int


@dataclass(frozen=True)
class HandoffPayload:
    """What the runner produced when it committed the HANDOFF checkpoint."""

    checkpoint: bytes
    head_digest: bytes
    lineage: tuple[bytes, ...]
    wasm_hash: bytes
    manifest: bytes
    wasm: bytes | None = None


@dataclass(frozen=True)
class HandoffCheckpointCommitted(SessionEvent):
    payload: HandoffPayload


@dataclass(frozen=True)
class OfferVerdict:
    """The result of the injected offer validation (hashes, signatures, lineage, policy)."""

    ok: bool
    prepared_digest: bytes
    code: RejectCode | None = None


@dataclass(frozen=True)
class OfferChecked(SessionEvent):
    verdict: OfferVerdict


# -- actions (in addition to the authority actions the sessions pass through)


@dataclass(frozen=True)
class CommitHandoffCheckpoint(Action):
    """Source runner: at the tick boundary, commit a fresh HANDOFF checkpoint."""

    epoch: int


@dataclass(frozen=True)
class OpenStream(Action):
    peer: str


@dataclass(frozen=True)
class Send(Action):
    message: Message


@dataclass(frozen=True)
class ArmTimer(Action):
    kind: TimerKind


@dataclass(frozen=True)
class ValidateOffer(Action):
    offer: Offer


@dataclass(frozen=True)
class Close(Action):
    pass


@dataclass(frozen=True)
class Done(Action):
    outcome: Outcome
