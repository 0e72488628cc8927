"""Sandbox limits: hostile modules end in typed errors and the process stays healthy."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.agent import (
    AgentTrapped,
    InstancePoisoned,
    InvalidModule,
    LocalEnvironment,
    MemoryLimitExceeded,
    ModuleTooLarge,
    OutOfFuel,
    Sandbox,
    SandboxClosed,
    SandboxConfig,
    SandboxError,
    TickTimeout,
    load_agent_manifest,
    load_agent_source,
    parse_manifest,
)

from .helpers import FUEL, agent_wat, load_example, load_wat

LOOP_1000 = (
    "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))"
    " (br_if $l (i32.lt_u (local.get $i) (i32.const 1000)))) (i32.const 0)"
)


def _counter_still_runs(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "counter")
    inst.tick(FUEL)
    inst.tick(FUEL)
    assert inst.snapshot() == (2).to_bytes(8, "little")


def test_trap_example_is_agent_trapped_then_poisoned(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "trap")
    with pytest.raises(AgentTrapped) as info:
        inst.tick(FUEL)
    assert "unreachable" in str(info.value.trap_code).lower()
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)
    with pytest.raises(InstancePoisoned):
        inst.snapshot()
    _counter_still_runs(sandbox)


def test_spin_is_stopped_by_the_watchdog(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "spin")
    started = time.monotonic()
    with pytest.raises(TickTimeout):
        inst.tick(10**15)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0  # tick_timeout_s = 0.5
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)
    _counter_still_runs(sandbox)


def test_spin_with_small_fuel_runs_out_of_fuel(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "spin")
    with pytest.raises(OutOfFuel) as info:
        inst.tick(50_000)
    assert info.value.fuel_used == 50_000
    _counter_still_runs(sandbox)


def test_membomb_hits_the_cap_then_traps(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "membomb")
    with pytest.raises(AgentTrapped):
        inst.tick(FUEL)
    assert inst.memory_cap == 8 << 20
    _counter_still_runs(sandbox)


def test_manifest_memory_limit_lowers_the_cap(sandbox: Sandbox) -> None:
    module = sandbox.compile(load_agent_source("membomb"))
    manifest = parse_manifest(b'{"resource_limits": {"max_memory_bytes": 2097152}}')
    inst = sandbox.instantiate(module, manifest, LocalEnvironment())
    assert inst.memory_cap == 2 << 20
    with pytest.raises(AgentTrapped):
        inst.tick(FUEL)


def test_memory_cap_below_module_minimum_fails_at_load(sandbox: Sandbox) -> None:
    module = sandbox.compile(agent_wat(memory='(memory (export "memory") 200)'))  # 12.5 MiB
    with pytest.raises(MemoryLimitExceeded):
        sandbox.instantiate(module, parse_manifest(b""), LocalEnvironment())


def test_fuel_is_accounted_per_tick(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "counter")
    result = inst.tick(FUEL)
    assert 0 < result.fuel_used < FUEL
    heavy = load_wat(
        sandbox,
        agent_wat(tick=LOOP_1000),
    )
    assert heavy.tick(FUEL).fuel_used > 10 * result.fuel_used


def test_too_little_fuel_is_out_of_fuel(sandbox: Sandbox) -> None:
    # Fuel is checked at function entry and loop headers, so use a looping tick.
    wasm = agent_wat(tick=LOOP_1000)
    needed = load_wat(sandbox, wasm).tick(FUEL).fuel_used
    with pytest.raises(OutOfFuel) as info:
        load_wat(sandbox, wasm).tick(needed // 2)
    assert info.value.fuel_used == needed // 2


def test_module_cache_hits_by_hash(sandbox: Sandbox) -> None:
    wasm = load_agent_source("counter")
    first = sandbox.compile(wasm)
    hits = sandbox.cache_hits
    assert sandbox.compile(bytearray(wasm)) is first
    assert sandbox.cache_hits == hits + 1
    assert sandbox.compile(load_agent_source("spin")) is not first


def test_oversized_module_is_refused() -> None:
    with Sandbox(SandboxConfig(max_module_bytes=1024)) as sb, pytest.raises(ModuleTooLarge):
        sb.compile(b"\x00asm\x01\x00\x00\x00" + b"\x00" * 2000)


@pytest.mark.parametrize(
    "data", [b"", b"\x00asm", b"(module)", b"\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"]
)
def test_bad_bytes_are_invalid_module(sandbox: Sandbox, data: bytes) -> None:
    with pytest.raises(InvalidModule):
        sandbox.compile(data)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=200) | st.binary(max_size=120).map(lambda b: b"\x00asm\x01\x00\x00\x00" + b)
)
def test_random_bytes_compile_to_typed_errors_only(data: bytes) -> None:
    with Sandbox() as sb, contextlib.suppress(SandboxError):
        sb.compile(data)


def test_closed_sandbox_refuses_calls() -> None:
    sb = Sandbox()
    inst = sb.instantiate(
        sb.compile(load_agent_source("counter")), load_agent_manifest("counter"), LocalEnvironment()
    )
    sb.close()
    with pytest.raises(SandboxClosed):
        inst.tick(FUEL)
    with pytest.raises(SandboxClosed):
        sb.compile(load_agent_source("counter"))
