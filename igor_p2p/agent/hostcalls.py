"""Host module ``igor``: the hostcalls, their capabilities, signatures and error codes.

A hostcall is linked only when its capability is declared in the manifest (deny by default).
Hostcall errors never trap: they return a negative code (or are ignored, for ``log_emit``).
If the host environment itself raises, the guest gets a neutral value and the failure is
recorded in :class:`HostcallState` so the sandbox can stop the instance with ``HostFault``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import Caller, FuncType, Linker, Memory, ValType

from igor_p2p.agent.environment import HostEnvironment
from igor_p2p.agent.manifest import Manifest

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

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


@dataclass(frozen=True)
class HostcallSpec:
    """One hostcall: name, capability and wasm signature (as ``"i32"``/``"i64"`` lists)."""

    name: str
    capability: str
    params: tuple[str, ...]
    results: tuple[str, ...]

    def func_type(self) -> FuncType:
        return FuncType([_valtype(p) for p in self.params], [_valtype(r) for r in self.results])


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
    )
}


@dataclass
class HostcallState:
    """Per-instance mutable state the hostcalls share with the sandbox."""

    env: HostEnvironment
    migration_enabled: bool
    fault: HostFaultRecord | None = None


@dataclass(frozen=True)
class HostFaultRecord:
    hostcall: str
    cause: BaseException


def _clamp_i64(value: int) -> int:
    return max(_I64_MIN, min(_I64_MAX, int(value)))


def _memory(caller: Caller) -> Memory | None:
    try:
        mem = caller.get("memory")
    except Exception:
        return None
    return mem if isinstance(mem, Memory) else None


def _read(caller: Caller, ptr: int, length: int) -> bytes | None:
    """Bounds-checked copy out of guest memory; ``None`` on a bad pointer."""
    mem = _memory(caller)
    if mem is None:
        return None
    if length == 0:
        return b""
    if ptr + length > mem.data_len(caller):
        return None
    return bytes(mem.get_buffer_ptr(caller, length, ptr))


def _write(caller: Caller, ptr: int, data: bytes) -> bool:
    mem = _memory(caller)
    if mem is None or ptr + len(data) > mem.data_len(caller):
        return False
    if data:
        buf = mem.get_buffer_ptr(caller, len(data), ptr)
        ctypes.memmove(ctypes.addressof(buf), data, len(data))
    return True


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _make_impls(state: HostcallState) -> dict[str, Callable[..., Any]]:
    env = state.env

    def record(name: str, exc: BaseException) -> None:
        if state.fault is None:
            state.fault = HostFaultRecord(name, exc)

    def clock_now(caller: Caller) -> int:
        try:
            return _clamp_i64(env.now_ns())
        except Exception as exc:
            record("clock_now", exc)
            return 0

    def rand_bytes(caller: Caller, ptr: int, length: int) -> int:
        try:
            ptr, length = _u32(ptr), _u32(length)
            if length > RAND_MAX_BYTES:
                return RAND_TOO_LONG
            mem = _memory(caller)
            if mem is None or ptr + length > mem.data_len(caller):
                return RAND_OUT_OF_BOUNDS
            try:
                data = bytes(env.random_bytes(length))
            except Exception:
                return RAND_ENTROPY_FAILURE
            if len(data) != length:
                return RAND_ENTROPY_FAILURE
            return OK if _write(caller, ptr, data) else RAND_OUT_OF_BOUNDS
        except Exception as exc:
            record("rand_bytes", exc)
            return RAND_ENTROPY_FAILURE

    def log_emit(caller: Caller, ptr: int, length: int) -> None:
        try:
            ptr, length = _u32(ptr), _u32(length)
            if length > LOG_MAX_BYTES:
                return None
            message = _read(caller, ptr, length)
            if message is not None:
                env.log(message)
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
            ptr, length = _u32(ptr), _u32(length)
            if length > MIGRATE_HINT_MAX_BYTES:
                return MIGRATE_TOO_LONG
            hint = _read(caller, ptr, length)
            if hint is None:
                return MIGRATE_MEMORY_FAULT
            if not state.migration_enabled:
                return MIGRATE_DISABLED
            env.request_migration(hint)
            return OK
        except Exception as exc:
            record("migrate_request", exc)
            return MIGRATE_MEMORY_FAULT

    return {
        "clock_now": clock_now,
        "rand_bytes": rand_bytes,
        "log_emit": log_emit,
        "budget_remaining": budget_remaining,
        "resume_reason": resume_reason,
        "resume_gap_ns": resume_gap_ns,
        "migrate_request": migrate_request,
    }


def define_hostcalls(linker: Linker, manifest: Manifest, state: HostcallState) -> list[str]:
    """Register, in ``linker``, exactly the hostcalls whose capability ``manifest`` declares.

    Returns the names registered.
    """
    impls = _make_impls(state)
    registered: list[str] = []
    for name, spec in HOSTCALLS.items():
        if manifest.declares(spec.capability):
            linker.define_func(HOST_MODULE, name, spec.func_type(), impls[name], access_caller=True)
            registered.append(name)
    return registered
