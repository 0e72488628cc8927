"""Subprocess for the kill -9 test: appends through the GroupCommitter forever.

Usage: python append_worker.py DB_PATH AGENTS. Prints "ack AGENT SEQ" after every commit()
returned (i.e. after the entry is durable), flushing each line.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import trio

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import (
    AppendEntries,
    AuthorityRecord,
    GroupCommitter,
    NewEntry,
    PutAuthority,
    Store,
)


def _entry(prev: bytes, agent: str, seq: int) -> NewEntry:
    blob = f"{agent}:{seq}:".encode() + os.urandom(2048)
    return NewEntry(hashlib.sha256(blob).digest(), prev, "CHECKPOINT", 1, seq, blob)


async def agent_loop(committer: GroupCommitter, store: Store, agent: str) -> None:
    record = await committer.read(lambda s: s.authority(agent))
    if record is None:
        genesis = _entry(bytes(32), agent, 0)
        record = AuthorityRecord(
            agent, AuthorityState.ACTIVE_OWNER, 1, b"node", genesis.digest, 0, b"w", b"m", "",
            None, None, False, 0,
        )  # fmt: skip
        await committer.commit([AppendEntries(agent, [genesis]), PutAuthority(record)])
        print(f"ack {agent} 0", flush=True)
    assert record.head is not None
    prev, seq = record.head, record.head_seq + 1
    while True:
        e = _entry(prev, agent, seq)
        await committer.commit([AppendEntries(agent, [e])])
        print(f"ack {agent} {seq}", flush=True)
        prev, seq = e.digest, seq + 1


async def main(path: Path, agents: int) -> None:
    store = Store.open(path)
    committer = GroupCommitter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        for i in range(agents):
            nursery.start_soon(agent_loop, committer, store, f"did:key:z6MkKill{i}")


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
