"""Hostile agents for the metering tests, and a local run that ticks one to its end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio
from wasmtime import wat2wasm

from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.local import LaunchHere, LocalRunOptions, run_local
from igor_p2p.runtime.scheduler import SchedulerConfig
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
    """The agent's authority state afterwards (None: it still ticks, ACTIVE_OWNER)."""
    reason: str
    budget: int
    """The budget of the agent's last committed checkpoint."""
    ticks: int
    """The tick of the agent's last committed checkpoint."""


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
    """Launch ``wasm`` in a local run (the node core, its gate and the tick scheduler) and tick
    it until it stops (or ``ticks`` ticks ran); what the store holds afterwards."""
    data = DataDir(tmp_path)
    runtime = runtime or RuntimeConfig()
    options = LocalRunOptions(
        data=data,
        runtime=runtime,
        scheduler=SchedulerConfig(idle_interval_s=0.001, busy_interval_s=0.001),
        ticks=ticks,
    )
    request = LaunchRequest(wasm=wasm, manifest=manifest, budget=budget)
    with trio.fail_after(deadline_s):
        result = await run_local(options, LaunchHere(request), lambda event, fields: None)
    async with open_services(data, runtime) as services:
        record = await services.committer.read(lambda s: s.record(result.did))
        last = await services.committer.read(lambda s: s.last_checkpoint(result.did))
    assert record is not None and last is not None
    assert (result.state, result.budget, result.last_tick) == (record.state, last.budget, last.tick)
    state = None if record.state is AuthorityState.ACTIVE_OWNER else record.state
    return Ended(state, record.detail, last.budget, last.tick)
