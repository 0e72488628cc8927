"""An OFFER whose ACK is lost on the target's side of the network (on the real node core, over
the simulator's in-memory adapters): the source cannot see that loss, nor a heal there, so it
sends the OFFER again when the ACK is late, and the handoff completes instead of waiting out
the OFFER's whole timeout (soak seed 1028: 20 s, with a 5 s liveness bound after heal)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from igor_p2p.core.config import CoreConfig
from igor_p2p.core.handoff import MigrationResult
from igor_p2p.sim.net import SimNet, SimTransport
from igor_p2p.sim.world import World
from igor_p2p.wire.messages import MESSAGES, Offer
from tests.sim import scenarios

SLOW_TIMEOUTS = CoreConfig(
    request_timeout_s=1.0,
    offer_timeout_s=60.0,  # a lost ACK waited out would end the handoff at its deadline
    offer_resend_s=0.5,
    handoff_deadline_s=30.0,
    settle_after_s=3.0,
    claim_round_s=1.5,
    backoff_min_s=0.1,
)


def test_an_offer_whose_ack_was_lost_on_the_targets_side_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = SimNet._handle_at
    lost: list[float] = []

    async def losing_the_first_ack(
        net: SimNet,
        target: SimTransport,
        src: bytes,
        data: bytes,
        reply_to: Callable[[bytes], None],
    ) -> None:
        if not lost and isinstance(MESSAGES.decode(data), Offer):
            lost.append(trio.current_time())
            reply_to = lambda answer: None  # noqa: E731 - the target acks; the ACK never arrives
        await real(net, target, src, data, reply_to)

    monkeypatch.setattr(SimNet, "_handle_at", losing_the_first_ack)
    world = World(scenarios.scenario(1, []), config=SLOW_TIMEOUTS)
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
            began = trio.current_time()
            outcome = await source.core.migrate(agent, target.key.public_key)
            seen["result"] = outcome.result
            seen["quick"] = trio.current_time() - began < SLOW_TIMEOUTS.offer_timeout_s / 10
            root.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert lost, "no OFFER was sent"
    assert seen == {"result": MigrationResult.TRANSFERRED, "quick": True}
