"""The admin methods a node registers on its socket (see docs/admin-api.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from igor_p2p.errors import InvalidInput
from igor_p2p.runtime.loader import LaunchRequest

if TYPE_CHECKING:
    from igor_p2p.node.node import Node


class BadParams(InvalidInput):
    """An admin call's parameters are missing or of the wrong type."""


def _str(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise BadParams(f"{name} must be a non-empty string")
    return value


def _hex(params: dict[str, Any], name: str, default: bytes | None = None) -> bytes:
    value = params.get(name)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise BadParams(f"{name} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadParams(f"{name} is not valid hex") from None


def _int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if type(value) is not int or value < 0:
        raise BadParams(f"{name} must be a non-negative integer")
    return value


def register_core_methods(node: Node) -> None:
    methods = node.admin_methods

    async def status(params: dict[str, Any]) -> Any:
        return await node.status()

    async def peers(params: dict[str, Any]) -> Any:
        import trio

        return node.running.peers.to_json(trio.current_time())

    async def agents(params: dict[str, Any]) -> Any:
        return await node.agents()

    async def agent_status(params: dict[str, Any]) -> Any:
        return await node.agent_status(_str(params, "agent"))

    async def launch(params: dict[str, Any]) -> Any:
        request = LaunchRequest(
            wasm=_hex(params, "wasm"),
            manifest=_hex(params, "manifest", b"{}"),
            budget=_int(params, "budget", 1_000_000),
        )
        agent = await node.launch(request)
        return {"agent": agent.did, "epoch": agent.epoch, "peer_id": node.running.services.peer_id}

    async def halt(params: dict[str, Any]) -> Any:
        reason = params.get("reason") or "halted by operator"
        if not isinstance(reason, str):
            raise BadParams("reason must be a string")
        return await node.halt(_str(params, "agent"), reason)

    async def stop(params: dict[str, Any]) -> Any:
        node.stop()
        return {"stopping": True}

    methods.update(
        status=status,
        peers=peers,
        agents=agents,
        agent_status=agent_status,
        launch=launch,
        halt=halt,
        stop=stop,
    )
