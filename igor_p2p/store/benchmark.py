"""Micro-benchmarks of the store, called from ``make bench``.

``bench_checkpoint_commits`` measures durable tick commits/s through the GroupCommitter;
``bench_raw_sqlite_batch_insert`` is the baseline: one executemany of the same-sized rows into a
plain table with the same PRAGMAs, committed once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import tempfile
import time
from pathlib import Path

import trio

from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.store import schema
from igor_p2p.store.committer import CommitterConfig, GroupCommitter
from igor_p2p.store.ops import AppendEntries, AppendTicks, NewEntry, PutRecord
from igor_p2p.store.sqlite import Store


def _entry(prev: bytes, seq: int, state: bytes) -> NewEntry:
    """A tick row (an opaque blob of the right size: tick commits do not decode entries)."""
    blob = struct.pack(">Q", seq) + state
    return NewEntry(hashlib.sha256(blob).digest(), prev, "TICK", 1, seq, blob)


def _genesis(index: int, node: bytes) -> bytes:
    agent_key = Keypair.from_seed(hashlib.sha256(b"bench-agent-%d" % index).digest())
    unsigned = UnsignedCheckpoint(
        agent=agent_key.did, epoch=1, tick=0, prev=ZERO_HASH, kind=CheckpointKind.GENESIS,
        wasm_hash=bytes(32), manifest_hash=bytes(32), budget=10**15, price=1, wall_ns=0,
        state=b"", owner=node,
    )  # fmt: skip
    return unsigned.sign(agent_key).encode()


def bench_checkpoint_commits(
    tmpdir: Path, agents: int = 100, state_size: int = 4096, seconds: float = 2.0
) -> dict[str, float]:
    """Durable commits/s: ``agents`` tasks each commit one tick checkpoint (AppendTicks, the
    fenced append the runner uses) at a time and wait for it, concurrently."""
    path = Path(tmpdir) / "bench-commits" / "igor.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(path)
    node = bytes(range(32))
    geneses = [_genesis(i, node) for i in range(agents)]
    names = [f"bench-agent-{i:05d}" for i in range(agents)]
    states = [os.urandom(state_size - 8) for _ in names]
    heads: dict[str, bytes] = {}
    setup: list = []
    record = AuthorityRecord(state=AuthorityState.ACTIVE_OWNER, epoch=1)
    for name, genesis in zip(names, geneses, strict=True):
        heads[name] = hashlib.sha256(genesis).digest()
        setup += [PutRecord(name, record), AppendEntries(name, [genesis])]
    store.apply(setup)
    committer = GroupCommitter(store, CommitterConfig())
    done = {"commits": 0}

    async def agent_loop(name: str, state: bytes, deadline: float) -> None:
        seq = 1
        while trio.current_time() < deadline:
            entry = _entry(heads[name], seq, state)
            await committer.commit([AppendTicks(name, 1, [entry])])
            heads[name] = entry.digest
            seq += 1
            done["commits"] += 1

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            await nursery.start(committer.run)
            start = time.perf_counter()
            deadline = trio.current_time() + seconds
            async with trio.open_nursery() as agents_nursery:
                for name, state in zip(names, states, strict=True):
                    agents_nursery.start_soon(agent_loop, name, state, deadline)
            elapsed = time.perf_counter() - start
            await committer.aclose()
        return elapsed

    tx_before = store.transactions_committed
    try:
        elapsed = trio.run(main)
        problems = store.check_integrity()
    finally:
        store.close()
    transactions = store.transactions_committed - tx_before
    return {
        "agents": agents,
        "state_size": state_size,
        "seconds": elapsed,
        "commits": done["commits"],
        "commits_per_s": done["commits"] / elapsed,
        "transactions": transactions,
        "commits_per_transaction": done["commits"] / max(1, transactions),
        "integrity_problems": len(problems),
    }


def bench_raw_sqlite_batch_insert(
    tmpdir: Path, rows: int, state_size: int = 4096
) -> dict[str, float]:
    """Baseline: one executemany of ``rows`` rows into a plain table, committed once."""
    path = Path(tmpdir) / "bench-raw" / "raw.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        schema.configure(conn)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS t (agent TEXT, seq INTEGER, digest BLOB, blob BLOB)"
        )
        state = os.urandom(state_size)
        data = [
            (f"did:key:z6MkBench{i % 100:05d}", i, hashlib.sha256(b"%d" % i).digest(), state)
            for i in range(rows)
        ]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", data)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return {
        "rows": rows,
        "state_size": state_size,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        commits = bench_checkpoint_commits(Path(tmp))
        raw = bench_raw_sqlite_batch_insert(Path(tmp), rows=max(1000, int(commits["commits"])))
    ratio = commits["commits_per_s"] / raw["rows_per_s"]
    print(f"checkpoint commits: {commits}")
    print(f"raw batch insert:   {raw}")
    print(f"committer / raw = {ratio:.0%}")


if __name__ == "__main__":
    main()
