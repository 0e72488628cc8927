"""Shared helpers for the harness tests (real node processes under /tmp)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testnet.checker import CheckResult
from testnet.harness import Testnet


@contextmanager
def scratch(prefix: str = "igor-tn-") -> Iterator[Path]:
    """A short directory under /tmp (admin socket paths must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        if not os.environ.get("IGOR_KEEP_TESTNET"):
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_testnet(root: Path) -> Iterator[Testnet]:
    tn = Testnet(root)
    try:
        yield tn
    finally:
        if tn.state.nodes:
            tn.down(grace_s=5.0)


def evidence(result: CheckResult, limit: int = 10) -> str:
    """The violations' summaries, for an assertion message."""
    lines = [v.summary() for v in result.violations[:limit]]
    return result.to_text() + "\n" + "\n".join(lines)
