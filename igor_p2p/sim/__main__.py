"""``python -m igor_p2p.sim``: run, sweep, shrink and replay simulated schedules."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from igor_p2p.sim.plan import SIM_VERSION, Plan, make_plan
from igor_p2p.sim.run import run_schedule
from igor_p2p.sim.sweep import shrink, sweep

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "sim" / "corpus"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m igor_p2p.sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one schedule and print its verdict")
    run.add_argument("--seed", type=int)
    run.add_argument("--plan", type=Path, help="a plan JSON file (a shrunk corpus entry)")
    run.add_argument("--events", action="store_true", help="print the recorded history")
    sw = sub.add_parser("sweep", help="run many seeds in parallel")
    sw.add_argument("--first", type=int, default=1)
    sw.add_argument("--count", type=int, default=1000)
    sw.add_argument("--procs", type=int, default=2)
    sw.add_argument("--no-restores", action="store_true", help="leave out rollbacks")
    sh = sub.add_parser("shrink", help="shrink a failing seed to a minimal plan in the corpus")
    sh.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)

    if args.command == "run":
        if args.plan is not None:
            plan = Plan.from_json(args.plan.read_text())
        elif args.seed is not None:
            plan = make_plan(args.seed)
        else:
            parser.error("run needs --seed or --plan")
        out = run_schedule(plan, keep_world=args.events)
        print(f"seed {plan.seed} sim_version {SIM_VERSION} commit {_commit()} digest {out.digest}")
        print(out.result.to_text())
        if args.events and out.world is not None:
            for event in out.world.events:
                print(event)
        return 0 if out.ok else 1
    if args.command == "sweep":
        report = sweep(args.first, args.count, procs=args.procs, restores=not args.no_restores)
        print(report.text())
        print(f"sim_version {SIM_VERSION} commit {_commit()}")
        return 0 if not report.failures else 1
    plan, out = shrink(make_plan(args.seed))
    CORPUS.mkdir(parents=True, exist_ok=True)
    path = CORPUS / f"{plan.seed}-{out.result.violations[0].check}.json"
    path.write_text(plan.to_json() + "\n")
    print(f"shrunk to {len(plan.events)} events: {path}")
    print(out.result.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
