"""Admin method ``agent_logs``: the lines an agent on this node printed (``igor agent logs``).

Self-contained: :func:`register_log_methods` adds the method to an admin registry and reads
only the node's :class:`~igor_p2p.runtime.agent_logs.AgentLogBook` and store.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.runtime.agent_logs import MAX_READ_LINES
from igor_p2p.runtime.services import NodeServices


class BadLogParams(InvalidInput):
    """``agent_logs`` parameters are missing or of the wrong type."""


class NoSuchAgent(IgorError):
    """This node has no record of the agent and holds no lines from it."""


class AmbiguousAgent(InvalidInput):
    """The agent ID given matches more than one agent on this node."""


def _non_negative_int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if type(value) is not int or value < 0:
        raise BadLogParams(f"{name} must be a non-negative integer")
    return value


async def _resolve(services: NodeServices, given: str) -> str:
    """A full DID, or a unique suffix of one known here (store records or log book)."""
    known = set(services.agent_logs.agents())
    records = await services.committer.read_inline(lambda store: store.records())
    known.update(agent for agent, _ in records)
    if given in known:
        return given
    matches = sorted(a for a in known if a.endswith(given))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NoSuchAgent(f"no agent {given} on this node")
    raise AmbiguousAgent(f"{given} matches {len(matches)} agents: {', '.join(matches)}")


def register_log_methods(registry: MutableMapping[str, Any], services: NodeServices) -> None:
    """Add ``agent_logs`` to ``registry``.

    Params: ``agent`` (DID or unique suffix), ``after`` (sequence number, default 0: every line
    still kept), ``limit`` (default and maximum 1000). Result: ``{"agent", "lines": [{"seq",
    "wall_ns", "stream", "text"}], "next_after", "dropped"}``; pass ``next_after`` back as
    ``after`` to follow.
    """

    async def agent_logs(params: dict[str, Any]) -> Any:
        given = params.get("agent")
        if not isinstance(given, str) or not given:
            raise BadLogParams("agent must be a non-empty string")
        after = _non_negative_int(params, "after", 0)
        limit = _non_negative_int(params, "limit", MAX_READ_LINES)
        did = await _resolve(services, given)
        page = services.agent_logs.read(did, after, max(1, limit))
        return {
            "agent": did,
            "lines": [line.to_json() for line in page.lines],
            "next_after": page.next_after,
            "dropped": page.dropped,
        }

    registry["agent_logs"] = agent_logs
