"""What hostcalls read: the per-agent host environment supplied by the runtime.

The runtime passes one mutable object per agent; the sandbox never caches its answers.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, runtime_checkable

from igor_p2p.agent.effects import (
    HttpCode,
    HttpRequest,
    HttpResult,
    PayCode,
    PaymentRequest,
    PaymentResult,
)


class ResumeReason(IntEnum):
    """Value of the ``resume_reason`` hostcall."""

    FRESH = 0
    RESTARTED = 1
    MIGRATED = 2


class LogStream(enum.StrEnum):
    """Where an agent log line came from."""

    LOG = "log"
    """``igor.log_emit``."""
    STDOUT = "stdout"
    """WASI ``fd_write`` on fd 1."""
    STDERR = "stderr"
    """WASI ``fd_write`` on fd 2."""


@runtime_checkable
class HostEnvironment(Protocol):
    """The per-agent environment behind the ``igor`` hostcalls and WASI."""

    def now_ns(self) -> int:
        """Wall clock, Unix nanoseconds (``igor.clock_now`` and the WASI clocks)."""
        ...

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes of cryptographic randomness; raise on entropy failure."""
        ...

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        """One agent log line (at most 1 MiB), from ``log_emit`` or WASI stdout/stderr."""
        ...

    def budget_remaining(self) -> int:
        """Remaining budget in µ (Go Igor's µ¢: the same integer)."""
        ...

    def resume_reason(self) -> ResumeReason: ...

    def resume_gap_ns(self) -> int:
        """Nanoseconds since the wall time of the last committed checkpoint; 0 when fresh."""
        ...

    def request_migration(self, hint: bytes) -> None:
        """Record that the agent asked to move (``hint`` is at most 1 KiB)."""
        ...

    def node_price(self) -> int:
        """The agent's current price in Go Igor's units, µ¢ per second (``node_price``)."""
        ...

    def receipt_count(self) -> int:
        """How many execution receipts ``receipt`` can return."""
        ...

    def receipt(self, index: int) -> bytes | None:
        """Receipt ``index`` in Go Igor's byte layout; ``None`` for an index out of range."""
        ...

    def http_request(self, request: HttpRequest) -> HttpResult:
        """Perform an HTTP request (``igor.http_request``) if this node may, recorded as an
        effect; blocks the calling (worker) thread."""
        ...

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        """Pay (``igor.wallet_pay``) if this node may, recorded as an effect; blocks."""
        ...

    def unresolved_effects(self) -> bytes:
        """``igor.effect_unresolved``: the effects recorded before the agent's state was saved
        (their outcome is unknown to the agent), in the hostcall's layout."""
        ...


@dataclass
class LocalEnvironment:
    """A simple in-memory :class:`HostEnvironment` for local runs and tests."""

    budget: int = 0
    reason: ResumeReason = ResumeReason.FRESH
    gap_ns: int = 0
    price_per_second: int = 0
    receipts: tuple[bytes, ...] = ()
    logs: list[bytes] = field(default_factory=list)
    streams: list[tuple[LogStream, bytes]] = field(default_factory=list)
    migration_requests: list[bytes] = field(default_factory=list)
    http: Callable[[HttpRequest], HttpResult] | None = None
    """Answers ``http_request`` (None: effects are refused with NOT_OWNER)."""
    pay: Callable[[PaymentRequest], PaymentResult] | None = None
    unresolved: bytes = b"\x00\x00\x00\x00"

    def now_ns(self) -> int:
        return time.time_ns()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        self.logs.append(message)
        self.streams.append((stream, message))

    def budget_remaining(self) -> int:
        return self.budget

    def resume_reason(self) -> ResumeReason:
        return self.reason

    def resume_gap_ns(self) -> int:
        return self.gap_ns

    def request_migration(self, hint: bytes) -> None:
        self.migration_requests.append(hint)

    def node_price(self) -> int:
        return self.price_per_second

    def receipt_count(self) -> int:
        return len(self.receipts)

    def receipt(self, index: int) -> bytes | None:
        return self.receipts[index] if 0 <= index < len(self.receipts) else None

    def http_request(self, request: HttpRequest) -> HttpResult:
        return self.http(request) if self.http else HttpResult(HttpCode.NOT_OWNER)

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        return self.pay(request) if self.pay else PaymentResult(PayCode.NOT_OWNER)

    def unresolved_effects(self) -> bytes:
        return self.unresolved
