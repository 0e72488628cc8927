"""Every shipped scenario, and seeded random schedules, against real node processes.

A scenario runs in a fresh 5-node testnet; the random schedules share one running testnet
(each phase ends with a full heal, and each check covers the whole history so far).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from harness_helpers import evidence, running_testnet, scratch

from testnet.checker import CheckConfig
from testnet.harness import Testnet
from testnet.run import launch_workload, node_args_for, random_schedule, run_phase, run_scenario
from testnet.scenario import list_scenarios, load_scenario

pytestmark = pytest.mark.e2e

RANDOM_SEEDS = range(1, 11)
RANDOM_DURATION_S = 4.0
RANDOM_HEAL_WAIT_S = 8.0
RANDOM_LIVENESS_S = 5.0
"""Above the node's handoff_timeout_s (5 s): a handoff caught by the final heal may need it."""
SOAK_SCHEDULES = 200


@pytest.mark.parametrize("name", list_scenarios())
def test_named_scenario_passes_the_checker(name: str) -> None:
    scenario = load_scenario(name)
    with scratch() as root:
        outcome = run_scenario(scenario, root)
        assert outcome.result.ok, f"{name}: {evidence(outcome.result)}"
        assert not outcome.unmet, f"{name}: {outcome.unmet}"
        assert sum(outcome.faults.values()) >= len(outcome.schedule)
        assert outcome.report.read_text().count('id="verdict"') == 1


@pytest.fixture(scope="module")
def wandering_testnet() -> Iterator[Testnet]:
    with scratch() as root, running_testnet(root) as tn:
        tn.up(5, node_args_for(1.0))
        # Enough budget for the soak's 200 schedules (about 60 ticks each, 431 µ a tick): an
        # agent that spends its budget ends, and the schedules after it test nothing.
        launch_workload(tn, {"a1": "n1", "a2": "n3", "a3": "n5"}, budget=50_000_000)
        yield tn


def _phase(tn: Testnet, seed: int):  # type: ignore[no-untyped-def]
    steps = random_schedule(seed, tn.names, RANDOM_DURATION_S, sorted(tn.state.agents))
    checked, runner = run_phase(
        tn,
        steps,
        duration_s=RANDOM_DURATION_S,
        heal_wait_s=RANDOM_HEAL_WAIT_S,
        config=CheckConfig(liveness_bound_s=RANDOM_LIVENESS_S),
        seed=seed,
        title=f"random seed {seed}",
    )
    return steps, checked, runner


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_schedule_passes_the_checker(wandering_testnet: Testnet, seed: int) -> None:
    steps, checked, runner = _phase(wandering_testnet, seed)
    assert steps == random_schedule(
        seed, wandering_testnet.names, RANDOM_DURATION_S, sorted(wandering_testnet.state.agents)
    )
    assert sum(runner.counts.values()) >= len(steps)
    assert checked.result.ok, f"seed {seed}: {evidence(checked.result, checked.history)}"


@pytest.mark.soak
@pytest.mark.timeout(3 * 3600)  # its own limit: 200 schedules of ~15 s on one testnet
def test_soak_random_schedules(wandering_testnet: Testnet) -> None:
    """Each phase's check covers the whole history so far, so a violation found once is found
    again by every later check: only violations not seen before count against a seed, and
    each is printed at once with its check, evidence and seed."""
    faults: Counter[str] = Counter()
    seen: set[str] = set()
    failed: dict[int, list[str]] = {}
    for seed in range(1000, 1000 + SOAK_SCHEDULES):
        _steps, checked, runner = _phase(wandering_testnet, seed)
        faults.update(runner.counts)
        new = [v for v in checked.result.violations if v.summary() not in seen]
        for v in new:
            seen.add(v.summary())
            line = f"seed {seed} [{v.check}] {v.summary()}"
            failed.setdefault(seed, []).append(line)
            print(line, flush=True)
        if new:
            only = {v.summary() for v in new}
            print(evidence(checked.result, checked.history, only=only), flush=True)
    print(
        f"\nsoak: {SOAK_SCHEDULES} schedules, faults injected {dict(faults)}, "
        f"{sum(len(v) for v in failed.values())} violations in {len(failed)} schedules"
    )
    assert not failed, "\n".join(line for lines in failed.values() for line in lines)
