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


def register_handoff_methods(node: Node) -> None:
    """migrate, recover and the fault controls (partition, message faults, clock skew)."""
    from igor_p2p.net.faults import MessageFaults

    methods = node.admin_methods

    def driver():  # type: ignore[no-untyped-def]
        if node.handoff is None:
            raise BadParams("the handoff driver is not running")
        return node.handoff

    async def migrate(params: dict[str, Any]) -> Any:
        did = _str(params, "agent")
        target = _str(params, "to")
        if target.startswith("/"):
            from igor_p2p.net.host import dial

            peer = await dial(node.running.host, target, timeout_s=5.0)
            target = str(peer)
        outcome = await driver().migrate(did, target)
        return {"agent": did, "to": target, "outcome": outcome.value}

    async def recover(params: dict[str, Any]) -> Any:
        did = _str(params, "agent")
        if params.get("force"):
            if params.get("confirm") is not True:
                raise BadParams("a forced recovery needs confirm=true")
            operator = params.get("operator") or "operator"
            if not isinstance(operator, str):
                raise BadParams("operator must be a string")
            return await driver().force_recover(did, operator)
        return {"agent": did, "result": await driver().resolve_agent(did)}

    async def partition(params: dict[str, Any]) -> Any:
        peers = params.get("peers")
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise BadParams("peers must be a list of peer IDs")
        gate = node.faults
        assert gate is not None
        await gate.heal()
        await gate.block(peers)
        node.running.services.history.emit("fault", fault="partition", detail={"peers": peers})
        return {"blocked": sorted(gate.blocked())}

    async def heal(params: dict[str, Any]) -> Any:
        gate = node.faults
        assert gate is not None
        await gate.heal()
        node.running.services.history.emit("fault", fault="heal", detail={})
        for entry in node.running.peers.peers.values():
            node.running.nursery.start_soon(node.running.discovery._dial, entry.announcement)
        return {"blocked": []}

    async def message_faults(params: dict[str, Any]) -> Any:
        gate = node.faults
        assert gate is not None
        if params.get("clear"):
            gate.clear_message_faults()
            node.running.services.history.emit("fault", fault="clear_faults", detail={})
            return {"faults": None}
        peers = params.get("peers")
        spec = MessageFaults(
            drop=float(params.get("drop", 0.0)),
            duplicate=float(params.get("duplicate", 0.0)),
            delay_ms=int(params.get("delay_ms", 0)),
            reorder=bool(params.get("reorder", False)),
            peers=frozenset(peers) if isinstance(peers, list) else None,
            seed=params.get("seed") if isinstance(params.get("seed"), int) else None,
        )
        gate.set_message_faults(spec)
        node.running.services.history.emit(
            "fault", fault="message_faults", detail={k: v for k, v in params.items()}
        )
        return {"faults": str(spec)}

    async def skew(params: dict[str, Any]) -> Any:
        seconds = params.get("seconds")
        if not isinstance(seconds, int | float):
            raise BadParams("seconds must be a number")
        gate = node.faults
        assert gate is not None
        gate.set_clock_offset(float(seconds))
        fault = "skew" if seconds else "unskew"
        node.running.services.history.emit("fault", fault=fault, detail={"seconds": seconds})
        return {"offset_s": seconds}

    async def faults(params: dict[str, Any]) -> Any:
        gate = node.faults
        assert gate is not None
        return {"blocked": sorted(gate.blocked()), "stats": gate.stats()}

    methods.update(
        migrate=migrate,
        recover=recover,
        partition=partition,
        heal=heal,
        message_faults=message_faults,
        skew=skew,
        faults=faults,
    )
