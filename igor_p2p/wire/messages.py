"""Every request and reply of the authority protocols (``protocols/igor-p2p-*.md``).

Each exchange is one request and one reply, so the transport port is a single
``request(peer, message) -> reply``. ``sender`` is the sender's node key; the transport checks
it equals the authenticated peer, so a message never speaks for another node.

- Handoff (``/igor-p2p/migrate/2.0.0``): OFFER → ACK | REJECT; COMMIT → CONFIRM | REJECT;
  ABORT → DONE.
- Witness (``/igor-p2p/witness/1.0.0``): PREPARE → PROMISE | NACK; ACCEPT → ACCEPTED | NACK;
  LEARN → DONE; STATUS → STATUS_REPLY.
- Module (``/igor-p2p/module/1.0.0``): GET_MODULE → MODULE.
- Any request may be answered with REFUSED (a typed code and words) instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from igor_p2p.lineage._codec import MAX_ENTRY_BYTES
from igor_p2p.lineage.cert import Ballot
from igor_p2p.wire.codec import (
    AGENT,
    CHAIN,
    DIGEST,
    EPOCH,
    EPOCH_OR_ZERO,
    MAX_RECORD_BYTES,
    MID,
    NODE,
    REASON,
    MalformedMessage,
    Message,
    Registry,
    ballot,
    blobs,
    exact_bytes,
    integer,
    max_bytes,
    one_of,
    optional,
)

MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024 + 64 * 1024
MAX_MANIFEST_BYTES = 64 * 1024
MAX_WASM_BYTES = 16 * 1024 * 1024
MAX_REPLAY_TICKS = 64
"""Most ticks of an incoming agent a target re-executes (whatever a node or manifest asks)."""
MAX_REPLAY_ENTRIES = 1024
"""Most lineage entries an OFFER's replay window holds."""
MAX_REPLAY_BYTES = 64 * 1024 * 1024
"""Most bytes an OFFER's replay window holds in all."""

RECORD = max_bytes(MAX_RECORD_BYTES)


class RejectCode(enum.StrEnum):
    """Why a target refuses an OFFER or COMMIT."""

    BUSY = "BUSY"
    ALREADY_HELD = "ALREADY_HELD"
    RECOVERING = "RECOVERING"
    STALE_EPOCH = "STALE_EPOCH"
    MALFORMED = "MALFORMED"
    WRONG_SENDER = "WRONG_SENDER"
    HASH_MISMATCH = "HASH_MISMATCH"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    LINEAGE_GAP = "LINEAGE_GAP"
    BAD_CUSTODY = "BAD_CUSTODY"
    CAPABILITY_MISSING = "CAPABILITY_MISSING"
    BUDGET_INSUFFICIENT = "BUDGET_INSUFFICIENT"
    NO_CAPACITY = "NO_CAPACITY"
    POLICY_DENIED = "POLICY_DENIED"
    MODULE_UNAVAILABLE = "MODULE_UNAVAILABLE"
    UNKNOWN_MIGRATION = "UNKNOWN_MIGRATION"
    REPLAY_REQUIRED = "REPLAY_REQUIRED"
    """The target replays the last ``replay_ticks`` ticks of incoming agents and the offer
    carried none: offer again with them (docs/effects.md#replay-on-arrival)."""
    REPLAY_MISMATCH = "REPLAY_MISMATCH"
    """Re-executing the offered ticks gave a state other than the one their checkpoint holds:
    the target keeps the evidence."""


class NackCode(enum.StrEnum):
    """Why a witness does not promise or accept."""

    HIGHER = "HIGHER"
    """A later epoch is already chosen; ``chain`` proves it."""
    BEHIND = "BEHIND"
    """The witness knows an earlier epoch than the request assumes; send the chain from
    ``chosen``."""
    PROMISED = "PROMISED"
    """The witness promised a higher ballot (``promised``)."""
    NOT_WITNESS = "NOT_WITNESS"
    """The node is not in the witness set the request needs."""
    INVALID = "INVALID"
    """The record or chain does not verify."""
    WRONG_SENDER = "WRONG_SENDER"
    """The ballot's proposer is not the sender."""


class RefusedCode(enum.StrEnum):
    """A request refused before it reached its protocol (any protocol)."""

    MALFORMED = "MALFORMED"
    RATE_LIMITED = "RATE_LIMITED"
    UNSUPPORTED = "UNSUPPORTED"
    BUSY = "BUSY"
    INTERNAL = "INTERNAL"


class Holding(enum.StrEnum):
    """What a node says it holds of an agent (in STATUS_REPLY)."""

    NONE = "NONE"
    OWNER = "OWNER"
    """Ticks an epoch this node won in its current incarnation."""
    CLAIMING = "CLAIMING"
    """Holds the agent but waits for a witness quorum before it may tick."""
    HANDING_OFF = "HANDING_OFF"
    PENDING = "PENDING"
    RETIRED = "RETIRED"
    HALTED = "HALTED"
    RECOVERY_REQUIRED = "RECOVERY_REQUIRED"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"


# --------------------------------------------------------------------------- handoff


@dataclass(frozen=True)
class Offer(Message):
    TYPE: ClassVar[str] = "OFFER"
    sender: bytes
    agent: str
    migration_id: bytes
    epoch: int
    """The epoch the source owns and hands over."""
    chain_after: int
    """The custody chain continues after this epoch (0: it starts with the genesis)."""
    chain: tuple[bytes, ...]
    checkpoint: bytes
    """The HANDOFF checkpoint the target resumes from (its ``prev`` may be compacted away)."""
    wasm_hash: bytes
    manifest: bytes
    wasm: bytes | None = None
    replay: tuple[bytes, ...] | None = None
    """Replay on arrival: the lineage entries from a checkpoint some ticks back up to the
    one ``checkpoint`` names as ``prev`` (their tick inputs and effect records included), for
    the target to re-execute. Absent from the wire unless the target or the manifest asks."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"replay"})


@dataclass(frozen=True)
class Ack(Message):
    TYPE: ClassVar[str] = "ACK"
    sender: bytes
    agent: str
    migration_id: bytes
    epoch: int
    prepared_digest: bytes


@dataclass(frozen=True)
class Reject(Message):
    TYPE: ClassVar[str] = "REJECT"
    sender: bytes
    agent: str
    migration_id: bytes
    code: RejectCode
    reason: str = ""
    replay_ticks: int | None = None
    """With REPLAY_REQUIRED: how many ticks the target replays (absent otherwise)."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"replay_ticks"})

    def validate(self) -> None:
        if (self.replay_ticks is not None) != (self.code is RejectCode.REPLAY_REQUIRED):
            raise MalformedMessage("REJECT: replay_ticks comes with REPLAY_REQUIRED, only")


@dataclass(frozen=True)
class Commit(Message):
    TYPE: ClassVar[str] = "COMMIT"
    sender: bytes
    agent: str
    migration_id: bytes
    record: bytes
    cert: bytes


@dataclass(frozen=True)
class Confirm(Message):
    TYPE: ClassVar[str] = "CONFIRM"
    sender: bytes
    agent: str
    migration_id: bytes
    epoch: int


@dataclass(frozen=True)
class Abort(Message):
    TYPE: ClassVar[str] = "ABORT"
    sender: bytes
    agent: str
    migration_id: bytes


@dataclass(frozen=True)
class Done(Message):
    TYPE: ClassVar[str] = "DONE"
    sender: bytes
    agent: str


@dataclass(frozen=True)
class Refused(Message):
    TYPE: ClassVar[str] = "REFUSED"
    sender: bytes
    code: RefusedCode
    reason: str = ""


# --------------------------------------------------------------------------- witness


@dataclass(frozen=True)
class Prepare(Message):
    TYPE: ClassVar[str] = "PREPARE"
    sender: bytes
    agent: str
    slot: int
    ballot: Ballot
    chain_after: int
    chain: tuple[bytes, ...]
    """Custody the witness may lack (empty until it answers BEHIND)."""


@dataclass(frozen=True)
class Promise(Message):
    TYPE: ClassVar[str] = "PROMISE"
    sender: bytes
    agent: str
    slot: int
    ballot: Ballot
    accepted_ballot: Ballot | None
    accepted_record: bytes | None

    def validate(self) -> None:
        if (self.accepted_ballot is None) != (self.accepted_record is None):
            raise MalformedMessage("PROMISE: accepted ballot and record come together")


@dataclass(frozen=True)
class Accept(Message):
    TYPE: ClassVar[str] = "ACCEPT"
    sender: bytes
    agent: str
    slot: int
    ballot: Ballot
    record: bytes
    chain_after: int
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class Accepted(Message):
    TYPE: ClassVar[str] = "ACCEPTED"
    sender: bytes
    agent: str
    slot: int
    ballot: Ballot
    record_digest: bytes
    signature: bytes


@dataclass(frozen=True)
class Nack(Message):
    TYPE: ClassVar[str] = "NACK"
    sender: bytes
    agent: str
    slot: int
    code: NackCode
    chosen: int
    """The highest epoch the witness knows chosen (0: it knows nothing of the agent)."""
    promised: Ballot | None
    chain_after: int
    chain: tuple[bytes, ...]
    """For HIGHER: the custody from ``chain_after`` to ``chosen``."""


@dataclass(frozen=True)
class Learn(Message):
    TYPE: ClassVar[str] = "LEARN"
    sender: bytes
    agent: str
    chain_after: int
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class Status(Message):
    TYPE: ClassVar[str] = "STATUS"
    sender: bytes
    agent: str
    known: int
    """The highest epoch the asker can prove; the reply's chain starts after it."""


@dataclass(frozen=True)
class StatusReply(Message):
    TYPE: ClassVar[str] = "STATUS_REPLY"
    sender: bytes
    agent: str
    chosen: int
    """The highest epoch the replier knows chosen (as a witness, or from its own lineage)."""
    chain_after: int
    chain: tuple[bytes, ...]
    accepted_ballot: Ballot | None
    accepted_record: bytes | None
    """A record the replier, as a witness, accepted for epoch ``chosen + 1``."""
    holding: Holding
    """What the replier holds of the agent itself."""
    epoch: int
    migration_id: bytes | None
    """The handoff the replier is part of, if any (source or target)."""

    def validate(self) -> None:
        if (self.accepted_ballot is None) != (self.accepted_record is None):
            raise MalformedMessage("STATUS_REPLY: accepted ballot and record come together")


# --------------------------------------------------------------------------- modules


@dataclass(frozen=True)
class GetModule(Message):
    TYPE: ClassVar[str] = "GET_MODULE"
    sender: bytes
    wasm_hash: bytes


@dataclass(frozen=True)
class Module(Message):
    TYPE: ClassVar[str] = "MODULE"
    sender: bytes
    wasm: bytes | None


Offer.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "migration_id": MID,
    "epoch": EPOCH,
    "chain_after": EPOCH_OR_ZERO,
    "chain": CHAIN,
    "checkpoint": max_bytes(MAX_CHECKPOINT_BYTES),
    "wasm_hash": DIGEST,
    "manifest": max_bytes(MAX_MANIFEST_BYTES),
    "wasm": optional(max_bytes(MAX_WASM_BYTES)),
    "replay": blobs(MAX_REPLAY_ENTRIES, MAX_ENTRY_BYTES, MAX_REPLAY_BYTES),
}
Ack.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "migration_id": MID,
    "epoch": EPOCH,
    "prepared_digest": DIGEST,
}
Reject.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "migration_id": MID,
    "code": one_of(RejectCode),
    "reason": REASON,
    "replay_ticks": integer(1, MAX_REPLAY_TICKS),
}
Commit.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "migration_id": MID,
    "record": RECORD,
    "cert": RECORD,
}
Confirm.FIELDS = {"sender": NODE, "agent": AGENT, "migration_id": MID, "epoch": EPOCH}
Abort.FIELDS = {"sender": NODE, "agent": AGENT, "migration_id": MID}
Done.FIELDS = {"sender": NODE, "agent": AGENT}
Refused.FIELDS = {"sender": NODE, "code": one_of(RefusedCode), "reason": REASON}
Prepare.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "slot": EPOCH,
    "ballot": ballot,
    "chain_after": EPOCH_OR_ZERO,
    "chain": CHAIN,
}
Promise.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "slot": EPOCH,
    "ballot": ballot,
    "accepted_ballot": optional(ballot),
    "accepted_record": optional(RECORD),
}
Accept.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "slot": EPOCH,
    "ballot": ballot,
    "record": RECORD,
    "chain_after": EPOCH_OR_ZERO,
    "chain": CHAIN,
}
Accepted.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "slot": EPOCH,
    "ballot": ballot,
    "record_digest": DIGEST,
    "signature": exact_bytes(64),
}
Nack.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "slot": EPOCH,
    "code": one_of(NackCode),
    "chosen": EPOCH_OR_ZERO,
    "promised": optional(ballot),
    "chain_after": EPOCH_OR_ZERO,
    "chain": CHAIN,
}
Learn.FIELDS = {"sender": NODE, "agent": AGENT, "chain_after": EPOCH_OR_ZERO, "chain": CHAIN}
Status.FIELDS = {"sender": NODE, "agent": AGENT, "known": EPOCH_OR_ZERO}
StatusReply.FIELDS = {
    "sender": NODE,
    "agent": AGENT,
    "chosen": EPOCH_OR_ZERO,
    "chain_after": EPOCH_OR_ZERO,
    "chain": CHAIN,
    "accepted_ballot": optional(ballot),
    "accepted_record": optional(RECORD),
    "holding": one_of(Holding),
    "epoch": EPOCH_OR_ZERO,
    "migration_id": optional(MID),
}
GetModule.FIELDS = {"sender": NODE, "wasm_hash": DIGEST}
Module.FIELDS = {"sender": NODE, "wasm": optional(max_bytes(MAX_WASM_BYTES))}

HANDOFF_REQUESTS = (Offer, Commit, Abort)
WITNESS_REQUESTS = (Prepare, Accept, Learn, Status)
MESSAGES = Registry(
    Offer,
    Ack,
    Reject,
    Commit,
    Confirm,
    Abort,
    Done,
    Refused,
    Prepare,
    Promise,
    Accept,
    Accepted,
    Nack,
    Learn,
    Status,
    StatusReply,
    GetModule,
    Module,
)
