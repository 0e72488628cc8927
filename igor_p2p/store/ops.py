"""Write operations. A sequence of them is applied in ONE transaction by ``Store.apply``.

``Store.apply`` returns one result per op: the blobs an :class:`AppendEntries` actually appended,
the :class:`Compaction` of a :class:`CompactLineage`, None for every other op.

The only op that writes an authority state is :class:`PutRecord`, and its record is built by the
authority table; the store derives the queryable columns from it and maintains the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.lineage.envelope import Checkpoint


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A lineage entry to append; ``digest`` must be sha256(blob).

    ``kind`` is the entry's kind name (``TICK``, ``TRANSFER``, ``CERT`` …), ``epoch`` the
    checkpoint's epoch, the record's ``to_epoch`` or the certificate's slot. ``tick`` is the
    checkpoint's tick; for a custody record or certificate the store writes the tick of the row
    before it (whatever is given).
    """

    digest: bytes
    prev: bytes
    kind: str
    epoch: int
    tick: int
    blob: bytes

    @classmethod
    def of_checkpoint(cls, ck: Checkpoint) -> NewEntry:
        """The row of a checkpoint (no decoding: the fields are the checkpoint's)."""
        return cls(ck.digest(), ck.prev, ck.kind.name, ck.epoch, ck.tick, ck.encode())


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Insert or replace the agent's authority record (the durable truth of its state)."""

    agent: str
    record: AuthorityRecord


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Append lineage entries (encoded entries, or rows) to the agent's chain.

    An encoded entry is decoded by the store. With ``dedupe`` an entry already in the chain is
    skipped; without, it is refused (:class:`~igor_p2p.store.errors.ChainBreak`). An entry
    whose ``prev`` is not the digest of the row before it follows a compacted gap: allowed (the
    row is marked ``gap``) inside one epoch only, never around a custody record (else
    :class:`~igor_p2p.store.errors.StoreRefused`). The agent needs an authority record, stored
    or put in the same transaction.
    """

    agent: str
    entries: Sequence[bytes | NewEntry]
    dedupe: bool = True


@dataclass(frozen=True, slots=True)
class AppendTicks:
    """The runner's checkpoints of ``epoch``, refused with
    :class:`~igor_p2p.store.errors.StoreRefused` unless the durable record (as of this
    transaction) is ACTIVE_OWNER at exactly ``epoch``, every checkpoint is of ``epoch`` and the
    rows link to the head one after another (the sink fence)."""

    agent: str
    epoch: int
    entries: Sequence[NewEntry]

    @classmethod
    def of(cls, agent: str, epoch: int, checkpoints: Sequence[Checkpoint]) -> AppendTicks:
        return cls(agent, epoch, tuple(NewEntry.of_checkpoint(ck) for ck in checkpoints))


@dataclass(frozen=True, slots=True)
class DiscardCopy:
    """Drop the rows a HANDOFF_PENDING copy added (from where the copy started); a no-op when
    the agent has no pending copy. Must come before any append for the agent in one apply."""

    agent: str


@dataclass(frozen=True, slots=True)
class CompactLineage:
    """Drop up to ``limit`` old per-tick checkpoints of the agent (retention).

    Kept: every custody row (genesis, transfer and forced-recovery records, certificates), every
    checkpoint that is not a TICK, every TICK the next row of which is not a checkpoint of the
    same epoch (the last checkpoint of an epoch, the one a custody record names), and the last
    ``keep_last`` checkpoints. The row after a dropped run is marked ``gap``. Result: a
    :class:`Compaction`. Deferred (nothing dropped, ``more``) when the same transaction also
    appends entries to or discards a copy of the agent.
    """

    agent: str
    keep_last: int
    limit: int = 256


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one :class:`CompactLineage` did."""

    dropped: int
    more: bool
    """Whether another run may drop more (the limit was reached, or it was deferred)."""


@dataclass(frozen=True, slots=True)
class PutWitness:
    """Insert or replace the agent's witness record."""

    agent: str
    record: WitnessRecord


@dataclass(frozen=True, slots=True)
class PutWitnessChain:
    """Add custody links a witness learned; a link at or below the last stored epoch is
    skipped."""

    agent: str
    starts: Sequence[EpochStart]


@dataclass(frozen=True, slots=True)
class PutModule:
    """Store wasm bytes under sha256(wasm) (deduplicated)."""

    wasm: bytes


@dataclass(frozen=True, slots=True)
class PutManifest:
    """Store manifest bytes under sha256(data) (deduplicated)."""

    data: bytes


Op = (
    PutRecord
    | AppendEntries
    | AppendTicks
    | DiscardCopy
    | CompactLineage
    | PutWitness
    | PutWitnessChain
    | PutModule
    | PutManifest
)
