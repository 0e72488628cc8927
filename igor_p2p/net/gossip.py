"""Gossipsub with explicit, loss-free-for-our-scale parameters (G7), msgpack payloads on top.

py-libp2p's gossip defaults are lossy (G7): a 120 s heartbeat, spam protection that drops a
forwarding peer's traffic above 10 msg/s per topic, a 32-slot subscription channel that drops
the rest (``libp2p.pubsub.pubsub.SUBSCRIPTION_CHANNEL_SIZE``), a 32-slot per-peer outbound RPC
queue that rejects the rest (``RpcQueue``'s default ``max_size``, bound at definition time), and
silent drops of RPCs over 1 MiB. Both queue limits are raised in :func:`_raise_queue_limits`, the
one place that patches py-libp2p's pubsub module. :class:`GossipConfig`
sets every one of them explicitly, and :func:`publish_message` refuses payloads that would be
dropped with :class:`GossipMessageTooLarge` instead.

Gossip is best-effort: use it for hints (announcements, discovery), never for handoff steps.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import libp2p.pubsub.pubsub as libp2p_pubsub_module
import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize, OutBoundQueueSize, RpcQueue
from libp2p.tools.anyio_service import background_trio_service

from igor_p2p.net.errors import GossipMessageTooLarge, MalformedMessage
from igor_p2p.net.framing import decode_message, encode_message

LOG = logging.getLogger(__name__)

# The RPC envelope (from, seqno, topic, 36-byte key, 64-byte signature, protobuf tags) must fit
# next to the payload inside py-libp2p's 1 MiB inbound RPC limit.
ENVELOPE_HEADROOM = 4096
MAX_GOSSIP_PAYLOAD = DefaultMaxMessageSize - ENVELOPE_HEADROOM


@dataclass(frozen=True)
class GossipConfig:
    """Every gossipsub parameter we depend on, stated explicitly (G7)."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 8
    heartbeat_interval_s: int = 1  # py-libp2p default: 120
    spam_protection: bool = False  # py-libp2p default: on, 10 msg/s/topic/peer, then drops
    subscription_channel_size: int = 1024  # py-libp2p default: 32, then drops
    outbound_queue_size: int = 1024  # py-libp2p default: 32 RPCs per peer, then rejects
    max_payload_size: int = MAX_GOSSIP_PAYLOAD  # larger is silently dropped by py-libp2p
    strict_signing: bool = True
    time_to_live_s: int = 60
    ready_timeout_s: float = 5.0

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
    return GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval_s,
        time_to_live=config.time_to_live_s,
        spam_protection_enabled=config.spam_protection,
    )


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
            except MalformedMessage:
                self.malformed += 1
                LOG.debug("malformed gossip on %s skipped", self.topic)
                continue
            except Exception:
                self.malformed += 1
                LOG.debug("gossip with a bad sender on %s skipped", self.topic)
                continue
            return GossipMessage(sender=sender, topic=self.topic, message=message)

    def __aiter__(self) -> "MessageSubscription":
        return self

    async def __anext__(self) -> GossipMessage:
        return await self.receive()


async def subscribe_messages(service: GossipService, topic: str) -> MessageSubscription:
    """Subscribe to ``topic``; iterate the result for :class:`GossipMessage`\\ s."""
    return MessageSubscription(topic, await service.pubsub.subscribe(topic))
