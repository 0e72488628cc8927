"""What hostcalls read: the per-agent host environment supplied by the runtime.

The runtime passes one mutable object per agent; the sandbox never caches its answers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, runtime_checkable


class ResumeReason(IntEnum):
    """Value of the ``resume_reason`` hostcall."""

    FRESH = 0
    RESTARTED = 1
    MIGRATED = 2


@runtime_checkable
class HostEnvironment(Protocol):
    """The per-agent environment behind the ``igor`` hostcalls."""

    def now_ns(self) -> int:
        """Wall clock, Unix nanoseconds."""
        ...

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes of cryptographic randomness; raise on entropy failure."""
        ...

    def log(self, message: bytes) -> None:
        """One agent log line (at most 1 MiB)."""
        ...

    def budget_remaining(self) -> int:
        """Remaining budget in µ."""
        ...

    def resume_reason(self) -> ResumeReason: ...

    def resume_gap_ns(self) -> int:
        """Nanoseconds since the wall time of the last committed checkpoint; 0 when fresh."""
        ...

    def request_migration(self, hint: bytes) -> None:
        """Record that the agent asked to move (``hint`` is at most 1 KiB)."""
        ...


@dataclass
class LocalEnvironment:
    """A simple in-memory :class:`HostEnvironment` for local runs and tests."""

    budget: int = 0
    reason: ResumeReason = ResumeReason.FRESH
    gap_ns: int = 0
    logs: list[bytes] = field(default_factory=list)
    migration_requests: list[bytes] = field(default_factory=list)

    def now_ns(self) -> int:
        return time.time_ns()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, message: bytes) -> None:
        self.logs.append(message)

    def budget_remaining(self) -> int:
        return self.budget

    def resume_reason(self) -> ResumeReason:
        return self.reason

    def resume_gap_ns(self) -> int:
        return self.gap_ns

    def request_migration(self, hint: bytes) -> None:
        self.migration_requests.append(hint)
