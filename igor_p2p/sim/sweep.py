"""Many schedules: parallel sweeps, shrinking a failure, replay from a seed or a plan file.

``python -m igor_p2p.sim sweep --first 1 --count 20000 --procs 2`` runs seeds in forked workers
(chunks of 50, small results only) and prints the failures, the schedules per second and the
coverage; ``run --seed N`` replays one seed with its whole verdict; ``shrink --seed N`` removes
events (delta debugging) while the same check still fails and writes the minimal plan to
``tests/sim/corpus/``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from igor_p2p.sim.plan import Plan, make_plan
from igor_p2p.sim.run import Outcome, run_schedule


@dataclass(frozen=True)
class SeedResult:
    seed: int
    ok: bool
    violation: str | None
    check: str | None
    digest: str
    coverage: dict[str, int]
    seconds: float
    checked: dict[str, int] = field(default_factory=dict)
    """Per check of the testnet checker: how many items it examined (0: skipped)."""


def _one(seed: int, restores: bool) -> SeedResult:
    started = time.perf_counter()
    try:
        out = run_schedule(make_plan(seed, restores=restores))
    except Exception as exc:  # a crash of the simulation itself is a failure of that seed
        return SeedResult(seed, False, f"simulation crashed: {exc!r}", "crash", "", {}, 0.0)
    first = out.result.violations[0] if out.result.violations else None
    return SeedResult(
        seed,
        out.ok,
        first.summary() if first else None,
        first.check if first else None,
        out.digest,
        dict(out.coverage),
        time.perf_counter() - started,
        {name: 0 if c.skipped else c.checked for name, c in out.result.counts.items()},
    )


def _worker(args: tuple[range, bool]) -> list[SeedResult]:
    logging.disable(logging.CRITICAL)
    seeds, restores = args
    return [_one(seed, restores) for seed in seeds]


@dataclass
class SweepReport:
    results: list[SeedResult]
    seconds: float

    @property
    def failures(self) -> list[SeedResult]:
        return [r for r in self.results if not r.ok]

    @property
    def per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds else math.inf

    def checked(self) -> Counter[str]:
        """Items each check examined over the whole sweep."""
        total: Counter[str] = Counter()
        for r in self.results:
            total.update(r.checked)
        return total

    def coverage(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.results:
            total.update(r.coverage)
        return total

    def text(self) -> str:
        lines = [
            f"{len(self.results)} schedules in {self.seconds:.1f} s "
            f"({self.per_second:.1f} schedules/s), {len(self.failures)} failed"
        ]
        for r in self.failures[:20]:
            lines.append(
                f"SIM FAIL seed={r.seed} check={r.check}: {r.violation}\n"
                f"  replay: python -m igor_p2p.sim run --seed {r.seed}"
            )
        return "\n".join(lines)


def sweep(
    first: int,
    count: int,
    *,
    procs: int = 2,
    restores: bool = True,
    chunk: int = 50,
    progress: Callable[[int], None] | None = None,
) -> SweepReport:
    started = time.perf_counter()
    chunks = [
        (range(i, min(i + chunk, first + count)), restores)
        for i in range(first, first + count, chunk)
    ]
    results: list[SeedResult] = []
    if procs <= 1:
        for c in chunks:
            results.extend(_worker(c))
            if progress:
                progress(len(results))
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            for part in pool.imap_unordered(_worker, chunks):
                results.extend(part)
                if progress:
                    progress(len(results))
    results.sort(key=lambda r: r.seed)
    return SweepReport(results, time.perf_counter() - started)


def ddmin(events: list[Any], fails: Callable[[list[Any]], bool]) -> list[Any]:
    """Zeller & Hildebrandt's delta debugging: a 1-minimal subset that still fails."""
    n = 2
    while len(events) >= 2:
        size = math.ceil(len(events) / n)
        parts = [events[i : i + size] for i in range(0, len(events), size)]
        for i, part in enumerate(parts):
            rest = [e for j, p in enumerate(parts) if j != i for e in p]
            if fails(part):
                events, n = part, 2
                break
            if fails(rest):
                events, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(events):
                break
            n = min(len(events), 2 * n)
    return events


def shrink(plan: Plan) -> tuple[Plan, Outcome]:
    """The smallest plan (by events, then scalars) that fails the same check."""
    first = run_schedule(plan)
    if first.ok:
        raise ValueError("the plan does not fail")
    check = first.result.violations[0].check

    def same(candidate: Plan) -> bool:
        out = run_schedule(candidate)
        return any(v.check == check for v in out.result.violations)

    events = ddmin(list(plan.events), lambda evs: same(plan.without(evs)))
    small = plan.without(events)
    for change in ({"drop": 0.0}, {"dup": 0.0}, {"buggify": False}, {"n_agents": 1}):
        candidate = replace(small, **change)
        if same(candidate):
            small = candidate
    return small, run_schedule(small)


def chunked(seq: range, size: int) -> Iterator[range]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
