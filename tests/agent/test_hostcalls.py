"""Hostcalls of module ``igor``: values, error codes, deny by default."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from igor_p2p.agent import (
    CapabilityNotOffered,
    HostFault,
    ImportSignatureMismatch,
    InstancePoisoned,
    LocalEnvironment,
    ResumeReason,
    Sandbox,
    UndeclaredCapability,
    UnknownImport,
)
from igor_p2p.agent.hostcalls import HOSTCALLS

from .helpers import FUEL, agent_wat, load_example, load_wat, manifest_with


@dataclass
class FixedEnvironment(LocalEnvironment):
    clock: int = 1_700_000_000_123_456_789
    entropy_fails: bool = False

    def now_ns(self) -> int:
        return self.clock

    def random_bytes(self, n: int) -> bytes:
        if self.entropy_fails:
            raise OSError("no entropy")
        return bytes([0xAB]) * n


def _result_agent(import_decl: str, call: str) -> bytes:
    """An agent whose tick stores ``call``'s i64 result at 0; checkpoint returns 8 bytes."""
    return agent_wat(
        imports=import_decl,
        tick=f"(i64.store (i32.const 0) {call}) (i32.const 0)",
        checkpoint="(i32.const 8)",
    )


def _run_for_i64(sandbox: Sandbox, wasm: bytes, manifest: bytes, env: LocalEnvironment) -> int:
    inst = load_wat(sandbox, wasm, manifest, env)
    inst.tick(FUEL)
    return int.from_bytes(inst.snapshot(), "little", signed=True)


def test_clock_now_returns_environment_unix_ns(sandbox: Sandbox) -> None:
    env = FixedEnvironment()
    wasm = _result_agent('(import "igor" "clock_now" (func $f (result i64)))', "(call $f)")
    assert _run_for_i64(sandbox, wasm, manifest_with("clock"), env) == env.clock


def test_budget_remaining_returns_environment_budget(sandbox: Sandbox) -> None:
    env = FixedEnvironment(budget=123_456)
    wasm = _result_agent('(import "igor" "budget_remaining" (func $f (result i64)))', "(call $f)")
    assert _run_for_i64(sandbox, wasm, manifest_with("budget"), env) == 123_456


def test_wallet_balance_is_the_budget_like_budget_remaining(sandbox: Sandbox) -> None:
    env = FixedEnvironment(budget=987_654)
    wasm = _result_agent('(import "igor" "wallet_balance" (func $f (result i64)))', "(call $f)")
    assert _run_for_i64(sandbox, wasm, manifest_with("wallet"), env) == 987_654


def test_node_price_is_the_environment_price_per_second(sandbox: Sandbox) -> None:
    env = FixedEnvironment(price_per_second=1_000_000)
    wasm = _result_agent('(import "igor" "node_price" (func $f (result i64)))', "(call $f)")
    assert _run_for_i64(sandbox, wasm, manifest_with("pricing"), env) == 1_000_000


RECEIPTS = (b"first-receipt", b"second-receipt-is-longer")
RECEIPT_IMPORTS = (
    '(import "igor" "wallet_receipt_count" (func $count (result i32)))'
    '(import "igor" "wallet_receipt" (func $get (param i32 i32 i32) (result i32)))'
)


def test_wallet_receipt_count_counts_the_environment_receipts(sandbox: Sandbox) -> None:
    env = FixedEnvironment(receipts=RECEIPTS)
    wasm = _result_agent(RECEIPT_IMPORTS, "(i64.extend_i32_s (call $count))")
    assert _run_for_i64(sandbox, wasm, manifest_with("wallet"), env) == 2


@pytest.mark.parametrize(
    ("index", "ptr", "cap", "code"),
    [
        (0, 256, 64, len(RECEIPTS[0])),
        (1, 256, 64, len(RECEIPTS[1])),
        (1, 256, len(RECEIPTS[1]), len(RECEIPTS[1])),
        (1, 256, len(RECEIPTS[1]) - 1, -4),  # buffer too small (Go: -4)
        (0, 65530, 64, -4),  # buffer outside memory (Go: -4)
        (2, 256, 64, -1),  # no such receipt (Go: -1)
        (-1, 256, 64, -1),
    ],
)
def test_wallet_receipt_copies_the_receipt_or_returns_gos_code(
    sandbox: Sandbox, index: int, ptr: int, cap: int, code: int
) -> None:
    env = FixedEnvironment(receipts=RECEIPTS)
    wasm = agent_wat(
        imports=RECEIPT_IMPORTS,
        tick=f"(i64.store (i32.const 2048) (i64.extend_i32_s (call $get (i32.const {index}) "
        f"(i32.const {ptr}) (i32.const {cap})))) (i32.const 0)",
        checkpoint="(i32.const 8)",
        checkpoint_ptr="(i32.const 2048)",
    )
    inst = load_wat(sandbox, wasm, manifest_with("wallet"), env)
    inst.tick(FUEL)
    assert int.from_bytes(inst.snapshot(), "little", signed=True) == code


def test_wallet_receipt_writes_the_receipt_bytes(sandbox: Sandbox) -> None:
    env = FixedEnvironment(receipts=RECEIPTS)
    wasm = agent_wat(
        imports=RECEIPT_IMPORTS,
        tick="(drop (call $get (i32.const 1) (i32.const 0) (i32.const 64))) (i32.const 0)",
        checkpoint=f"(i32.const {len(RECEIPTS[1])})",
    )
    inst = load_wat(sandbox, wasm, manifest_with("wallet"), env)
    inst.tick(FUEL)
    assert inst.snapshot() == RECEIPTS[1]


@pytest.mark.parametrize("reason", list(ResumeReason))
def test_resume_reason_and_gap(sandbox: Sandbox, reason: ResumeReason) -> None:
    env = FixedEnvironment(reason=reason, gap_ns=5_000_000_000)
    reason_wasm = _result_agent(
        '(import "igor" "resume_reason" (func $f (result i32)))', "(i64.extend_i32_s (call $f))"
    )
    gap_wasm = _result_agent('(import "igor" "resume_gap_ns" (func $f (result i64)))', "(call $f)")
    assert _run_for_i64(sandbox, reason_wasm, manifest_with("lifecycle"), env) == int(reason)
    assert _run_for_i64(sandbox, gap_wasm, manifest_with("lifecycle"), env) == 5_000_000_000


RAND = '(import "igor" "rand_bytes" (func $f (param i32 i32) (result i32)))'


@pytest.mark.parametrize(
    ("ptr", "length", "entropy_fails", "code"),
    [
        (16, 32, False, 0),
        (16, 64 * 1024 * 1024 + 1, False, -2),
        (16, -1, False, -2),
        (65530, 32, False, -4),
        (-8, 4, False, -4),
        (16, 32, True, -1),
    ],
)
def test_rand_bytes_codes(
    sandbox: Sandbox, ptr: int, length: int, entropy_fails: bool, code: int
) -> None:
    env = FixedEnvironment(entropy_fails=entropy_fails)
    wasm = _result_agent(
        RAND, f"(i64.extend_i32_s (call $f (i32.const {ptr}) (i32.const {length})))"
    )
    assert _run_for_i64(sandbox, wasm, manifest_with("rand"), env) == code


def test_rand_bytes_writes_the_buffer(sandbox: Sandbox) -> None:
    wasm = agent_wat(
        imports=RAND,
        tick="(drop (call $f (i32.const 0) (i32.const 16))) (i32.const 0)",
        checkpoint="(i32.const 16)",
    )
    inst = load_wat(sandbox, wasm, manifest_with("rand"), FixedEnvironment())
    inst.tick(FUEL)
    assert inst.snapshot() == b"\xab" * 16


LOG = '(import "igor" "log_emit" (func $f (param i32 i32)))'


def test_log_emit_delivers_drops_oversize_and_ignores_bad_pointer(sandbox: Sandbox) -> None:
    env = FixedEnvironment()
    wasm = agent_wat(
        imports=LOG,
        extra='(data (i32.const 0) "hello")',
        memory='(memory (export "memory") 17)',
        tick="(call $f (i32.const 0) (i32.const 5))"
        "(call $f (i32.const 0) (i32.const 1048577))"  # over 1 MiB: dropped
        "(call $f (i32.const 0) (i32.const 1048576))"  # exactly 1 MiB: delivered
        "(call $f (i32.const 2000000) (i32.const 10))"  # out of bounds: ignored
        "(call $f (i32.const -1) (i32.const 10))"  # wraps to 4 GiB: ignored
        "(i32.const 0)",
    )
    inst = load_wat(sandbox, wasm, manifest_with("log"), env)
    inst.tick(FUEL)
    assert [len(m) for m in env.logs] == [5, 1024 * 1024]
    assert env.logs[0] == b"hello"


MIGRATE = '(import "igor" "migrate_request" (func $f (param i32 i32) (result i32)))'


@pytest.mark.parametrize(
    ("ptr", "length", "enabled", "code"),
    [
        (0, 6, True, 0),
        (0, 1024, True, 0),
        (0, 1025, True, -2),
        (65530, 10, True, -1),
        (0, 6, False, -3),
    ],
)
def test_migrate_request_codes(
    sandbox: Sandbox, ptr: int, length: int, enabled: bool, code: int
) -> None:
    env = FixedEnvironment()
    policy = ', "migration_policy": {"enabled": %s}' % ("true" if enabled else "false")
    wasm = agent_wat(
        imports=MIGRATE,
        extra='(data (i32.const 0) "wander")',
        tick=f"(i64.store (i32.const 2048) (i64.extend_i32_s "
        f"(call $f (i32.const {ptr}) (i32.const {length})))) (i32.const 0)",
        checkpoint="(i32.const 8)",
        checkpoint_ptr="(i32.const 2048)",
    )
    inst = load_wat(sandbox, wasm, manifest_with("migrate", extra=policy), env)
    inst.tick(FUEL)
    assert int.from_bytes(inst.snapshot(), "little", signed=True) == code
    assert len(env.migration_requests) == (1 if code == 0 else 0)
    if code == 0:
        assert env.migration_requests[0][:6] == b"wander"


@pytest.mark.parametrize("name", sorted(HOSTCALLS))
def test_every_hostcall_is_denied_without_its_capability(sandbox: Sandbox, name: str) -> None:
    spec = HOSTCALLS[name]
    params = " ".join(spec.params)
    results = " ".join(spec.results)
    decl = f'(import "igor" "{name}" (func $f (param {params}) (result {results})))'
    decl = decl.replace("(param )", "").replace("(result )", "")
    others = [c for c in ("clock", "rand", "log", "budget", "lifecycle", "migrate")
              if c != spec.capability]  # fmt: skip
    module = sandbox.compile(agent_wat(imports=decl))
    from igor_p2p.agent import parse_manifest

    with pytest.raises(UndeclaredCapability) as info:
        sandbox.instantiate(module, parse_manifest(manifest_with(*others)), LocalEnvironment())
    assert info.value.capability == spec.capability
    assert info.value.import_name == name
    # ...and accepted once declared.
    sandbox.instantiate(module, parse_manifest(manifest_with(spec.capability)), LocalEnvironment())


def test_badimport_example_is_refused_naming_capability(sandbox: Sandbox) -> None:
    with pytest.raises(UndeclaredCapability) as info:
        load_example(sandbox, "badimport")
    assert (info.value.capability, info.value.import_name) == ("clock", "clock_now")


@pytest.mark.parametrize(
    "decl",
    [
        '(import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32)))',
        '(import "wasi_snapshot_preview1" "memory" (memory 1))',
        '(import "igor" "no_such_call" (func (result i64)))',
        '(import "env" "abort" (func))',
        '(import "igor" "memory" (memory 1))',
    ],
)
def test_non_hostcall_imports_are_unknown(sandbox: Sandbox, decl: str) -> None:
    with pytest.raises(UnknownImport):
        sandbox.compile(agent_wat(imports=decl))


def test_hostcall_with_wrong_signature_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ImportSignatureMismatch):
        sandbox.compile(agent_wat(imports='(import "igor" "clock_now" (func (result i32)))'))


@pytest.mark.parametrize("capability", ["teleport", "kv"])
def test_unknown_capabilities_are_refused_at_load(sandbox: Sandbox, capability: str) -> None:
    with pytest.raises(CapabilityNotOffered) as info:
        load_wat(sandbox, agent_wat(), manifest_with("log", capability))
    assert info.value.capability == capability


@pytest.mark.parametrize(
    ("decl", "capability"),
    [
        (
            '(import "igor" "http_request" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)'
            " (result i32)))",
            "http",
        ),
        (
            '(import "igor" "wallet_pay" (func (param i64 i32 i32 i32 i32 i32 i32) (result i32)))',
            "x402",
        ),
    ],
)
def test_go_effect_hostcalls_link_only_with_their_capability(
    sandbox: Sandbox, decl: str, capability: str
) -> None:
    wasm = agent_wat(imports=decl)
    with pytest.raises(UndeclaredCapability) as info:
        load_wat(sandbox, wasm, manifest_with("log"))
    assert info.value.capability == capability
    load_wat(sandbox, wasm, manifest_with("log", capability)).close()


class BrokenClock(LocalEnvironment):
    def now_ns(self) -> int:
        raise RuntimeError("clock gone")


def test_environment_failure_is_host_fault_not_crash(sandbox: Sandbox) -> None:
    wasm = _result_agent('(import "igor" "clock_now" (func $f (result i64)))', "(call $f)")
    inst = load_wat(sandbox, wasm, manifest_with("clock"), BrokenClock())
    with pytest.raises(HostFault) as info:
        inst.tick(FUEL)
    assert info.value.hostcall == "clock_now"
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)
