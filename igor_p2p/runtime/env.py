"""The production :class:`~igor_p2p.core.ports.Env`: the node clock, OS randomness, the history
file. (The simulator's is :class:`igor_p2p.sim.world.SimEnv`.)"""

from __future__ import annotations

import os
import random

import trio

from igor_p2p.history import HistoryWriter
from igor_p2p.runtime.clock import NodeClock


class NodeEnv:
    def __init__(self, clock: NodeClock, history: HistoryWriter) -> None:
        self.clock = clock
        self.history = history
        self.rng = random.Random(os.urandom(16))

    def now(self) -> float:
        return trio.current_time()

    def wall_ns(self) -> int:
        return self.clock.wall_ns()

    def token(self, n: int) -> bytes:
        return os.urandom(n)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def buggify(self, site: str) -> bool:
        return False
