"""Fuel charged for hostcalls: a fixed price per call plus a price per byte moved.

Every host function an agent can import (module ``igor`` and ``wasi_snapshot_preview1``
alike) is wrapped by :func:`metered`: before the call does anything it takes the base price
(``SandboxConfig.hostcall_base_fuel``, default :data:`HOSTCALL_BASE_FUEL`) from the calling
store's fuel, and the call takes the byte price (``SandboxConfig.hostcall_fuel_per_byte``,
default :data:`HOSTCALL_FUEL_PER_BYTE`) for every byte it copies between the host and guest
memory (:meth:`FuelMeter.charge_bytes`). The fuel taken counts in ``TickResult.fuel_used`` like the
fuel of the agent's own instructions, so the runtime charges it to the budget at the agent's
price with no extra bookkeeping.

When the remaining fuel cannot pay, the store's fuel is set to 0, the call returns without
effect, and the sandbox ends the guest call with ``OutOfFuel`` (even if the guest returns
normally): the same outcome as running out of fuel in wasm code.

The defaults are deliberately below the host's own cost: a metered Python hostcall takes
about 10–40 µs of wall time, in which wasmtime runs some 4 × 10⁴ – 1.5 × 10⁵ fuel of plain
wasm (measured, docs/agent-abi.md). Charging that would make the shipped examples' budgets
(and the testnet's) last a few hundred ticks, so the default charges a token 1,000 fuel per
call and 1 fuel per byte; the wall-clock watchdog bounds what a hostcall-heavy tick can cost
the node in time. Raise them in ``SandboxConfig`` to charge closer to cost.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmtime import Caller
from wasmtime import _ffi as wasmtime_ffi

HOSTCALL_BASE_FUEL = 1_000
"""Default fuel taken by every hostcall before it runs."""
HOSTCALL_FUEL_PER_BYTE = 1
"""Default fuel taken per byte a hostcall copies into or out of guest memory."""


def _get_fuel(caller: Caller) -> int:
    remaining = ctypes.c_uint64()
    err = wasmtime_ffi.wasmtime_context_get_fuel(caller._context(), ctypes.byref(remaining))
    if err:  # fuel is always enabled by the sandbox's engine; defensive
        return 0
    return int(remaining.value)


def _set_fuel(caller: Caller, fuel: int) -> None:
    wasmtime_ffi.wasmtime_context_set_fuel(caller._context(), fuel)


class FuelMeter:
    """Takes hostcall fuel from the calling store; remembers when it could not."""

    def __init__(
        self, base: int = HOSTCALL_BASE_FUEL, per_byte: int = HOSTCALL_FUEL_PER_BYTE
    ) -> None:
        self.base = base
        self.per_byte = per_byte
        self.exhausted = False
        """Set once a charge could not be paid; the sandbox then raises ``OutOfFuel``."""
        self.charged = 0
        """Total fuel taken for hostcalls on this instance."""

    def charge(self, caller: Caller, fuel: int) -> bool:
        """Take ``fuel``; ``False`` (and fuel set to 0) when the store cannot pay."""
        if self.exhausted:
            return False
        remaining = _get_fuel(caller)
        if remaining < fuel:
            _set_fuel(caller, 0)
            self.exhausted = True
            return False
        _set_fuel(caller, remaining - fuel)
        self.charged += fuel
        return True

    def charge_bytes(self, caller: Caller, nbytes: int) -> bool:
        return nbytes <= 0 or self.charge(caller, nbytes * self.per_byte)


def stop_guest(caller: Caller) -> None:
    """Set the calling store's fuel to 0 so the guest stops at its next fuel check."""
    _set_fuel(caller, 0)


def metered(
    impl: Callable[..., Any],
    meter: FuelMeter,
    stopped: Callable[[], bool],
    neutral: Any,
) -> Callable[..., Any]:
    """Wrap a host function: no effect once the guest is stopping, else the base charge first.

    ``neutral`` is what the guest sees when the call does not run (its result is never used:
    the guest call ends in ``OutOfFuel`` or ``AgentExited``)."""

    def call(caller: Caller, *args: Any) -> Any:
        if stopped():
            stop_guest(caller)
            return neutral
        if not meter.charge(caller, meter.base):
            return neutral
        return impl(caller, *args)

    return call
