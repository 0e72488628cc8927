"""A clean, Go-shaped refusal for Go Igor nodes that offer an agent on ``/igor/migrate/1.0.0``.

Go Igor (``internal/migration``) writes one ``AgentTransfer`` as newline-terminated JSON
(``{"Package": {"AgentID": ..., "WASMBinary": ..., ...}, "SourceNodeID": ...}``) and then
decodes one ``AgentStarted`` (``AgentID``, ``NodeID``, ``Success``, ``Error``). Igor-P2P's own
protocols live under ``/igor-p2p/`` (:mod:`igor_p2p.net.transport`), so this ID only ever
carries Go. The handler reads the transfer line (keeping its first ``parse_bytes`` to find the
agent ID, discarding the rest, at most ``max_bytes``, within ``timeout_s``: Go's own read
deadline is 30 s) and answers ``AgentStarted{Success: false, Error: "<why>"}`` as one JSON
line, so the Go node logs ``target failed to start agent: <why>`` and keeps its agent.

Input that does not start like JSON (e.g. an Igor-P2P node from before the namespace move,
which sends length-prefixed msgpack here) is reset unanswered.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream

from igor_p2p.errors import InvalidInput
from igor_p2p.net.errors import NetError
from igor_p2p.net.framing import ByteStream
from igor_p2p.net.handlers import reset_quietly, set_guarded_handler
from igor_p2p.net.quietlog import PeerLogLimiter

LOG = logging.getLogger(__name__)

GO_MIGRATE_PROTOCOL = "/igor/migrate/1.0.0"

GO_REFUSAL = (
    "this node runs Igor-P2P, which does not take agents from Go Igor over the network "
    "(its protocols are /igor-p2p/*); the agent stays on the sending node. To move it, copy "
    "its checkpoint and .identity file and run `igor checkpoint import` on the Igor-P2P node"
)
MAX_AGENT_ID_CHARS = 256
_READ_CHUNK = 1 << 16
_AGENT_ID = re.compile(rb'"AgentID"\s*:\s*("(?:[^"\\]|\\.)*")')


@dataclass(frozen=True)
class GoRefusalLimits:
    parse_bytes: int = 64 * 1024
    """The head of the transfer kept to find the agent ID."""
    max_bytes: int = 256 * 1024 * 1024
    """At most this much of a transfer is read (and discarded) before answering anyway."""
    timeout_s: float = 30.0
    """The whole transfer line must arrive within this."""
    write_timeout_s: float = 10.0
    log_interval_s: float = 60.0


def agent_id_of(head: bytes) -> str:
    """The ``AgentID`` a Go transfer names in its first bytes ("" when not found)."""
    match = _AGENT_ID.search(head)
    if match is None:
        return ""
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return ""
    return value[:MAX_AGENT_ID_CHARS] if isinstance(value, str) else ""


def agent_started(agent_id: str, node_id: str, error: str) -> bytes:
    """Go's ``AgentStarted`` with ``Success: false``, as Go's ``json.Encoder`` writes it."""
    reply = {"AgentID": agent_id, "NodeID": node_id, "Success": False, "Error": error}
    return (json.dumps(reply, separators=(",", ":")) + "\n").encode()


class NotGo(NetError, InvalidInput):
    """The stream does not carry a Go JSON transfer."""


async def read_transfer_head(stream: ByteStream, limits: GoRefusalLimits) -> bytes:
    """Read one JSON line from ``stream``; return its first ``parse_bytes`` bytes.

    Ends at the newline, at EOF, or after ``max_bytes``; raises :class:`NotGo` when the first
    non-blank byte is not ``{`` and ``trio.TooSlowError`` when ``timeout_s`` passes first.
    """
    head = bytearray()
    total = 0
    started = False
    with trio.fail_after(limits.timeout_s):
        while total < limits.max_bytes:
            try:
                chunk = await stream.read(min(_READ_CHUNK, limits.max_bytes - total))
            except EOFError:  # libp2p StreamEOF (a reset reads the same, G4)
                break
            if not chunk:
                break
            if not started:
                stripped = bytes(chunk).lstrip()
                if stripped and not stripped.startswith(b"{"):
                    raise NotGo("not a JSON transfer")
                started = bool(stripped)
            total += len(chunk)
            end = chunk.find(b"\n")
            if len(head) < limits.parse_bytes:
                head += chunk[: limits.parse_bytes - len(head)]
            if end >= 0:
                break
    if not started:
        raise NotGo("no transfer")
    return bytes(head)


class GoRefusal:
    """The ``/igor/migrate/1.0.0`` stream handler: read Go's transfer, answer a refusal."""

    def __init__(
        self, node_id: str, *, reason: str = GO_REFUSAL, limits: GoRefusalLimits | None = None
    ) -> None:
        self.node_id = node_id
        self.reason = reason
        self.limits = limits if limits is not None else GoRefusalLimits()
        self.refused = 0
        self._quiet = PeerLogLimiter(LOG, interval_s=self.limits.log_interval_s)

    async def __call__(self, stream: INetStream) -> None:
        peer = _remote_peer(stream)
        try:
            head = await read_transfer_head(stream, self.limits)
        except Exception as exc:  # NotGo, trio.TooSlowError, stream failures
            self._quiet.warning(peer, f"{GO_MIGRATE_PROTOCOL}: stream from {peer} reset: {exc}")
            await reset_quietly(stream)
            return
        agent = agent_id_of(head)
        try:
            with trio.fail_after(self.limits.write_timeout_s):
                await stream.write(agent_started(agent, self.node_id, self.reason))
        except Exception as exc:
            self._quiet.warning(peer, f"{GO_MIGRATE_PROTOCOL}: reply to {peer} failed: {exc}")
            await reset_quietly(stream)
            return
        self.refused += 1  # the refusal is on its way; closing is courtesy
        try:
            with trio.fail_after(self.limits.write_timeout_s):
                await stream.close()
        except Exception:  # the Go side may still be writing, or gone: nothing to tell it
            await reset_quietly(stream)
        self._quiet.warning(
            peer, f"refused a Go Igor migration of agent {agent!r} from {peer} (Go protocol)"
        )


def serve_go_refusal(
    host: IHost, *, reason: str = GO_REFUSAL, limits: GoRefusalLimits | None = None
) -> GoRefusal:
    """Answer Go Igor's migrations on ``host`` with a refusal; return the handler."""
    refusal = GoRefusal(host.get_id().to_base58(), reason=reason, limits=limits)
    set_guarded_handler(host, GO_MIGRATE_PROTOCOL, refusal, log=LOG)
    return refusal


def _remote_peer(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)
    except Exception:
        return "<unknown>"
