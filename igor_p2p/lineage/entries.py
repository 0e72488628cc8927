"""Tagged lineage entries: one linear hash chain over checkpoints and custody records.

Every entry's ``prev`` is the digest of the entry before it. A GENESIS checkpoint's ``prev`` is
32 zero bytes; an IMPORT genesis's ``prev`` is SHA-256 of the imported Go Igor blob.
"""

from __future__ import annotations

from igor_p2p.lineage._codec import ZERO_HASH, CorruptEntry, unpack_array
from igor_p2p.lineage.cert import CERT_TAG, CorruptCert, WitnessCert
from igor_p2p.lineage.custody import (
    FORCED_TAG,
    MAX_RECORD_BYTES,
    TRANSFER_TAG,
    CorruptCustodyRecord,
    ForcedRecovery,
    TransferRecord,
)
from igor_p2p.lineage.effect import EFFECT_TAG, EffectRecord
from igor_p2p.lineage.envelope import FORMAT_TAG, Checkpoint, CorruptCheckpoint
from igor_p2p.lineage.export import EXPORT_TAG, ExportRecord
from igor_p2p.lineage.inputs import INPUTS_TAG, TickInputs

__all__ = [
    "ZERO_HASH",
    "Checkpoint",
    "CorruptCert",
    "CorruptCheckpoint",
    "CorruptCustodyRecord",
    "CorruptEntry",
    "EffectRecord",
    "EpochRecord",
    "ExportRecord",
    "ForcedRecovery",
    "LineageEntry",
    "TickInputs",
    "TransferRecord",
    "WitnessCert",
    "decode_entry",
    "entry_signer",
]

LineageEntry = (
    Checkpoint
    | TransferRecord
    | ForcedRecovery
    | WitnessCert
    | ExportRecord
    | EffectRecord
    | TickInputs
)
EpochRecord = TransferRecord | ForcedRecovery
"""A custody record that starts an epoch once a :class:`WitnessCert` follows it."""


def decode_entry(data: bytes) -> LineageEntry:
    """Decode any lineage entry by its format tag; every defect raises :class:`CorruptEntry`."""
    items = unpack_array(data, CorruptEntry)
    tag = items[0] if items else None
    if tag == FORMAT_TAG:
        return Checkpoint._from_items(items, data)
    if tag in (TRANSFER_TAG, FORCED_TAG, EXPORT_TAG):
        if len(data) > MAX_RECORD_BYTES:
            raise CorruptCustodyRecord(f"custody record larger than {MAX_RECORD_BYTES} bytes")
        if tag == TRANSFER_TAG:
            return TransferRecord._from_items(items, data)
        if tag == EXPORT_TAG:
            return ExportRecord._from_items(items, data)
        return ForcedRecovery._from_items(items, data)
    if tag == CERT_TAG:
        return WitnessCert._from_items(items, data)
    if tag == EFFECT_TAG:
        return EffectRecord._from_items(items, data)
    if tag == INPUTS_TAG:
        return TickInputs._from_items(items, data)
    raise CorruptEntry("unknown lineage entry format tag")


def entry_signer(entry: LineageEntry) -> bytes:
    """The public key whose signature the entry carries (empty for a certificate, which carries
    its witnesses' signatures)."""
    return entry.signer
