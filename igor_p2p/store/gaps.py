"""Where a lineage may be compacted (pure; the store's write check and integrity check).

The rule of ``verify_lineage(..., ordered=True)`` in terms of the store's columns: an entry whose
``prev`` was compacted away is allowed only inside one epoch, after the epoch's start — never
right after a custody record still waiting for its certificate, never before a certificate,
a forced-recovery record or a genesis, and the entry after the gap must be of the epoch the row
before it is in (a transfer record: the epoch it ends).
"""

from __future__ import annotations

from igor_p2p.store.schema import CERT_KIND, CHECKPOINT_KINDS, GENESIS_KINDS, RECORD_KINDS


def gap_problem(before_kind: str, before_epoch: int, kind: str, epoch: int) -> str | None:
    """Why a row of (``kind``, ``epoch``) may not follow a gap after a row of (``before_kind``,
    ``before_epoch``); None when it may. Epochs are the store's ``epoch`` column (a record's
    ``to_epoch``, a certificate's slot)."""
    if before_kind in RECORD_KINDS:
        return "entries missing after a custody record, before its certificate"
    if kind == CERT_KIND or kind == "FORCED" or kind in GENESIS_KINDS:
        return f"entries missing before a {kind.lower()} row"
    ends = epoch - 1 if kind == "TRANSFER" else epoch
    if kind not in CHECKPOINT_KINDS and kind != "TRANSFER":
        return f"unknown row kind {kind!r}"
    if ends != before_epoch:
        return f"entries missing across epochs {before_epoch} and {ends}"
    return None
