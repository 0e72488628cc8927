"""The scheduler's :class:`~igor_p2p.runtime.scheduler.TickSink` on the SQLite store: every
agent's ticks of one batch in one group-committed transaction, each fenced on its own. The same
owner fence takes the effect journal's records (:meth:`StoreTickSink.append_owned`)."""

from __future__ import annotations

from collections.abc import Sequence

from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.runtime.ledger import new_entry
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.ops import AppendTicks, NewEntry


class StoreTickSink:
    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    async def commit_ticks(
        self, commits: Sequence[tuple[str, int, Checkpoint, TickInputs | None]]
    ) -> list[BaseException | None]:
        groups = [
            [AppendTicks(agent, epoch, _rows(ck, inputs))] for agent, epoch, ck, inputs in commits
        ]
        return list(await self.committer.commit_groups(groups))

    async def append_owned(self, agent: str, epoch: int, entries: Sequence[LineageEntry]) -> None:
        """Append the owner's records of ``epoch`` (an effect's INTENT or OUTCOME) durably,
        fenced like a tick; raises the store's refusal."""
        rows = tuple(new_entry(e, 0) for e in entries)
        [error] = await self.committer.commit_groups([[AppendTicks(agent, epoch, rows)]])
        if error is not None:
            raise error


def _rows(ck: Checkpoint, inputs: TickInputs | None) -> tuple[NewEntry, ...]:
    row = NewEntry.of_checkpoint(ck)
    return (row,) if inputs is None else (new_entry(inputs, ck.tick), row)
