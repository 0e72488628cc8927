"""A handoff that fails with an unexpected error after its ACCEPTs left (on the real node core,
over the simulator's in-memory adapters)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from igor_p2p.core import handoff
from igor_p2p.sim.world import World
from tests.sim import scenarios


def test_a_handoff_failing_after_its_accepts_left_never_ticks_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A witness may hold the transfer once an ACCEPT has left, and a later claim may choose
    it: a source that aborted and ticked on beside that would be a second owner. It must stay
    stopped until a claim decides."""
    real_drive = handoff.drive

    async def drive_then_fail(
        transport: Any, claim: Any, sends: Any, timeout: float, **more: Any
    ) -> None:
        await real_drive(transport, claim, sends, timeout, **more)
        if claim.accept_sent:
            raise RuntimeError("a bug after the ACCEPTs went out")

    monkeypatch.setattr(handoff, "drive", drive_then_fail)
    world = World(scenarios.scenario(1, []))
    seen: dict[str, object] = {}

    async def main() -> None:
        async with trio.open_nursery() as root:
            world.root = root
            for node in world.nodes:
                await world.start_node(node)
            await trio.sleep(0.2)
            await world.launch(0)
            agent = world.agents[0]
            await trio.sleep(1.0)
            source = world.owner_of(agent)
            assert source is not None and source.core is not None
            target = next(n for n in world.nodes if n is not source)
            with pytest.raises(RuntimeError):
                await source.core.migrate(agent, target.key.public_key)
            await trio.sleep(2.0)  # anything it would do next has had time to happen
            machine = source.core.gate.peek(agent)
            assert machine is not None
            seen["may_tick"] = machine.may_tick
            seen["ticking"] = agent in source.core.ports.runner.ticking()
            root.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen == {"may_tick": False, "ticking": False}
