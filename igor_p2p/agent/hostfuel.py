"""Fuel charged for hostcalls: a fixed price per call plus a price per byte moved.

Every host function an agent can import (module ``igor`` and ``wasi_snapshot_preview1``
alike) is wrapped by :func:`metered`: before the call does anything it takes
:data:`HOSTCALL_BASE_FUEL` from the calling store's fuel, and the call takes
:data:`HOSTCALL_FUEL_PER_BYTE` for every byte it copies between the host and guest memory
(:meth:`FuelMeter.charge_bytes`). The fuel taken counts in ``TickResult.fuel_used`` like the
fuel of the agent's own instructions, so the runtime charges it to the budget at the agent's
price with no extra bookkeeping.

When the remaining fuel cannot pay, the store's fuel is set to 0, the call returns without
effect, and the sandbox ends the guest call with ``OutOfFuel`` (even if the guest returns
normally): the same outcome as running out of fuel in wasm code.

The prices are the host's own cost expressed in fuel: a Python hostcall round trip costs a few
microseconds, about what wasmtime runs in 10,000 fuel; copying and handling a byte costs about
a nanosecond, a few fuel (see docs/agent-abi.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmtime import Caller
from wasmtime import _ffi as wasmtime_ffi

HOSTCALL_BASE_FUEL = 10_000
"""Fuel taken by every hostcall before it runs."""
HOSTCALL_FUEL_PER_BYTE = 4
"""Fuel taken per byte a hostcall copies into or out of guest memory."""


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

    def __init__(self) -> None:
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
        return nbytes <= 0 or self.charge(caller, nbytes * HOSTCALL_FUEL_PER_BYTE)


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
        if not meter.charge(caller, HOSTCALL_BASE_FUEL):
            return neutral
        return impl(caller, *args)

    return call
