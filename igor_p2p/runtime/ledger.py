"""Turning lineage entries and authority changes into store operations (one transaction)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage.entries import (
    Checkpoint,
    ExportRecord,
    ForcedRecovery,
    LineageEntry,
    TransferRecord,
    WitnessCert,
)
from igor_p2p.store.ops import AppendEntries, NewEntry, Op, PutAuthority, RaiseFence
from igor_p2p.store.records import AuthorityRecord


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
    raise TypeError(f"not a lineage entry: {type(entry).__name__}")


def entry_epoch(entry: LineageEntry) -> int:
    if isinstance(entry, Checkpoint | ExportRecord):
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


def append_ops(
    record: AuthorityRecord,
    entries: Sequence[LineageEntry],
    *,
    previous_tick: int,
    **changes: object,
) -> tuple[list[Op], AuthorityRecord]:
    """Ops that append ``entries`` and move the authority record's head onto the last one.

    ``changes`` are applied to the record too (state, epoch, reason, ...). The fence is raised to
    the record's epoch in the same transaction.
    """
    rows: list[NewEntry] = []
    tick = previous_tick
    for entry in entries:
        row = new_entry(entry, tick)
        tick = row.tick
        rows.append(row)
    head = rows[-1].digest if rows else record.head
    new_record = replace(
        record,
        head=head,
        head_seq=record.head_seq + len(rows),
        updated_ns=time.time_ns(),
        **changes,  # type: ignore[arg-type]
    )
    ops: list[Op] = []
    if rows:
        ops.append(AppendEntries(record.agent, rows))
    ops.append(RaiseFence(record.agent, new_record.epoch, "own authority record"))
    ops.append(PutAuthority(new_record))
    return ops, new_record


def state_ops(
    record: AuthorityRecord, state: AuthorityState, reason: str = ""
) -> tuple[list[Op], AuthorityRecord]:
    """Ops that change only the authority state (no new entries)."""
    return append_ops(record, (), previous_tick=0, state=state, reason=reason)
