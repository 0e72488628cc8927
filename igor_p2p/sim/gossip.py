"""The simulated gossip: each node's :class:`~igor_p2p.core.ports.Gossip` port on one
in-memory pubsub per world.

Every published message is encoded with the real gossip codec (msgpack, ``net/framing.py``)
once and decoded on arrival at each other node subscribed to the topic, under the network's
faults (:class:`~igor_p2p.sim.net.NetFaults`): loss and duplication per receiver, a delay drawn
per copy (so messages reorder), clogs (held until the clog ends), partitions (a message that
arrives across a cut is lost), a crashed node (hears nothing and sends nothing). One seeded
random stream draws every choice; subscribers are visited in the order they subscribed.

Each subscription is a bounded queue: when it is full the oldest message is dropped and
counted (``stats["overflow"]``), so a flooding peer costs a receiver a fixed amount of memory.
No task per message: a queue sleeps until its earliest message is due.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from igor_p2p.net.errors import MalformedMessage
from igor_p2p.net.framing import decode_message, encode_message
from igor_p2p.sim.disk import NodeCrashed
from igor_p2p.sim.net import NetFaults

QUEUE_LIMIT = 256
"""Messages one subscription holds before it drops its oldest."""

Forger = Callable[[dict[str, Any]], list[tuple[float, dict[str, Any]]]]
"""A lying node's reaction to what it hears: ``(delay, message)`` it publishes in reply."""


class _Queue:
    """One node's subscription to one topic: messages ordered by when they are due."""

    def __init__(self, hub: SimGossipNet, me: bytes, alive: Callable[[], bool]) -> None:
        self.hub = hub
        self.me = me
        self.alive = alive
        self.heap: list[tuple[float, int, bytes, bytes]] = []
        self.changed = trio.Event()
        self.waiting_until = math.inf

    def put(self, due: float, src: bytes, data: bytes) -> None:
        if len(self.heap) >= QUEUE_LIMIT:
            oldest = min(range(len(self.heap)), key=lambda i: self.heap[i][1])
            self.heap[oldest] = self.heap[-1]
            self.heap.pop()
            heapq.heapify(self.heap)
            self.hub.stats["overflow"] += 1
        heapq.heappush(self.heap, (due, next(self.hub.seq), src, data))
        if due < self.waiting_until:  # wake the reader only when it would sleep past this
            self.changed.set()

    async def get(self) -> dict[str, Any]:
        while True:
            if not self.alive():
                raise NodeCrashed()
            if self.heap and self.heap[0][0] <= trio.current_time():
                _, _, src, data = heapq.heappop(self.heap)
                if (src, self.me) in self.hub.faults.blocked:
                    self.hub.stats["cut"] += 1
                    continue
                try:
                    message = decode_message(data)
                except MalformedMessage:
                    self.hub.stats["malformed"] += 1
                    continue
                self.hub.stats["delivered"] += 1
                return message
            self.changed = trio.Event()
            if not self.heap:
                self.waiting_until = math.inf
                await self.changed.wait()
                continue
            self.waiting_until = self.heap[0][0]
            with trio.move_on_at(self.waiting_until):
                await self.changed.wait()


class SimGossipNet:
    """One world's pubsub: topic → the subscriptions of the nodes up now."""

    def __init__(self, rng: random.Random, faults: NetFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.topics: dict[str, dict[bytes, _Queue]] = {}
        self.forgers: dict[bytes, Forger] = {}
        """Lying nodes: what they hear goes through their forger, and its lies are published."""
        self.seq = itertools.count()
        self.stats: dict[str, int] = {
            "published": 0,
            "dropped": 0,
            "duplicated": 0,
            "cut": 0,
            "overflow": 0,
            "malformed": 0,
            "delivered": 0,
        }

    def endpoint(self, me: bytes, alive: Callable[[], bool]) -> SimGossip:
        return SimGossip(self, me, alive)

    def _delay(self) -> float:
        mean = self.faults.mean_delay
        return self.rng.expovariate(1 / mean) if mean else 0.0

    def send(self, src: bytes, topic: str, data: bytes, after: float = 0.0) -> None:
        """Queue ``data`` at every other live subscriber (``after`` seconds from now)."""
        self.stats["published"] += 1
        now = trio.current_time() + after
        for dst, queue in self.topics.get(topic, {}).items():
            if dst == src or not queue.alive():
                continue
            if self.rng.random() < self.faults.drop:
                self.stats["dropped"] += 1
                continue
            copies = 2 if self.rng.random() < self.faults.dup else 1
            self.stats["duplicated"] += copies - 1
            for _ in range(copies):
                due = now + self._delay()
                due = max(due, self.faults.clogged_until.get((src, dst), 0.0))
                queue.put(due, src, data)


class SimGossip:
    """One node incarnation's :class:`~igor_p2p.core.ports.Gossip` port."""

    def __init__(self, net: SimGossipNet, me: bytes, alive: Callable[[], bool]) -> None:
        self.net = net
        self.me = me
        self.alive = alive

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        if not self.alive():
            raise NodeCrashed()
        data = encode_message(message)
        await trio.lowlevel.checkpoint()
        self.net.send(self.me, topic, data)

    async def subscribe(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        queue = _Queue(self.net, self.me, self.alive)
        self.net.topics.setdefault(topic, {})[self.me] = queue  # a restart replaces the old one
        return self._messages(topic, queue)

    async def _messages(self, topic: str, queue: _Queue) -> AsyncIterator[dict[str, Any]]:
        while True:
            message = await queue.get()
            forger = self.net.forgers.get(self.me)
            if forger is not None:
                for after, lie in forger(message):
                    self.net.send(self.me, topic, encode_message(lie), after)
            yield message
