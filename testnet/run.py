"""Jepsen-style runs: up, workload, nemesis schedule, final heal, wait, check, report, down."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igor_p2p.cli.common import humanize
from testnet.checker import CheckConfig, CheckResult
from testnet.collect import check_dir
from testnet.harness import Testnet, TestnetError, wait_until
from testnet.nemesis import NemesisStep, RandomMix, generate_schedule
from testnet.nemesis_runner import NemesisRunner
from testnet.scenario import Scenario, unmet_expectations

WANDERER_TICKS_PER_REQUEST = 5
"""The ``wanderer`` example calls ``migrate_request`` every 5 ticks."""
DEFAULT_TICK_INTERVAL_S = 0.1
AGENT = "wanderer"
RUN_FILE = "run.json"
"""``DIR/run.json``: the fault phase's start (``t0_mono_ns``, the report's time zero) and its
schedule, written when the phase starts."""


def node_args_for(wander_interval_s: float | None) -> list[str]:
    """``igor node run`` arguments for a workload: JSON logs, a fast tick, and ``--wander
    random`` with a tick interval that makes the wanderer hop every ``wander_interval_s``."""
    if wander_interval_s is None:
        return ["--log-format", "json", "--tick-interval", str(DEFAULT_TICK_INTERVAL_S)]
    tick = wander_interval_s / WANDERER_TICKS_PER_REQUEST
    return ["--log-format", "json", "--tick-interval", f"{tick:g}", "--wander", "random"]


@dataclass
class RunOutcome:
    """One run's verdict and what led to it."""

    name: str
    seed: int
    result: CheckResult
    report: Path
    schedule: list[NemesisStep]
    unmet: list[str] = field(default_factory=list)
    """Expectations of the scenario the run did not show (``[expect]``)."""
    faults: Counter[str] = field(default_factory=Counter)
    """Steps applied, by action."""
    migrations: list[dict[str, Any]] = field(default_factory=list)
    up_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.unmet

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "verdict": self.result.verdict,
            "ok": self.ok,
            "unmet": self.unmet,
            "report": str(self.report),
            "faults": dict(self.faults),
            "migrations": self.migrations,
            "schedule": [s.to_toml_table() for s in self.schedule],
            "up_s": round(self.up_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "result": self.result.to_dict(),
        }


Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def launch_workload(
    tn: Testnet, starts: dict[str, str], *, deadline_s: float = 30.0, budget: int = 1_000_000
) -> None:
    """Launch one wanderer per label on its start node and wait until each has ticked."""
    for label, node in starts.items():
        tn.launch_labelled(label, node, AGENT, budget=budget)

    def ticking() -> bool:
        active = {a for row in tn.status() for a in row["agents"]}
        return set(starts) <= active

    wait_until(ticking, deadline_s, "every agent ticking")


def run_phase(
    tn: Testnet,
    steps: Sequence[NemesisStep],
    *,
    duration_s: float,
    heal_wait_s: float,
    config: CheckConfig,
    seed: int,
    title: str,
    log: Log = _quiet,
) -> tuple[Any, NemesisRunner]:
    """Apply ``steps`` on a running testnet, heal everything at ``duration_s``, wait
    ``heal_wait_s`` and check the whole directory (every earlier phase included)."""
    runner = NemesisRunner(tn, seed=seed)
    t0 = time.monotonic()
    write_run_info(tn.dir, t0_mono_ns=int(t0 * 1e9), steps=steps, title=title, seed=seed)
    for step in sorted(steps, key=lambda s: s.at_s):
        delay = t0 + step.at_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        applied = runner.apply(step)
        args = " ".join(f"{k}={v}" for k, v in step.args.items())
        skipped = ", ".join(f"{n}: {humanize(why)}" for n, why in applied.skipped.items())
        log(
            f"{step.at_s:6.2f}s  {step.action} {args}".rstrip()
            + f" → {', '.join(applied.nodes) or '-'}"
            + (f" (not told: {skipped})" if skipped else "")
        )
    rest = t0 + duration_s - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    runner.final_heal()
    for name in tn.names:
        tn.wait_ready(name)
    log(f"healed; waiting {heal_wait_s:g} s")
    time.sleep(heal_wait_s)
    checked = check_dir(tn.dir, config=config, title=title, freeze=tn.frozen)
    return checked, runner


def write_run_info(
    dir: Path, *, t0_mono_ns: int, steps: Sequence[NemesisStep], title: str, seed: int
) -> None:
    """Record the fault phase's time zero and schedule for the report (``DIR/run.json``)."""
    info = {
        "title": title,
        "seed": seed,
        "t0_mono_ns": t0_mono_ns,
        "schedule": [s.to_toml_table() for s in sorted(steps, key=lambda s: s.at_s)],
    }
    tmp = Path(dir) / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    tmp.replace(Path(dir) / RUN_FILE)


def summary_lines(outcome: RunOutcome) -> list[str]:
    """A readable account of a run: verdict, checks, faults, migrations, where the report is."""
    r = outcome.result
    lines = [
        f"{outcome.name} (seed {outcome.seed}): {'PASS' if outcome.ok else 'FAIL'}"
        f" in {outcome.elapsed_s:.1f} s (testnet up in {outcome.up_s:.1f} s)",
        "",
        "checks:",
    ]
    for name, c in r.counts.items():
        status = "skipped" if c.skipped else ("ok" if c.violations == 0 else "VIOLATED")
        note = f"  ({c.note})" if c.note else ""
        lines.append(f"  {name:<12} {status:<8} {c.checked:>6} checked{note}")
    for v in r.violations[:20]:
        lines.append(f"  ✕ [{v.check}] {v.summary()}")
    if len(r.violations) > 20:
        lines.append(f"  … and {len(r.violations) - 20} more (see the report)")
    faults = ", ".join(f"{n} {action}" for action, n in sorted(outcome.faults.items()))
    lines += ["", f"faults applied: {faults or 'none'}"]
    if outcome.migrations:
        lines.append("migrations asked for:")
        for m in outcome.migrations:
            lines.append(f"  {m['agent']}: {m['from'] or '?'} → {m['to']}: {m['outcome']}")
    for problem in outcome.unmet:
        lines.append(f"unmet expectation: {problem}")
    lines.append(f"report: {outcome.report}")
    return lines


def run_scenario(
    scenario: Scenario,
    dir: str | Path,
    *,
    keep_up: bool = False,
    log: Log = _quiet,
) -> RunOutcome:
    """The whole run of one scenario in a fresh testnet under ``dir``."""
    started = time.monotonic()
    tn = Testnet(dir)
    if tn.state.nodes and tn.running():
        raise TestnetError(f"a testnet is already up in {tn.dir}")
    schedule = scenario.schedule()
    up_s = tn.up(scenario.nodes, node_args_for(scenario.wander_interval_s))
    log(f"{scenario.nodes} nodes connected in {up_s:.1f} s")
    try:
        launch_workload(tn, scenario.agent_start_nodes())
        for label, did in tn.state.agents.items():
            log(f"agent {label}: {did}")
        checked, runner = run_phase(
            tn,
            schedule,
            duration_s=scenario.duration_s,
            heal_wait_s=scenario.heal_wait_s,
            config=scenario.check_config(),
            seed=scenario.seed,
            title=f"{scenario.name} (seed {scenario.seed})",
            log=log,
        )
    finally:
        if not keep_up:
            tn.down()
    return RunOutcome(
        name=scenario.name,
        seed=scenario.seed,
        result=checked.result,
        report=checked.report,
        schedule=schedule,
        unmet=unmet_expectations(scenario, checked.history, checked.result),
        faults=runner.counts,
        migrations=runner.migration_results,
        up_s=up_s,
        elapsed_s=time.monotonic() - started,
    )


def with_overrides(
    scenario: Scenario, *, seed: int | None = None, duration_s: float | None = None
) -> Scenario:
    """The scenario with another seed and/or fault-phase length (steps after the new end are
    dropped; a ``[random]`` schedule is regenerated for the new values)."""
    changes: dict[str, Any] = {}
    if seed is not None:
        changes["seed"] = seed
    if duration_s is not None:
        changes["duration_s"] = duration_s
        if scenario.steps is not None:
            changes["steps"] = [s for s in scenario.steps if s.at_s <= duration_s]
    return dataclasses.replace(scenario, **changes)


def random_schedule(
    seed: int, nodes: Sequence[str], duration_s: float, agents: Sequence[str]
) -> list[NemesisStep]:
    """The seeded random schedule the harness uses for ``run random`` and the soak."""
    mix = RandomMix(
        kinds=("partition", "kill", "pause", "faults", "skew", "migrate"),
        interval_s=1.5,
        fault_s=1.5,
        agents=tuple(agents),
    )
    return generate_schedule(seed, nodes, duration_s, mix)


__all__ = [
    "RunOutcome",
    "launch_workload",
    "node_args_for",
    "random_schedule",
    "run_phase",
    "run_scenario",
    "summary_lines",
    "with_overrides",
    "write_run_info",
]
