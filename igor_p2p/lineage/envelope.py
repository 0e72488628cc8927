"""The checkpoint envelope: one signed, hash-chained snapshot of an agent.

Encoding (see ``protocols/checkpoint-envelope.md``): a canonical msgpack array of 16 elements::

    ["igor/ckpt/2", agent, epoch, tick, prev, kind, wasm_hash, manifest_hash,
     budget, price, wall_ns, state, owner, witnesses, signer, signature]

The first byte is therefore 0xdc (a msgpack array 16), which never collides with Go Igor's
version bytes 0x02-0x04. The signature covers ``SIGNING_DOMAIN`` followed by the canonical msgpack
of the same array without its last element; the digest is SHA-256 of the full encoding.

``witnesses`` names the witness set W₁ of the agent's first epoch (sorted, distinct node keys) in
a GENESIS or IMPORT checkpoint, signed by the agent key; it is empty in every other checkpoint
(later witness sets are named by the custody records that start each epoch).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, fields
from typing import Any

from igor_p2p.lineage._codec import (
    INT64_MAX,
    INT64_MIN,
    MAX_STATE_BYTES,
    CorruptEntry,
    FieldReader,
    check_bytes,
    check_canonical,
    check_int,
    check_str,
    check_witnesses,
    pack,
    sha256,
    unpack_array,
)
from igor_p2p.lineage.identity import (
    MAX_DID_CHARS,
    InvalidDID,
    Keypair,
    public_key_from_did,
    verify_signature,
)

FORMAT_TAG = "igor/ckpt/2"
SIGNING_DOMAIN = b"igor-p2p/checkpoint/v2\x00"
HASH_BYTES = 32


class CorruptCheckpoint(CorruptEntry):
    """Bytes or fields that are not a valid checkpoint envelope."""


class CheckpointKind(enum.IntEnum):
    GENESIS = 0
    """First checkpoint of a new agent: epoch 1, tick 0, prev zero, signed by the agent key."""
    TICK = 1
    """A periodic checkpoint after the tick counter advanced."""
    HANDOFF = 2
    """The last checkpoint of an epoch, written by the source before a transfer record."""
    FINAL = 3
    """The checkpoint written when an agent stops (budget exhausted or halted)."""
    IMPORT = 4
    """Genesis of an agent imported from Go Igor: prev is SHA-256 of the imported blob."""


_UNSIGNED_FIELDS = (
    "agent",
    "epoch",
    "tick",
    "prev",
    "kind",
    "wasm_hash",
    "manifest_hash",
    "budget",
    "price",
    "wall_ns",
    "state",
    "owner",
    "witnesses",
)
_ENCODED_FIELDS = ("tag", *_UNSIGNED_FIELDS, "signer", "signature")


def _validate_unsigned(ck: Any) -> None:
    err = CorruptCheckpoint
    check_str(ck.agent, "agent", err, MAX_DID_CHARS)
    try:
        public_key_from_did(ck.agent)
    except InvalidDID as exc:
        raise CorruptCheckpoint(f"agent: {exc}") from None
    check_int(ck.epoch, "epoch", err, 1, INT64_MAX)
    check_int(ck.tick, "tick", err, 0, INT64_MAX)
    check_bytes(ck.prev, "prev", err, HASH_BYTES)
    if type(ck.kind) is not CheckpointKind:
        check_int(ck.kind, "kind", err, INT64_MIN, INT64_MAX)
        try:
            object.__setattr__(ck, "kind", CheckpointKind(ck.kind))
        except ValueError:
            raise CorruptCheckpoint(f"kind: unknown checkpoint kind {ck.kind}") from None
    check_bytes(ck.wasm_hash, "wasm_hash", err, HASH_BYTES)
    check_bytes(ck.manifest_hash, "manifest_hash", err, HASH_BYTES)
    check_int(ck.budget, "budget", err, 0, INT64_MAX)
    check_int(ck.price, "price", err, 0, INT64_MAX)
    check_int(ck.wall_ns, "wall_ns", err, INT64_MIN, INT64_MAX)
    check_bytes(ck.state, "state", err, max_len=MAX_STATE_BYTES)
    check_bytes(ck.owner, "owner", err, HASH_BYTES)
    check_witnesses(ck.witnesses, "witnesses", err)
    if ck.witnesses and ck.kind not in (CheckpointKind.GENESIS, CheckpointKind.IMPORT):
        raise CorruptCheckpoint("witnesses: only a GENESIS or IMPORT checkpoint names witnesses")


def _unsigned_items(ck: Any) -> list[Any]:
    return [FORMAT_TAG, *(_as_wire(getattr(ck, name)) for name in _UNSIGNED_FIELDS)]


def _as_wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return int(value) if isinstance(value, enum.IntEnum) else value


_ARRAY_16 = b"\xdc\x00\x10"
"""msgpack header of the 16-element envelope array (the signed body has 15: ``0x9f``)."""
_SIGNATURE_BIN_HEADER = b"\xc4\x40"
"""msgpack bin8 header of a 64-byte signature."""
_ARRAY_15 = b"\x9f"
"""msgpack header of the signed body (15 items)."""
_SIGNATURE_TAIL = len(_SIGNATURE_BIN_HEADER) + 64


def _bin_header(length: int) -> bytes:
    """The canonical msgpack bin header for ``length`` bytes (what ``pack`` writes)."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def _new_unchecked(cls: type[Any], values: dict[str, Any]) -> Any:
    """An instance of a frozen dataclass built from fields that were already validated."""
    obj = cls.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


@dataclass(frozen=True)
class UnsignedCheckpoint:
    """A checkpoint before it is signed; ``sign`` turns it into a :class:`Checkpoint`."""

    agent: str
    epoch: int
    tick: int
    prev: bytes
    kind: CheckpointKind
    wasm_hash: bytes
    manifest_hash: bytes
    budget: int
    price: int
    wall_ns: int
    state: bytes
    owner: bytes
    witnesses: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _validate_unsigned(self)

    def signing_bytes(self, signer: bytes) -> bytes:
        return SIGNING_DOMAIN + pack([*_unsigned_items(self), signer])

    def sign(self, keypair: Keypair) -> Checkpoint:
        # The fields were validated at construction and the signer/signature come from the
        # keypair, so the Checkpoint is built without validating again. The envelope is the
        # signed body (15 items) with a 16-item header and the signature appended: one pack.
        signer = keypair.public_key
        body = pack([*_unsigned_items(self), signer])
        signature = keypair.sign(SIGNING_DOMAIN + body)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["signer"] = signer
        values["signature"] = signature
        checkpoint: Checkpoint = _new_unchecked(Checkpoint, values)
        encoded = b"".join((_ARRAY_16, memoryview(body)[1:], _SIGNATURE_BIN_HEADER, signature))
        checkpoint.__dict__["_encoded"] = encoded
        return checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint envelope. Construction validates every field's type and range."""

    agent: str
    epoch: int
    tick: int
    prev: bytes
    kind: CheckpointKind
    wasm_hash: bytes
    manifest_hash: bytes
    budget: int
    price: int
    wall_ns: int
    state: bytes
    owner: bytes
    witnesses: tuple[bytes, ...]
    signer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _validate_unsigned(self)
        check_bytes(self.signer, "signer", CorruptCheckpoint, 32)
        check_bytes(self.signature, "signature", CorruptCheckpoint, 64)

    @property
    def unsigned(self) -> UnsignedCheckpoint:
        return UnsignedCheckpoint(**{name: getattr(self, name) for name in _UNSIGNED_FIELDS})

    def encode(self) -> bytes:
        """The canonical envelope bytes (computed once: the dataclass is frozen)."""
        return self._encoded

    @functools.cached_property
    def _encoded(self) -> bytes:
        return pack([*_unsigned_items(self), self.signer, self.signature])

    @functools.cached_property
    def _digest(self) -> bytes:
        return sha256(self.encode())

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: what the next lineage entry names in ``prev``."""
        return self._digest

    def signing_bytes(self) -> bytes:
        """``SIGNING_DOMAIN`` ‖ canonical msgpack of every field except the signature.

        Cut from the canonical encoding (one copy, no re-encoding of the state): the envelope
        is the signed 15-item array with a 16-item header and the signature bin appended."""
        encoded = self.encode()
        body = memoryview(encoded)[len(_ARRAY_16) : len(encoded) - _SIGNATURE_TAIL]
        return b"".join((SIGNING_DOMAIN, _ARRAY_15, body))

    def verify_signature(self) -> None:
        """Raise ``BadSignature`` unless ``signer`` signed :meth:`signing_bytes`."""
        verify_signature(self.signer, self.signing_bytes(), self.signature)

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        """Decode and validate; any defect raises :class:`CorruptCheckpoint`."""
        return cls._from_items(unpack_array(data, CorruptCheckpoint), data)

    @classmethod
    def _from_items(cls, items: list[Any], data: bytes) -> Checkpoint:
        r = FieldReader(items, CorruptCheckpoint, _ENCODED_FIELDS)
        if r.raw("tag") != FORMAT_TAG:
            raise CorruptCheckpoint("not a checkpoint envelope (format tag)")
        ck = cls(
            agent=r.str("agent", MAX_DID_CHARS),
            epoch=r.int("epoch"),
            tick=r.int("tick"),
            prev=r.bytes("prev", HASH_BYTES),
            kind=r.int("kind"),  # type: ignore[arg-type]  # converted by __post_init__
            wasm_hash=r.bytes("wasm_hash", HASH_BYTES),
            manifest_hash=r.bytes("manifest_hash", HASH_BYTES),
            budget=r.int("budget"),
            price=r.int("price"),
            wall_ns=r.int("wall_ns"),
            state=r.bytes("state", max_len=MAX_STATE_BYTES),
            owner=r.bytes("owner", HASH_BYTES),
            witnesses=r.witnesses("witnesses"),
            signer=r.bytes("signer", 32),
            signature=r.bytes("signature", 64),
        )
        _check_canonical_envelope(data, ck)
        ck.__dict__["_encoded"] = data if type(data) is bytes else bytes(data)
        return ck


def _check_canonical_envelope(data: bytes, ck: Checkpoint) -> None:
    """Raise unless ``data`` is exactly the canonical encoding of ``ck``.

    Equivalent to ``data == ck.encode()`` without re-encoding (copying) the state: everything
    before the state, the state's bin header and everything after it are packed and compared in
    place. With those equal, the state the decoder read is the bytes between them, so the whole
    buffer is the canonical encoding.
    """
    items = _unsigned_items(ck)
    state_index = 1 + _UNSIGNED_FIELDS.index("state")
    before = _ARRAY_16 + pack(items[:state_index])[1:]
    header = _bin_header(len(ck.state))
    after = pack([*items[state_index + 1 :], ck.signer, ck.signature])[1:]
    view = memoryview(data)
    start = len(before) + len(header)
    if (
        len(view) != start + len(ck.state) + len(after)
        or view[: len(before)] != before
        or view[len(before) : start] != header
        or view[len(view) - len(after) :] != after
    ):
        check_canonical(data, ck.encode(), CorruptCheckpoint)  # raises with the usual error
