"""Hostcalls cost fuel: a price per call and a price per byte, for ``igor`` and WASI alike."""

from __future__ import annotations

import pytest

from igor_p2p.agent import LocalEnvironment, OutOfFuel, Sandbox
from igor_p2p.agent.hostfuel import HOSTCALL_BASE_FUEL, HOSTCALL_FUEL_PER_BYTE

from .helpers import FUEL, agent_wat, load_wat, manifest_with

_CLOCK = '(import "igor" "clock_now" (func $clock (result i64)))'
_RAND = '(import "igor" "rand_bytes" (func $rand (param i32 i32) (result i32)))'
_LOG = '(import "igor" "log_emit" (func $log (param i32 i32)))'
_WASI_CLOCK = (
    '(import "wasi_snapshot_preview1" "clock_time_get" '
    "(func $wclock (param i32 i64 i32) (result i32)))"
)
_FD_WRITE = (
    '(import "wasi_snapshot_preview1" "fd_write" '
    "(func $fd_write (param i32 i32 i32 i32) (result i32)))"
)


def _fuel_of(sandbox: Sandbox, imports: str, body: str, manifest: bytes, extra: str = "") -> int:
    inst = load_wat(
        sandbox,
        agent_wat(imports=imports, tick=f"{body} (i32.const 0)", extra=extra),
        manifest,
    )
    return inst.tick(FUEL).fuel_used


@pytest.mark.parametrize(
    ("imports", "call", "manifest"),
    [
        (_CLOCK, "(drop (call $clock))", manifest_with("clock")),
        (_WASI_CLOCK, "(drop (call $wclock (i32.const 0) (i64.const 0) (i32.const 0)))", b""),
    ],
)
def test_every_hostcall_costs_the_base_price(
    sandbox: Sandbox, imports: str, call: str, manifest: bytes
) -> None:
    one = _fuel_of(sandbox, imports, call, manifest)
    three = _fuel_of(sandbox, imports, call * 3, manifest)
    per_call = (three - one) // 2
    # the base price, plus the handful of wasm instructions that make the call
    assert HOSTCALL_BASE_FUEL <= per_call <= HOSTCALL_BASE_FUEL + 10


def test_rand_bytes_costs_the_byte_price_for_each_byte(sandbox: Sandbox) -> None:
    small = _fuel_of(
        sandbox, _RAND, "(drop (call $rand (i32.const 64) (i32.const 0)))", manifest_with("rand")
    )
    big = _fuel_of(
        sandbox, _RAND, "(drop (call $rand (i32.const 64) (i32.const 4000)))", manifest_with("rand")
    )
    assert big - small == 4000 * HOSTCALL_FUEL_PER_BYTE


def test_fd_write_costs_the_byte_price_for_each_byte_written(sandbox: Sandbox) -> None:
    def write(length: int) -> int:
        iovec = f'(data (i32.const 16) "\\00\\01\\00\\00\\{length:02x}\\00\\00\\00")'
        call = "(drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))"
        return _fuel_of(sandbox, _FD_WRITE, call, b"", extra=iovec)

    assert write(100) - write(0) == 100 * HOSTCALL_FUEL_PER_BYTE


def test_a_hostcall_the_fuel_cannot_pay_for_has_no_effect_and_runs_out_of_fuel(
    sandbox: Sandbox,
) -> None:
    env = LocalEnvironment()
    wasm = agent_wat(imports=_LOG, tick="(call $log (i32.const 0) (i32.const 4)) (i32.const 0)")
    inst = load_wat(sandbox, wasm, manifest_with("log"), env)
    with pytest.raises(OutOfFuel):
        inst.tick(HOSTCALL_BASE_FUEL // 2)
    assert env.logs == []


def test_bytes_the_fuel_cannot_pay_for_are_not_moved(sandbox: Sandbox) -> None:
    class CountingEnvironment(LocalEnvironment):
        asked = 0

        def random_bytes(self, n: int) -> bytes:
            CountingEnvironment.asked += n
            return bytes(n)

    env = CountingEnvironment()
    wasm = agent_wat(
        imports=_RAND, tick="(drop (call $rand (i32.const 64) (i32.const 60000))) (i32.const 0)"
    )
    inst = load_wat(sandbox, wasm, manifest_with("rand"), env)
    with pytest.raises(OutOfFuel):
        inst.tick(HOSTCALL_BASE_FUEL + 1000)
    assert CountingEnvironment.asked == 0


def test_a_guest_that_returns_after_an_unpaid_hostcall_still_runs_out_of_fuel(
    sandbox: Sandbox,
) -> None:
    # The unpaid call leaves 0 fuel; a guest that returns at once hits no fuel check, but the
    # call must still end as OutOfFuel (its hostcall did not happen).
    wasm = agent_wat(imports=_CLOCK, tick="(drop (call $clock)) (i32.const 0)")
    inst = load_wat(sandbox, wasm, manifest_with("clock"))
    with pytest.raises(OutOfFuel):
        inst.tick(100)


def test_the_prices_come_from_the_sandbox_config() -> None:
    from igor_p2p.agent import SandboxConfig

    with Sandbox(SandboxConfig(hostcall_base_fuel=50_000, hostcall_fuel_per_byte=7)) as dear:
        one = _fuel_of(dear, _CLOCK, "(drop (call $clock))", manifest_with("clock"))
        two = _fuel_of(dear, _CLOCK, "(drop (call $clock))" * 2, manifest_with("clock"))
        assert 50_000 <= two - one <= 50_010
        small = _fuel_of(
            dear, _RAND, "(drop (call $rand (i32.const 64) (i32.const 0)))", manifest_with("rand")
        )
        big = _fuel_of(
            dear, _RAND, "(drop (call $rand (i32.const 64) (i32.const 100)))", manifest_with("rand")
        )
        assert big - small == 700
