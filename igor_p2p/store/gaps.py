"""Where a lineage may be compacted (pure; the store's write check and integrity check).

The rule of ``verify_lineage(..., ordered=True)`` in terms of the store's columns: an entry whose
``prev`` was compacted away is allowed only inside one epoch, after the epoch's start — never
right after a custody record still waiting for its certificate, never before a certificate,
a forced-recovery record or a genesis, and the entry after the gap must be of the epoch the row
before it is in (a transfer record: the epoch it ends).
"""

from __future__ import annotations

from igor_p2p.store.schema import (
    CERT_KIND,
    CHECKPOINT_KINDS,
    GENESIS_KINDS,
    OWNER_KINDS,
    RECORD_KINDS,
)


def gap_problem(before: tuple[str, int, int], row: tuple[str, int, int]) -> str | None:
    """Why a row may not follow a gap after the row ``before``; None when it may. Each is
    (kind, epoch, tick) as in the store's columns (a record's epoch is its ``to_epoch``, a
    certificate's its slot; a custody row's tick is the one of the row before it).

    A checkpoint after a gap must also be later than the row before the gap (a lower or, for a
    TICK, equal tick): an entry compacted away and offered again is not "new" either."""
    before_kind, before_epoch, before_tick = before
    kind, epoch, tick = row
    if before_kind in RECORD_KINDS:
        return "entries missing after a custody record, before its certificate"
    if kind == CERT_KIND or kind == "FORCED" or kind in GENESIS_KINDS:
        return f"entries missing before a {kind.lower()} row"
    if kind not in CHECKPOINT_KINDS and kind not in OWNER_KINDS and kind != "TRANSFER":
        return f"unknown row kind {kind!r}"
    ends = epoch - 1 if kind == "TRANSFER" else epoch
    if ends != before_epoch:
        return f"entries missing across epochs {before_epoch} and {ends}"
    if kind in CHECKPOINT_KINDS and (
        tick < before_tick or (kind == "TICK" and tick == before_tick)
    ):
        return f"tick {tick} after a gap does not follow tick {before_tick}"
    return None
