"""Every checkpoint the SQLite adapter acknowledged survives a real kill -9 of the process, while
compaction runs beside the ticks, and the lineage left behind verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.store import Store

from .builders import AgentLife

pytestmark = pytest.mark.e2e

WORKER = Path(__file__).with_name("store_worker.py")
AGENTS = 6


def _record(acked: dict[int, int], line: bytes) -> None:
    parts = line.decode().split()
    if len(parts) == 3 and parts[0] == "ack":
        index, tick = int(parts[1]), int(parts[2])
        acked[index] = max(acked.get(index, -1), tick)


def _run_and_kill(db: Path, rng: random.Random) -> dict[int, int]:
    """Start the worker, SIGKILL it after a random number of acks; return the acked ticks."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(AGENTS)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    acked: dict[int, int] = {}
    kill_after = rng.randint(50, 600)
    seen = 0
    try:
        for line in proc.stdout:
            _record(acked, line)
            seen += 1
            if seen >= kill_after:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        tail = proc.stdout.read()  # acks printed before the kill landed also count
        proc.wait(timeout=60)
    for line in tail.splitlines():
        _record(acked, line)
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_checkpoints_survive_kill_9_during_compaction(tmp_path: Path) -> None:
    db = tmp_path / "igor.db"
    rng = random.Random(0xC0FFEE)
    all_acked: dict[int, int] = {}
    for _ in range(3):
        acked = _run_and_kill(db, rng)
        assert acked, "the worker acknowledged nothing before the kill"
        for index, tick in acked.items():
            all_acked[index] = max(all_acked.get(index, -1), tick)
        store = Store.open(db)
        try:
            assert store.problems_at_open == []
            for index, tick in all_acked.items():
                agent = AgentLife(f"kill-{index}").agent
                last = store.last_checkpoint(agent)
                assert last is not None and last.tick >= tick, f"agent {index}: acked {tick} lost"
                lineage = store.lineage(agent)
                report = verify_lineage(lineage, expected_agent=agent, ordered=True)
                assert report.valid, report.problems
                assert report.head == store.head(agent) == last.digest()
                assert [s.epoch for s in store.custody(agent)] == [1]
        finally:
            store.close()
    # Compaction ran: no agent keeps every checkpoint it committed.
    store = Store.open(db)
    try:
        longest = max(all_acked, key=lambda i: all_acked[i])
        kept = len(store.lineage(AgentLife(f"kill-{longest}").agent))
        assert kept < all_acked[longest] + 1
    finally:
        store.close()
