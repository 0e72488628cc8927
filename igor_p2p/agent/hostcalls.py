"""Host module ``igor``: the hostcalls, their capabilities, signatures and error codes.

A hostcall is linked only when its capability is declared in the manifest (deny by default).
Hostcall errors never trap: they return a negative code (or are ignored, for ``log_emit``).
If the host environment itself raises, the guest gets a neutral value and the failure is
recorded in :class:`HostcallState` so the sandbox can stop the instance with ``HostFault``.
Every hostcall is metered (:mod:`igor_p2p.agent.hostfuel`): a base charge per call and a
charge per byte copied between host and guest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import Caller, FuncType, Linker, ValType

from igor_p2p.agent.environment import LogStream
from igor_p2p.agent.guestmem import in_bounds, read_bytes, u32, write_bytes
from igor_p2p.agent.hostfuel import metered
from igor_p2p.agent.hoststate import HostcallState, HostFaultRecord
from igor_p2p.agent.manifest import Manifest

__all__ = ["HOSTCALLS", "HOST_MODULE", "HostFaultRecord", "HostcallSpec", "HostcallState"]

HOST_MODULE = "igor"

RAND_MAX_BYTES = 64 * 1024 * 1024
LOG_MAX_BYTES = 1024 * 1024
MIGRATE_HINT_MAX_BYTES = 1024

# Error codes.
OK = 0
RAND_ENTROPY_FAILURE = -1
RAND_TOO_LONG = -2
RAND_OUT_OF_BOUNDS = -4
MIGRATE_MEMORY_FAULT = -1
MIGRATE_TOO_LONG = -2
MIGRATE_DISABLED = -3
RECEIPT_BAD_INDEX = -1
RECEIPT_BUFFER_TOO_SMALL = -4

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_I32_MAX = 2**31 - 1


@dataclass(frozen=True)
class HostcallSpec:
    """One hostcall: name, capability and wasm signature (as ``"i32"``/``"i64"`` lists)."""

    name: str
    capability: str
    params: tuple[str, ...]
    results: tuple[str, ...]

    def func_type(self) -> FuncType:
        return FuncType([_valtype(p) for p in self.params], [_valtype(r) for r in self.results])

    def neutral(self) -> int | None:
        """The value a call that does not run returns (never used by a guest that goes on)."""
        return 0 if self.results else None


def _valtype(name: str) -> ValType:
    return ValType.i32() if name == "i32" else ValType.i64()


HOSTCALLS: dict[str, HostcallSpec] = {
    spec.name: spec
    for spec in (
        HostcallSpec("clock_now", "clock", (), ("i64",)),
        HostcallSpec("rand_bytes", "rand", ("i32", "i32"), ("i32",)),
        HostcallSpec("log_emit", "log", ("i32", "i32"), ()),
        HostcallSpec("budget_remaining", "budget", (), ("i64",)),
        HostcallSpec("resume_reason", "lifecycle", (), ("i32",)),
        HostcallSpec("resume_gap_ns", "lifecycle", (), ("i64",)),
        HostcallSpec("migrate_request", "migrate", ("i32", "i32"), ("i32",)),
        HostcallSpec("wallet_balance", "wallet", (), ("i64",)),
        HostcallSpec("wallet_receipt_count", "wallet", (), ("i32",)),
        HostcallSpec("wallet_receipt", "wallet", ("i32", "i32", "i32"), ("i32",)),
        HostcallSpec("node_price", "pricing", (), ("i64",)),
    )
}

PENDING_HOSTCALLS: dict[str, str] = {"http_request": "http", "wallet_pay": "x402"}
"""Go Igor hostcalls Igor-P2P does not offer yet, with their capability."""


def _clamp_i64(value: int) -> int:
    return max(_I64_MIN, min(_I64_MAX, int(value)))


def _make_impls(state: HostcallState) -> dict[str, Callable[..., Any]]:
    env = state.env
    meter = state.meter
    record = state.record_fault

    def clock_now(caller: Caller) -> int:
        try:
            return _clamp_i64(env.now_ns())
        except Exception as exc:
            record("clock_now", exc)
            return 0

    def rand_bytes(caller: Caller, ptr: int, length: int) -> int:
        try:
            ptr, length = u32(ptr), u32(length)
            if length > RAND_MAX_BYTES:
                return RAND_TOO_LONG
            if not in_bounds(caller, ptr, length):
                return RAND_OUT_OF_BOUNDS
            if not meter.charge_bytes(caller, length):
                return RAND_ENTROPY_FAILURE
            try:
                data = bytes(env.random_bytes(length))
            except Exception:
                return RAND_ENTROPY_FAILURE
            if len(data) != length:
                return RAND_ENTROPY_FAILURE
            return OK if write_bytes(caller, ptr, data) else RAND_OUT_OF_BOUNDS
        except Exception as exc:
            record("rand_bytes", exc)
            return RAND_ENTROPY_FAILURE

    def log_emit(caller: Caller, ptr: int, length: int) -> None:
        try:
            ptr, length = u32(ptr), u32(length)
            if length > LOG_MAX_BYTES:
                return None
            message = read_bytes(caller, ptr, length)
            if message is not None and meter.charge_bytes(caller, length):
                env.log(message, LogStream.LOG)
        except Exception as exc:
            record("log_emit", exc)
        return None

    def budget_remaining(caller: Caller) -> int:
        try:
            return _clamp_i64(env.budget_remaining())
        except Exception as exc:
            record("budget_remaining", exc)
            return 0

    def resume_reason(caller: Caller) -> int:
        try:
            return int(env.resume_reason())
        except Exception as exc:
            record("resume_reason", exc)
            return 0

    def resume_gap_ns(caller: Caller) -> int:
        try:
            return _clamp_i64(env.resume_gap_ns())
        except Exception as exc:
            record("resume_gap_ns", exc)
            return 0

    def migrate_request(caller: Caller, ptr: int, length: int) -> int:
        try:
            ptr, length = u32(ptr), u32(length)
            if length > MIGRATE_HINT_MAX_BYTES:
                return MIGRATE_TOO_LONG
            hint = read_bytes(caller, ptr, length)
            if hint is None:
                return MIGRATE_MEMORY_FAULT
            if not state.migration_enabled:
                return MIGRATE_DISABLED
            if not meter.charge_bytes(caller, length):
                return MIGRATE_MEMORY_FAULT
            env.request_migration(hint)
            return OK
        except Exception as exc:
            record("migrate_request", exc)
            return MIGRATE_MEMORY_FAULT

    def wallet_balance(caller: Caller) -> int:
        try:
            return _clamp_i64(env.budget_remaining())
        except Exception as exc:
            record("wallet_balance", exc)
            return 0

    def wallet_receipt_count(caller: Caller) -> int:
        try:
            return max(0, min(_I32_MAX, int(env.receipt_count())))
        except Exception as exc:
            record("wallet_receipt_count", exc)
            return 0

    def wallet_receipt(caller: Caller, index: int, ptr: int, cap: int) -> int:
        # Go Igor: a bad index → -1; a receipt longer than the buffer, or a buffer outside
        # memory → -4; else the receipt bytes are written and their length returned.
        try:
            ptr, cap = u32(ptr), u32(cap)
            data = env.receipt(index) if index >= 0 else None
            if data is None:
                return RECEIPT_BAD_INDEX
            if len(data) > cap or not in_bounds(caller, ptr, len(data)):
                return RECEIPT_BUFFER_TOO_SMALL
            if not meter.charge_bytes(caller, len(data)):
                return RECEIPT_BUFFER_TOO_SMALL
            write_bytes(caller, ptr, data)
            return len(data)
        except Exception as exc:
            record("wallet_receipt", exc)
            return RECEIPT_BAD_INDEX

    def node_price(caller: Caller) -> int:
        try:
            return _clamp_i64(env.node_price())
        except Exception as exc:
            record("node_price", exc)
            return 0

    return {
        "clock_now": clock_now,
        "rand_bytes": rand_bytes,
        "log_emit": log_emit,
        "budget_remaining": budget_remaining,
        "resume_reason": resume_reason,
        "resume_gap_ns": resume_gap_ns,
        "migrate_request": migrate_request,
        "wallet_balance": wallet_balance,
        "wallet_receipt_count": wallet_receipt_count,
        "wallet_receipt": wallet_receipt,
        "node_price": node_price,
    }


def define_hostcalls(linker: Linker, manifest: Manifest, state: HostcallState) -> list[str]:
    """Register, in ``linker``, exactly the hostcalls whose capability ``manifest`` declares.

    Each is metered (base charge per call, per-byte charge for bytes moved). Returns the names
    registered.
    """
    impls = _make_impls(state)
    registered: list[str] = []
    for name, spec in HOSTCALLS.items():
        if manifest.declares(spec.capability):
            func = metered(impls[name], state.meter, state.stopping, spec.neutral())
            linker.define_func(HOST_MODULE, name, spec.func_type(), func, access_caller=True)
            registered.append(name)
    return registered
