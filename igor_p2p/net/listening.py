"""Listening: a port in use is an error, and a wildcard listener announces real addresses.

* G23 — py-libp2p sets ``SO_REUSEPORT`` on every TCP socket (for hole punching, which we never
  do), so a second node binds a port that a running node holds and the kernel splits incoming
  connections between them; and a listen that fails is only logged (``Swarm.listen`` returns
  False, ``BasicHost.run`` ignores it). :func:`drop_reuseport` is the one place that patches
  ``libp2p.transport.tcp.tcp._set_reuse_flags`` (SO_REUSEADDR only, process-wide);
  :func:`require_listeners` turns a missing listener into :class:`ListenFailed` that says why
  (port in use, address not on this machine, no permission).
* G24 — a ``/ip4/0.0.0.0/…`` listener is advertised verbatim (in identify, the signed peer
  record, DHT closer-peer entries, our announcements), and peers keep only that address, which
  on Linux dials *their own* host. :func:`expand_wildcards` is an ``addrs_factory`` that
  replaces each wildcard with this machine's interface addresses (non-loopback first);
  :func:`wildcard_warning` says how to choose the advertised address when only loopback was
  found.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import time
from collections.abc import Sequence

import libp2p.transport.tcp.tcp as libp2p_tcp
import multiaddr
import psutil
from libp2p.abc import IHost

from igor_p2p.net.errors import NetError

WILDCARDS = {"ip4": "0.0.0.0", "ip6": "::"}
INTERFACE_CACHE_S = 30.0


LIBP2P_REUSE_FLAGS = libp2p_tcp._set_reuse_flags
"""py-libp2p's own flag function (SO_REUSEADDR + SO_REUSEPORT), kept for the pin test."""


class ListenFailed(NetError):
    """The host could not listen on a requested address (port in use, foreign address, ...)."""


def _reuse_addr_only(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def drop_reuseport() -> None:
    """G23: the ONE place that patches py-libp2p's TCP socket flags: SO_REUSEADDR (restart
    without TIME_WAIT trouble) but never SO_REUSEPORT (two listeners on one port)."""
    libp2p_tcp._set_reuse_flags = _reuse_addr_only  # type: ignore[assignment]


def _ip_and_port(addr: multiaddr.Multiaddr) -> tuple[str, str, int] | None:
    """(family protocol, ip, tcp port) of a TCP multiaddr, else None."""
    for proto in ("ip4", "ip6"):
        try:
            ip = addr.value_for_protocol(proto)
            port = addr.value_for_protocol("tcp")
        except Exception:
            continue
        if ip and port is not None:
            return proto, str(ip), int(port)
    return None


def _why_not(proto: str, ip: str, port: int) -> str:
    """Try to bind ``ip:port`` ourselves to name the reason the listener is missing."""
    family = socket.AF_INET6 if proto == "ip6" else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((ip, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is already in use (another node?); choose another with --listen"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{ip} is not an address of this machine"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"no permission to listen on port {port}"
        return exc.strerror or str(exc)
    return "the listener did not start"


def require_listeners(host: IHost, requested: Sequence[multiaddr.Multiaddr]) -> None:
    """G23: raise :class:`ListenFailed` unless every requested address has a listener."""
    failure = listen_failure(host, requested)
    if failure is not None:
        raise ListenFailed(failure)


def listen_failure(host: IHost, requested: Sequence[multiaddr.Multiaddr]) -> str | None:
    """Why one of the requested addresses has no listener (G23), or None when all do."""
    got = [p for p in (_ip_and_port(a) for a in host.get_transport_addrs()) if p is not None]
    for addr in requested:
        want = _ip_and_port(addr)
        if want is None:
            continue
        proto, ip, port = want
        if any(g[0] == proto and g[1] == ip and (port == 0 or g[2] == port) for g in got):
            continue
        return f"cannot listen on {addr}: {_why_not(proto, ip, port)}"
    return None


_interfaces: dict[str, tuple[float, list[str]]] = {}


def interface_ips(proto: str) -> list[str]:
    """This machine's addresses of ``proto`` (ip4/ip6) on interfaces that are up: global and
    private addresses first, loopback last, link-local never. Cached for a few seconds."""
    now = time.monotonic()
    cached = _interfaces.get(proto)
    if cached is not None and now - cached[0] < INTERFACE_CACHE_S:
        return cached[1]
    family = socket.AF_INET6 if proto == "ip6" else socket.AF_INET
    stats = psutil.net_if_stats()
    outer: list[str] = []
    loop: list[str] = []
    for name, addrs in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for a in addrs:
            if a.family != family:
                continue
            text = a.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_link_local or ip.is_unspecified or ip.is_multicast:
                continue
            (loop if ip.is_loopback else outer).append(str(ip))
    result = sorted(set(outer)) + sorted(set(loop))
    _interfaces[proto] = (now, result)
    return result


def expand_wildcards(candidates: Sequence[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """G24 ``addrs_factory``: each ``0.0.0.0``/``::`` TCP listener becomes one address per
    interface address of this machine; other addresses pass through unchanged."""
    out: list[multiaddr.Multiaddr] = []
    seen: set[str] = set()
    for addr in candidates:
        parts = _ip_and_port(addr)
        expanded = [addr]
        if parts is not None and parts[1] == WILDCARDS[parts[0]]:
            proto, _, port = parts
            expanded = [
                multiaddr.Multiaddr(f"/{proto}/{ip}/tcp/{port}") for ip in interface_ips(proto)
            ]
        for a in expanded:
            if str(a) not in seen:
                seen.add(str(a))
                out.append(a)
    return out


def is_wildcard(addr: str | multiaddr.Multiaddr) -> bool:
    parts = _ip_and_port(multiaddr.Multiaddr(str(addr)))
    return parts is not None and parts[1] == WILDCARDS[parts[0]]


def wildcard_warning(listen: Sequence[str], announce: Sequence[str]) -> str | None:
    """A message for the operator when a wildcard listener has no non-loopback address to
    advertise (peers on other machines could not reach us), else None."""
    if announce:
        return None
    for addr in listen:
        if not is_wildcard(addr):
            continue
        proto = "ip6" if str(addr).startswith("/ip6/") else "ip4"
        outer = [ip for ip in interface_ips(proto) if not ipaddress.ip_address(ip).is_loopback]
        if not outer:
            return (
                f"listening on {addr} but this machine has no non-loopback {proto} address, so "
                "only local peers can reach it; advertise a reachable address with "
                f"--announce /{proto}/<address>/tcp/<port>"
            )
    return None
