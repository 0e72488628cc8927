"""The simulation can fail: with a safety mechanism removed, it finds a violation quickly.

Each mutant monkeypatches one small seam of the real code; the test asserts that a sweep of at
most 1,000 seeds finds a violation (and reports how many seeds it took).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import igor_p2p.authority.claim as claim_module
import igor_p2p.authority.table as table
import igor_p2p.core.witness_service as witness_service
from igor_p2p.authority.events import PublishClaim, StartTicking
from igor_p2p.authority.record import Phase
from igor_p2p.sim.plan import make_plan
from igor_p2p.sim.run import run_schedule

BUDGET = 1000


def _resume_without_claim(mp: pytest.MonkeyPatch) -> None:
    """A restarted owner ticks its old epoch again (no fencing through the witnesses)."""

    def tick_again(v: table.View, e: table.Event) -> table.Out:
        return table.Out(
            v.record,
            [StartTicking(v.record.epoch), PublishClaim(None, v.record.epoch)],
            {"phase": Phase.TICKING, "certified": v.record.epoch},
        )

    rules = dict(table.TRANSITIONS)
    rules[(table.S.ACTIVE_OWNER, table.Restarted)] = (
        table.Rule(table.ALWAYS, None, (StartTicking, PublishClaim), tick_again),
    )
    mp.setattr(table, "TRANSITIONS", rules)


def _abort_after_accept(mp: pytest.MonkeyPatch) -> None:
    """A source abandons a handoff after its ACCEPT left (the write-ahead order broken)."""
    mp.setattr(claim_module.Claim, "accept_sent", property(lambda self: False))


def _witness_forgets_before_reply(mp: pytest.MonkeyPatch) -> None:
    """A witness replies without making its promise or acceptance durable."""

    async def handle(self, message):  # type: ignore[no-untyped-def]
        record = await self.store.witness(message.agent)
        if isinstance(message, witness_service.Prepare):
            return self.core.prepare(record, message).reply
        if isinstance(message, witness_service.Accept):
            return self.core.accept(record, message).reply
        return self.core.learn(record, message).reply

    mp.setattr(witness_service.WitnessService, "handle", handle)


MUTANTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "resume_without_claim": _resume_without_claim,
    "abort_after_accept": _abort_after_accept,
    "witness_forgets_before_reply": _witness_forgets_before_reply,
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulation_finds_the_bug_when_a_safety_mechanism_is_removed(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    MUTANTS[name](monkeypatch)
    for seed in range(1, BUDGET + 1):
        out = run_schedule(make_plan(seed))
        if not out.ok:
            print(f"{name}: violation at seed {seed}: {out.first_violation()}")
            return
    pytest.fail(f"{name}: {BUDGET} schedules found nothing; the simulation is blind to it")
