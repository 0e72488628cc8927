"""The scheduler's :class:`~igor_p2p.runtime.scheduler.TickSink` on the SQLite store: every
agent's ticks of one batch in one group-committed transaction, each fenced on its own."""

from __future__ import annotations

from collections.abc import Sequence

from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.ops import AppendTicks


class StoreTickSink:
    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    async def commit_ticks(
        self, commits: Sequence[tuple[str, int, Checkpoint]]
    ) -> list[BaseException | None]:
        groups = [[AppendTicks.of(agent, epoch, [ck])] for agent, epoch, ck in commits]
        return list(await self.committer.commit_groups(groups))
