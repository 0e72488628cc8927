"""Running sandbox calls from trio: one tick per thread hop, or a batch per hop.

Cancellation: while the worker thread runs, a trio cancellation calls ``interrupt()`` on the
instance(s) involved. The epoch callback of each interrupted guest stops it within about one
engine epoch (the interrupt also bumps the epoch, so usually at once); other guests running on
the same Engine are not affected (their callbacks let them continue). The instance is poisoned
afterwards (even if the tick managed to finish), and ``trio.Cancelled`` is re-raised.

No nursery is used: the thread is started with ``trio.lowlevel.start_thread_soon`` and awaited
with ``wait_task_rescheduled``, and the sandbox maps every wasmtime ``Trap`` to a
``SandboxError`` inside the thread, so nothing arrives wrapped in an ``ExceptionGroup`` (G8).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import outcome
import trio

from igor_p2p.agent.errors import SandboxError, TickInterrupted
from igor_p2p.agent.sandbox import AgentInstance, TickResult

T = TypeVar("T")


async def _run_interruptible(fn: Callable[[], T], on_cancel: Callable[[], None]) -> T:
    """Run ``fn`` in a fresh worker thread; on trio cancellation call ``on_cancel`` and keep
    waiting for the thread, then raise ``trio.Cancelled``."""
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    cancel_requested = False

    def deliver(result: outcome.Outcome[T]) -> None:
        def reschedule() -> None:
            trio.lowlevel.reschedule(task, outcome.Value(result))

        with contextlib.suppress(trio.RunFinishedError):  # the trio run is already gone
            token.run_sync_soon(reschedule)

    def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
        nonlocal cancel_requested
        cancel_requested = True
        on_cancel()
        return trio.lowlevel.Abort.FAILED

    trio.lowlevel.start_thread_soon(fn, deliver)
    result: outcome.Outcome[T] = await trio.lowlevel.wait_task_rescheduled(abort)
    if cancel_requested:
        await trio.lowlevel.checkpoint()  # raises the pending trio.Cancelled
        # The deadline was moved away meanwhile: report the interruption instead.
        raise TickInterrupted("tick cancelled")
    return result.unwrap()


async def tick_in_thread(instance: AgentInstance, fuel: int) -> TickResult:
    """``instance.tick(fuel)`` in a worker thread, cancellable from trio."""
    instance.clear_interrupt()

    def on_cancel() -> None:
        instance.interrupt()

    try:
        return await _run_interruptible(lambda: instance.tick(fuel), on_cancel)
    except trio.Cancelled:
        instance._poison(TickInterrupted("tick cancelled from trio"))
        raise
    except TickInterrupted:
        instance._poison(TickInterrupted("tick cancelled from trio"))
        raise
    finally:
        instance.clear_interrupt()


def run_tick_batch(
    items: Sequence[tuple[AgentInstance, int]], stop: threading.Event | None = None
) -> list[TickResult | SandboxError]:
    """Tick each ``(instance, fuel)`` in order in the calling thread; one agent's failure is
    returned in its slot, never raised. Once ``stop`` is set, the remaining slots get
    ``TickInterrupted`` without running."""
    results: list[TickResult | SandboxError] = []
    for instance, fuel in items:
        if stop is not None and stop.is_set():
            results.append(TickInterrupted("batch stopped before this tick"))
            continue
        try:
            results.append(instance.tick(fuel))
        except SandboxError as exc:
            results.append(exc)
    return results


async def tick_batch_in_thread(
    items: Sequence[tuple[AgentInstance, int]],
) -> list[TickResult | SandboxError]:
    """``run_tick_batch`` in ONE worker thread hop, cancellable from trio like
    ``tick_in_thread`` (every instance of the batch is interrupted and poisoned)."""
    stop = threading.Event()
    for instance, _ in items:
        instance.clear_interrupt()

    def on_cancel() -> None:
        stop.set()
        for instance, _ in items:
            instance.interrupt()

    try:
        return await _run_interruptible(lambda: run_tick_batch(items, stop), on_cancel)
    except (trio.Cancelled, TickInterrupted):
        for instance, _ in items:
            instance._poison(TickInterrupted("batch cancelled from trio"))
        raise
    finally:
        for instance, _ in items:
            instance.clear_interrupt()
