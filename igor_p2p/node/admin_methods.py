"""The admin methods a node registers on its socket (see docs/admin-api.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from igor_p2p.net.faults import FaultGate, MessageFaults
from igor_p2p.node import admin_params as P
from igor_p2p.node.admin_params import BadParams
from igor_p2p.node.api import NodeApi
from igor_p2p.node.progress import migration_progress_method
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.metering import MAX_BUDGET

__all__ = ["BadParams", "register_methods"]

Method = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_CLOCK_SKEW_S = 10 * 365 * 86_400.0
MAX_FAULT_DELAY_MS = 600_000
MAX_LAUNCH_WASM_BYTES = 1 << 20


def _str(params: dict[str, Any], name: str) -> str:
    return P.text(params, name)


def _hex(params: dict[str, Any], name: str, default: bytes | None = None) -> bytes:
    return P.hex_bytes(params, name, max_bytes=MAX_LAUNCH_WASM_BYTES, default=default)


def _int(params: dict[str, Any], name: str, default: int) -> int:
    return P.integer(params, name, lo=0, hi=MAX_BUDGET, default=default)


def register_methods(
    methods: dict[str, Method],
    api: NodeApi,
    faults: FaultGate,
    *,
    stop: Callable[[], None],
) -> None:
    """Every admin method, each with the narrow part of the node it needs."""
    history = api.services.history

    async def status(params: dict[str, Any]) -> Any:
        return await api.status()

    async def peers(params: dict[str, Any]) -> Any:
        return api.peers.to_json(trio.current_time())

    async def agents(params: dict[str, Any]) -> Any:
        return await api.agents()

    async def agent_status(params: dict[str, Any]) -> Any:
        return await api.agent_status(_str(params, "agent"))

    async def launch(params: dict[str, Any]) -> Any:
        request = LaunchRequest(
            wasm=_hex(params, "wasm"),
            manifest=_hex(params, "manifest", b"{}"),
            budget=_int(params, "budget", 1_000_000),
        )
        return await api.launch(request)

    async def halt(params: dict[str, Any]) -> Any:
        reason = P.text(params, "reason", max_chars=P.MAX_TEXT_CHARS, default="halted by operator")
        return await api.halt(_str(params, "agent"), reason)

    async def resume(params: dict[str, Any]) -> Any:
        return await api.resume(_str(params, "agent"))

    async def stop_node(params: dict[str, Any]) -> Any:
        stop()
        return {"stopping": True}

    async def migrate(params: dict[str, Any]) -> Any:
        return await api.migrate(_str(params, "agent"), _str(params, "to"))

    async def recover(params: dict[str, Any]) -> Any:
        did = _str(params, "agent")
        if params.get("force"):
            if params.get("confirm") is not True:
                raise BadParams("a forced recovery needs confirm=true")
            operator = P.text(params, "operator", default="operator")
            return await api.force_recover(did, operator)
        return await api.local_status(did)

    async def migration_progress(params: dict[str, Any]) -> Any:
        return await migration_progress_method(api.services.data.history, params)

    async def partition(params: dict[str, Any]) -> Any:
        blocked = P.text_list(params, "peers")
        await faults.heal()
        await faults.block(blocked)
        history.emit("fault", fault="partition", detail={"peers": blocked})
        return {"blocked": sorted(faults.blocked())}

    async def heal(params: dict[str, Any]) -> Any:
        await faults.heal()
        history.emit("fault", fault="heal", detail={})
        return {"blocked": []}

    async def message_faults(params: dict[str, Any]) -> Any:
        P.expect_only(
            params,
            ("clear", "drop", "duplicate", "delay_ms", "reorder", "peers", "seed", "kinds"),
        )
        if P.flag(params, "clear"):
            faults.clear_message_faults()
            history.emit("fault", fault="clear_faults", detail={})
            return {"faults": None}
        only = params.get("peers")
        spec = MessageFaults(
            drop=P.number(params, "drop", lo=0.0, hi=1.0, default=0.0),
            duplicate=P.number(params, "duplicate", lo=0.0, hi=1.0, default=0.0),
            delay_ms=P.integer(params, "delay_ms", lo=0, hi=MAX_FAULT_DELAY_MS, default=0),
            reorder=P.flag(params, "reorder"),
            peers=frozenset(P.text_list(params, "peers")) if only is not None else None,
            seed=P.integer(params, "seed", lo=-P.INT64_MAX, hi=P.INT64_MAX)
            if params.get("seed") is not None
            else None,
            kinds=frozenset(P.text_list(params, "kinds")) if "kinds" in params else None,
        )
        faults.set_message_faults(spec)
        history.emit("fault", fault="message_faults", detail={k: v for k, v in params.items()})
        return {"faults": str(spec)}

    async def skew(params: dict[str, Any]) -> Any:
        seconds = P.number(params, "seconds", lo=-MAX_CLOCK_SKEW_S, hi=MAX_CLOCK_SKEW_S)
        faults.set_clock_offset(float(seconds))
        fault = "skew" if seconds else "unskew"
        history.emit("fault", fault=fault, detail={"seconds": seconds})
        return {"offset_s": seconds}

    async def fault_state(params: dict[str, Any]) -> Any:
        return {"blocked": sorted(faults.blocked()), "stats": faults.stats()}

    methods.update(
        status=status,
        peers=peers,
        agents=agents,
        agent_status=agent_status,
        launch=launch,
        halt=halt,
        resume=resume,
        stop=stop_node,
        migrate=migrate,
        recover=recover,
        migration_progress=migration_progress,
        partition=partition,
        heal=heal,
        message_faults=message_faults,
        skew=skew,
        faults=fault_state,
    )
