"""Test agents for the effect hostcalls (WAT built per test) and running them in-process."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from wasmtime import wat2wasm

from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.lineage.entries import LineageEntry, decode_entry
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.env import NodeEnv
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import LaunchRequest, prepare_launch
from igor_p2p.runtime.local import (
    Alone,
    LaunchHere,
    LocalRunOptions,
    LocalRunResult,
    LoopbackTransport,
    ResumeHere,
    run_local,
)
from igor_p2p.runtime.runner import SchedulerRunner
from igor_p2p.runtime.scheduler import SchedulerConfig, TickScheduler
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.store.sqlite import Store

NUL = bytes(1)


def _data(offset: int, value: bytes) -> str:
    escaped = "".join(f"\\{b:02x}" for b in value)
    return f'(data (i32.const {offset}) "{escaped}")'


def http_probe(
    url: str,
    *,
    method: str = "GET",
    headers: str = "",
    body: bytes = b"",
    cap: int = 4096,
    retry_cap: int = 0,
    bad_pointer: bool = False,
) -> bytes:
    """Each tick: ``http_request`` once (twice with ``retry_cap``: the second time with that
    buffer size). State (80 bytes): ticks u64, first result i32, second result i32, the first
    64 bytes of the response buffer."""
    url_ptr = "(i32.const 0x7ffffff0)" if bad_pointer else "(i32.const 12288)"
    call = f"""(call $http (i32.const 1024) (call $strlen (i32.const 1024))
        {url_ptr} (call $strlen (i32.const 12288))
        (i32.const 24576) (call $strlen (i32.const 24576))
        (i32.const 131072) (i32.load (i32.const 131068))
        (i32.const 1310720) (i32.load (i32.const {{cap_at}})))"""
    second = ""
    if retry_cap:
        second = f"(i32.store (i32.const 12) {call.format(cap_at=1088)})"
    return bytes(
        wat2wasm(
            f"""(module
  (import "igor" "http_request"
    (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 40)
  (global $heap (mut i32) (i32.const 1441792))
  {_data(1024, method.encode() + NUL)}
  {_data(1080, struct.pack("<II", cap, 0))}
  {_data(1088, struct.pack("<I", retry_cap))}
  {_data(12288, url.encode() + NUL)}
  {_data(24576, headers.encode() + NUL)}
  {_data(131068, struct.pack("<I", len(body)) + body)}
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $scan
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $scan)))
    (local.get $n))
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32)
    (i32.store (i32.const 8) {call.format(cap_at=1080)})
    {second}
    (memory.copy (i32.const 16) (i32.const 1310720) (i32.const 64))
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 80))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 80))
      (then (memory.copy (i32.const 0) (local.get $ptr) (i32.const 80)))))
  (func (export "malloc") (param $n i32) (result i32) (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr)))"""
        )
    )


@dataclass(frozen=True)
class ProbeState:
    ticks: int
    first: int
    second: int
    buffer: bytes

    @classmethod
    def of(cls, state: bytes) -> ProbeState:
        ticks, first, second = struct.unpack_from("<qii", state)
        return cls(ticks, first, second, state[16:80])


def manifest(**capabilities: dict[str, Any]) -> bytes:
    caps = {name: {"version": 1, "options": opts} for name, opts in capabilities.items()}
    return json.dumps({"capabilities": caps}).encode()


FAST = SchedulerConfig(idle_interval_s=0.0, busy_interval_s=0.0)


async def run_agent(
    data: Path,
    wasm: bytes,
    manifest_bytes: bytes,
    *,
    ticks: int,
    budget: int = 10**9,
    did: str | None = None,
    runtime: RuntimeConfig | None = None,
    checkpoint_every: int = 1,
) -> LocalRunResult:
    """Launch (or, with ``did``, resume) an agent in ``data`` and run ``ticks`` ticks."""
    what: LaunchHere | ResumeHere = (
        ResumeHere(did) if did else LaunchHere(LaunchRequest(wasm, manifest_bytes, budget))
    )
    config = SchedulerConfig(
        idle_interval_s=0.0, busy_interval_s=0.0, checkpoint_every=checkpoint_every
    )
    options = LocalRunOptions(DataDir(data), runtime or RuntimeConfig(), config, ticks=ticks)
    return await run_local(options, what, lambda _event, _fields: None)


def lineage(data: Path, did: str) -> list[LineageEntry]:
    store = Store.open(DataDir(data).database, check_on_open=False)
    try:
        return [decode_entry(b) for b in store.lineage(did)]
    finally:
        store.close()


@dataclass
class LocalNode:
    """One in-process node with no network: the node core, its scheduler and runner."""

    services: NodeServices
    core: NodeCore
    scheduler: TickScheduler
    runner: SchedulerRunner
    hosted: list[HostedAgent]
    started: trio.Event

    async def launch(self, wasm: bytes, manifest_bytes: bytes, budget: int = 10**9) -> str:
        launch = await prepare_launch(
            self.services, LaunchRequest(wasm, manifest_bytes, budget), ()
        )
        await self.core.launched(
            launch.did, launch.genesis.encode(), launch.witnesses, launch.wasm, launch.manifest
        )
        with trio.fail_after(30):
            await self.started.wait()
        return launch.did


@asynccontextmanager
async def local_node(data: Path) -> AsyncIterator[LocalNode]:
    """The pieces ``igor agent run`` wires together, kept open for the test to drive."""
    async with open_services(DataDir(data), RuntimeConfig()) as services:
        store = SqliteAuthorityStore(services.store, services.committer)
        scheduler = TickScheduler(services, services.tick_sink(), FAST)
        runner = SchedulerRunner(services, store, scheduler)
        me = services.key.public_key
        core = NodeCore(
            services.key,
            CorePorts(
                store=store,
                transport=LoopbackTransport(me),
                runner=runner,
                env=NodeEnv(services.clock, services.history),
                membership=Alone(me),
            ),
        )
        node = LocalNode(services, core, scheduler, runner, [], trio.Event())

        def on_hosted(agent: HostedAgent) -> None:
            node.hosted.append(agent)
            node.started.set()

        runner.on_hosted = on_hosted
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await nursery.start(partial(core.run, restart=False))
            yield node
            nursery.cancel_scope.cancel()


def payer(amount: int, recipient: str, memo: bytes = b"", cap: int = 1024) -> bytes:
    """Each tick: ``wallet_pay`` once. State (1040 bytes): ticks u64, result i32, 4 bytes, then
    the first 1024 bytes of the receipt buffer (``[len u32][receipt]``)."""
    return bytes(
        wat2wasm(
            f"""(module
  (import "igor" "wallet_pay"
    (func $pay (param i64 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  {_data(2048, recipient.encode())}
  {_data(4096, memo)}
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32)
    (i32.store (i32.const 8)
      (call $pay (i64.const {amount}) (i32.const 2048) (i32.const {len(recipient.encode())})
        (i32.const 4096) (i32.const {len(memo)}) (i32.const 16) (i32.const {cap})))
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 1040))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 1040))
      (then (memory.copy (i32.const 0) (local.get $ptr) (i32.const 1040)))))
  (func (export "malloc") (param $n i32) (result i32) (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr)))"""
        )
    )


@dataclass(frozen=True)
class PayerState:
    ticks: int
    result: int
    receipt: bytes

    @classmethod
    def of(cls, state: bytes) -> PayerState:
        ticks, result = struct.unpack_from("<qi", state)
        (length,) = struct.unpack_from("<I", state, 16)
        return cls(ticks, result, state[20 : 20 + length] if result > 0 else b"")


def observer(url: str, every: int = 10) -> bytes:
    """Each tick: reads the clock and 8 random bytes; every ``every``-th tick also GETs ``url``.
    State (40 bytes): ticks, sum of clock readings, xor of random words, sum of statuses, sum of
    body lengths."""
    return bytes(
        wat2wasm(
            f"""(module
  (import "igor" "clock_now" (func $clock (result i64)))
  (import "igor" "rand_bytes" (func $rand (param i32 i32) (result i32)))
  (import "igor" "http_request"
    (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 32768))
  {_data(1024, b"GET")}
  {_data(2048, url.encode())}
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32) (local $r i32)
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (call $clock)))
    (drop (call $rand (i32.const 64) (i32.const 8)))
    (i64.store (i32.const 16) (i64.xor (i64.load (i32.const 16)) (i64.load (i32.const 64))))
    (if (i64.eqz (i64.rem_u (i64.load (i32.const 0)) (i64.const {every})))
      (then
        (local.set $r (call $http (i32.const 1024) (i32.const 3)
          (i32.const 2048) (i32.const {len(url.encode())}) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const 8192) (i32.const 4096)))
        (i64.store (i32.const 24)
          (i64.add (i64.load (i32.const 24)) (i64.extend_i32_s (local.get $r))))
        (if (i32.gt_s (local.get $r) (i32.const 0))
          (then (i64.store (i32.const 32)
            (i64.add (i64.load (i32.const 32)) (i64.extend_i32_u (i32.load (i32.const 8192)))))))))
    (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 40))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 40))
      (then (memory.copy (i32.const 0) (local.get $ptr) (i32.const 40)))))
  (func (export "malloc") (param $n i32) (result i32) (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr)))"""
        )
    )
