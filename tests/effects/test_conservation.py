"""Budget conservation with effects: what an agent spent is its ticks' costs plus what its
http requests and payments cost, and the testnet checker proves it from a node's history and
store — also after a crash between a payment's INTENT and its OUTCOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from igor_p2p.runtime.datadir import DataDir
from testnet.checker import build_lineages, check_budget, check_lineage
from testnet.collect import snapshot_store
from testnet.history import merge, read_history

from .agents import manifest, payer, run_agent
from .server import FeedServer, http_server

X402 = {"allowed_recipients": ["shop"]}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


def checked(data: Path) -> tuple[int, int, list[str]]:
    history = merge([read_history(DataDir(data).history, node="n1")])
    snapshot = snapshot_store("n1", data)
    assert snapshot is not None
    lineages = build_lineages(history, {"n1": snapshot})
    budget = check_budget(history, lineages)
    chain = check_lineage(lineages)
    problems = [v.summary() for v in (*budget.violations, *chain.violations)]
    effects = sum(e.charge for lin in lineages.values() for e in lin.entries.values())
    return budget.checked, effects, problems


async def test_payments_are_part_of_what_the_checker_counts(tmp_path: Path) -> None:
    run = await run_agent(
        tmp_path, payer(5_000, "shop", b"x"), manifest(x402=X402), ticks=4, budget=10**7
    )
    assert run.ticks == 4
    count, effects, problems = checked(tmp_path)
    assert problems == []
    assert count >= 4 and effects >= 4 * 5_000


async def test_the_checker_notices_a_payment_left_out_of_the_budget(tmp_path: Path) -> None:
    await run_agent(tmp_path, payer(5_000, "shop"), manifest(x402=X402), ticks=2, budget=10**7)
    history_file = DataDir(tmp_path).history
    lines = history_file.read_text().splitlines()
    # forge the history: the effects cost nothing
    forged = [line.replace('"charge":', '"charge": 0, "was":') for line in lines]
    history_file.write_text("\n".join(forged) + "\n")
    db = DataDir(tmp_path).database
    db.rename(db.with_suffix(".hidden"))  # the checker works from the history alone
    history = merge([read_history(history_file, node="n1")])
    violations = check_budget(history, build_lineages(history, {})).violations
    assert violations and {v.reason for v in violations} == {"cost_mismatch"}  # type: ignore[attr-defined]
