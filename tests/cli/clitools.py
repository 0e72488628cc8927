"""Running ``igor`` as a user would: a subprocess, the words it prints, its exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGOR = [sys.executable, "-m", "igor_p2p.cli.main"]
TIMEOUT_S = 90.0
CLASS_NAME = re.compile(
    r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+(?:Error|Exception|Failed|Timeout|Unavailable|"
    r"Lost|Refused|Busy|NotFound|Agent|Owner|Params|Rejected)\b"
)
"""A Python exception class name (``AdminUnavailable``, ``UnknownAgent``, ``SwarmException``)."""


def cli_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IGOR_")}
    env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "100", **extra})
    if home is not None:
        env["XDG_STATE_HOME"] = str(home)
    return env


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def assert_words(self) -> None:
        """No traceback and no exception class name in what the user reads."""
        for text in (self.stdout, self.stderr):
            assert "Traceback" not in text, text
        found = CLASS_NAME.findall(self.stderr)
        assert not found, f"class names in {self.stderr!r}"


def igor(*args: str | Path, env: dict[str, str] | None = None, timeout: float = TIMEOUT_S) -> Run:
    argv = [str(a) for a in args]
    done = subprocess.run(
        [*IGOR, *argv], capture_output=True, text=True, timeout=timeout, env=env or cli_env()
    )
    return Run(tuple(argv), done.returncode, done.stdout, done.stderr)


@contextmanager
def detached_node(data: Path, name: str, *extra: str) -> Iterator[str]:
    """``igor node run --detach`` on a free port; yields its peer ID; ``igor node stop`` after."""
    from testnet.harness import free_ports

    port = free_ports(1)[0]
    started = igor(
        "node", "run", "-d", data, "--name", name, "--listen", f"/ip4/127.0.0.1/tcp/{port}",
        "--tick-interval", "0.1", "--detach", *extra,
    )  # fmt: skip
    assert started.rc == 0, started.stdout + started.stderr
    peer = igor("node", "id", "-d", data).stdout.strip()
    try:
        yield peer
    finally:
        stopped = igor("node", "stop", "-d", data)
        assert stopped.rc == 0, stopped.stderr
