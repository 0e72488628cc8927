"""Custody records: the entries that move authority over an agent from one epoch to the next.

* :class:`TransferRecord` — signed by the owner of ``from_epoch`` (``from_node``): it hands the
  agent to ``to_node`` for ``to_epoch``. A handoff names another node and its ``prev`` is the
  source's HANDOFF checkpoint; a *resume* (an owner restarting, or an operator resuming a halted
  agent) names the signer itself and its ``prev`` is the last entry the owner holds.
* :class:`ForcedRecovery` — signed by the node forcing itself owner at a higher epoch after an
  operator decision; names the operator and the reason.

Both name ``witnesses``, the witness set of the epoch they start; an epoch-starting record only
counts once a :class:`~igor_p2p.lineage.cert.WitnessCert` follows it in the chain.

Both are canonical msgpack arrays starting with their own format tag, signed over their own
domain tag followed by the array without its signature.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from igor_p2p.lineage._codec import (
    INT64_MAX,
    INT64_MIN,
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

TRANSFER_TAG = "igor/xfer/2"
TRANSFER_DOMAIN = b"igor-p2p/transfer/v2\x00"
FORCED_TAG = "igor/force/2"
FORCED_DOMAIN = b"igor-p2p/forced-recovery/v2\x00"

MIGRATION_ID_BYTES = 16
MAX_OPERATOR_BYTES = 256
MAX_REASON_BYTES = 1024
MAX_RECORD_BYTES = 4096
"""No custody record encodes to more than this; longer input is rejected before parsing."""


class CorruptCustodyRecord(CorruptEntry):
    """Bytes or fields that are not a valid transfer or forced-recovery record."""


def _check_agent(agent: Any) -> None:
    check_str(agent, "agent", CorruptCustodyRecord, MAX_DID_CHARS)
    try:
        public_key_from_did(agent)
    except InvalidDID as exc:
        raise CorruptCustodyRecord(f"agent: {exc}") from None


def _check_epoch(value: Any, name: str) -> None:
    check_int(value, name, CorruptCustodyRecord, 1, INT64_MAX)


def _check_hash(value: Any, name: str, length: int = 32) -> None:
    check_bytes(value, name, CorruptCustodyRecord, length)


# --- transfer -----------------------------------------------------------------------------------

_TRANSFER_UNSIGNED = (
    "agent",
    "from_epoch",
    "to_epoch",
    "from_node",
    "to_node",
    "prev",
    "migration_id",
    "wall_ns",
    "witnesses",
)


def _validate_transfer(rec: Any) -> None:
    _check_agent(rec.agent)
    _check_epoch(rec.from_epoch, "from_epoch")
    _check_epoch(rec.to_epoch, "to_epoch")
    _check_hash(rec.from_node, "from_node")
    _check_hash(rec.to_node, "to_node")
    _check_hash(rec.prev, "prev")
    _check_hash(rec.migration_id, "migration_id", MIGRATION_ID_BYTES)
    check_int(rec.wall_ns, "wall_ns", CorruptCustodyRecord, INT64_MIN, INT64_MAX)
    check_witnesses(rec.witnesses, "witnesses", CorruptCustodyRecord)


class _UnsignedRecord:
    """Shared by the unsigned builders: the signing bytes and ``sign``."""

    TAG: ClassVar[str]
    DOMAIN: ClassVar[bytes]
    FIELDS: ClassVar[tuple[str, ...]]
    SIGNED: ClassVar[type[_SignedRecord]]

    def unsigned_items(self) -> list[Any]:
        return [self.TAG, *(getattr(self, name) for name in self.FIELDS)]

    def signing_bytes(self) -> bytes:
        return self.DOMAIN + pack(self.unsigned_items())

    def sign(self, keypair: Keypair) -> Any:
        """Sign with ``keypair``; the verifier rejects a record signed by any other key."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return self.SIGNED(**values, signature=keypair.sign(self.signing_bytes()))


class _SignedRecord(_UnsignedRecord):
    """Shared by the signed records: encoding, digest, signature check and decoding."""

    KIND: ClassVar[str]
    signature: bytes

    @property
    def signer(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return pack([*self.unsigned_items(), self.signature])

    @functools.cached_property
    def _digest(self) -> bytes:
        return sha256(self.encode())

    def digest(self) -> bytes:
        return self._digest

    def verify_signature(self) -> None:
        verify_signature(self.signer, self.signing_bytes(), self.signature)

    @classmethod
    def decode(cls, data: bytes) -> Any:
        items = unpack_array(data, CorruptCustodyRecord, max_bytes=MAX_RECORD_BYTES)
        return cls._from_items(items, data)

    @classmethod
    def _from_items(cls, items: list[Any], data: bytes) -> Any:
        r = FieldReader(items, CorruptCustodyRecord, ("tag", *cls.FIELDS, "signature"))
        if r.raw("tag") != cls.TAG:
            raise CorruptCustodyRecord(f"not a {cls.KIND} record (format tag)")
        rec = cls(**cls._read(r), signature=r.bytes("signature", 64))  # type: ignore[call-arg]
        check_canonical(data, rec.encode(), CorruptCustodyRecord)
        return rec

    @classmethod
    def _read(cls, r: FieldReader) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class TransferRecord(_SignedRecord):
    """Epoch ``from_epoch`` → ``to_epoch``: ``from_node`` hands the agent to ``to_node``."""

    TAG = TRANSFER_TAG
    DOMAIN = TRANSFER_DOMAIN
    FIELDS = _TRANSFER_UNSIGNED
    KIND = "transfer"

    agent: str
    from_epoch: int
    to_epoch: int
    from_node: bytes
    to_node: bytes
    prev: bytes
    migration_id: bytes
    wall_ns: int
    witnesses: tuple[bytes, ...]
    signature: bytes

    def __post_init__(self) -> None:
        _validate_transfer(self)
        _check_hash(self.signature, "signature", 64)

    @property
    def signer(self) -> bytes:
        return self.from_node

    @property
    def is_resume(self) -> bool:
        """A self-transfer: the owner of ``from_epoch`` claims ``to_epoch`` for itself."""
        return self.from_node == self.to_node

    @property
    def owner(self) -> bytes:
        """The node that owns ``to_epoch`` once this record is certified."""
        return self.to_node

    @classmethod
    def _read(cls, r: FieldReader) -> dict[str, Any]:
        return {
            "agent": r.str("agent", MAX_DID_CHARS),
            "from_epoch": r.int("from_epoch"),
            "to_epoch": r.int("to_epoch"),
            "from_node": r.bytes("from_node", 32),
            "to_node": r.bytes("to_node", 32),
            "prev": r.bytes("prev", 32),
            "migration_id": r.bytes("migration_id", MIGRATION_ID_BYTES),
            "wall_ns": r.int("wall_ns"),
            "witnesses": r.witnesses("witnesses"),
        }


@dataclass(frozen=True)
class UnsignedTransferRecord(_UnsignedRecord):
    TAG = TRANSFER_TAG
    DOMAIN = TRANSFER_DOMAIN
    FIELDS = _TRANSFER_UNSIGNED
    SIGNED = TransferRecord

    agent: str
    from_epoch: int
    to_epoch: int
    from_node: bytes
    to_node: bytes
    prev: bytes
    migration_id: bytes
    wall_ns: int
    witnesses: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _validate_transfer(self)

    def sign(self, keypair: Keypair) -> TransferRecord:
        """Sign as ``from_node``; the verifier rejects a record signed by any other key."""
        signed: TransferRecord = super().sign(keypair)
        return signed


# --- forced recovery ----------------------------------------------------------------------------

_FORCED_UNSIGNED = (
    "agent",
    "from_epoch",
    "to_epoch",
    "node",
    "prev",
    "forced_by",
    "reason",
    "wall_ns",
    "witnesses",
)


def _validate_forced(rec: Any) -> None:
    _check_agent(rec.agent)
    _check_epoch(rec.from_epoch, "from_epoch")
    _check_epoch(rec.to_epoch, "to_epoch")
    _check_hash(rec.node, "node")
    _check_hash(rec.prev, "prev")
    check_str(rec.forced_by, "forced_by", CorruptCustodyRecord, MAX_OPERATOR_BYTES)
    check_str(rec.reason, "reason", CorruptCustodyRecord, MAX_REASON_BYTES)
    check_int(rec.wall_ns, "wall_ns", CorruptCustodyRecord, INT64_MIN, INT64_MAX)
    check_witnesses(rec.witnesses, "witnesses", CorruptCustodyRecord)


@dataclass(frozen=True)
class ForcedRecovery(_SignedRecord):
    """``node`` forces itself owner at ``to_epoch`` from ``prev``, on an operator's word."""

    TAG = FORCED_TAG
    DOMAIN = FORCED_DOMAIN
    FIELDS = _FORCED_UNSIGNED
    KIND = "forced-recovery"

    agent: str
    from_epoch: int
    to_epoch: int
    node: bytes
    prev: bytes
    forced_by: str
    reason: str
    wall_ns: int
    witnesses: tuple[bytes, ...]
    signature: bytes

    def __post_init__(self) -> None:
        _validate_forced(self)
        _check_hash(self.signature, "signature", 64)

    @property
    def signer(self) -> bytes:
        return self.node

    @property
    def owner(self) -> bytes:
        """The node that owns ``to_epoch`` once this record is certified."""
        return self.node

    @classmethod
    def _read(cls, r: FieldReader) -> dict[str, Any]:
        return {
            "agent": r.str("agent", MAX_DID_CHARS),
            "from_epoch": r.int("from_epoch"),
            "to_epoch": r.int("to_epoch"),
            "node": r.bytes("node", 32),
            "prev": r.bytes("prev", 32),
            "forced_by": r.str("forced_by", MAX_OPERATOR_BYTES),
            "reason": r.str("reason", MAX_REASON_BYTES),
            "wall_ns": r.int("wall_ns"),
            "witnesses": r.witnesses("witnesses"),
        }


@dataclass(frozen=True)
class UnsignedForcedRecovery(_UnsignedRecord):
    TAG = FORCED_TAG
    DOMAIN = FORCED_DOMAIN
    FIELDS = _FORCED_UNSIGNED
    SIGNED = ForcedRecovery

    agent: str
    from_epoch: int
    to_epoch: int
    node: bytes
    prev: bytes
    forced_by: str
    reason: str
    wall_ns: int
    witnesses: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _validate_forced(self)

    def sign(self, keypair: Keypair) -> ForcedRecovery:
        """Sign as ``node``; the verifier rejects a record signed by any other key."""
        signed: ForcedRecovery = super().sign(keypair)
        return signed
