"""Simulation area (issue 8): how fast the deterministic simulation runs.

- ``schedules_per_s``: seeded random schedules (faults, rollbacks, liars: ``make_plan``) per
  second in one process, against the rate of one fault-free schedule (the same plan shape with
  no events, no drops and no duplicates) — the ratio says what the faults cost.
- ``sweep_schedules_per_s``: the same with the sweep's two worker processes, against the
  one-process rate — the ratio says how well the sweep uses the second core.
"""

from __future__ import annotations

import time
from dataclasses import replace

from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register
from igor_p2p.sim.plan import make_plan
from igor_p2p.sim.run import run_schedule
from igor_p2p.sim.sweep import sweep

AREA = "sim"


def _rate(seeds: range, *, fault_free: bool) -> float:
    started = time.perf_counter()
    for seed in seeds:
        plan = make_plan(seed)
        if fault_free:
            plan = replace(plan, events=(), drop=0.0, dup=0.0, notes={}, buggify=False)
        out = run_schedule(plan)
        if not out.ok:
            raise AssertionError(out.replay_hint())
    return len(seeds) / (time.perf_counter() - started)


def run(ctx: BenchContext) -> list[BenchRow]:
    count = 40 if ctx.quick else 400
    seeds = range(10_001, 10_001 + count)
    ctx.log(f"{count} fault-free schedules")
    clean = _rate(seeds, fault_free=True)
    ctx.log(f"{count} random schedules, one process")
    faulty = _rate(seeds, fault_free=False)
    ctx.log(f"{count} random schedules, two worker processes")
    report = sweep(seeds.start, count, procs=2)
    if report.failures:
        raise AssertionError(report.text())
    return [
        make_row(
            AREA,
            "schedules_per_s",
            faulty,
            "schedules/s",
            "fault-free schedules/s",
            clean,
            details={"schedules": count},
        ),
        make_row(
            AREA,
            "sweep_schedules_per_s",
            report.per_second,
            "schedules/s",
            "one process",
            faulty,
            target="≥ 1.5× on 2 cores",
            met=report.per_second >= 1.5 * faulty,
            details={"schedules": count, "procs": 2},
        ),
    ]


register(BenchArea(AREA, run, "deterministic simulation: schedules per second"))
