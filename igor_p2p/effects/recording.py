"""A host environment that records every observation it hands the agent (for replay).

The sandbox instance of a hosted agent is given a :class:`RecordingEnvironment` around the
agent's live environment: each answer is passed through unchanged and appended to the agent's
:class:`~igor_p2p.effects.observations.InputRecorder` (which keeps it only while a tick runs).
Outputs (log lines, migration requests) are not observations and are not recorded.
"""

from __future__ import annotations

import struct
from typing import Any

from igor_p2p.agent.effects import HttpRequest, HttpResult, PaymentRequest, PaymentResult
from igor_p2p.agent.environment import HostEnvironment, LogStream, ResumeReason
from igor_p2p.effects.observations import InputRecorder, Obs, pack_effect, pack_i32, pack_i64


class RecordingEnvironment:
    """:class:`HostEnvironment` that records the answers of ``inner``."""

    def __init__(self, inner: HostEnvironment, recorder: InputRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def __getattr__(self, name: str) -> Any:  # the live environment's other fields
        return getattr(self.inner, name)

    def now_ns(self) -> int:
        value = self.inner.now_ns()
        self.recorder.record(Obs.CLOCK, pack_i64(value))
        return value

    def random_bytes(self, n: int) -> bytes:
        data = bytes(self.inner.random_bytes(n))
        self.recorder.record(Obs.RAND, data)
        return data

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        self.inner.log(message, stream)

    def budget_remaining(self) -> int:
        value = self.inner.budget_remaining()
        self.recorder.record(Obs.BUDGET, pack_i64(value))
        return value

    def resume_reason(self) -> ResumeReason:
        value = self.inner.resume_reason()
        self.recorder.record(Obs.RESUME_REASON, pack_i32(int(value)))
        return value

    def resume_gap_ns(self) -> int:
        value = self.inner.resume_gap_ns()
        self.recorder.record(Obs.RESUME_GAP, pack_i64(value))
        return value

    def request_migration(self, hint: bytes) -> None:
        self.inner.request_migration(hint)

    def node_price(self) -> int:
        value = self.inner.node_price()
        self.recorder.record(Obs.PRICE, pack_i64(value))
        return value

    def receipt_count(self) -> int:
        value = self.inner.receipt_count()
        self.recorder.record(Obs.RECEIPT_COUNT, pack_i32(value))
        return value

    def receipt(self, index: int) -> bytes | None:
        value = self.inner.receipt(index)
        self.recorder.record(Obs.RECEIPT, b"\x00" if value is None else b"\x01" + value)
        return value

    def http_request(self, request: HttpRequest) -> HttpResult:
        result = self.inner.http_request(request)
        self.recorder.record(Obs.HTTP, pack_effect(result.code, result.size_hint, result.key))
        return result

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        result = self.inner.wallet_pay(request)
        self.recorder.record(Obs.PAY, pack_effect(result.code, result.size_hint, result.key))
        return result

    def unresolved_effects(self) -> bytes:
        value = self.inner.unresolved_effects()
        self.recorder.record(Obs.UNRESOLVED, value)
        return value


def unpack_i64(payload: bytes) -> int:
    return int(struct.unpack("<q", payload)[0])


def unpack_i32(payload: bytes) -> int:
    return int(struct.unpack("<i", payload)[0])
