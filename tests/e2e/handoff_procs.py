"""Node processes set up for handoff scenarios: fast timers, agents launched over admin, and
polling helpers for authority states and tick events (never fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from igor_p2p.agent.source import load_agent_manifest, load_agent_source

from .checking import assert_checker_passes
from .node_procs import (
    NodeProc,
    history,
    node_processes,
    start_cluster,
    wait_full_tables,
    wait_until,
)

FAST_ENV = {
    "IGOR_HANDOFF_TIMEOUT_S": "1.5",
    "IGOR_RECOVER_INTERVAL_S": "0.3",
    "IGOR_ANNOUNCE_INTERVAL_S": "0.3",
    "IGOR_PEER_DOWN_AFTER_S": "3.0",
    "IGOR_LOCATION_REFRESH_S": "2.0",
}
FAST_ARGS = ("--tick-interval", "0.05")
MIGRATE_TIMEOUT_S = 60.0
SETTLE_S = 20.0
BUDGET_MICRO = 10**9


@contextmanager
def handoff_cluster(
    root: Path, names: Sequence[str], *, extra_args: Sequence[str] = (), **env: str
) -> Iterator[list[NodeProc]]:
    """Started nodes with the fast settings, full peer tables; all killed on exit."""
    with node_processes(root, names, (*FAST_ARGS, *extra_args), **{**FAST_ENV, **env}) as nodes:
        start_cluster(nodes)
        wait_full_tables(nodes, 20)
        yield nodes


def named(nodes: Sequence[NodeProc]) -> list[tuple[str, Path]]:
    return [(n.name, n.data) for n in nodes]


def checker_passes(nodes: Sequence[NodeProc], *, liveness: bool = False) -> None:
    assert_checker_passes(named(nodes), liveness=liveness)


def launch(node: NodeProc, example: str = "counter", budget: int = BUDGET_MICRO) -> str:
    result = node.admin(
        "launch",
        wasm=load_agent_source(example).hex(),
        manifest=load_agent_manifest(example).canonical_bytes.hex(),
        budget=budget,
    )
    return str(result["agent"])


def row(node: NodeProc, did: str) -> dict[str, Any] | None:
    """The node's own record of ``did`` (admin ``agents``), None when it has none."""
    for entry in node.admin("agents"):
        if entry["agent"] == did:
            return entry
    return None


def state(node: NodeProc, did: str) -> str | None:
    r = row(node, did)
    return None if r is None else str(r["state"])


def wait_state(node: NodeProc, did: str, wanted: str, deadline_s: float = SETTLE_S) -> dict:
    return wait_until(
        lambda: (r := row(node, did)) is not None and r["state"] == wanted and r,
        deadline_s,
        f"{did[-6:]} {wanted} on {node.name}",
        lambda: f"(now {row(node, did)}){node.log_tail(15)}",
    )


def ticks(node: NodeProc, did: str, since_ns: int = 0) -> list[dict[str, Any]]:
    """Tick events of ``did`` in the node's history that started at or after ``since_ns``."""
    return [
        e
        for e in history(node.data)
        if e["type"] == "tick" and e["agent"] == did and e["start_ns"] >= since_ns
    ]


def wait_ticks(node: NodeProc, did: str, count: int, since_ns: int, deadline_s: float = SETTLE_S):
    return wait_until(
        lambda: len(ticks(node, did, since_ns)) >= count,
        deadline_s,
        f"{count} ticks of {did[-6:]} on {node.name}",
        lambda: f"(row {row(node, did)}){node.log_tail(15)}",
    )


def migrate(node: NodeProc, did: str, to: str) -> str:
    result = node.admin("migrate", timeout_s=MIGRATE_TIMEOUT_S, agent=did, to=to)
    print(f"migrate {did[-8:]} from {node.name} to {to[-8:]}: {result}")  # shown on a failure
    return str(result["outcome"])


def handoff_steps(node: NodeProc, did: str) -> list[dict[str, Any]]:
    return [e for e in history(node.data) if e["type"] == "handoff" and e["agent"] == did]


def now_ns() -> int:
    return time.monotonic_ns()
