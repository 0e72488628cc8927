"""Messages of ``/igor/migrate/1.0.0`` and ``/igor/recover/1.0.0``.

Each message is a frozen dataclass. ``to_wire()`` gives a msgpack-ready map whose ``"type"``
key names the message; :func:`from_wire` validates a decoded map strictly (exact key set, exact
types, byte lengths, caps) and raises :class:`MalformedMessage` on anything off. :func:`encode`
and :func:`decode` add the msgpack layer. Every message carries ``sender``, the peer ID the
sender claims; the driver checks it equals the Noise-authenticated remote peer.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import ABSENT, Holding, RejectCode
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_ENTRY_BYTES

MIGRATE_PROTOCOL = "/igor/migrate/1.0.0"
RECOVER_PROTOCOL = "/igor/recover/1.0.0"

MIGRATION_ID_LEN = 16
DIGEST_LEN = 32
MAX_EPOCH = 2**63 - 1
MAX_ID_CHARS = 128
"""Cap on ``agent`` (a did:key) and ``sender`` (a peer ID) strings."""
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
MAX_LINEAGE_ENTRIES = 4096
MAX_LINEAGE_ENTRY_BYTES = MAX_ENTRY_BYTES
"""One entry may be as large as any lineage decoder accepts (the HANDOFF checkpoint is itself an
entry of the offered lineage, so a cap below the checkpoint cap made big agents unmovable)."""
MAX_LINEAGE_TOTAL_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024
MAX_WASM_BYTES = 16 * 1024 * 1024
MAX_TRANSFER_RECORD_BYTES = 4096
MAX_FRAME_BYTES = MAX_CHECKPOINT_BYTES + MAX_LINEAGE_TOTAL_BYTES + MAX_WASM_BYTES + (1 << 20)
"""Upper bound on one encoded message (all caps together plus slack)."""


class MalformedMessage(InvalidInput):
    """A migrate/recover message is not well formed."""


class MessageType(enum.StrEnum):
    OFFER = "OFFER"
    ACK = "ACK"
    REJECT = "REJECT"
    COMMIT = "COMMIT"
    CONFIRM = "CONFIRM"
    ABORT = "ABORT"
    STATUS_QUERY = "STATUS_QUERY"
    STATUS_REPLY = "STATUS_REPLY"


# --------------------------------------------------------------------------- field checks

Check = Callable[[str, Any], Any]


def _fail(name: str, why: str) -> MalformedMessage:
    return MalformedMessage(f"field {name!r}: {why}")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise _fail(name, f"want a string of 1..{MAX_ID_CHARS} chars")
    return value


def _epoch(name: str, value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_EPOCH:
        raise _fail(name, "want an integer epoch >= 1")
    return value


def _epoch_or_zero(name: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_EPOCH:
        raise _fail(name, "want an integer epoch >= 0")
    return value


def _bytes_exact(length: int) -> Check:
    def check(name: str, value: Any) -> bytes:
        if not isinstance(value, bytes) or len(value) != length:
            raise _fail(name, f"want exactly {length} bytes")
        return value

    return check


def _bytes_max(cap: int, *, allow_empty: bool = False) -> Check:
    def check(name: str, value: Any) -> bytes:
        if not isinstance(value, bytes) or len(value) > cap or (not value and not allow_empty):
            raise _fail(name, f"want 1..{cap} bytes")
        return value

    return check


def _optional(inner: Check) -> Check:
    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def _lineage(name: str, value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_LINEAGE_ENTRIES:
        raise _fail(name, f"want a list of at most {MAX_LINEAGE_ENTRIES} entries")
    total = 0
    for item in value:
        if not isinstance(item, bytes) or not item or len(item) > MAX_LINEAGE_ENTRY_BYTES:
            raise _fail(name, f"each entry must be 1..{MAX_LINEAGE_ENTRY_BYTES} bytes")
        total += len(item)
    if total > MAX_LINEAGE_TOTAL_BYTES:
        raise _fail(name, "lineage too large")
    return tuple(value)


def _enum(kind: type[enum.StrEnum]) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise _fail(name, "want a string code")
        try:
            return kind(value)
        except ValueError:
            raise _fail(name, f"unknown code {value[:40]!r}") from None

    return check


def _holding(name: str, value: Any) -> Holding:
    if value == ABSENT.value:
        return ABSENT
    result: AuthorityState = _enum(AuthorityState)(name, value)
    return result


_AGENT = _text
_SENDER = _text
_MID = _bytes_exact(MIGRATION_ID_LEN)
_DIGEST = _bytes_exact(DIGEST_LEN)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[MessageType]
    FIELDS: ClassVar[Mapping[str, Check]]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE.value}
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            wire[name] = value
        return wire


@dataclass(frozen=True)
class Offer(Message):
    TYPE: ClassVar[MessageType] = MessageType.OFFER
    sender: str
    agent: str
    epoch: int
    migration_id: bytes
    checkpoint: bytes
    """The fresh HANDOFF checkpoint (an envelope) the target will resume from."""
    lineage: tuple[bytes, ...]
    """Lineage entries the target lacks, oldest first."""
    wasm_hash: bytes
    manifest: bytes
    wasm: bytes | None = None
    """Absent when the target should fetch the module by hash."""


@dataclass(frozen=True)
class Ack(Message):
    TYPE: ClassVar[MessageType] = MessageType.ACK
    sender: str
    agent: str
    epoch: int
    migration_id: bytes
    prepared_digest: bytes
    """Digest of the checkpoint the target durably prepared (the offered head)."""


@dataclass(frozen=True)
class Reject(Message):
    TYPE: ClassVar[MessageType] = MessageType.REJECT
    sender: str
    agent: str
    migration_id: bytes
    code: RejectCode


@dataclass(frozen=True)
class Commit(Message):
    TYPE: ClassVar[MessageType] = MessageType.COMMIT
    sender: str
    agent: str
    migration_id: bytes
    transfer_record: bytes


@dataclass(frozen=True)
class Confirm(Message):
    TYPE: ClassVar[MessageType] = MessageType.CONFIRM
    sender: str
    agent: str
    migration_id: bytes
    new_epoch: int


@dataclass(frozen=True)
class Abort(Message):
    TYPE: ClassVar[MessageType] = MessageType.ABORT
    sender: str
    agent: str
    migration_id: bytes


@dataclass(frozen=True)
class StatusQuery(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATUS_QUERY
    sender: str
    agent: str
    migration_id: bytes | None
    epoch: int
    """The epoch the querier's record refers to."""


@dataclass(frozen=True)
class StatusReply(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATUS_REPLY
    sender: str
    agent: str
    state: Holding
    epoch: int
    migration_id: bytes | None
    """The migration the replier's durable record refers to, if any."""
    transfer_record: bytes | None
    """Present iff the replier retired (decided) that migration."""
    head_digest: bytes | None
    """Digest of the replier's latest checkpoint of the agent, if it holds one."""


Offer.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "epoch": _epoch,
    "migration_id": _MID,
    "checkpoint": _bytes_max(MAX_CHECKPOINT_BYTES),
    "lineage": _lineage,
    "wasm_hash": _DIGEST,
    "manifest": _bytes_max(MAX_MANIFEST_BYTES),
    "wasm": _optional(_bytes_max(MAX_WASM_BYTES)),
}
Ack.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "epoch": _epoch,
    "migration_id": _MID,
    "prepared_digest": _DIGEST,
}
Reject.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "migration_id": _MID,
    "code": _enum(RejectCode),
}
Commit.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "migration_id": _MID,
    "transfer_record": _bytes_max(MAX_TRANSFER_RECORD_BYTES),
}
Confirm.FIELDS = {"sender": _SENDER, "agent": _AGENT, "migration_id": _MID, "new_epoch": _epoch}
Abort.FIELDS = {"sender": _SENDER, "agent": _AGENT, "migration_id": _MID}
StatusQuery.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "migration_id": _optional(_MID),
    "epoch": _epoch_or_zero,
}
StatusReply.FIELDS = {
    "sender": _SENDER,
    "agent": _AGENT,
    "state": _holding,
    "epoch": _epoch_or_zero,
    "migration_id": _optional(_MID),
    "transfer_record": _optional(_bytes_max(MAX_TRANSFER_RECORD_BYTES)),
    "head_digest": _optional(_DIGEST),
}

MIGRATE_MESSAGES: tuple[type[Message], ...] = (Offer, Ack, Reject, Commit, Confirm, Abort)
RECOVER_MESSAGES: tuple[type[Message], ...] = (StatusQuery, StatusReply)
_BY_TYPE: dict[str, type[Message]] = {m.TYPE.value: m for m in MIGRATE_MESSAGES + RECOVER_MESSAGES}


def from_wire(wire: Any) -> Message:
    """Validate a decoded map and build its message; :class:`MalformedMessage` otherwise."""
    if not isinstance(wire, dict):
        raise MalformedMessage("message is not a map")
    kind = wire.get("type")
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedMessage("unknown or missing message type")
    expected = {"type", *cls.FIELDS}
    if set(wire) != expected:
        raise MalformedMessage(f"{kind}: keys differ from {sorted(expected)}")
    values = {name: check(name, wire[name]) for name, check in cls.FIELDS.items()}
    if cls is StatusReply:
        _check_status_reply(values)
    return cls(**values)


def _check_status_reply(values: dict[str, Any]) -> None:
    if values["transfer_record"] is not None and values["state"] is not AuthorityState.RETIRED:
        raise MalformedMessage("STATUS_REPLY: a transfer record only comes with RETIRED")
    if values["state"] is ABSENT and (values["migration_id"] or values["head_digest"]):
        raise MalformedMessage("STATUS_REPLY: ABSENT carries no migration or head")


def encode(message: Message) -> bytes:
    packed: bytes = msgpack.packb(message.to_wire(), use_bin_type=True)
    return packed


def decode(data: bytes) -> Message:
    """Decode one msgpack frame into a validated message."""
    if not isinstance(data, bytes) or len(data) > MAX_FRAME_BYTES:
        raise MalformedMessage("frame missing or too large")
    try:
        wire = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=MAX_CHECKPOINT_BYTES,
            max_str_len=1024,
            max_array_len=MAX_LINEAGE_ENTRIES,
            max_map_len=16,
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedMessage(f"not a msgpack frame: {type(exc).__name__}") from None
    except Exception as exc:  # msgpack raises assorted types on hostile input
        raise MalformedMessage(f"not a msgpack frame: {type(exc).__name__}") from None
    return from_wire(wire)


def field_names(cls: type[Message]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
