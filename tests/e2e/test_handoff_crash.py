"""Crash injection at every durable step and every send of a migration (IGOR_CRASH_AT).

For each point the armed process dies by SIGKILL, is restarted without the variable, and the
witnesses must settle the agent: exactly one node ticks it afterwards, on the side the failure
matrix of protocols/igor-p2p-migrate-2.0.0.md names (before the decision the source keeps
authority, FS-1; after it the target owns the next epoch), and the checker finds no overlap
and one chain. The scenarios run concurrently (a few at a time) in a module fixture; each
point is reported by its own parametrized test.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from igor_p2p.errors import IgorError

from .handoff_procs import (
    FAST_ARGS,
    FAST_ENV,
    checker_passes,
    launch,
    migrate,
    row,
    ticks,
    wait_ticks,
)
from .node_procs import NodeProc, scratch_dir, store_rows, wait_full_tables, wait_until

SOURCE, TARGET = "source", "target"
WORKERS = 4
SETTLE_S = 30.0

# point → the node that must own the agent once everything is settled. Racy points (the
# process dies right after a send: the peer may or may not have read the frame) allow both.
POINTS: dict[str, frozenset[str]] = {
    "source:before_persist:HANDOFF_INITIATED": frozenset({SOURCE}),
    "source:after_persist:HANDOFF_INITIATED": frozenset({SOURCE}),
    "source:before_send:OFFER": frozenset({SOURCE}),
    "source:after_send:OFFER": frozenset({SOURCE}),
    "target:before_persist:HANDOFF_PENDING": frozenset({SOURCE}),
    "target:after_persist:HANDOFF_PENDING": frozenset({SOURCE}),
    "target:before_send:ACK": frozenset({SOURCE}),
    "target:after_send:ACK": frozenset({SOURCE, TARGET}),
    "source:before_persist:RETIRED": frozenset({SOURCE}),
    "source:after_persist:RETIRED": frozenset({TARGET}),
    "source:before_send:COMMIT": frozenset({TARGET}),
    "source:after_send:COMMIT": frozenset({TARGET}),
    "target:before_persist:ACTIVE_OWNER": frozenset({TARGET}),
    "target:after_persist:ACTIVE_OWNER": frozenset({TARGET}),
    "target:before_send:CONFIRM": frozenset({TARGET}),
    "target:after_send:CONFIRM": frozenset({TARGET}),
    "source:before_persist:RETIRED@2": frozenset({TARGET}),
    "source:after_persist:RETIRED@2": frozenset({TARGET}),
}


@dataclass
class Scenario:
    point: str
    error: BaseException | None = None
    owner: str | None = None
    notes: list[str] = field(default_factory=list)


def _pair(root: Path, env: dict[str, str] | None = None, armed: str = "") -> list[NodeProc]:
    source = NodeProc("src", root / "src", extra_args=FAST_ARGS, env=dict(FAST_ENV))
    target = NodeProc("tgt", root / "tgt", extra_args=FAST_ARGS, env=dict(FAST_ENV))
    for node in (source, target):
        node.env.update(env or {})
    if armed:
        side = source if armed.startswith("source:") else target
        side.env["IGOR_CRASH_AT"] = armed
    return [source, target]


def _start(pair: list[NodeProc]) -> None:
    source, target = pair
    source.start()
    source.wait_ready()
    target.start(bootstrap=[source.addr])
    target.wait_ready()
    wait_full_tables(pair, 20)


def _kill_all(pair: list[NodeProc]) -> None:
    for node in pair:
        node.kill()


def _confirmed(node: NodeProc, did: str) -> bool:
    rows = store_rows(node.data, "SELECT state, confirmed FROM authority WHERE agent = ?", did)
    return bool(rows) and rows[0][0] == "RETIRED" and bool(rows[0][1])


def _run_point(point: str) -> Scenario:
    scenario = Scenario(point)
    with scratch_dir("igor-crash-") as root:
        pair = _pair(root, armed=point)
        source, target = pair
        armed = source if point.startswith("source:") else target
        other = target if armed is source else source
        try:
            _start(pair)
            did = launch(source)
            wait_ticks(source, did, 2, 0)
            mover = threading.Thread(target=_migrate_quietly, args=(source, did, target, scenario))
            mover.start()
            code = armed.wait_exit(20)
            assert code == -signal.SIGKILL, f"{armed.name} exited {code}, not by SIGKILL"
            armed.env.pop("IGOR_CRASH_AT")
            if armed is target:
                # Before the decision the source aborts (and retries once) while the target is
                # down; restarting it only then keeps the expected owner deterministic.
                mover.join(15)
            armed.start(bootstrap=[other.addr])
            armed.wait_ready()
            mover.join(SETTLE_S + 10)
            assert not mover.is_alive(), "migrate admin call never returned"

            def settled() -> str | None:
                s, t = row(source, did), row(target, did)
                ss = s and s["state"]
                ts = t and t["state"]
                if ss == "ACTIVE_OWNER" and s["epoch"] == 1 and ts in (None, "RETIRED"):
                    return SOURCE
                if (
                    ts == "ACTIVE_OWNER"
                    and t["epoch"] == 2
                    and ss == "RETIRED"
                    and _confirmed(source, did)
                ):
                    return TARGET
                return None

            owner = wait_until(
                settled,
                SETTLE_S,
                f"{point} settled",
                lambda: (
                    f"src={row(source, did)} tgt={row(target, did)}"
                    + source.log_tail(12)
                    + target.log_tail(12)
                ),
            )
            scenario.owner = owner
            ticker, idle = (source, target) if owner == SOURCE else (target, source)
            since = time.monotonic_ns()
            wait_ticks(ticker, did, 3, since)
            assert not ticks(idle, did, since), f"{idle.name} ticks after settling"
            for node in pair:
                node.admin("stop")
                node.wait_exit()
            assert not [t for t in ticks(idle, did) if t["start_ns"] >= since]
            checker_passes(pair)
        except BaseException as exc:  # reported by the point's own test
            scenario.error = exc
        finally:
            _kill_all(pair)
    return scenario


def _migrate_quietly(source: NodeProc, did: str, target: NodeProc, scenario: Scenario) -> None:
    try:
        scenario.notes.append(f"migrate: {migrate(source, did, target.peer_id)}")
    except IgorError as exc:  # the source may die mid-call
        scenario.notes.append(f"migrate: {type(exc).__name__}")


@pytest.fixture(scope="module")
def crash_results() -> Iterator[dict[str, Scenario]]:
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = {s.point: s for s in pool.map(_run_point, POINTS)}
    print(f"\n{len(POINTS)} crash scenarios in {time.monotonic() - started:.1f} s")
    yield results


def test_every_crash_point_of_a_normal_migration_is_covered() -> None:
    """Run one migration with IGOR_CRASH_TRACE and compare the points it passes with POINTS."""
    with scratch_dir("igor-trace-") as root:
        traces = {name: root / f"{name}.trace" for name in ("src", "tgt")}
        pair = _pair(root)
        for node in pair:
            node.env["IGOR_CRASH_TRACE"] = str(traces[node.name])
        try:
            _start(pair)
            source, target = pair
            did = launch(source)
            wait_ticks(source, did, 2, 0)
            assert migrate(source, did, target.peer_id) == "TRANSFERRED"
        finally:
            _kill_all(pair)
        reached: list[str] = []
        for path in traces.values():
            seen: dict[str, int] = {}
            for name in path.read_text().split():
                seen[name] = seen.get(name, 0) + 1
                reached.append(name if seen[name] == 1 else f"{name}@{seen[name]}")
    assert sorted(reached) == sorted(POINTS), reached


@pytest.mark.parametrize("point", list(POINTS))
def test_crash_at_point_settles_to_one_ticking_owner(
    point: str, crash_results: dict[str, Scenario]
) -> None:
    scenario = crash_results[point]
    if scenario.error is not None:
        raise AssertionError(f"{point}: {scenario.notes}") from scenario.error
    assert scenario.owner in POINTS[point], (point, scenario.owner, scenario.notes)
