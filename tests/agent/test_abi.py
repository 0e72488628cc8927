"""Agent ABI: exports, call order, resume, snapshot bounds."""

from __future__ import annotations

import pytest

from igor_p2p.agent import (
    AgentTrapped,
    BadSnapshot,
    CallOrderError,
    ExportSignatureMismatch,
    InstancePoisoned,
    InvalidModule,
    LocalEnvironment,
    MemoryLimitExceeded,
    MissingExport,
    Sandbox,
)

from .helpers import FUEL, agent_wat, load_example, load_wat, manifest_with

LOG = '(import "igor" "log_emit" (func $log (param i32 i32)))'
ORDER_DATA = '(data (i32.const 0) "INRMT")'


def _emit(offset: int) -> str:
    return f"(call $log (i32.const {offset}) (i32.const 1))"


def _order_agent() -> bytes:
    return agent_wat(
        imports=LOG,
        extra=ORDER_DATA + f'(func (export "_initialize") {_emit(0)})',
        init=_emit(1),
        resume=_emit(2),
        malloc=f"{_emit(3)} (i32.const 1024)",
        tick=f"{_emit(4)} (i32.const 1)",
    )


def test_call_order_is_initialize_init_malloc_resume_tick(sandbox: Sandbox) -> None:
    env = LocalEnvironment()
    inst = load_wat(sandbox, _order_agent(), manifest_with("log"), env)
    assert env.logs == [b"I", b"N"]
    inst.resume(b"state")
    inst.tick(FUEL)
    assert env.logs == [b"I", b"N", b"M", b"R", b"T"]


def test_empty_state_resume_skips_malloc(sandbox: Sandbox) -> None:
    env = LocalEnvironment()
    inst = load_wat(sandbox, _order_agent(), manifest_with("log"), env)
    inst.resume(b"")
    assert env.logs == [b"I", b"N", b"R"]


def test_resume_bytes_arrive_at_malloc_pointer(sandbox: Sandbox) -> None:
    # agent_resume copies (ptr,len) into the checkpoint area at 0.
    wasm = agent_wat(
        resume="(memory.copy (i32.const 0) (local.get $ptr) (local.get $len))"
        "(i32.store (i32.const 100) (local.get $len))",
        checkpoint="(i32.load (i32.const 100))",
        malloc="(i32.const 2048)",
    )
    inst = load_wat(sandbox, wasm)
    inst.resume(b"hello world")
    assert inst.snapshot() == b"hello world"


def test_counter_resume_round_trip_continues_counting(sandbox: Sandbox) -> None:
    first = load_example(sandbox, "counter")
    for _ in range(7):
        first.tick(FUEL)
    state = first.snapshot()
    assert state == (7).to_bytes(8, "little")
    second = load_example(sandbox, "counter")
    second.resume(state)
    second.tick(FUEL)
    assert int.from_bytes(second.snapshot(), "little") == 8


def test_tick_reports_more_work_and_legacy_tick_is_accepted(sandbox: Sandbox) -> None:
    busy = load_wat(sandbox, agent_wat(tick="(i32.const 5)"))
    assert busy.tick(FUEL).more_work is True
    idle = load_wat(sandbox, agent_wat(tick="(i32.const 0)"))
    assert idle.tick(FUEL).more_work is False
    legacy = load_wat(sandbox, agent_wat(tick="", tick_result=""))
    assert legacy.tick(FUEL).more_work is False


@pytest.mark.parametrize(
    "name",
    ["agent_init", "agent_tick", "agent_checkpoint", "agent_checkpoint_ptr", "agent_resume"],
)
def test_missing_required_export_is_named(sandbox: Sandbox, name: str) -> None:
    wasm = agent_wat()
    from wasmtime import wat2wasm

    text = wasm_text_without(name)
    with pytest.raises(MissingExport) as info:
        sandbox.compile(bytes(wat2wasm(text)))
    assert info.value.name == name
    assert wasm  # the full module compiles
    sandbox.compile(wasm)


def wasm_text_without(export: str) -> str:
    funcs = {
        "agent_init": '(func (export "agent_init"))',
        "agent_tick": '(func (export "agent_tick") (result i32) (i32.const 0))',
        "agent_checkpoint": '(func (export "agent_checkpoint") (result i32) (i32.const 0))',
        "agent_checkpoint_ptr": '(func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))',
        "agent_resume": '(func (export "agent_resume") (param i32 i32))',
    }
    body = " ".join(v for k, v in funcs.items() if k != export)
    return f'(module (memory (export "memory") 1) {body})'


def test_missing_memory_export_is_named(sandbox: Sandbox) -> None:
    from wasmtime import wat2wasm

    text = wasm_text_without("none").replace('(memory (export "memory") 1)', "(memory 1)")
    with pytest.raises(MissingExport) as info:
        sandbox.compile(bytes(wat2wasm(text)))
    assert info.value.name == "memory"


def test_wrong_export_signature_is_rejected(sandbox: Sandbox) -> None:
    with pytest.raises(ExportSignatureMismatch):
        sandbox.compile(agent_wat(tick="(i64.const 0)", tick_result="(result i64)"))


def test_non_empty_resume_without_malloc_names_malloc(sandbox: Sandbox) -> None:
    inst = load_wat(sandbox, agent_wat(malloc=None))
    with pytest.raises(MissingExport) as info:
        inst.resume(b"x")
    assert info.value.name == "malloc"


def test_null_malloc_is_out_of_memory(sandbox: Sandbox) -> None:
    inst = load_wat(sandbox, agent_wat(malloc="(i32.const 0)"))
    with pytest.raises(MemoryLimitExceeded):
        inst.resume(b"abc")
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)


def test_malloc_pointer_outside_memory_is_a_trap(sandbox: Sandbox) -> None:
    inst = load_wat(sandbox, agent_wat(malloc="(i32.const 65534)"))
    with pytest.raises(AgentTrapped):
        inst.resume(b"abcd")


def test_resume_after_tick_is_refused(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "counter")
    inst.tick(FUEL)
    with pytest.raises(CallOrderError):
        inst.resume(b"")


@pytest.mark.parametrize(
    ("size", "ptr"),
    [
        ("(i32.const 16)", "(i32.const 65530)"),
        ("(i32.const -1)", "(i32.const 0)"),
        ("(i32.const 8)", "(i32.const -4)"),
    ],
)
def test_hostile_checkpoint_pointer_or_size_is_bad_snapshot(
    sandbox: Sandbox, size: str, ptr: str
) -> None:
    inst = load_wat(sandbox, agent_wat(checkpoint=size, checkpoint_ptr=ptr))
    with pytest.raises(BadSnapshot):
        inst.snapshot()
    with pytest.raises(InstancePoisoned):
        inst.snapshot()


def test_empty_checkpoint_is_empty_bytes(sandbox: Sandbox) -> None:
    assert load_wat(sandbox, agent_wat()).snapshot() == b""


def test_start_section_is_refused(sandbox: Sandbox) -> None:
    wasm = agent_wat(extra="(func $s) (start $s)")
    with pytest.raises(InvalidModule):
        sandbox.compile(wasm)
