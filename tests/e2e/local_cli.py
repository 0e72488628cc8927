"""Running the real ``igor`` CLI as subprocesses, and reading what it leaves on disk."""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.entries import Checkpoint, LineageEntry, decode_entry

IGOR = [sys.executable, "-m", "igor_p2p.cli.main"]
CLI_TIMEOUT_S = 60.0
ERROR_LINE = re.compile(r"^error: ([A-Za-z_][A-Za-z0-9_]*): .+$", re.MULTILINE)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("IGOR_DATA_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    env["IGOR_DEBUG"] = "1"  # error lines name the exception class, which these tests match
    return env


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return json_lines(self.stdout)

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e.get("event") == name]
        assert len(found) == 1, f"expected one {name!r} event in {self.stdout!r}"
        return found[0]

    def committed(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "committed"]

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def igor(*args: str | Path, timeout: float = CLI_TIMEOUT_S) -> CliResult:
    """Run ``igor ARGS`` to completion."""
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [*IGOR, *argv], capture_output=True, text=True, timeout=timeout, env=_env()
    )
    return CliResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def assert_no_traceback(result: CliResult) -> None:
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text, f"{result.args}: traceback:\n{text}"


def typed_error(result: CliResult) -> str:
    """The exception class named by the CLI's one-line error (the process must have failed)."""
    assert result.rc != 0, f"{result.args} succeeded: {result.stdout}"
    assert_no_traceback(result)
    match = ERROR_LINE.search(result.stderr)
    assert match is not None, f"{result.args}: no typed error line in {result.stderr!r}"
    return match.group(1)


def run_counter(data: Path, ticks: int, agent: str = "counter") -> tuple[str, CliResult]:
    """Launch ``agent`` in ``data`` for ``ticks`` ticks, keeping every checkpoint (the tests
    look at rows by position); returns its DID and the run."""
    result = igor(
        "agent", "run", agent, "-d", data, "--ticks", ticks, "--interval", "0", "--json",
        "--retain", "all",
    )  # fmt: skip
    assert result.rc == 0, result.stderr
    return result.event("started")["agent"], result


def verify(target: str | Path, data: Path | None = None) -> tuple[int, dict[str, Any]]:
    args: list[str | Path] = ["checkpoint", "verify", target, "--json"]
    if data is not None:
        args += ["-d", data]
    result = igor(*args)
    assert_no_traceback(result)
    assert result.rc in (0, 1), f"verify crashed: {result.stderr}"
    return result.rc, result.json()


def problem_codes(report: dict[str, Any]) -> set[str]:
    return {p["code"] for p in report["problems"]}


def inspect(did: str, data: Path) -> dict[str, Any]:
    result = igor("checkpoint", "inspect", did, "-d", data, "--json")
    assert result.rc == 0, result.stderr
    return result.json()


def counter_state(tick: int) -> bytes:
    return tick.to_bytes(8, "little")


def export_entries(did: str, data: Path, out: Path) -> AgentBundle:
    """``igor checkpoint export`` (read-only copy) and decode the bundle it wrote."""
    result = igor("checkpoint", "export", did, "-d", data, "-o", out)
    assert result.rc == 0, result.stderr
    return AgentBundle.decode(out.read_bytes())


def checkpoints_of(bundle: AgentBundle) -> list[Checkpoint]:
    entries: list[LineageEntry] = [decode_entry(b) for b in bundle.entries]
    return [e for e in entries if isinstance(e, Checkpoint)]


# ---------------------------------------------------------------- the store, read directly


def db(data: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(data / "igor.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def lineage_rows(data: Path, did: str) -> list[tuple[int, bytes, bytes]]:
    """(seq, digest, blob) of every stored row of ``did``, in seq order."""
    conn = db(data)
    try:
        return conn.execute(
            "SELECT seq, digest, blob FROM lineage WHERE agent = ? ORDER BY seq", (did,)
        ).fetchall()
    finally:
        conn.close()


def authority_row(data: Path, did: str) -> tuple[str, str, int]:
    """(state, reason, epoch) of ``did``'s authority record."""
    conn = db(data)
    try:
        row = conn.execute(
            "SELECT state, reason, epoch FROM authority WHERE agent = ?", (did,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, f"no authority record for {did}"
    return row


# ---------------------------------------------------------------- long-running processes


@dataclass
class LiveProcess:
    """An ``igor`` subprocess whose stdout lines are collected as they arrive."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pumps: list[threading.Thread] = field(default_factory=list)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def next_event(self, timeout: float = CLI_TIMEOUT_S) -> dict[str, Any] | None:
        """The next JSON event printed, or None once stdout is closed."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            self.seen.append(line)
            if line.startswith("{"):
                return json.loads(line)

    def wait_for(self, name: str, timeout: float = CLI_TIMEOUT_S) -> dict[str, Any]:
        while True:
            event = self.next_event(timeout)
            assert event is not None, (
                f"exited before {name!r}: {''.join(self.seen)} {self.stderr_text()}"
            )
            if event.get("event") == name:
                return event

    def finish(self, timeout: float = CLI_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait for exit; every event printed (including those already taken)."""
        self.proc.wait(timeout=timeout)
        while self.next_event(timeout) is not None:
            pass
        for pump in self.pumps:
            pump.join(timeout)
        return json_lines("".join(self.seen))

    def stderr_text(self) -> str:
        return "".join(self.errors)


def spawn(*args: str | Path) -> LiveProcess:
    proc = subprocess.Popen(
        [*IGOR, *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    live = LiveProcess(proc)
    for target in (live._pump, live._pump_stderr):
        pump = threading.Thread(target=target, daemon=True)
        pump.start()
        live.pumps.append(pump)
    return live


def committed_events(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "committed"]
