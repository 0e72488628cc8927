"""Strict field checks and the msgpack layer shared by every Igor-P2P wire message.

A message is a frozen dataclass whose class declares a check per field. :func:`from_wire`
validates a decoded map (exact key set, exact types, ranges, byte lengths, caps) and raises
:class:`MalformedMessage` on anything off; nothing a peer sends gets past it unchecked.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_ENTRY_BYTES, MAX_WITNESSES
from igor_p2p.lineage.cert import BALLOT_NONCE_BYTES, Ballot

MAX_EPOCH = 2**63 - 1
MAX_ID_CHARS = 128
MIGRATION_ID_LEN = 16
DIGEST_LEN = 32
NODE_KEY_LEN = 32
MAX_RECORD_BYTES = 4096
MAX_CHAIN_BLOBS = 20_001
"""A custody chain on the wire: at most 10,000 epochs after the one it continues from."""
MAX_REASON_CHARS = 512
MAX_FRAME_BYTES = 200 * 1024 * 1024
"""Upper bound on one encoded message (a 64 MiB checkpoint, a 16 MiB module, a chain, slack)."""


class MalformedMessage(InvalidInput):
    """A message is not well formed."""


Check = Callable[[str, Any], Any]


def fail(name: str, why: str) -> MalformedMessage:
    return MalformedMessage(f"field {name!r}: {why}")


def text(cap: int = MAX_ID_CHARS, *, allow_empty: bool = False) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > cap or (not value and not allow_empty):
            raise fail(name, f"want a string of {0 if allow_empty else 1}..{cap} chars")
        return value

    return check


def integer(lo: int, hi: int) -> Check:
    def check(name: str, value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise fail(name, f"want an integer in [{lo}, {hi}]")
        return value

    return check


EPOCH = integer(1, MAX_EPOCH)
EPOCH_OR_ZERO = integer(0, MAX_EPOCH)


def exact_bytes(length: int) -> Check:
    def check(name: str, value: Any) -> bytes:
        if not isinstance(value, bytes) or len(value) != length:
            raise fail(name, f"want exactly {length} bytes")
        return value

    return check


def max_bytes(cap: int, *, allow_empty: bool = False) -> Check:
    def check(name: str, value: Any) -> bytes:
        if not isinstance(value, bytes) or len(value) > cap or (not value and not allow_empty):
            raise fail(name, f"want {0 if allow_empty else 1}..{cap} bytes")
        return value

    return check


def optional(inner: Check) -> Check:
    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def one_of(kind: type[enum.StrEnum]) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise fail(name, "want a string code")
        try:
            return kind(value)
        except ValueError:
            raise fail(name, f"unknown code {value[:40]!r}") from None

    return check


def blobs(count: int, each: int, total: int) -> Check:
    def check(name: str, value: Any) -> tuple[bytes, ...]:
        if not isinstance(value, list | tuple) or len(value) > count:
            raise fail(name, f"want a list of at most {count} byte strings")
        size = 0
        for item in value:
            if not isinstance(item, bytes) or not item or len(item) > each:
                raise fail(name, f"each item must be 1..{each} bytes")
            size += len(item)
        if size > total:
            raise fail(name, f"more than {total} bytes in all")
        return tuple(value)

    return check


def node_keys(name: str, value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_WITNESSES:
        raise fail(name, f"want a list of at most {MAX_WITNESSES} node keys")
    for item in value:
        if not isinstance(item, bytes) or len(item) != NODE_KEY_LEN:
            raise fail(name, f"each node key is {NODE_KEY_LEN} bytes")
    return tuple(value)


def ballot(name: str, value: Any) -> Ballot:
    if not isinstance(value, list) or len(value) != 3:
        raise fail(name, "want [round, proposer, nonce]")
    round_, proposer, nonce = value
    if type(round_) is not int or not 0 <= round_ <= MAX_EPOCH:
        raise fail(name, "round out of range")
    if not isinstance(proposer, bytes) or len(proposer) != NODE_KEY_LEN:
        raise fail(name, "proposer is a 32-byte node key")
    if not isinstance(nonce, bytes) or len(nonce) != BALLOT_NONCE_BYTES:
        raise fail(name, f"nonce is {BALLOT_NONCE_BYTES} bytes")
    return Ballot(round_, proposer, nonce)


AGENT = text()
NODE = exact_bytes(NODE_KEY_LEN)
MID = exact_bytes(MIGRATION_ID_LEN)
DIGEST = exact_bytes(DIGEST_LEN)
CHAIN = blobs(
    MAX_CHAIN_BLOBS, MAX_ENTRY_BYTES, MAX_ENTRY_BYTES + MAX_CHAIN_BLOBS * MAX_RECORD_BYTES
)
"""A custody chain: an optional genesis, then (record, certificate) pairs."""
REASON = text(MAX_REASON_CHARS, allow_empty=True)


@dataclass(frozen=True)
class Message:
    """A wire message; subclasses set ``TYPE`` and ``FIELDS`` (one check per field)."""

    TYPE: ClassVar[str]
    FIELDS: ClassVar[Mapping[str, Check]]
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()
    """Fields left out of the map when None (and None when absent): a field added later costs
    nothing, not even its key, when it is not used."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE}
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is None and name in self.OMITTED_WHEN_NONE:
                continue
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Ballot):
                value = value.to_wire()
            elif isinstance(value, tuple):
                value = list(value)
            wire[name] = value
        return wire


class Registry:
    """The message types one protocol family understands."""

    def __init__(self, *types: type[Message]) -> None:
        self.by_type = {t.TYPE: t for t in types}

    def from_wire(self, wire: Any) -> Message:
        if not isinstance(wire, dict):
            raise MalformedMessage("message is not a map")
        kind = wire.get("type")
        cls = self.by_type.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise MalformedMessage("unknown or missing message type")
        expected = {"type", *cls.FIELDS}
        omitted = expected - set(wire)
        if not set(wire) <= expected or not omitted <= cls.OMITTED_WHEN_NONE:
            raise MalformedMessage(f"{kind}: keys differ from {sorted(expected)}")
        values = {
            name: None if name in omitted else check(name, wire[name])
            for name, check in cls.FIELDS.items()
        }
        message = cls(**values)
        validate = getattr(message, "validate", None)
        if validate is not None:
            validate()
        return message

    def decode(self, data: bytes) -> Message:
        if not isinstance(data, bytes) or len(data) > MAX_FRAME_BYTES:
            raise MalformedMessage("frame missing or too large")
        try:
            wire = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                use_list=True,
                max_bin_len=MAX_ENTRY_BYTES,
                max_str_len=4096,
                max_array_len=MAX_CHAIN_BLOBS,
                max_map_len=24,
                max_ext_len=0,
            )
        except Exception as exc:  # msgpack raises assorted types on hostile input
            raise MalformedMessage(f"not a msgpack frame: {type(exc).__name__}") from None
        return self.from_wire(wire)


def encode(message: Message) -> bytes:
    packed: bytes = msgpack.packb(message.to_wire(), use_bin_type=True)
    return packed
