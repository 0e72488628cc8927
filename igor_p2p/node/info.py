"""``/igor/info/1.0.0``: ask a node what it knows about one agent (for ``igor agent status``).

One request, one reply, then the stream closes. The answer is informational: it never moves or
proves authority.

Any peer may ask, so a reply says only what ``igor agent status`` needs to find and describe
the agent (:data:`PUBLIC_FIELDS`: state, epoch, owner, node name, tick), never its budget or the
reasons recorded with it; the full record stays with the owner's operator. Each peer may ask
:data:`QUERIES_PER_S` times a second (burst :data:`QUERY_BURST`); beyond that it gets an
``error`` reply saying it is rate limited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from igor_p2p.errors import InvalidInput
from igor_p2p.net.framing import read_message, write_message
from igor_p2p.net.ratelimit import PeerRateLimiter

INFO_PROTOCOL = "/igor/info/1.0.0"
MAX_INFO_FRAME = 64 * 1024
INFO_TIMEOUT_S = 5.0
QUERIES_PER_S = 5.0
QUERY_BURST = 20.0
PUBLIC_FIELDS = ("agent", "found", "state", "epoch", "owner_peer", "node", "tick")
"""What a node tells any peer about one agent."""


class BadInfoRequest(InvalidInput):
    """An info request that is not ``{"type": "agent_status", "agent": str}``."""


def parse_request(message: dict[str, Any]) -> str:
    agent = message.get("agent")
    if message.get("type") != "agent_status" or not isinstance(agent, str) or len(agent) > 128:
        raise BadInfoRequest("expected agent_status with an agent DID")
    return agent


def public_view(status: dict[str, Any]) -> dict[str, Any]:
    """The part of a local agent status any peer may see."""
    return {k: status[k] for k in PUBLIC_FIELDS if k in status}


def info_handler(
    answer: Callable[[str], Awaitable[dict[str, Any]]],
    limiter: PeerRateLimiter | None = None,
) -> Callable[[INetStream], Awaitable[None]]:
    limits = limiter if limiter is not None else PeerRateLimiter(QUERIES_PER_S, QUERY_BURST)

    async def handle(stream: INetStream) -> None:
        request = await read_message(stream, max_size=MAX_INFO_FRAME, timeout_s=INFO_TIMEOUT_S)
        try:
            if not limits.allow(str(stream.muxed_conn.peer_id), trio.current_time()):
                raise BadInfoRequest("rate limited: too many status queries from this peer")
            did = parse_request(request)
        except BadInfoRequest as exc:
            await write_message(
                stream, {"type": "error", "error": str(exc)}, timeout_s=INFO_TIMEOUT_S
            )
            await stream.close()
            return
        reply = public_view(await answer(did))
        await write_message(stream, {"type": "agent_status", **reply}, timeout_s=INFO_TIMEOUT_S)
        await stream.close()

    return handle


async def query_agent(host: IHost, peer_id: str, did: str) -> dict[str, Any]:
    stream = await host.new_stream(ID.from_base58(peer_id), [TProtocol(INFO_PROTOCOL)])
    try:
        await write_message(
            stream, {"type": "agent_status", "agent": did}, timeout_s=INFO_TIMEOUT_S
        )
        reply = await read_message(stream, max_size=MAX_INFO_FRAME, timeout_s=INFO_TIMEOUT_S)
    finally:
        await stream.close()
    if reply.get("type") != "agent_status":
        raise BadInfoRequest(f"peer answered {reply.get('type')!r}")
    return reply
