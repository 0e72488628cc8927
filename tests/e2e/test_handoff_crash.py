"""Crash injection at every durable step and every message of a migration (IGOR_CRASH_AT).

For each point the armed process dies by SIGKILL, is restarted without the variable, and the
node cores settle the agent through its witnesses: exactly one node ticks it afterwards, on the
side the protocol names (protocols/igor-p2p-migrate-2.0.0.md: before a witness accepted the
transfer the source keeps authority, FS-1; once one did, the transfer is the only value a later
claim can choose and the target owns the next epoch), and the checker finds no overlap and one
chain. The scenarios run concurrently (a few at a time) in a module fixture; each point is
reported by its own parametrized test.

The points are those of the handoff protocol on each side (every persist of the source and the
target, every OFFER, ACK, COMMIT, CONFIRM and the module fetch) and the Paxos steps that decide
it (the first PREPARE and ACCEPT the source sends, the target's acceptance as a witness). The
other witness and claim steps race between the two witnesses; the simulation (tests/sim)
covers them.
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
from .node_procs import NodeProc, scratch_dir, wait_full_tables, wait_until

SOURCE, TARGET = "source", "target"
WORKERS = 4
SETTLE_S = 30.0

# (armed side, point) → the node that must own the agent once everything is settled.
POINTS: dict[tuple[str, str], frozenset[str]] = {
    (SOURCE, "source:before_send:OFFER"): frozenset({SOURCE}),
    (SOURCE, "claimant:before_send:PREPARE"): frozenset({SOURCE}),
    (SOURCE, "source:before_send:MODULE"): frozenset({SOURCE}),
    (SOURCE, "source:after_send:OFFER"): frozenset({SOURCE}),
    (SOURCE, "claimant:before_send:ACCEPT"): frozenset({SOURCE}),
    # One witness accepted the transfer: any later claim must propose it again.
    (SOURCE, "claimant:after_send:ACCEPT"): frozenset({TARGET}),
    (SOURCE, "source:before_persist:RETIRED"): frozenset({TARGET}),
    (SOURCE, "source:after_persist:RETIRED"): frozenset({TARGET}),
    (SOURCE, "source:before_send:COMMIT"): frozenset({TARGET}),
    (SOURCE, "source:after_send:COMMIT"): frozenset({TARGET}),
    (TARGET, "target:before_send:GET_MODULE"): frozenset({SOURCE}),
    (TARGET, "target:after_send:GET_MODULE"): frozenset({SOURCE}),
    (TARGET, "target:before_persist:HANDOFF_PENDING"): frozenset({SOURCE}),
    (TARGET, "target:after_persist:HANDOFF_PENDING"): frozenset({SOURCE}),
    (TARGET, "target:before_send:ACK"): frozenset({SOURCE}),
    # The target accepted the transfer as a witness and died before answering.
    (TARGET, "witness:before_send:ACCEPTED"): frozenset({TARGET}),
    (TARGET, "target:before_persist:ACTIVE_OWNER"): frozenset({TARGET}),
    (TARGET, "target:after_persist:ACTIVE_OWNER"): frozenset({TARGET}),
    (TARGET, "target:before_send:CONFIRM"): frozenset({TARGET}),
}
HANDOFF_ROLES = (SOURCE, TARGET)
"""Points of these roles are the handoff protocol's own: a normal migration passes each once."""


def _id(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class Scenario:
    point: tuple[str, str]
    error: BaseException | None = None
    owner: str | None = None
    notes: list[str] = field(default_factory=list)


def _pair(root: Path, env: dict[str, str] | None = None, armed: tuple[str, str] | None = None):  # type: ignore[no-untyped-def]
    source = NodeProc("src", root / "src", extra_args=FAST_ARGS, env=dict(FAST_ENV))
    target = NodeProc("tgt", root / "tgt", extra_args=FAST_ARGS, env=dict(FAST_ENV))
    for node in (source, target):
        node.env.update(env or {})
    if armed is not None:
        side = source if armed[0] == SOURCE else target
        side.env["IGOR_CRASH_AT"] = armed[1]
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


def _ticking_owner(node: NodeProc, did: str) -> dict | None:
    """The node's record when it owns the agent and ticks it (its certificate is in hand)."""
    r = row(node, did)
    return r if r is not None and r["state"] == "ACTIVE_OWNER" and r.get("ticking") else None


def _run_point(point: tuple[str, str]) -> Scenario:
    scenario = Scenario(point)
    with scratch_dir("igor-crash-") as root:
        pair = _pair(root, armed=point)
        source, target = pair
        armed = source if point[0] == SOURCE else target
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
                # Before the decision the source aborts while the target is down; restarting it
                # only then keeps the expected owner deterministic.
                mover.join(15)
            armed.start(bootstrap=[other.addr])
            armed.wait_ready()
            mover.join(SETTLE_S + 10)
            assert not mover.is_alive(), "migrate admin call never returned"

            def settled() -> str | None:
                s, t = row(source, did), row(target, did)
                ss = s and s["state"]
                ts = t and t["state"]
                if _ticking_owner(source, did) and ts in (None, "RETIRED"):
                    return SOURCE
                if _ticking_owner(target, did) and ss == "RETIRED" and t["epoch"] >= 2:
                    return TARGET
                return None

            owner = wait_until(
                settled,
                SETTLE_S,
                f"{_id(point)} settled",
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
def crash_results() -> Iterator[dict[tuple[str, str], Scenario]]:
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = {s.point: s for s in pool.map(_run_point, POINTS)}
    print(f"\n{len(POINTS)} crash scenarios in {time.monotonic() - started:.1f} s")
    yield results


def test_every_crash_point_of_a_normal_migration_is_covered() -> None:
    """Run one migration with IGOR_CRASH_TRACE: every handoff point it passes (each persist and
    each OFFER, ACK, COMMIT, CONFIRM, GET_MODULE of either side, once) is in POINTS, and every
    point in POINTS is passed on its side."""
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
            wait_until(lambda: _ticking_owner(target, did), SETTLE_S, "target ticks")
        finally:
            _kill_all(pair)
        reached: dict[str, list[str]] = {}
        for side, path in zip((SOURCE, TARGET), traces.values(), strict=True):
            reached[side] = path.read_text().split()
    for side, point in POINTS:
        assert point in reached[side], (side, point, reached[side])
    handoff = sorted(
        (side, p) for side, names in reached.items() for p in names if p.startswith(HANDOFF_ROLES)
    )
    assert handoff == sorted(k for k in POINTS if k[1].startswith(HANDOFF_ROLES)), handoff


@pytest.mark.parametrize("point", list(POINTS), ids=_id)
def test_crash_at_point_settles_to_one_ticking_owner(
    point: tuple[str, str], crash_results: dict[tuple[str, str], Scenario]
) -> None:
    scenario = crash_results[point]
    if scenario.error is not None:
        raise AssertionError(f"{_id(point)}: {scenario.notes}") from scenario.error
    assert scenario.owner in POINTS[point], (point, scenario.owner, scenario.notes)


@pytest.mark.parametrize(
    "point",
    [
        # a witness accepted the transfer: the restart's claim can only complete it
        "claimant:after_send:ACCEPT",
        # retired durably, the COMMIT never left: the restart sends it again
        "source:after_persist:RETIRED",
    ],
)
def test_a_source_restarted_after_its_transfer_was_decided_commits_to_the_target(
    point: str,
) -> None:
    """CI, random testnet schedule 8: the source dies once its transfer is (or may be) decided;
    back up, it must send the COMMIT the target waits for. The target here would settle by
    itself only after 15 minutes, so it ticks within the test's bound only if the restarted
    source tells it."""
    with scratch_dir("igor-late-commit-") as root:
        pair = _pair(root, armed=(SOURCE, point))
        source, target = pair
        target.env["IGOR_HANDOFF_TIMEOUT_S"] = "300"  # settlement after 900 s
        try:
            _start(pair)
            did = launch(source)
            wait_ticks(source, did, 2, 0)
            scenario = Scenario((SOURCE, point))
            mover = threading.Thread(target=_migrate_quietly, args=(source, did, target, scenario))
            mover.start()
            assert source.wait_exit(20) == -signal.SIGKILL
            mover.join(15)
            source.env.pop("IGOR_CRASH_AT")
            source.start(bootstrap=[target.addr])
            source.wait_ready()
            wait_until(
                lambda: _ticking_owner(target, did) and row(source, did)["state"] == "RETIRED",
                SETTLE_S,
                "the target ticks",
                lambda: f"src={row(source, did)} tgt={row(target, did)}" + target.log_tail(12),
            )
            for node in pair:
                node.admin("stop")
                node.wait_exit()
            checker_passes(pair)
        finally:
            _kill_all(pair)


def test_a_source_whose_handoff_fails_after_an_accept_left_never_ticks_on() -> None:
    """Not a crash: the handoff code itself fails (an error no port promises) right after a
    witness accepted the transfer. That witness may hand the transfer to any later claim, so a
    source that aborted and ticked on would be a second owner. It stays stopped, the node keeps
    running, and the witnesses settle the agent on the target (MC-8)."""
    with scratch_dir("igor-fail-") as root:
        pair = _pair(root)
        source, target = pair
        source.env["IGOR_FAIL_AT"] = "claimant:after_send:ACCEPT"
        try:
            _start(pair)
            did = launch(source)
            wait_ticks(source, did, 2, 0)
            with pytest.raises(IgorError):
                migrate(source, did, target.peer_id)
            failed_ns = time.monotonic_ns()
            owner = wait_until(
                lambda: _ticking_owner(target, did), SETTLE_S, "the target owns it", target.log_tail
            )
            assert owner["epoch"] == 2
            assert source.alive() and source.status()
            assert not ticks(source, did, failed_ns), "the source ticked after its handoff failed"
            wait_until(
                lambda: (r := row(source, did)) is not None and r["state"] == "RETIRED",
                SETTLE_S,
                "the source retired",
                source.log_tail,
            )
            for node in pair:
                node.admin("stop")
                node.wait_exit()
            assert not ticks(source, did, failed_ns), "the source ticked after its handoff failed"
            checker_passes(pair)
        finally:
            _kill_all(pair)
