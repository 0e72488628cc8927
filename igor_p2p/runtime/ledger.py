"""The store's view of a lineage entry: its kind, epoch and tick columns."""

from __future__ import annotations

from igor_p2p.lineage.entries import (
    Checkpoint,
    EffectRecord,
    ExportRecord,
    ForcedRecovery,
    LineageEntry,
    TickInputs,
    TransferRecord,
    WitnessCert,
)
from igor_p2p.store.ops import NewEntry


def entry_kind(entry: LineageEntry) -> str:
    """The store's ``kind`` column (and the history's) for an entry."""
    if isinstance(entry, Checkpoint):
        return entry.kind.name
    if isinstance(entry, TransferRecord):
        return "TRANSFER"
    if isinstance(entry, ForcedRecovery):
        return "FORCED"
    if isinstance(entry, WitnessCert):
        return "CERT"
    if isinstance(entry, ExportRecord):
        return "EXPORT"
    if isinstance(entry, EffectRecord):
        return "EFFECT"
    if isinstance(entry, TickInputs):
        return "INPUTS"
    raise TypeError(f"not a lineage entry: {type(entry).__name__}")


def entry_epoch(entry: LineageEntry) -> int:
    if isinstance(entry, Checkpoint | ExportRecord | EffectRecord | TickInputs):
        return entry.epoch
    if isinstance(entry, WitnessCert):
        return entry.slot
    return entry.to_epoch


def entry_tick(entry: LineageEntry, previous_tick: int) -> int:
    return entry.tick if isinstance(entry, Checkpoint) else previous_tick


def new_entry(entry: LineageEntry, previous_tick: int) -> NewEntry:
    blob = entry.encode()
    return NewEntry(
        digest=entry.digest(),
        prev=entry.prev,
        kind=entry_kind(entry),
        epoch=entry_epoch(entry),
        tick=entry_tick(entry, previous_tick),
        blob=blob,
    )
