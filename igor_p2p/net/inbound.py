"""Inbound connections: slots freed on close (G15), a short handshake deadline (G16), and a
cap on pending handshakes per remote IP.

* G15 — py-libp2p 0.8.1 takes one ``_inbound_limiter`` slot (250 by default) per accepted
  socket and, after a successful upgrade, parks the handler on ``swarm.manager.wait_finished()``
  — until the *swarm* stops. Every inbound connection of the node's life keeps its slot, so
  after 250 of them every new inbound peer is refused for good. :meth:`InboundGuard.attach`
  replaces ``_do_handle_inbound_connection`` on the swarm instance: the handler waits for the
  *connection* to close (``muxed_conn.event_closed``), so the slot is freed with it.
* G16 — a socket that never speaks Noise holds a slot for ``inbound_upgrade_timeout`` (10 s by
  default): :func:`igor_p2p.net.host.build_host` sets it to ``HostConfig.handshake_timeout_s``.
* Per-IP pending cap — a cap's worth of silent sockets from one address would still keep every
  other peer out for that long, again and again. At most ``max_pending_per_ip`` handshakes may
  be pending per remote IP; sockets above it are closed at once, before any byte is read.
  Established connections are not counted (the connection manager bounds those).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IMuxedConn
from libp2p.network.connection.raw_connection import RawConnection

LOG = logging.getLogger(__name__)


def remote_ip(read_write_closer: Any) -> str | None:
    """The remote IP of an accepted socket stream, or None when it can't be told."""
    try:
        address = read_write_closer.get_remote_address()
    except Exception:
        return None
    if not address:
        return None
    return str(address[0])


@dataclass
class InboundGuard:
    """Counts pending inbound handshakes per IP and owns the patched swarm handler."""

    max_pending_per_ip: int = 16
    pending: Counter[str] = field(default_factory=Counter)
    refused_per_ip: int = 0
    handshakes_failed: int = 0
    admitted: int = 0

    def admit(self, ip: str | None) -> bool:
        """Take a pending slot for ``ip``; False when that IP is at its cap."""
        if ip is None:
            return True
        if self.pending[ip] >= self.max_pending_per_ip:
            self.refused_per_ip += 1
            return False
        self.pending[ip] += 1
        return True

    def release(self, ip: str | None) -> None:
        if ip is None:
            return
        self.pending[ip] -= 1
        if self.pending[ip] <= 0:
            del self.pending[ip]

    def attach(self, swarm: Any) -> None:
        """Replace ``swarm._do_handle_inbound_connection`` on this instance (G15 + per-IP cap).

        The outer ``_handle_inbound_connection`` still takes and releases the global
        ``_inbound_limiter`` slot around our handler; ours returns when the connection closes.
        Pre-multiplexed transports (QUIC and co., unused here) keep py-libp2p's handler.
        """
        original = swarm._do_handle_inbound_connection

        async def handle(read_write_closer: Any, maddr: Any, failure_event: Any) -> None:
            if isinstance(read_write_closer, IMuxedConn):
                await original(read_write_closer, maddr, failure_event)
                return
            ip = remote_ip(read_write_closer)
            if not self.admit(ip):
                LOG.debug("inbound from %s refused: %d handshakes pending", ip, self.pending[ip])
                with contextlib.suppress(Exception):
                    await read_write_closer.close()
                return
            muxed = None
            raw = None
            try:
                remote = swarm._build_remote_multiaddr(read_write_closer)
                if remote is not None and not await swarm.connection_gate.is_allowed(remote):
                    with contextlib.suppress(Exception):
                        await read_write_closer.close()
                    return
                raw = RawConnection(read_write_closer, False)
                # Bounded by ConnectionConfig.inbound_upgrade_timeout (G16).
                muxed = await swarm.upgrade_inbound_raw_conn(raw, maddr)
            except Exception as exc:
                self.handshakes_failed += 1
                LOG.debug("inbound handshake from %s failed: %s", ip, exc)
                with contextlib.suppress(Exception):
                    await (raw if raw is not None else read_write_closer).close()
                return
            finally:
                self.release(ip)
            self.admitted += 1
            await wait_closed(muxed)

        handle.guard = self  # type: ignore[attr-defined]
        swarm._do_handle_inbound_connection = handle


async def wait_closed(muxed: Any) -> None:
    """Until a muxed connection is closed (Yamux sets ``event_closed``)."""
    event = getattr(muxed, "event_closed", None)
    if isinstance(event, trio.Event):
        await event.wait()
        return
    while not getattr(muxed, "is_closed", True):  # other muxers: poll
        await trio.sleep(1.0)
