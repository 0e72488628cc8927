"""The simulated gossip (igor_p2p/sim/gossip.py) is no kinder than a real network: a cut
blocks delivery, a crashed node hears nothing, a flood costs a receiver a bounded queue."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from igor_p2p.sim.gossip import QUEUE_LIMIT, SimGossip, SimGossipNet
from igor_p2p.sim.net import NetFaults

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
TOPIC = "igor/claims/2"


def _hub() -> tuple[SimGossipNet, dict[bytes, SimGossip], dict[bytes, bool]]:
    hub = SimGossipNet(random.Random(1), NetFaults(mean_delay=0.002))
    up = {A: True, B: True, C: True}
    return hub, {k: hub.endpoint(k, lambda k=k: up[k]) for k in (A, B, C)}, up


async def _heard(subscription: Any, within: float = 1.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with trio.move_on_after(within):
        async for message in subscription:
            got.append(message)
    return got


def _run(fn: Any) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_message_reaches_every_other_subscriber_but_not_across_a_cut() -> None:
    async def main() -> None:
        hub, ends, _ = _hub()
        at_b = await ends[B].subscribe(TOPIC)
        at_c = await ends[C].subscribe(TOPIC)
        at_a = await ends[A].subscribe(TOPIC)
        hub.faults.blocked.add((A, C))
        await ends[A].publish(TOPIC, {"type": "claims", "claims": []})
        assert await _heard(at_b) == [{"type": "claims", "claims": []}]
        assert await _heard(at_c) == []
        assert await _heard(at_a) == []  # never one's own
        assert hub.stats["cut"] == 1

    _run(main)


def test_a_crashed_node_hears_nothing() -> None:
    async def main() -> None:
        hub, ends, up = _hub()
        at_b = await ends[B].subscribe(TOPIC)
        up[B] = False
        await ends[A].publish(TOPIC, {"type": "x"})
        up[B] = True
        assert await _heard(at_b) == []
        assert hub.stats["delivered"] == 0

    _run(main)


def test_a_flood_keeps_the_newest_messages_and_counts_the_dropped() -> None:
    async def main() -> None:
        hub, ends, _ = _hub()
        at_b = await ends[B].subscribe(TOPIC)
        for i in range(QUEUE_LIMIT + 50):
            await ends[A].publish(TOPIC, {"type": "x", "i": i})
        heard = await _heard(at_b)
        assert len(heard) == QUEUE_LIMIT
        assert hub.stats["overflow"] == 50
        assert {m["i"] for m in heard} == set(range(50, QUEUE_LIMIT + 50))

    _run(main)


def test_the_same_seed_delivers_in_the_same_order() -> None:
    async def order() -> list[int]:
        hub, ends, _ = _hub()
        hub.faults.mean_delay = 0.05
        at_b = await ends[B].subscribe(TOPIC)
        for i in range(30):
            await ends[A].publish(TOPIC, {"type": "x", "i": i})
        return [m["i"] for m in await _heard(at_b)]

    runs = [trio.run(order, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in range(2)]
    assert runs[0] == runs[1] and sorted(runs[0]) == list(range(30))
    assert runs[0] != list(range(30))  # delays drawn per message reorder them
