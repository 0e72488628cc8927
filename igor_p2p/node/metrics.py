"""Optional Prometheus endpoint (``--metrics HOST:PORT``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from igor_p2p.node.config import ConfigError

if TYPE_CHECKING:
    from igor_p2p.node.api import NodeApi


def parse_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"--metrics wants HOST:PORT, got {text!r}") from None


async def serve_metrics(api: NodeApi, endpoint: str) -> None:
    host, port = parse_endpoint(endpoint)
    registry = CollectorRegistry()
    agents = Gauge("igor_agents_ticking", "Agents this node is ticking", registry=registry)
    ticks = Gauge("igor_ticks_total", "Ticks run since the node started", registry=registry)
    peers_up = Gauge("igor_peers_up", "Peers heard from recently", registry=registry)
    connections = Gauge("igor_connections", "Open libp2p connections", registry=registry)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        while True:
            agents.set(len(api.scheduler.agents))
            ticks.set(api.scheduler.ticks_total)
            peers_up.set(len(api.peers.up_peers()))
            connections.set(len(api.host.get_network().connections))
            await trio.sleep(1.0)
    finally:
        server.shutdown()
        thread.join(timeout=2)
