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
* G15/G16 — inbound slots leak until the swarm stops, and silent sockets hold them for 10 s:
  :class:`igor_p2p.net.inbound.InboundGuard` frees each slot when its connection closes and caps
  pending handshakes per remote IP; ``inbound_upgrade_timeout`` is ``handshake_timeout_s``.
* G17 — the AutoConnector dials every known peer: :func:`disable_auto_connector`; connections
  are bounded by :mod:`igor_p2p.net.connmgr` instead.
* G27 — py-libp2p's Yamux sends a WINDOW_UPDATE frame after every read of a stream (whatever
  ``PY_YAMUX_RELEASE_ON_READ`` says: its "partial slack" branch fires on any read), doubling
  the frames — each a Noise message and a syscall on both ends — of every small message:
  :func:`batch_window_updates` (applied by :func:`build_host`) sends one only once half the
  receive window is consumed, as go-yamux does.
* G29 — the signed peer record in every RPC costs ~1 ms to build and a verify to read:
  :func:`igor_p2p.net.records.install` caches both (applied by :func:`build_host`).
* G23/G24 — SO_REUSEPORT hides a port in use, a failed listen is silent, wildcard listeners are
  announced verbatim: :mod:`igor_p2p.net.listening`, applied by :func:`build_host` and
  :func:`running_host`.
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
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from igor_p2p.net import records
from igor_p2p.net.errors import DialFailed, InvalidAddress
from igor_p2p.net.faults import PartitionedPeer
from igor_p2p.net.inbound import InboundGuard
from igor_p2p.net.keys import key_pair_from_seed
from igor_p2p.net.listening import ListenFailed, drop_reuseport, expand_wildcards, listen_failure

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
    handshake_timeout_s: float = 3.0
    """G16: an inbound socket must finish Noise + Yamux within this (py-libp2p: 10 s)."""
    max_pending_per_ip: int = 16
    """Inbound handshakes pending at once from one remote IP; more are closed at once."""


async def _window_update_at_half(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """G27: grant receive window only once half of it is consumed (go-yamux's GrowTo
    hysteresis), not after every read."""
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


LIBP2P_WINDOW_UPDATE = YamuxStream._auto_tune_and_send_window_update
"""py-libp2p's own per-read window update (kept for the pin test)."""


def batch_window_updates() -> None:
    """G27: the ONE place that patches py-libp2p's Yamux receive-window updates (class-wide)."""
    YamuxStream._auto_tune_and_send_window_update = _window_update_at_half  # type: ignore[method-assign]


def disable_auto_connector(host: IHost) -> None:
    """G17: py-libp2p's AutoConnector dials every peerstore peer; make it a no-op on this
    swarm instance (its periodic loop and the after-disconnect trigger both call these)."""
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is None:
        return

    async def no_connect() -> None:
        return None

    async def no_background(nursery: trio.Nursery) -> None:
        return None

    connector.maybe_connect = no_connect
    connector.run_background_task = no_background


def build_host(config: HostConfig) -> IHost:
    """A host with Noise-only security, Yamux, one connection per peer, no mDNS, no UPnP, no
    auto-connector, inbound slots freed on close, and wildcard listeners expanded."""
    drop_reuseport()  # G23, before any socket exists
    batch_window_updates()  # G27
    records.install()  # G29
    key_pair = key_pair_from_seed(config.key_seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    connection_config = ConnectionConfig(
        max_connections_per_peer=config.max_connections_per_peer,  # G6
        dial_timeout=config.dial_timeout_s,
        outbound_stream_protocol_negotiation_timeout=float(config.negotiate_timeout_s),
        inbound_stream_protocol_negotiation_timeout=float(config.negotiate_timeout_s),
        inbound_upgrade_timeout=config.handshake_timeout_s,  # G16
    )
    announce = [parse_multiaddr(a) for a in config.announce]
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},  # G3: Noise only, plaintext/secio/TLS refused
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        enable_mDNS=False,  # G9
        enable_upnp=False,
        connection_config=connection_config,
        negotiate_timeout=config.negotiate_timeout_s,
        announce_addrs=announce or None,
        addrs_factory=None if announce else expand_wildcards,  # G24
    )
    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=config.dial_retries)
    InboundGuard(max_pending_per_ip=config.max_pending_per_ip).attach(network)  # G15, per IP
    disable_auto_connector(host)  # G17
    return host


def inbound_guard(host: IHost) -> InboundGuard | None:
    """The :class:`InboundGuard` :func:`build_host` attached (its counters), if any."""
    handler = getattr(host.get_network(), "_do_handle_inbound_connection", None)
    guard = getattr(handler, "guard", None)
    return guard if isinstance(guard, InboundGuard) else None


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
    """Run ``host`` listening on ``listen``; on ANY exit close it shielded (G2).

    :class:`igor_p2p.net.listening.ListenFailed` when an address got no listener (G23).
    """
    addrs = [parse_multiaddr(a) for a in listen]
    drop_reuseport()  # G23 (hosts not made by build_host too)
    failure: str | None = None
    try:
        async with host.run(listen_addrs=addrs):
            failure = listen_failure(host, addrs)
            if failure is None:
                yield host
        if failure is not None:  # raised outside host.run's nursery: not wrapped in a group
            raise ListenFailed(failure)
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
