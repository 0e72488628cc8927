"""Subprocess for the kill -9 test: ticks agents through ``SqliteAuthorityStore`` forever while
compacting their lineages.

Usage: PYTHONPATH=<repository> python store_worker.py DB_PATH AGENTS. Prints "ack INDEX TICK"
after every ``append_ticks`` (or the launch commit, tick 0) returned, i.e. once the checkpoint is
durable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import GroupCommitter, Retention, SqliteAuthorityStore, Store
from tests.core.builders import NODE_A, AgentLife

RETENTION = Retention(keep_last=8)


async def agent_loop(store: SqliteAuthorityStore, index: int) -> None:
    life = AgentLife(f"kill-{index}")
    last = await store.last_checkpoint(life.agent)
    if last is None:
        life.genesis()
        record = AuthorityRecord(state=AuthorityState.ACTIVE_OWNER, epoch=1, version=1)
        await store.commit_authority(life.agent, record, life.blobs())
        print(f"ack {index} 0", flush=True)
    else:  # restarted: continue from the last durable checkpoint
        life.owner, life.tick, life.budget, life.entries = NODE_A, last.tick, last.budget, [last]
    while True:
        ck = life.tick_checkpoint()
        await store.append_ticks(life.agent, 1, [ck])
        print(f"ack {index} {ck.tick}", flush=True)


async def compacting(store: SqliteAuthorityStore, agents: int) -> None:
    while True:
        for index in range(agents):
            await store.compact(AgentLife(f"kill-{index}").agent, RETENTION, batch=16)
        await trio.sleep(0.01)


async def main(path: Path, agents: int) -> None:
    db = Store.open(path)
    committer = GroupCommitter(db)
    store = SqliteAuthorityStore(db, committer)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        for index in range(agents):
            nursery.start_soon(agent_loop, store, index)
        nursery.start_soon(compacting, store, agents)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
