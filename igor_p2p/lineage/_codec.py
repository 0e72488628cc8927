"""Shared canonical-msgpack helpers and hostile-input checks for lineage entries.

Every lineage entry is a msgpack array whose first element is a format tag string. Decoding is
bounded (size caps on the whole buffer and on every str/bin/array) and strict: every field has an
exact type and range, and the bytes must be the canonical encoding of the decoded value, so one
entry has exactly one encoding and one digest.
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

import msgpack

from igor_p2p.errors import InvalidInput

MAX_STATE_BYTES = 64 * 1024 * 1024
"""Largest agent state a checkpoint may carry (64 MiB)."""
ENTRY_SLACK_BYTES = 64 * 1024
"""Room for every field of an entry other than the state."""
MAX_ENTRY_BYTES = MAX_STATE_BYTES + ENTRY_SLACK_BYTES
"""Largest encoded lineage entry accepted by any decoder."""
MAX_STR_BYTES = 4096
"""Largest msgpack str accepted anywhere in an entry (fields have tighter per-field caps)."""
MAX_ARRAY_ITEMS = 16
"""Largest msgpack array accepted in an entry."""

MAX_WITNESSES = 7
"""Largest witness set an agent's epoch may name."""
NODE_KEY_BYTES = 32

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

ZERO_HASH = bytes(32)


class CorruptEntry(InvalidInput):
    """Bytes or fields that are not a valid lineage entry."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def pack(items: list[Any]) -> bytes:
    """Canonical msgpack of an array of ints, strs and bytes (smallest encodings, bin for bytes)."""
    return msgpack.packb(items, use_bin_type=True)


def unpack_array(
    data: bytes,
    error: type[CorruptEntry],
    *,
    max_bytes: int = MAX_ENTRY_BYTES,
    max_bin: int = MAX_STATE_BYTES,
) -> list[Any]:
    """Decode one bounded msgpack array with nothing after it, or raise ``error``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise error(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise error(f"entry is {len(data)} bytes, more than the cap of {max_bytes}")
    if not data:
        raise error("empty entry")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_bin,
            max_str_len=MAX_STR_BYTES,
            max_array_len=MAX_ARRAY_ITEMS,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of ValueError/TypeError subclasses
        raise error(f"not a msgpack value: {type(exc).__name__}") from None
    if type(obj) is not list:
        raise error(f"expected a msgpack array, got {type(obj).__name__}")
    return obj


class FieldReader:
    """Reads typed fields off a decoded array, raising one error class on any mismatch."""

    def __init__(self, items: list[Any], error: type[CorruptEntry], names: tuple[str, ...]):
        if len(items) != len(names):
            fail(error, f"expected {len(names)} fields, got {len(items)}")
        self._values = dict(zip(names, items, strict=True))
        self._error = error

    def raw(self, name: str) -> Any:
        return self._values[name]

    def int(self, name: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
        return check_int(self._values[name], name, self._error, lo, hi)

    def bytes(self, name: str, length: int | None = None, max_len: int | None = None) -> bytes:
        return check_bytes(self._values[name], name, self._error, length, max_len)

    def str(self, name: str, max_len: int) -> str:
        return check_str(self._values[name], name, self._error, max_len)

    def witnesses(self, name: str) -> tuple[bytes, ...]:
        value = self._values[name]
        if type(value) is not list:
            fail(self._error, f"{name}: expected an array, got {type(value).__name__}")
        members = tuple(value)
        check_witnesses(members, name, self._error)
        return members


def fail(error: type[CorruptEntry], message: str) -> NoReturn:
    raise error(message)


def check_int(value: Any, name: str, error: type[CorruptEntry], lo: int, hi: int) -> int:
    if type(value) is not int:
        fail(error, f"{name}: expected int, got {type(value).__name__}")
    if not lo <= value <= hi:
        fail(error, f"{name}: {value} outside [{lo}, {hi}]")
    return value


def check_bytes(
    value: Any,
    name: str,
    error: type[CorruptEntry],
    length: int | None = None,
    max_len: int | None = None,
) -> bytes:
    if type(value) is not bytes:
        fail(error, f"{name}: expected bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        fail(error, f"{name}: expected {length} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        fail(error, f"{name}: {len(value)} bytes, more than the cap of {max_len}")
    return value


def check_str(value: Any, name: str, error: type[CorruptEntry], max_len: int) -> str:
    if type(value) is not str:
        fail(error, f"{name}: expected str, got {type(value).__name__}")
    if len(value.encode("utf-8", "surrogatepass")) > max_len:
        fail(error, f"{name}: longer than {max_len} bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(error, f"{name}: not valid UTF-8")
    return value


def check_canonical(data: bytes, encoded: bytes, error: type[CorruptEntry]) -> None:
    """Reject encodings that decode to the right value but are not the canonical bytes."""
    if bytes(data) != encoded:
        fail(error, "not the canonical encoding of its fields")


def check_witnesses(value: Any, name: str, error: type[CorruptEntry]) -> tuple[bytes, ...]:
    """A witness set: a tuple of at most ``MAX_WITNESSES`` distinct 32-byte node keys, sorted
    (so one set has one encoding)."""
    if type(value) is not tuple:
        fail(error, f"{name}: expected a tuple of node keys, got {type(value).__name__}")
    if len(value) > MAX_WITNESSES:
        fail(error, f"{name}: {len(value)} witnesses, more than {MAX_WITNESSES}")
    for member in value:
        check_bytes(member, name, error, NODE_KEY_BYTES)
    if list(value) != sorted(set(value)):
        fail(error, f"{name}: witnesses must be distinct and sorted")
    return value
