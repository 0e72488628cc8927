"""A claim that got no quorum waits out a growing backoff, but a network change (a peer came
back, a partition healed) ends the wait at once: liveness after heal does not depend on how
long the partition lasted."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from igor_p2p.core.claims import Claimant
from igor_p2p.core.config import CoreConfig


def _claimant() -> Claimant:
    ctx: Any = SimpleNamespace(config=CoreConfig(), env=SimpleNamespace(rng=random.Random(1)))
    return Claimant(ctx)


async def test_a_network_change_ends_a_long_backoff_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    claimant = _claimant()
    ended: list[float] = []

    async def wait() -> None:
        await claimant._backoff(attempt=10)  # 15 to 30 s after a long partition
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(2.0)
        assert ended == []
        claimant.network_changed()
    assert ended == [2.0]


async def test_without_a_change_the_backoff_runs_its_course(
    autojump_clock: trio.testing.MockClock,
) -> None:
    claimant = _claimant()
    start = trio.current_time()
    await claimant._backoff(attempt=10)
    assert 15.0 <= trio.current_time() - start <= 30.0
    claimant.network_changed()  # a change after the wait wakes nothing later
    start = trio.current_time()
    await claimant._backoff(attempt=0)
    assert 0.1 <= trio.current_time() - start <= 0.2
