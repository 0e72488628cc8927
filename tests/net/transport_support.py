"""Sample wire messages and the two lanes of the transport conformance suite.

A lane starts nodes that each expose a :class:`~igor_p2p.core.ports.Transport`: ``libp2p``
(in-process Noise hosts on 127.0.0.1, :class:`~igor_p2p.net.transport.Libp2pTransport`) or
``sim`` (:class:`~igor_p2p.sim.net.SimNet`, real trio clock). Both can cut links, heal them and
stop a node.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from conftest import fresh_seed
from libp2p.abc import IHost

from igor_p2p.core.ports import Handler
from igor_p2p.lineage.cert import BALLOT_NONCE_BYTES, Ballot
from igor_p2p.net.faults import FaultGate
from igor_p2p.net.host import HostConfig, build_host, running_host
from igor_p2p.net.keys import peer_id_from_seed, public_key_from_peer_id
from igor_p2p.net.peerid import peer_id_from_public_key
from igor_p2p.net.transport import Libp2pTransport, TransportLimits
from igor_p2p.sim.net import NetFaults, SimNet, SimTransport
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Abort,
    Accept,
    Accepted,
    Ack,
    Commit,
    Confirm,
    Done,
    GetModule,
    Holding,
    Learn,
    Module,
    Nack,
    NackCode,
    Offer,
    Prepare,
    Promise,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
    Status,
    StatusReply,
)

AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
MID = bytes(range(16))
DIGEST = bytes(range(32))
MiB = 1024 * 1024


def ballot(proposer: bytes, round_: int = 3) -> Ballot:
    return Ballot(round_, proposer, b"\x07" * BALLOT_NONCE_BYTES)


def offer(sender: bytes, checkpoint: bytes = b"\x01" * 64) -> Offer:
    return Offer(
        sender,
        AGENT,
        MID,
        epoch=4,
        chain_after=0,
        chain=(b"genesis", b"record", b"cert"),
        checkpoint=checkpoint,
        wasm_hash=DIGEST,
        manifest=b'{"capabilities":{}}',
        wasm=b"\x00asm\x01\x00\x00\x00",
    )


def requests_of(sender: bytes) -> dict[str, Message]:
    """One request of every request type, sent by ``sender``."""
    b = ballot(sender)
    return {
        "OFFER": offer(sender),
        "COMMIT": Commit(sender, AGENT, MID, record=b"r" * 100, cert=b"c" * 100),
        "ABORT": Abort(sender, AGENT, MID),
        "PREPARE": Prepare(sender, AGENT, slot=5, ballot=b, chain_after=2, chain=(b"x",)),
        "ACCEPT": Accept(sender, AGENT, 5, b, record=b"r", chain_after=0, chain=()),
        "LEARN": Learn(sender, AGENT, chain_after=1, chain=(b"a", b"b")),
        "STATUS": Status(sender, AGENT, known=7),
        "GET_MODULE": GetModule(sender, DIGEST),
    }


def replies_of(sender: bytes, asker: bytes) -> dict[str, Message]:
    """One reply of every reply type, sent by ``sender``."""
    b = ballot(asker)
    return {
        "ACK": Ack(sender, AGENT, MID, 4, DIGEST),
        "REJECT": Reject(sender, AGENT, MID, RejectCode.BUSY, "another handoff runs"),
        "CONFIRM": Confirm(sender, AGENT, MID, 5),
        "DONE": Done(sender, AGENT),
        "REFUSED": Refused(sender, RefusedCode.BUSY, "try later"),
        "PROMISE": Promise(sender, AGENT, 5, b, accepted_ballot=None, accepted_record=None),
        "ACCEPTED": Accepted(sender, AGENT, 5, b, DIGEST, b"s" * 64),
        "NACK": Nack(sender, AGENT, 5, NackCode.HIGHER, 9, b, chain_after=4, chain=(b"c",)),
        "STATUS_REPLY": StatusReply(
            sender,
            AGENT,
            chosen=7,
            chain_after=0,
            chain=(),
            accepted_ballot=b,
            accepted_record=b"rec",
            holding=Holding.OWNER,
            epoch=7,
            migration_id=None,
        ),
        "MODULE": Module(sender, b"\x00asm\x01\x00\x00\x00"),
    }


EXCHANGES: list[tuple[str, str]] = [
    ("OFFER", "ACK"),
    ("OFFER", "REJECT"),
    ("COMMIT", "CONFIRM"),
    ("ABORT", "DONE"),
    ("PREPARE", "PROMISE"),
    ("PREPARE", "NACK"),
    ("ACCEPT", "ACCEPTED"),
    ("LEARN", "DONE"),
    ("STATUS", "STATUS_REPLY"),
    ("GET_MODULE", "MODULE"),
    ("STATUS", "REFUSED"),
]
"""Every request type and every reply type, each at least once."""


def status_reply(sender: bytes, chosen: int) -> StatusReply:
    """A STATUS_REPLY that echoes a STATUS's ``known`` as ``chosen`` (to match replies)."""
    return StatusReply(
        sender,
        AGENT,
        chosen=chosen,
        chain_after=0,
        chain=(),
        accepted_ballot=None,
        accepted_record=None,
        holding=Holding.OWNER,
        epoch=chosen,
        migration_id=None,
    )


class HandlerBug(Exception):
    """What a test handler raises to play a bug in the node core."""


@dataclass
class LaneNode:
    key: bytes
    transport: Libp2pTransport | SimTransport
    stop_scope: trio.CancelScope
    stopped: trio.Event = field(default_factory=trio.Event)
    host: IHost | None = None
    gate: FaultGate | None = None

    def serve(self, handler: Handler) -> None:
        self.transport.serve(handler)


class Lane:
    """How to start, cut, heal and stop nodes on one transport."""

    name: str
    refuses_forged_sender: bool
    """libp2p refuses a message whose sender is not the authenticated peer before any handler
    runs. SimNet does not check (the node core's ``handle`` does): the fake is weaker there,
    which is allowed (a fake may be weaker than the real adapter, never stronger)."""
    raising_handler_kills_node: bool
    """A handler that raises: libp2p resets that stream only; in SimNet the exception reaches
    the node's nursery (the simulation stops on a core bug). The requester sees
    PeerUnreachable either way."""

    async def start(self, n: int) -> list[LaneNode]:
        raise NotImplementedError

    async def cut(self, a: LaneNode, b: LaneNode) -> None:
        raise NotImplementedError

    async def heal(self, a: LaneNode, b: LaneNode) -> None:
        raise NotImplementedError

    async def stop(self, node: LaneNode) -> None:
        node.stop_scope.cancel()
        with trio.fail_after(10):
            await node.stopped.wait()


class Libp2pLane(Lane):
    name = "libp2p"
    refuses_forged_sender = True
    raising_handler_kills_node = False

    def __init__(self, nursery: trio.Nursery, limits: TransportLimits | None = None) -> None:
        self.nursery = nursery
        self.limits = limits
        self.nodes: list[LaneNode] = []

    async def _run(self, *, task_status: trio.TaskStatus[LaneNode]) -> None:
        host = build_host(HostConfig(key_seed=fresh_seed()))
        key = public_key_from_peer_id(host.get_id())
        gate = FaultGate()
        scope = trio.CancelScope()
        node = LaneNode(key, Libp2pTransport(host, key, gate=gate, limits=self.limits), scope)
        node.host, node.gate = host, gate
        try:
            with scope:
                async with running_host(host), gate.running(host):
                    task_status.started(node)
                    await trio.sleep_forever()
        finally:
            node.stopped.set()

    async def start(self, n: int) -> list[LaneNode]:
        fresh = [await self.nursery.start(self._run) for _ in range(n)]
        self.nodes += fresh
        for a in self.nodes:  # every node knows every other's address; nobody is connected
            for b in self.nodes:
                if a is not b:
                    assert a.host is not None and b.host is not None
                    a.host.get_peerstore().add_addrs(b.host.get_id(), b.host.get_addrs(), 0)
        return fresh

    async def cut(self, a: LaneNode, b: LaneNode) -> None:
        assert a.gate is not None and b.gate is not None
        await a.gate.block([peer_id_from_public_key(b.key)])
        await b.gate.block([peer_id_from_public_key(a.key)])

    async def heal(self, a: LaneNode, b: LaneNode) -> None:
        assert a.gate is not None and b.gate is not None
        await a.gate.unblock([peer_id_from_public_key(b.key)])
        await b.gate.unblock([peer_id_from_public_key(a.key)])


class SimLane(Lane):
    name = "sim"
    refuses_forged_sender = True  # the sim net applies the same sender rule
    raising_handler_kills_node = True

    def __init__(self, nursery: trio.Nursery, seed: int = 1) -> None:
        self.nursery = nursery
        self.net = SimNet(random.Random(seed), NetFaults())

    async def _run(self, key: bytes, *, task_status: trio.TaskStatus[LaneNode]) -> None:
        scope = trio.CancelScope()
        live: list[trio.Nursery | None] = [None]
        transport = self.net.endpoint(key, _current(live))
        node = LaneNode(key, transport, scope)
        try:
            with scope:
                try:
                    async with trio.open_nursery() as nursery:
                        live[0] = nursery
                        task_status.started(node)
                        await trio.sleep_forever()
                except* HandlerBug:
                    pass  # the node died of its handler's bug
        finally:
            live[0] = None
            node.stopped.set()

    async def start(self, n: int) -> list[LaneNode]:
        out = []
        for _ in range(n):
            key = public_key_from_peer_id(peer_id_from_seed(fresh_seed()))
            out.append(await self.nursery.start(self._run, key))
        return out

    async def cut(self, a: LaneNode, b: LaneNode) -> None:
        self.net.faults.blocked |= {(a.key, b.key), (b.key, a.key)}

    async def heal(self, a: LaneNode, b: LaneNode) -> None:
        self.net.faults.blocked -= {(a.key, b.key), (b.key, a.key)}


def _current(live: list[trio.Nursery | None]) -> Callable[[], trio.Nursery | None]:
    return lambda: live[0]
