"""Building, running, closing and dialing a py-libp2p host, with every host-level workaround.

* G3 — default hosts accept ``/plaintext/2.0.0`` (and secio, TLS): :func:`build_host` offers
  Noise only.
* G6 — every fresh dial waits ``_HAPPY_EYEBALLS_DELAY`` (250 ms) unless ``max_connections_per_peer``
  connections exist: :func:`build_host` sets ``max_connections_per_peer=1``.
* G2 — leaving ``host.run()`` leaves the TCP listener accepting: :func:`running_host` always
  closes the host under a shield.
* G9 — mDNS off; UPnP off.
* G13 — a dial that fails puts the peer in the swarm's 60 s negative cache, so every later dial
  fails at once even after the peer came back: :func:`dial` forgets that entry before an explicit
  dial. The swarm's retry policy (3 retries with backoff) is replaced by
  ``HostConfig.dial_retries``.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from igor_p2p.net.errors import DialFailed, InvalidAddress
from igor_p2p.net.faults import PartitionedPeer
from igor_p2p.net.keys import key_pair_from_seed

DEFAULT_LISTEN: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)


@dataclass(frozen=True)
class HostConfig:
    """Everything :func:`build_host` needs; the seed is the node key (identity = signing key)."""

    key_seed: bytes
    listen: tuple[str, ...] = DEFAULT_LISTEN
    announce: tuple[str, ...] = ()
    dial_timeout_s: float = 5.0
    dial_retries: int = 0
    negotiate_timeout_s: int = 5
    close_timeout_s: float = 5.0
    max_connections_per_peer: int = 1


def build_host(config: HostConfig) -> IHost:
    """A host with Noise-only security, Yamux, one connection per peer, no mDNS, no UPnP."""
    key_pair = key_pair_from_seed(config.key_seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    connection_config = ConnectionConfig(
        max_connections_per_peer=config.max_connections_per_peer,  # G6
        dial_timeout=config.dial_timeout_s,
        outbound_stream_protocol_negotiation_timeout=float(config.negotiate_timeout_s),
        inbound_stream_protocol_negotiation_timeout=float(config.negotiate_timeout_s),
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},  # G3: Noise only, plaintext/secio/TLS refused
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        enable_mDNS=False,  # G9
        enable_upnp=False,
        connection_config=connection_config,
        negotiate_timeout=config.negotiate_timeout_s,
        announce_addrs=[parse_multiaddr(a) for a in config.announce] or None,
    )
    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=config.dial_retries)
    return host


def parse_multiaddr(addr: str | multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    """Parse ``addr`` or raise :class:`InvalidAddress`."""
    if isinstance(addr, multiaddr.Multiaddr):
        return addr
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as exc:
        raise InvalidAddress(f"not a multiaddr: {addr!r}") from exc


def peer_info_from_addr(addr: str | multiaddr.Multiaddr) -> PeerInfo:
    """The :class:`PeerInfo` of an address ending in ``/p2p/<peer id>``."""
    maddr = parse_multiaddr(addr)
    try:
        return info_from_p2p_addr(maddr)
    except Exception as exc:
        raise InvalidAddress(f"address has no /p2p/<peer id>: {maddr}") from exc


def full_addrs(host: IHost) -> list[str]:
    """The host's dialable addresses, each ending in ``/p2p/<own peer id>``."""
    own = host.get_id().to_base58()
    out = []
    for addr in host.get_addrs():
        text = str(addr)
        out.append(text if "/p2p/" in text else f"{text}/p2p/{own}")
    return out


async def close_host(host: IHost, *, timeout_s: float = 5.0) -> None:
    """Close ``host`` under a shield (G2): listener, connections, system tasks."""
    with trio.CancelScope(shield=True), trio.move_on_after(timeout_s):
        await host.close()


@asynccontextmanager
async def running_host(
    host: IHost, listen: Sequence[str] = DEFAULT_LISTEN, *, close_timeout_s: float = 5.0
) -> AsyncIterator[IHost]:
    """Run ``host`` listening on ``listen``; on ANY exit close it shielded (G2)."""
    addrs = [parse_multiaddr(a) for a in listen]
    try:
        async with host.run(listen_addrs=addrs):
            yield host
    finally:
        await close_host(host, timeout_s=close_timeout_s)


def _forget_failed_dial(host: IHost, peer_id: ID) -> None:
    """G13: drop ``peer_id`` from the swarm's negative dial cache (private attribute)."""
    cache = getattr(host.get_network(), "_negative_peer_cache", None)
    if cache is not None:
        cache.evict(str(peer_id))


async def dial(
    host: IHost, addr_or_peerinfo: str | multiaddr.Multiaddr | PeerInfo, *, timeout_s: float
) -> ID:
    """Connect to a peer (no-op if already connected); return its peer ID or raise DialFailed.

    :class:`PartitionedPeer` (a ``DialFailed``) when a fault gate cuts the peer off.
    """
    info = (
        addr_or_peerinfo
        if isinstance(addr_or_peerinfo, PeerInfo)
        else peer_info_from_addr(addr_or_peerinfo)
    )
    if info.peer_id == host.get_id():
        raise DialFailed("refusing to dial ourselves")
    _forget_failed_dial(host, info.peer_id)
    try:
        with trio.fail_after(timeout_s):
            await host.connect(info)
    except trio.TooSlowError as exc:
        raise DialFailed(f"dial to {info.peer_id} timed out after {timeout_s} s") from exc
    except PartitionedPeer:  # the fault gate refused it (a DialFailed too)
        raise
    except Exception as exc:  # SwarmException, OSError, handshake errors, ...
        raise DialFailed(f"dial to {info.peer_id} failed: {type(exc).__name__}") from exc
    return info.peer_id
