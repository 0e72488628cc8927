"""The admin methods a node registers on its socket (see docs/admin-api.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from igor_p2p.node import admin_params as P
from igor_p2p.node.admin_params import BadParams
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.metering import MAX_BUDGET

if TYPE_CHECKING:
    from igor_p2p.node.node import Node

__all__ = ["BadParams", "register_core_methods", "register_handoff_methods"]

MAX_CLOCK_SKEW_S = 10 * 365 * 86_400.0
MAX_FAULT_DELAY_MS = 600_000
MAX_LAUNCH_WASM_BYTES = 1 << 20


def _str(params: dict[str, Any], name: str) -> str:
    return P.text(params, name)


def _hex(params: dict[str, Any], name: str, default: bytes | None = None) -> bytes:
    return P.hex_bytes(params, name, max_bytes=MAX_LAUNCH_WASM_BYTES, default=default)


def _int(params: dict[str, Any], name: str, default: int) -> int:
    return P.integer(params, name, lo=0, hi=MAX_BUDGET, default=default)


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
        reason = P.text(params, "reason", max_chars=P.MAX_TEXT_CHARS, default="halted by operator")
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
            operator = P.text(params, "operator", default="operator")
            return await driver().force_recover(did, operator)
        return {"agent": did, "result": await driver().resolve_agent(did)}

    async def partition(params: dict[str, Any]) -> Any:
        peers = P.text_list(params, "peers")
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
        P.expect_only(
            params, ("clear", "drop", "duplicate", "delay_ms", "reorder", "peers", "seed")
        )
        if P.flag(params, "clear"):
            gate.clear_message_faults()
            node.running.services.history.emit("fault", fault="clear_faults", detail={})
            return {"faults": None}
        peers = params.get("peers")
        spec = MessageFaults(
            drop=P.number(params, "drop", lo=0.0, hi=1.0, default=0.0),
            duplicate=P.number(params, "duplicate", lo=0.0, hi=1.0, default=0.0),
            delay_ms=P.integer(params, "delay_ms", lo=0, hi=MAX_FAULT_DELAY_MS, default=0),
            reorder=P.flag(params, "reorder"),
            peers=frozenset(P.text_list(params, "peers")) if peers is not None else None,
            seed=P.integer(params, "seed", lo=-P.INT64_MAX, hi=P.INT64_MAX)
            if params.get("seed") is not None
            else None,
        )
        gate.set_message_faults(spec)
        node.running.services.history.emit(
            "fault", fault="message_faults", detail={k: v for k, v in params.items()}
        )
        return {"faults": str(spec)}

    async def skew(params: dict[str, Any]) -> Any:
        seconds = P.number(params, "seconds", lo=-MAX_CLOCK_SKEW_S, hi=MAX_CLOCK_SKEW_S)
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
