"""Run the testnet checker over real node processes: their ``history.jsonl`` files and a
read-only snapshot of each store (lineage entries with budgets, the final authority row)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from igor_p2p.lineage.entries import decode_entry
from testnet.checker import AgentStore, CheckConfig, CheckResult, StoreEntry, StoreSnapshot, check
from testnet.history import Histories, merge, read_history


def store_snapshot(node: str, data: Path) -> StoreSnapshot:
    """What ``data``'s store holds per agent, read through a read-only SQLite connection."""
    db = data / "igor.db"
    if not db.exists():
        return StoreSnapshot(node, {})
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        lineage = conn.execute(
            "SELECT agent, digest, prev, kind, epoch, tick, blob FROM lineage ORDER BY agent, seq"
        ).fetchall()
        rows = {a: (s, r) for a, s, r in conn.execute("SELECT agent, state, reason FROM authority")}
    finally:
        conn.close()
    per_agent: dict[str, list[StoreEntry]] = {}
    for agent, digest, prev, kind, epoch, tick, blob in lineage:
        budget = getattr(decode_entry(bytes(blob)), "budget", 0)
        per_agent.setdefault(agent, []).append(
            StoreEntry(bytes(digest).hex(), bytes(prev).hex(), epoch, tick, kind, int(budget))
        )
    agents = {
        agent: AgentStore(
            tuple(per_agent.get(agent, ())),
            rows.get(agent, (None, None))[0],
            rows.get(agent, (None, None))[1],
        )
        for agent in set(per_agent) | set(rows)
    }
    return StoreSnapshot(node, agents)


def collect(nodes: Sequence[tuple[str, Path]]) -> tuple[Histories, dict[str, StoreSnapshot]]:
    """Merged histories and store snapshots of ``(name, data_dir)`` pairs."""
    histories = [
        read_history(data / "history.jsonl", node=name)
        for name, data in nodes
        if (data / "history.jsonl").exists()
    ]
    stores = {name: store_snapshot(name, data) for name, data in nodes}
    return merge(histories), stores


def check_nodes(nodes: Sequence[tuple[str, Path]], *, liveness: bool = False) -> CheckResult:
    """Every checker invariant over the nodes (liveness only when asked: scenarios that end
    in RECOVERY_REQUIRED or with a crashed node are judged by their own assertions)."""
    history, stores = collect(nodes)
    return check(history, stores=stores, config=CheckConfig(check_liveness=liveness))


def assert_checker_passes(nodes: Sequence[tuple[str, Path]], *, liveness: bool = False) -> None:
    result = check_nodes(nodes, liveness=liveness)
    assert result.ok, result.to_text()
