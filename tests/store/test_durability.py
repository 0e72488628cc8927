"""Every acknowledged commit survives a real kill -9 of the committing process."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from igor_p2p.store import Store

WORKER = Path(__file__).with_name("append_worker.py")
AGENTS = 8


def _run_and_kill(db: Path, rng: random.Random) -> dict[str, int]:
    """Start the worker, SIGKILL it after a random number of acks; return the acked max seqs."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(AGENTS)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    kill_after = rng.randint(5, 400)
    seen = 0
    try:
        for raw in proc.stdout:
            parts = raw.decode().split()
            if len(parts) == 3 and parts[0] == "ack":
                acked[parts[1]] = max(acked.get(parts[1], -1), int(parts[2]))
                seen += 1
                if seen >= kill_after:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        tail = proc.stdout.read()  # acks printed before the kill landed also count
        proc.wait()
    for raw in tail.decode().splitlines():
        parts = raw.split()
        if len(parts) == 3 and parts[0] == "ack":
            acked[parts[1]] = max(acked.get(parts[1], -1), int(parts[2]))
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "igor.db"
    rng = random.Random(0xC0FFEE)
    all_acked: dict[str, int] = {}
    for _ in range(4):
        acked = _run_and_kill(db, rng)
        assert acked, "the worker acknowledged nothing before the kill"
        for agent, seq in acked.items():
            all_acked[agent] = max(all_acked.get(agent, -1), seq)
        store = Store.open(db)
        try:
            assert store.problems_at_open == []
            assert store.check_integrity() == []
            for agent, seq in all_acked.items():
                rows = store.lineage_rows(agent)
                assert len(rows) >= seq + 1, f"{agent}: acked seq {seq} lost"
                assert [r.seq for r in rows] == list(range(len(rows)))
                for before, after in itertools.pairwise(rows):
                    assert after.prev == before.digest
                rec = store.authority(agent)
                assert rec is not None and rec.head_seq == len(rows) - 1
        finally:
            store.close()
