"""``make demo``: five real nodes, three wandering agents, a network split in the middle of
migrations, a heal, and the checker's verdict.

Runs the ``partition-during-migration`` scenario (testnet/scenarios) in a fresh directory under
/tmp, prints what the nemesis does, the verdict and the report's path, and takes the testnet
down. Exit status 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import sys
import tempfile

from rich.console import Console

SCENARIO = "partition-during-migration"


def main() -> int:
    from testnet.run import run_scenario, summary_lines
    from testnet.scenario import load_scenario

    console = Console(highlight=False, emoji=False, soft_wrap=True)
    scenario = load_scenario(SCENARIO)
    root = tempfile.mkdtemp(prefix="igor-demo-", dir="/tmp")
    console.print(
        f"[bold]Igor-P2P demo[/bold]: {scenario.nodes} nodes, {scenario.agents} wandering agents, "
        f"halves partitions during migrations (scenario {scenario.name}, seed {scenario.seed})"
    )
    outcome = run_scenario(scenario, root, log=lambda m: console.print(f"  {m}", markup=False))
    console.print()
    for line in summary_lines(outcome):
        console.print(line, markup=False)
    style = "green" if outcome.ok else "red"
    console.print(
        f"[bold {style}]{outcome.result.verdict}[/bold {style}]  report: {outcome.report}"
    )
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
