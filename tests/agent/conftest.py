"""A sandbox with short limits for every agent test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from igor_p2p.agent import Sandbox, SandboxConfig


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(SandboxConfig(tick_timeout_s=0.5, memory_limit_bytes=8 << 20))
    yield sb
    sb.close()
