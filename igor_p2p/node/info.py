"""``/igor/info/1.0.0``: ask a node what it knows about one agent (for ``igor agent status``).

One request, one reply, then the stream closes. The answer is informational: it never moves or
proves authority.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from igor_p2p.errors import InvalidInput
from igor_p2p.net.framing import read_message, write_message

INFO_PROTOCOL = "/igor/info/1.0.0"
MAX_INFO_FRAME = 64 * 1024
INFO_TIMEOUT_S = 5.0


class BadInfoRequest(InvalidInput):
    """An info request that is not ``{"type": "agent_status", "agent": str}``."""


def parse_request(message: dict[str, Any]) -> str:
    agent = message.get("agent")
    if message.get("type") != "agent_status" or not isinstance(agent, str) or len(agent) > 128:
        raise BadInfoRequest("expected agent_status with an agent DID")
    return agent


def info_handler(
    answer: Callable[[str], Awaitable[dict[str, Any]]],
) -> Callable[[INetStream], Awaitable[None]]:
    async def handle(stream: INetStream) -> None:
        request = await read_message(stream, max_size=MAX_INFO_FRAME, timeout_s=INFO_TIMEOUT_S)
        try:
            did = parse_request(request)
        except BadInfoRequest as exc:
            await write_message(
                stream, {"type": "error", "error": str(exc)}, timeout_s=INFO_TIMEOUT_S
            )
            await stream.close()
            return
        reply = await answer(did)
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
