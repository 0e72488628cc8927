"""The scheduler's :class:`~igor_p2p.runtime.scheduler.TickSink` on the SQLite store: every
agent's ticks of one batch in one group-committed transaction, each fenced on its own. The same
owner fence takes the effect journal's records (:meth:`StoreTickSink.append_owned`).

Retention runs here, in the same transactions: once an agent has committed
:data:`COMPACT_EVERY` checkpoints since its last compaction, a
:class:`~igor_p2p.store.ops.CompactLineage` group (at most
:data:`~igor_p2p.store.retention.COMPACTION_BATCH` rows) rides along with the batch's ticks.
It is a group of its own, so a failing compaction never refuses a tick, and it costs no fsync
of its own: ticking never pauses for it. An agent's stored lineage therefore stays near the
policy's keep-set (its last ``keep_last`` checkpoints plus custody) whatever its age.
"""

from __future__ import annotations

from collections.abc import Sequence

from igor_p2p.bounded import BoundedLRU
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.logs import get_logger
from igor_p2p.runtime.ledger import new_entry
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.ops import AppendTicks, Compaction, CompactLineage, NewEntry, Op
from igor_p2p.store.retention import COMPACTION_BATCH, Retention

log = get_logger(__name__)

COMPACT_EVERY = 64
"""Checkpoints an agent commits between two compactions (so each drops about this many rows,
well under one :data:`COMPACTION_BATCH`)."""
TRACKED_AGENTS = 65_536
"""Agents whose commits since their last compaction are counted (least recently ticked
beyond this are forgotten; they are compacted again after ``COMPACT_EVERY`` more)."""


class StoreTickSink:
    def __init__(
        self,
        committer: GroupCommitter,
        retention: Retention | None = None,
        *,
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        self.committer = committer
        self.retention = retention if retention is not None else Retention()
        self.compact_every = max(1, compact_every)
        self._since: BoundedLRU[str, int] = BoundedLRU(TRACKED_AGENTS)
        self._compacted: set[str] = set()
        self.rows_dropped = 0
        """Lineage rows compaction dropped so far (for tests and the bench)."""

    async def commit_ticks(
        self, commits: Sequence[tuple[str, int, Checkpoint, TickInputs | None]]
    ) -> list[BaseException | None]:
        groups: list[list[Op]] = [
            [AppendTicks(agent, epoch, _rows(ck, inputs))] for agent, epoch, ck, inputs in commits
        ]
        due = self._due([agent for agent, _epoch, _ck, _inputs in commits])
        groups += [
            [CompactLineage(agent, self.retention.keep_last, COMPACTION_BATCH)] for agent in due
        ]
        results = await self.committer.commit_each(groups)
        ticks, compactions = results[: len(commits)], results[len(commits) :]
        for agent, result in zip(due, compactions, strict=True):
            self._compacted_one(agent, result)
        return [r if isinstance(r, BaseException) else None for r in ticks]

    async def append_owned(self, agent: str, epoch: int, entries: Sequence[LineageEntry]) -> None:
        """Append the owner's records of ``epoch`` (an effect's INTENT or OUTCOME) durably,
        fenced like a tick; raises the store's refusal."""
        rows = tuple(new_entry(e, 0) for e in entries)
        [error] = await self.committer.commit_groups([[AppendTicks(agent, epoch, rows)]])
        if error is not None:
            raise error

    def take_compacted(self) -> list[str]:
        """Agents whose stored lineage shrank since the last call (their size is re-measured)."""
        out = sorted(self._compacted)
        self._compacted.clear()
        return out

    def _due(self, agents: Sequence[str]) -> list[str]:
        if self.retention.retain_all:
            return []
        counts: dict[str, int] = {}
        for agent in agents:
            counts[agent] = counts.get(agent, 0) + 1
        due = []
        for agent, added in counts.items():
            count = self._since.get(agent, 0) + added
            self._since[agent] = count
            if count >= self.compact_every:
                due.append(agent)
        return due

    def _compacted_one(self, agent: str, result: list[object] | BaseException) -> None:
        if isinstance(result, BaseException):
            log.warning("compaction failed", agent=agent, step=str(result))
            self._since[agent] = 0
            return
        (compaction,) = result
        assert isinstance(compaction, Compaction)
        if compaction.dropped:
            self.rows_dropped += compaction.dropped
            self._compacted.add(agent)
        # More to drop (an agent's first compaction, or one that had fallen behind): again
        # with the next batch; otherwise after another COMPACT_EVERY commits.
        self._since[agent] = self.compact_every - 1 if compaction.more else 0


def _rows(ck: Checkpoint, inputs: TickInputs | None) -> tuple[NewEntry, ...]:
    row = NewEntry.of_checkpoint(ck)
    return (row,) if inputs is None else (new_entry(inputs, ck.tick), row)
