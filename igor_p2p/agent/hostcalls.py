"""Host module ``igor``: the hostcalls, their capabilities, signatures and error codes.

A hostcall is linked only when its capability is declared in the manifest (deny by default).
Hostcall errors never trap: they return a negative code (or are ignored, for ``log_emit``).
If the host environment itself raises, the guest gets a neutral value and the failure is
recorded in :class:`HostcallState` so the sandbox can stop the instance with ``HostFault``.
Every hostcall is metered (:mod:`igor_p2p.agent.hostfuel`): a base charge per call and a
charge per byte copied between host and guest.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import Caller, FuncType, Linker, ValType

from igor_p2p.agent.effects import (
    BODY_MAX_BYTES,
    HEADERS_MAX_BYTES,
    MEMO_MAX_BYTES,
    METHOD_MAX_BYTES,
    RECIPIENT_MAX_BYTES,
    URL_MAX_BYTES,
    HttpCode,
    HttpRequest,
    PayCode,
    PaymentRequest,
    parse_headers,
)
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
    also: tuple[str, ...] = ()
    """Other capabilities that grant it too."""

    def granted_by(self, manifest: Manifest) -> bool:
        return any(manifest.declares(c) for c in (self.capability, *self.also))

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
        HostcallSpec("http_request", "http", ("i32",) * 10, ("i32",)),
        HostcallSpec(
            "wallet_pay", "x402", ("i64", "i32", "i32", "i32", "i32", "i32", "i32"), ("i32",)
        ),
        HostcallSpec("effect_unresolved", "lifecycle", ("i32", "i32"), ("i32",), ("http", "x402")),
    )
}


def _size_hint(caller: Caller, ptr: int, cap: int, size: int, code: int) -> int:
    """Write ``size`` as a u32 LE hint at ``ptr`` when 4 bytes fit; return ``code``."""
    if cap >= 4:
        write_bytes(caller, ptr, struct.pack("<I", min(size, 0xFFFFFFFF)))
    return code


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

    def http_request(
        caller: Caller,
        method_ptr: int,
        method_len: int,
        url_ptr: int,
        url_len: int,
        headers_ptr: int,
        headers_len: int,
        body_ptr: int,
        body_len: int,
        resp_ptr: int,
        resp_cap: int,
    ) -> int:
        # Go Igor: inputs too long → -2; memory → -1; host not allowed → -3 (the environment);
        # timeout → -4; response over max_response_bytes or the buffer → -5 with a u32 hint.
        try:
            lengths = (u32(method_len), u32(url_len), u32(headers_len), u32(body_len))
            limits = (METHOD_MAX_BYTES, URL_MAX_BYTES, HEADERS_MAX_BYTES, BODY_MAX_BYTES)
            if any(n > limit for n, limit in zip(lengths, limits, strict=True)):
                return HttpCode.TOO_LONG
            pointers = (u32(method_ptr), u32(url_ptr), u32(headers_ptr), u32(body_ptr))
            parts = [read_bytes(caller, p, n) for p, n in zip(pointers, lengths, strict=True)]
            resp_ptr, resp_cap = u32(resp_ptr), u32(resp_cap)
            if any(p is None for p in parts) or not in_bounds(caller, resp_ptr, resp_cap):
                return HttpCode.NETWORK
            method_b, url_b, headers_b, body = (p or b"" for p in parts)
            if not meter.charge_bytes(caller, sum(lengths)):
                return HttpCode.NETWORK
            try:
                method, url = method_b.decode("ascii"), url_b.decode("utf-8")
                headers = parse_headers(headers_b.decode("utf-8"))
            except UnicodeDecodeError:
                return HttpCode.NETWORK
            result = env.http_request(HttpRequest(method, url, headers, body, resp_cap))
            if result.code > 0 and 4 + len(result.body) > resp_cap:
                return _size_hint(
                    caller, resp_ptr, resp_cap, 4 + len(result.body), HttpCode.TOO_BIG
                )
            if result.code == HttpCode.TOO_BIG:
                return _size_hint(caller, resp_ptr, resp_cap, result.size_hint, HttpCode.TOO_BIG)
            if result.code <= 0:
                return result.code
            if not meter.charge_bytes(caller, len(result.body)):
                return HttpCode.NETWORK
            write_bytes(caller, resp_ptr, struct.pack("<I", len(result.body)) + result.body)
            return result.code
        except Exception as exc:
            record("http_request", exc)
            return HttpCode.NETWORK

    def wallet_pay(
        caller: Caller,
        amount: int,
        recipient_ptr: int,
        recipient_len: int,
        memo_ptr: int,
        memo_len: int,
        receipt_ptr: int,
        receipt_cap: int,
    ) -> int:
        # Go Igor's checks in Go's order: -2, -6, -4, -3, then (in the environment, before
        # anything is charged) -5 and -1; then the payment.
        try:
            recipient_len, memo_len = u32(recipient_len), u32(memo_len)
            if recipient_len > RECIPIENT_MAX_BYTES or memo_len > MEMO_MAX_BYTES:
                return PayCode.TOO_LONG
            recipient_b = read_bytes(caller, u32(recipient_ptr), recipient_len)
            memo = read_bytes(caller, u32(memo_ptr), memo_len)
            if recipient_b is None or memo is None or amount <= 0:
                return PayCode.BAD_INPUT
            policy = state.payment_policy
            try:
                recipient = recipient_b.decode("utf-8")
            except UnicodeDecodeError:
                return PayCode.BAD_INPUT
            if policy is not None and policy.max_payment and amount > policy.max_payment:
                return PayCode.OVER_MAX
            if policy is not None and not policy.recipient_allowed(recipient):
                return PayCode.NOT_ALLOWED
            receipt_ptr, receipt_cap = u32(receipt_ptr), u32(receipt_cap)
            if not in_bounds(caller, receipt_ptr, receipt_cap):
                return PayCode.BAD_INPUT
            if not meter.charge_bytes(caller, recipient_len + memo_len):
                return PayCode.BAD_INPUT
            result = env.wallet_pay(PaymentRequest(amount, recipient, memo, receipt_cap))
            if result.code == PayCode.BUFFER_TOO_SMALL:
                return _size_hint(
                    caller, receipt_ptr, receipt_cap, result.size_hint, PayCode.BUFFER_TOO_SMALL
                )
            if result.code != 0:
                return result.code
            framed = struct.pack("<I", len(result.receipt)) + result.receipt
            if not meter.charge_bytes(caller, len(framed)):
                return PayCode.BAD_INPUT
            write_bytes(caller, receipt_ptr, framed)
            return len(framed)
        except Exception as exc:
            record("wallet_pay", exc)
            return PayCode.BAD_INPUT

    def effect_unresolved(caller: Caller, ptr: int, cap: int) -> int:
        # [count u32] then per effect [kind u8][status u8][key 16][request sha256 32];
        # -5 with a u32 hint when it does not fit, -1 for a buffer outside memory.
        try:
            ptr, cap = u32(ptr), u32(cap)
            if not in_bounds(caller, ptr, cap):
                return HttpCode.NETWORK
            data = env.unresolved_effects()
            if len(data) > cap:
                return _size_hint(caller, ptr, cap, len(data), HttpCode.TOO_BIG)
            if not meter.charge_bytes(caller, len(data)):
                return HttpCode.NETWORK
            write_bytes(caller, ptr, data)
            return len(data)
        except Exception as exc:
            record("effect_unresolved", exc)
            return HttpCode.NETWORK

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
        "http_request": http_request,
        "wallet_pay": wallet_pay,
        "effect_unresolved": effect_unresolved,
    }


def define_hostcalls(linker: Linker, manifest: Manifest, state: HostcallState) -> list[str]:
    """Register, in ``linker``, exactly the hostcalls whose capability ``manifest`` declares.

    Each is metered (base charge per call, per-byte charge for bytes moved). Returns the names
    registered.
    """
    impls = _make_impls(state)
    registered: list[str] = []
    for name, spec in HOSTCALLS.items():
        if spec.granted_by(manifest):
            func = metered(impls[name], state.meter, state.stopping, spec.neutral())
            linker.define_func(HOST_MODULE, name, spec.func_type(), func, access_caller=True)
            registered.append(name)
    return registered
