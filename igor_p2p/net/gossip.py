"""Gossipsub with explicit, loss-free-for-our-scale parameters (G7), msgpack payloads on top.

py-libp2p's gossip defaults are lossy (G7): a 120 s heartbeat, spam protection that drops a
forwarding peer's traffic above 10 msg/s per topic, a 32-slot subscription channel that drops
the rest (``libp2p.pubsub.pubsub.SUBSCRIPTION_CHANNEL_SIZE``), a 32-slot per-peer outbound RPC
queue that rejects the rest (``RpcQueue``'s default ``max_size``, bound at definition time), and
silent drops of RPCs over 1 MiB. Both queue limits are raised in :func:`_raise_queue_limits`, the
one place that patches py-libp2p's pubsub module. :class:`GossipConfig`
sets every one of them explicitly, and :func:`publish_message` refuses payloads that would be
dropped with :class:`GossipMessageTooLarge` instead.

Three more router workarounds, applied by :func:`build_router` on the instance:

* G20 — adaptive gossip turns a 1 s heartbeat into 60 s after 30 s (a quiet, healthy network
  scores below its 0.7 threshold): ``adaptive_gossip_enabled=False``.
* G21 — "GRAFT flood": the heartbeat prunes down to D without a local back-off, and picks whom
  to prune by sorting equal scores, so every node prunes the same peers and the mesh splits
  one way for about a minute. :func:`_fix_mesh_pruning` backs off from every peer it prunes (as
  go-libp2p does) and prunes at random.
* Flood publish (G22: not implemented in py-libp2p) — our own messages of at most
  ``flood_publish_max_bytes`` (announcements, claims: small control messages) go to every
  connected peer of the topic, not only to our mesh, so they reach most nodes in one hop
  instead of waiting for mesh relays. Relayed messages still follow the mesh.

Gossip is best-effort: use it for hints (announcements, discovery), never for handoff steps.
"""

import contextvars
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import libp2p.pubsub.pubsub as libp2p_pubsub_module
import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize, OutBoundQueueSize, RpcQueue
from libp2p.pubsub.validators import signature_validator
from libp2p.tools.anyio_service import background_trio_service

from igor_p2p.net.errors import GossipMessageTooLarge, MalformedMessage
from igor_p2p.net.framing import decode_message, encode_message
from igor_p2p.net.handlers import set_guarded_handler

LOG = logging.getLogger(__name__)

# The RPC envelope (from, seqno, topic, 36-byte key, 64-byte signature, protobuf tags) must fit
# next to the payload inside py-libp2p's 1 MiB inbound RPC limit.
ENVELOPE_HEADROOM = 4096
MAX_GOSSIP_PAYLOAD = DefaultMaxMessageSize - ENVELOPE_HEADROOM


@dataclass(frozen=True)
class GossipConfig:
    """Every gossipsub parameter we depend on, stated explicitly (G7)."""

    degree: int = 4  # each node receives each message about D times: D is CPU per message
    degree_low: int = 3
    degree_high: int = 6
    heartbeat_interval_s: int = 1  # py-libp2p default: 120
    spam_protection: bool = False  # py-libp2p default: on, 10 msg/s/topic/peer, then drops
    subscription_channel_size: int = 1024  # py-libp2p default: 32, then drops
    outbound_queue_size: int = 1024  # py-libp2p default: 32 RPCs per peer, then rejects
    max_payload_size: int = MAX_GOSSIP_PAYLOAD  # larger is silently dropped by py-libp2p
    strict_signing: bool = True
    time_to_live_s: int = 60
    ready_timeout_s: float = 5.0
    adaptive: bool = False  # G20: py-libp2p default on, stretches the heartbeat to 60 s
    flood_publish_max_bytes: int = 4096
    """Own messages up to this size go to every topic peer (0: mesh only, py-libp2p's way)."""
    eclipse_protection: bool = False
    """py-libp2p prunes mesh peers that share an IP: on a loopback testnet that is every peer."""
    lazy_degree: int = 3
    """Peers outside the mesh told (IHAVE) of recent messages at each heartbeat. py-libp2p:
    max(6, 25 % of the topic's peers); with flood publish and a sound mesh this is only
    repair, and each IHAVE costs both ends about a millisecond."""
    prune_back_off_s: int = 5
    """How long a pruned peer waits to GRAFT again (py-libp2p: 60 s). Simultaneous joins can
    leave a node pruned by all of its mesh peers; it is out of the mesh this long."""

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("need 0 < degree_low <= degree <= degree_high")
        if not 0 < self.max_payload_size <= MAX_GOSSIP_PAYLOAD:
            raise ValueError(f"max_payload_size must be in (0, {MAX_GOSSIP_PAYLOAD}]")


_queue_sizes = {"outbound": OutBoundQueueSize}


class _SizedRpcQueue(RpcQueue):
    """``RpcQueue`` whose default ``max_size`` is the raised outbound limit."""

    def __init__(self, max_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(max_size=max_size or _queue_sizes["outbound"], **kwargs)


def _raise_queue_limits(config: GossipConfig) -> None:
    """G7: the ONE place that patches py-libp2p's pubsub queue limits (process-wide).

    ``SUBSCRIPTION_CHANNEL_SIZE`` is read at subscribe time; ``RpcQueue`` is looked up in the
    pubsub module when a peer's queue is created. Limits are only ever raised.
    """
    if config.subscription_channel_size > libp2p_pubsub_module.SUBSCRIPTION_CHANNEL_SIZE:
        libp2p_pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = config.subscription_channel_size
    _queue_sizes["outbound"] = max(_queue_sizes["outbound"], config.outbound_queue_size)
    libp2p_pubsub_module.RpcQueue = _SizedRpcQueue  # type: ignore[misc]


def build_router(config: GossipConfig) -> GossipSub:
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval_s,
        time_to_live=config.time_to_live_s,
        spam_protection_enabled=config.spam_protection,
        adaptive_gossip_enabled=config.adaptive,  # G20
        eclipse_protection_enabled=config.eclipse_protection,
        prune_back_off=config.prune_back_off_s,
    )
    _fix_mesh_pruning(router)  # G21
    lazy = config.lazy_degree
    router._get_adaptive_gossip_peers_count = (  # type: ignore[method-assign]
        lambda topic, total_peers: min(lazy, total_peers)
    )
    if config.flood_publish_max_bytes > 0:
        _flood_own_small_messages(router, config.flood_publish_max_bytes)
    return router


def _fix_mesh_pruning(router: GossipSub) -> None:
    """G21, on this router instance: back off locally from each peer the heartbeat prunes (so
    we don't re-graft it within its back-off and get PRUNEd for a "GRAFT flood"), and choose
    whom to prune at random among equal (all-zero) scores."""
    heartbeat = router.mesh_heartbeat

    def mesh_heartbeat() -> tuple[Any, Any]:
        graft, prune = heartbeat()
        for peer, topics in prune.items():
            for topic in topics:
                router._add_back_off(peer, topic, False)
        return graft, prune

    def select_for_pruning(topic: str, count: int) -> list[ID]:
        mesh = list(router.mesh.get(topic, ()))
        return router.select_from_minus(count, mesh, set()) if count > 0 else []

    handle_graft = router.handle_graft
    emit_prune = router.emit_prune
    refusing: contextvars.ContextVar[tuple[str, ID] | None] = contextvars.ContextVar(
        "refusing", default=None
    )
    refused: contextvars.ContextVar[bool] = contextvars.ContextVar("refused", default=False)

    async def noting_emit_prune(topic: str, to_peer: ID, do_px: bool, unsub: bool) -> None:
        if refusing.get() == (topic, to_peer):
            refused.set(True)
        await emit_prune(topic, to_peer, do_px, unsub)

    async def two_way_handle_graft(graft_msg: Any, sender_peer_id: ID) -> None:
        topic = graft_msg.topicID
        mesh = router.mesh.get(topic)
        if mesh is not None and sender_peer_id not in mesh and len(mesh) >= router.degree_high:
            # As go-libp2p: a full mesh refuses the GRAFT (PRUNE, with back-off) instead of
            # overshooting and pruning at random at the next heartbeat, which can leave a
            # node pruned by all of its mesh peers at once.
            await router.emit_prune(topic, sender_peer_id, False, False)
            return
        # py-libp2p refuses some GRAFTs (back-off, "GRAFT flood") with a PRUNE but keeps the
        # sender in its own mesh if it had grafted it meanwhile: we would forward to a peer
        # that no longer forwards to us. Whenever we answer a GRAFT with PRUNE, drop the
        # sender from our mesh too (and back off from it, as we told it to).
        token = refusing.set((topic, sender_peer_id))
        flag = refused.set(False)
        try:
            await handle_graft(graft_msg, sender_peer_id)
            if refused.get() and topic in router.mesh:
                router.mesh[topic].discard(sender_peer_id)
                router._add_back_off(sender_peer_id, topic, False)
        finally:
            refusing.reset(token)
            refused.reset(flag)

    def no_opportunistic_grafting(topic: str, peers_to_graft: Any) -> int:
        # py-libp2p grafts "better-scoring" peers at EVERY heartbeat when all scores are 0
        # (no scoring configured): the mesh overshoots D_high and is pruned back each time,
        # a steady GRAFT/PRUNE churn (go-libp2p does this every 60 heartbeats, for positive
        # scores only).
        return 0

    router.mesh_heartbeat = mesh_heartbeat  # type: ignore[method-assign]
    router._select_peers_for_pruning = select_for_pruning  # type: ignore[method-assign]
    router._perform_opportunistic_grafting = no_opportunistic_grafting  # type: ignore[method-assign]
    router.handle_graft = two_way_handle_graft  # type: ignore[method-assign]
    router.emit_prune = noting_emit_prune  # type: ignore[method-assign]
    router._emit_control_msgs = lambda graft, prune, gossip: _emit_control_msgs(  # type: ignore[method-assign]
        router, graft, prune, gossip
    )


async def _emit_control_msgs(
    router: GossipSub,
    graft: dict[ID, list[str]],
    prune: dict[ID, list[str]],
    gossip: dict[ID, dict[str, list[bytes]]],
) -> None:
    """py-libp2p's ``_emit_control_msgs`` never resets its GRAFT/PRUNE/IHAVE lists between
    peers, so each peer also gets the control messages meant for the peers before it — a stray
    PRUNE drops us from a mesh we keep that peer in (a one-way link). One control message per
    peer with exactly its own entries; a topic both grafted and pruned in one heartbeat ends
    pruned, so only the PRUNE is sent."""
    for peer in set(graft) | set(prune) | set(gossip):
        pruned = prune.get(peer, [])
        grafts = [rpc_pb2.ControlGraft(topicID=t) for t in graft.get(peer, []) if t not in pruned]
        prunes = []
        for topic in pruned:
            message = rpc_pb2.ControlPrune(topicID=topic)
            message.backoff = router.prune_back_off
            prunes.append(message)
        ihaves = [
            rpc_pb2.ControlIHave(messageIDs=ids, topicID=topic)
            for topic, ids in gossip.get(peer, {}).items()
        ]
        control = router.pack_control_msgs(ihaves or None, grafts or None, prunes or None)
        await router.emit_control_message(control, peer)


def _flood_own_small_messages(router: GossipSub, max_bytes: int) -> None:
    """Flood publish (see the module docstring), on this router instance: ``publish`` notes
    the IDs of our own small messages; ``_get_peers_to_send`` sends those to every gossipsub
    peer of the topic."""
    publish = router.publish
    get_peers = router._get_peers_to_send
    flood_ids: set[bytes] = set()

    async def flood_aware_publish(msg_forwarder: ID, pubsub_msg: Any) -> None:
        pubsub = router.pubsub
        own = pubsub is not None and msg_forwarder == pubsub.my_id
        msg_id = pubsub.get_message_id(pubsub_msg) if own and pubsub is not None else None
        if msg_id is not None and len(pubsub_msg.data) <= max_bytes:
            flood_ids.add(msg_id)
        try:
            await publish(msg_forwarder, pubsub_msg)
        finally:
            if msg_id is not None:
                flood_ids.discard(msg_id)

    def peers_to_send(
        topic_ids: Iterable[str], msg_forwarder: ID, origin: ID, msg_id: bytes | None = None
    ) -> Iterable[ID]:
        topics = list(topic_ids)
        chosen = set(get_peers(topics, msg_forwarder, origin, msg_id))
        pubsub = router.pubsub
        if msg_id is not None and msg_id in flood_ids and pubsub is not None:
            for topic in topics:
                for peer in pubsub.peer_topics.get(topic, ()):
                    if peer not in (msg_forwarder, origin) and peer in router.peer_protocol:
                        chosen.add(peer)
        return chosen

    router.publish = flood_aware_publish  # type: ignore[method-assign]
    router._get_peers_to_send = peers_to_send  # type: ignore[method-assign]


@dataclass
class GossipService:
    """A running pubsub with the config it was started with."""

    pubsub: Pubsub
    router: GossipSub
    config: GossipConfig


@asynccontextmanager
async def gossip_service(host: IHost, config: GossipConfig) -> AsyncIterator[GossipService]:
    """Run gossipsub on ``host`` (which must already be running) for the block's duration."""
    _raise_queue_limits(config)
    router = build_router(config)
    pubsub = Pubsub(host, router, strict_signing=config.strict_signing)
    for protocol in router.get_protocols():
        # G1: py-libp2p's pubsub handler raises into the swarm when a subscription arrives
        # after the pubsub service stopped ("Nursery is closed to new arrivals" at shutdown).
        set_guarded_handler(host, str(protocol), pubsub.stream_handler, log=LOG)
    async with background_trio_service(pubsub), background_trio_service(router):
        with trio.fail_after(config.ready_timeout_s):
            await pubsub.wait_until_ready()
        yield GossipService(pubsub=pubsub, router=router, config=config)


def encode_gossip(message: dict[str, Any], config: GossipConfig) -> bytes:
    payload = encode_message(message)
    if len(payload) > config.max_payload_size:
        raise GossipMessageTooLarge(
            f"gossip payload of {len(payload)} bytes exceeds {config.max_payload_size}; "
            "send it over a stream"
        )
    return payload


async def publish_message(service: GossipService, topic: str, message: dict[str, Any]) -> None:
    """Publish a msgpack message (a dict with a str ``type``) on ``topic``."""
    await service.pubsub.publish(topic, encode_gossip(message, service.config))


@dataclass(frozen=True)
class GossipMessage:
    """A decoded gossip message; ``sender`` is the signing originator's peer ID."""

    sender: str
    topic: str
    message: dict[str, Any]
    raw: bytes = b""
    """The signed pubsub message as received (re-checkable with :func:`verify_signed`)."""
    seqno: int = 0
    """The originator's sequence number (grows with each message it publishes)."""


def originator(raw: bytes) -> tuple[str, int] | None:
    """The claimed originator and sequence number of a serialized pubsub message (NOT
    verified), or None."""
    try:
        msg = rpc_pb2.Message.FromString(bytes(raw))
        seqno = int.from_bytes(msg.seqno[:8], "big") if msg.seqno else 0
        return str(ID(msg.from_id).to_base58()), seqno
    except Exception:
        return None


def verify_signed(raw: bytes, topic: str) -> GossipMessage:
    """Check a signed pubsub message relayed out of band (its originator's signature, its
    topic) and decode it; :class:`MalformedMessage` otherwise."""
    try:
        msg = rpc_pb2.Message.FromString(bytes(raw))
    except Exception as exc:
        raise MalformedMessage("not a pubsub message") from exc
    if list(msg.topicIDs) != [topic]:
        raise MalformedMessage("a pubsub message of another topic")
    try:
        if not signature_validator(msg):
            raise MalformedMessage("pubsub message signature does not verify")
        sender = ID(msg.from_id).to_base58()
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage("pubsub message with a bad signature or sender") from exc
    return GossipMessage(
        sender=sender,
        topic=topic,
        message=decode_message(msg.data),
        raw=bytes(raw),
        seqno=int.from_bytes(msg.seqno[:8], "big") if msg.seqno else 0,
    )


class MessageSubscription:
    """Decoded messages of one topic; malformed payloads are counted and skipped."""

    def __init__(self, topic: str, subscription: ISubscriptionAPI) -> None:
        self.topic = topic
        self.subscription = subscription
        self.malformed = 0

    async def receive(self) -> GossipMessage:
        while True:
            raw = await self.subscription.get()
            try:
                message = decode_message(raw.data)
                sender = ID(raw.from_id).to_base58()
                wire = raw.SerializeToString()
                seqno = int.from_bytes(raw.seqno[:8], "big") if raw.seqno else 0
            except MalformedMessage:
                self.malformed += 1
                LOG.debug("malformed gossip on %s skipped", self.topic)
                continue
            except Exception:
                self.malformed += 1
                LOG.debug("gossip with a bad sender on %s skipped", self.topic)
                continue
            return GossipMessage(
                sender=sender, topic=self.topic, message=message, raw=wire, seqno=seqno
            )

    def __aiter__(self) -> "MessageSubscription":
        return self

    async def __anext__(self) -> GossipMessage:
        return await self.receive()


async def subscribe_messages(service: GossipService, topic: str) -> MessageSubscription:
    """Subscribe to ``topic``; iterate the result for :class:`GossipMessage`\\ s."""
    return MessageSubscription(topic, await service.pubsub.subscribe(topic))


class PubsubGossip:
    """The core's :class:`~igor_p2p.core.ports.Gossip` port over a :class:`GossipService`
    (the simulation's adapter is :class:`igor_p2p.sim.gossip.SimGossip`)."""

    def __init__(self, service: GossipService) -> None:
        self.service = service

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        await publish_message(self.service, topic, message)

    async def subscribe(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        return _payloads(await subscribe_messages(self.service, topic))


async def _payloads(subscription: MessageSubscription) -> AsyncIterator[dict[str, Any]]:
    async for gossip in subscription:
        yield gossip.message
