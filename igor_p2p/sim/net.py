"""The simulated network and each node's :class:`~igor_p2p.core.ports.Transport` on it.

Every request and reply is encoded with the real wire codec and decoded on arrival (the real
isolation boundary between nodes, about a microsecond). Faults, as a real network can make
them and no stronger: loss, duplication (the handler runs twice; the second reply is dropped),
delay drawn per message (so messages reorder), partitions of any shape (one-way cuts), clogs
(held, then delivered), a crashed or stopped node (nothing delivered). One seeded random stream
draws every choice.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from igor_p2p.core.ports import Handler, PeerUnreachable
from igor_p2p.sim.disk import NodeCrashed
from igor_p2p.wire.codec import MalformedMessage, Message, encode
from igor_p2p.wire.messages import MESSAGES, Refused, RefusedCode


@dataclass
class NetFaults:
    drop: float = 0.0
    dup: float = 0.0
    mean_delay: float = 0.002
    blocked: set[tuple[bytes, bytes]] = field(default_factory=set)
    """One-way cuts (src, dst)."""
    clogged_until: dict[tuple[bytes, bytes], float] = field(default_factory=dict)


class SimNet:
    def __init__(self, rng: random.Random, faults: NetFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.endpoints: dict[bytes, SimTransport] = {}
        self.liars: dict[bytes, Callable[[Message], Message]] = {}
        """Byzantine nodes: every request and reply they send goes through their lie."""
        self.seq = itertools.count()
        self.stats: dict[str, int] = {
            "sent": 0,
            "dropped": 0,
            "duplicated": 0,
            "cut": 0,
            "refused_sender": 0,
        }

    def endpoint(self, me: bytes, nursery_of: Callable[[], trio.Nursery | None]) -> SimTransport:
        transport = SimTransport(self, me, nursery_of)
        self.endpoints[me] = transport
        return transport

    def _delay(self) -> float:
        return self.rng.expovariate(1 / self.faults.mean_delay) if self.faults.mean_delay else 0.0

    def _cut(self, src: bytes, dst: bytes) -> bool:
        return (src, dst) in self.faults.blocked

    async def _carry(self, src: bytes, dst: bytes) -> bool:
        """Wait out the message's flight; False when it is lost on the way."""
        await trio.sleep(self._delay())
        until = self.faults.clogged_until.get((src, dst), 0.0)
        if until > trio.current_time():
            await trio.sleep(until - trio.current_time())
        if self._cut(src, dst):
            self.stats["cut"] += 1
            return False
        return True

    def deliver(
        self, src: bytes, dst: bytes, data: bytes, reply_to: Callable[[bytes], None]
    ) -> None:
        """One request's flight, handling at ``dst``, and its reply's flight back."""
        self.stats["sent"] += 1
        if self.rng.random() < self.faults.drop:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.faults.dup else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        target = self.endpoints.get(dst)
        if target is None:
            return
        for _ in range(copies):
            nursery = target.nursery_of()
            if nursery is None:
                return
            nursery.start_soon(self._handle_at, target, src, data, reply_to)

    async def _handle_at(
        self, target: SimTransport, src: bytes, data: bytes, reply_to: Callable[[bytes], None]
    ) -> None:
        if not await self._carry(src, target.me):
            return
        handler = target.handler
        if handler is None:
            return
        try:
            message = MESSAGES.decode(data)
        except MalformedMessage:
            return
        if getattr(message, "sender", None) != src:  # the real transport's sender rule
            self.stats["refused_sender"] += 1
            reply: Message = Refused(
                target.me, RefusedCode.MALFORMED, "the message names another sender"
            )
        else:
            reply = await handler(src, message)
        lie = self.liars.get(target.me)
        if lie is not None:
            reply = lie(reply)
        answer = encode(reply)
        if self.rng.random() < self.faults.drop:
            self.stats["dropped"] += 1
            return
        if not await self._carry(target.me, src):
            return
        reply_to(answer)


class SimTransport:
    def __init__(
        self, net: SimNet, me: bytes, nursery_of: Callable[[], trio.Nursery | None]
    ) -> None:
        self.net = net
        self.me = me
        self.nursery_of = nursery_of
        self.handler: Handler | None = None

    def serve(self, handler: Handler) -> None:
        self.handler = handler

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        if self.nursery_of() is None:
            raise NodeCrashed()
        lie = self.net.liars.get(self.me)
        if lie is not None:
            message = lie(message)
        data = encode(message)
        if peer == self.me:
            if self.handler is None:
                raise PeerUnreachable("not serving")
            await trio.lowlevel.checkpoint()
            return MESSAGES.decode(encode(await self.handler(self.me, MESSAGES.decode(data))))
        box: list[bytes] = []
        arrived = trio.Event()

        def reply_to(answer: bytes) -> None:
            if not box:
                box.append(answer)
                arrived.set()

        nursery = self.nursery_of()
        if nursery is None:
            raise NodeCrashed()
        self.net.deliver(self.me, peer, data, reply_to)
        with trio.move_on_after(timeout if math.isfinite(timeout) else 3600):
            await arrived.wait()
        if not box:
            raise PeerUnreachable(f"no reply from {peer.hex()[:8]}")
        try:
            return MESSAGES.decode(box[0])
        except MalformedMessage as exc:
            raise PeerUnreachable(f"garbled reply: {exc}") from None
