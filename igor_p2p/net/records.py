"""G29: the signed peer record py-libp2p 0.8.1 puts in every pubsub and DHT RPC, made cheap.

Every RPC a host sends (each gossip message forwarded, each control message, each DHT query)
carries its signed peer record, built by ``env_to_send_in_RPC(host)``: it lists the host's
addresses (``get_addrs`` → a Multiaddr parsed from each listening socket), compares them with
the cached record's, and serializes the envelope — about 1 ms of CPU per call. Every pubsub RPC
received is checked with ``maybe_consume_signed_record``: parse, Ed25519 verify, peerstore
update, for the same bytes the same peer sent a moment ago. Together that was more than half
of what a node spent per gossip message, and most of a node's idle CPU in a 16-node testnet.

:func:`install` is the one place that patches both, in every module that imported them by name:

* outgoing: the envelope is reused for :data:`SENDER_RECORD_REFRESH_S` (then rebuilt as
  py-libp2p would, so a changed address reaches peers within that time);
* incoming (pubsub): a record whose bytes equal the last one accepted from the same peer is
  accepted without verifying it again (bounded per host); anything else goes through
  py-libp2p's check unchanged.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import libp2p.identity.identify.identify as libp2p_identify
import libp2p.kad_dht.kad_dht as libp2p_kad_dht
import libp2p.kad_dht.peer_routing as libp2p_peer_routing
import libp2p.kad_dht.provider_store as libp2p_provider_store
import libp2p.kad_dht.value_store as libp2p_value_store
import libp2p.peer.peerstore as libp2p_peerstore
import libp2p.pubsub.floodsub as libp2p_floodsub
import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
import libp2p.pubsub.utils as libp2p_pubsub_utils
from libp2p.abc import IHost
from libp2p.peer.id import ID

SENDER_RECORD_REFRESH_S = 5.0
MAX_REMEMBERED_RECORDS = 4096

LIBP2P_ENV_TO_SEND = libp2p_peerstore.env_to_send_in_RPC
LIBP2P_CONSUME = libp2p_pubsub_utils.maybe_consume_signed_record

_SENDERS = (
    libp2p_identify,
    libp2p_pubsub,
    libp2p_gossipsub,
    libp2p_floodsub,
    libp2p_kad_dht,
    libp2p_peer_routing,
    libp2p_provider_store,
    libp2p_value_store,
)
_CONSUMERS = (libp2p_pubsub, libp2p_gossipsub, libp2p_floodsub)


def cached_sender_record(host: IHost) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC`` reusing the host's envelope for a few seconds."""
    now = time.monotonic()
    cached: tuple[float, bytes] | None = getattr(host, "_igor_sender_record", None)
    if cached is not None and now - cached[0] < SENDER_RECORD_REFRESH_S:
        return cached[1], False
    envelope, fresh = LIBP2P_ENV_TO_SEND(host)
    host._igor_sender_record = (now, envelope)  # type: ignore[attr-defined]
    return envelope, fresh


def consume_sender_record_once(msg: Any, host: IHost, peer_id: ID) -> bool:
    """``maybe_consume_signed_record`` that skips a record identical to the last one this
    peer sent and that was accepted."""
    if not msg.HasField("senderRecord"):
        return True
    seen: OrderedDict[ID, bytes] | None = getattr(host, "_igor_peer_records", None)
    if seen is None:
        seen = OrderedDict()
        host._igor_peer_records = seen  # type: ignore[attr-defined]
    record = bytes(msg.senderRecord)
    if seen.get(peer_id) == record:
        seen.move_to_end(peer_id)
        return True
    ok = bool(LIBP2P_CONSUME(msg, host, peer_id))
    if ok:
        seen[peer_id] = record
        seen.move_to_end(peer_id)
        while len(seen) > MAX_REMEMBERED_RECORDS:
            seen.popitem(last=False)
    return ok


def install() -> None:
    """Patch the modules that imported the two functions by name (idempotent)."""
    for module in _SENDERS:
        module.env_to_send_in_RPC = cached_sender_record  # type: ignore[attr-defined]
    for module in _CONSUMERS:
        module.maybe_consume_signed_record = consume_sender_record_once  # type: ignore[attr-defined]
