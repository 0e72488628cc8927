"""Ticking from trio: cancellation of a running guest, batches in one thread hop."""

from __future__ import annotations

import time

import pytest
import trio

from igor_p2p.agent import (
    AgentTrapped,
    InstancePoisoned,
    OutOfFuel,
    Sandbox,
    SandboxConfig,
    TickResult,
    run_tick_batch,
    tick_batch_in_thread,
    tick_in_thread,
)

from .helpers import FUEL, agent_wat, load_example, load_wat

SLOW_TICK = (
    "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))"
    " (br_if $l (i32.lt_u (local.get $i) (i32.const 30000000)))) (i32.const 0)"
)


@pytest.fixture
def slow_sandbox() -> Sandbox:
    sb = Sandbox(SandboxConfig(tick_timeout_s=30.0))
    yield sb
    sb.close()


async def test_tick_in_thread_returns_the_tick_result(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "counter")
    result = await tick_in_thread(inst, FUEL)
    assert isinstance(result, TickResult) and result.fuel_used > 0
    assert inst.snapshot() == (1).to_bytes(8, "little")


async def test_trap_from_thread_is_not_wrapped_in_exception_group(sandbox: Sandbox) -> None:
    inst = load_example(sandbox, "trap")
    async with trio.open_nursery():
        with pytest.raises(AgentTrapped):
            await tick_in_thread(inst, FUEL)


async def test_cancel_stops_a_spinning_guest_promptly(slow_sandbox: Sandbox) -> None:
    inst = load_example(slow_sandbox, "spin")
    started = time.monotonic()
    with trio.move_on_after(0.2) as scope:
        await tick_in_thread(inst, 10**15)
    elapsed = time.monotonic() - started
    assert scope.cancelled_caught
    assert elapsed < 1.5  # watchdog is 30 s: only the interrupt can explain this
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)


async def test_cancel_does_not_disturb_other_running_guests(slow_sandbox: Sandbox) -> None:
    spinner = load_example(slow_sandbox, "spin")
    worker = load_wat(slow_sandbox, agent_wat(tick=SLOW_TICK))
    results: list[TickResult] = []

    async def run_worker() -> None:
        results.append(await tick_in_thread(worker, 10**12))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_worker)
        with trio.move_on_after(0.05):
            await tick_in_thread(spinner, 10**15)
    assert len(results) == 1 and results[0].fuel_used > 30_000_000
    assert worker.poisoned is None
    await tick_in_thread(worker, 10**12)  # still usable


async def test_cancelled_error_propagates_as_trio_cancelled(slow_sandbox: Sandbox) -> None:
    inst = load_example(slow_sandbox, "spin")
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() + 0.05
        try:
            await tick_in_thread(inst, 10**15)
        except trio.Cancelled:
            raise
        except BaseException as exc:  # pragma: no cover - would be a bug
            pytest.fail(f"expected trio.Cancelled, got {exc!r}")
    assert scope.cancelled_caught


def test_run_tick_batch_returns_each_outcome_without_raising(sandbox: Sandbox) -> None:
    good = load_example(sandbox, "counter")
    bad = load_example(sandbox, "trap")
    starving = load_wat(sandbox, agent_wat(tick=SLOW_TICK))
    results = run_tick_batch([(good, FUEL), (bad, FUEL), (starving, 1000), (good, FUEL)])
    assert isinstance(results[0], TickResult)
    assert isinstance(results[1], AgentTrapped)
    assert isinstance(results[2], OutOfFuel)
    assert isinstance(results[3], TickResult)
    assert good.snapshot() == (2).to_bytes(8, "little")


async def test_tick_batch_in_thread_uses_one_hop_and_cancels(slow_sandbox: Sandbox) -> None:
    counter = load_example(slow_sandbox, "counter")
    results = await tick_batch_in_thread([(counter, FUEL)] * 3)
    assert all(isinstance(r, TickResult) for r in results)
    spinner = load_example(slow_sandbox, "spin")
    started = time.monotonic()
    with trio.move_on_after(0.1) as scope:
        await tick_batch_in_thread([(spinner, 10**15), (counter, FUEL)])
    assert scope.cancelled_caught and time.monotonic() - started < 1.5
    with pytest.raises(InstancePoisoned):
        counter.tick(FUEL)
