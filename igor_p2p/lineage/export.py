"""The export record: the terminal lineage entry written when an agent leaves Igor-P2P for Go
Igor (``igor checkpoint export --go DIR``).

:class:`ExportRecord` is signed by the node that holds custody of the agent (``owner``) at its
current ``epoch``; its ``prev`` is the digest of the lineage head, ``tick`` the tick of the last
checkpoint, and ``go_checkpoint`` the SHA-256 of the exact v0x04 blob written for Go Igor (the
blob Go's next checkpoint names in its prevHash). Nothing may follow it in a lineage: after it
the agent lives in Go Igor, and the exporting node records it as EXPORTED ("exported to Go
Igor"), so it cannot run in both systems.

Same encoding, digest and hostile-input rules as the custody records (``custody.py``): a
canonical msgpack array starting with the format tag, signed over its own domain tag followed
by the array without its signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from igor_p2p.lineage._codec import INT64_MAX, INT64_MIN, FieldReader, check_bytes, check_int
from igor_p2p.lineage.custody import (
    CorruptCustodyRecord,
    _check_agent,
    _check_epoch,
    _check_hash,
    _SignedRecord,
    _UnsignedRecord,
)
from igor_p2p.lineage.identity import MAX_DID_CHARS, Keypair

EXPORT_TAG = "igor/export-go/1"
EXPORT_DOMAIN = b"igor-p2p/export-to-go/v1\x00"
EXPORT_REASON = "exported to Go Igor"
"""The reason recorded with the EXPORTED authority state after an export."""

_EXPORT_UNSIGNED = ("agent", "epoch", "owner", "prev", "tick", "go_checkpoint", "wall_ns")


def _validate_export(rec: Any) -> None:
    _check_agent(rec.agent)
    _check_epoch(rec.epoch, "epoch")
    _check_hash(rec.owner, "owner")
    _check_hash(rec.prev, "prev")
    check_int(rec.tick, "tick", CorruptCustodyRecord, 0, INT64_MAX)
    check_bytes(rec.go_checkpoint, "go_checkpoint", CorruptCustodyRecord, 32)
    check_int(rec.wall_ns, "wall_ns", CorruptCustodyRecord, INT64_MIN, INT64_MAX)


@dataclass(frozen=True)
class ExportRecord(_SignedRecord):
    """``owner`` ends the agent's life in Igor-P2P at ``epoch``: it continues in Go Igor from
    the v0x04 checkpoint whose SHA-256 is ``go_checkpoint``."""

    TAG = EXPORT_TAG
    DOMAIN = EXPORT_DOMAIN
    FIELDS = _EXPORT_UNSIGNED
    KIND = "export"

    agent: str
    epoch: int
    owner: bytes
    prev: bytes
    tick: int
    go_checkpoint: bytes
    wall_ns: int
    signature: bytes

    def __post_init__(self) -> None:
        _validate_export(self)
        _check_hash(self.signature, "signature", 64)

    @property
    def signer(self) -> bytes:
        return self.owner

    @classmethod
    def _read(cls, r: FieldReader) -> dict[str, Any]:
        return {
            "agent": r.str("agent", MAX_DID_CHARS),
            "epoch": r.int("epoch"),
            "owner": r.bytes("owner", 32),
            "prev": r.bytes("prev", 32),
            "tick": r.int("tick"),
            "go_checkpoint": r.bytes("go_checkpoint", 32),
            "wall_ns": r.int("wall_ns"),
        }


@dataclass(frozen=True)
class UnsignedExportRecord(_UnsignedRecord):
    TAG = EXPORT_TAG
    DOMAIN = EXPORT_DOMAIN
    FIELDS = _EXPORT_UNSIGNED
    SIGNED = ExportRecord

    agent: str
    epoch: int
    owner: bytes
    prev: bytes
    tick: int
    go_checkpoint: bytes
    wall_ns: int

    def __post_init__(self) -> None:
        _validate_export(self)

    def sign(self, keypair: Keypair) -> ExportRecord:
        """Sign as ``owner``; the verifier rejects a record signed by any other key."""
        signed: ExportRecord = super().sign(keypair)
        return signed
