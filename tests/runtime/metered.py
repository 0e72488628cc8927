"""Hostile agents for the metering tests, and a runner that ticks one to its end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio
from wasmtime import wat2wasm

from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest, launch
from igor_p2p.runtime.scheduler import SchedulerConfig, SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import RuntimeConfig, open_services


def _wasm(wat: str) -> bytes:
    return bytes(wat2wasm(wat))


_ABI = """
  (func (export "agent_init"))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
"""

BURN_THEN_TRAP = _wasm(
    """(module (memory (export "memory") 1)"""
    + _ABI
    + """
  (func (export "agent_tick") (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))
    unreachable))"""
)
"""Burns about 100,000 loop iterations of fuel, then traps."""

LOG_FLOOD = _wasm(
    """(module (import "igor" "log_emit" (func $log (param i32 i32)))
  (memory (export "memory") 1)"""
    + _ABI
    + """
  (func (export "agent_tick") (result i32) (local $i i32)
    (loop $l (call $log (i32.const 0) (i32.const 4096))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 200))))
    (i32.const 0)))"""
)
"""Emits 200 log lines of 4 KiB (800 KiB) every tick."""
LOG_MANIFEST = b'{"capabilities": {"log": {"version": 1}}}'


@dataclass
class Ended:
    state: AuthorityState | None
    reason: str
    budget: int
    """The budget of the agent's last committed checkpoint."""
    ticks: int


async def tick_to_end(
    tmp_path: Path,
    wasm: bytes,
    manifest: bytes = b"{}",
    *,
    budget: int = 10**12,
    runtime: RuntimeConfig | None = None,
    ticks: int | None = None,
    deadline_s: float = 30.0,
) -> Ended:
    """Launch ``wasm`` and tick it until it stops (or ``ticks`` ticks ran)."""
    ended: list[tuple[AuthorityState, str]] = []
    async with open_services(DataDir(tmp_path), runtime or RuntimeConfig()) as services:
        agent = await launch(services, LaunchRequest(wasm=wasm, manifest=manifest, budget=budget))
        sched = TickScheduler(
            services,
            SchedulerConfig(idle_interval_s=0.001, busy_interval_s=0.001),
            SchedulerHooks(on_terminal=lambda a, s, r: ended.append((s, r))),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            sched.add(agent, tick_limit=ticks)
            with trio.fail_after(deadline_s):
                await sched.idle.wait()
            nursery.cancel_scope.cancel()
        state, reason = ended[0] if ended else (None, "")
        return Ended(state, reason, agent.head.budget, agent.head.tick)
