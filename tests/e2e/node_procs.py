"""Real ``igor node run`` processes on 127.0.0.1, driven through their admin sockets.

Each node listens on port 0 and the kernel picks its port; the harness reads the bound port
from the node's status once it is ready and reuses it on restart. (Probing a free port and
passing it on raced: another xdist worker's node could take it before this one bound it.) Peer
IDs are derived from the data dir's node key before the process starts. Waiting is always
"poll a condition until a deadline", never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from igor_p2p.errors import IgorError
from igor_p2p.node.admin_client import call_admin
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.services import default_peer_id

T = TypeVar("T")
IGOR = [sys.executable, "-m", "igor_p2p.cli.main"]
CLI_TIMEOUT_S = 60.0
POLL_S = 0.1
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


class Timeout(AssertionError):
    """A condition did not hold before its deadline."""


def port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    probe: Callable[[], T | None], deadline_s: float, what: str, describe: Callable[[], str] = str
) -> T:
    """Poll ``probe`` until it returns something truthy; raise :class:`Timeout` after the deadline.

    Typed errors (admin socket not there yet, call failed) count as "not yet".
    """
    end = time.monotonic() + deadline_s
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (IgorError, OSError) as exc:
            last = exc
        if time.monotonic() >= end:
            raise Timeout(f"{what} not reached within {deadline_s} s (last: {last!r}) {describe()}")
        time.sleep(POLL_S)


@dataclass
class NodeProc:
    """One ``igor node run`` process (restartable on the same data dir and port)."""

    name: str
    data: Path
    port: int = 0
    """The bound TCP port: 0 until the first start is ready (the kernel picks it), then fixed."""
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    launcher: tuple[str, ...] = tuple(IGOR)
    """The command before ``node run`` (a lying node runs its own script)."""
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.peer_id = default_peer_id(DataDir(self.data).ensure().node_keypair())

    @property
    def listen(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    @property
    def addr(self) -> str:
        assert self.port, f"{self.name} has no port yet: start it and wait_ready first"
        return f"{self.listen}/p2p/{self.peer_id}"

    @property
    def admin_socket(self) -> Path:
        return DataDir(self.data).admin_socket

    @property
    def log_path(self) -> Path:
        return self.data / "node.log"

    def start(self, bootstrap: Sequence[str] = ()) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        args = [*self.launcher, "node", "run", "-d", str(self.data), "--name", self.name]
        args += ["--listen", self.listen, *self.extra_args]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**_env(), **self.env}
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"\n--- {self.name} log ---\n" + "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def admin(self, method: str, timeout_s: float = 10.0, **params: Any) -> Any:
        return call_admin(self.admin_socket, method, params or None, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        return self.admin("status")

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            if not self.alive():
                code = self.proc and self.proc.returncode
                raise Timeout(f"{self.name} exited with {code}{self.log_tail()}")
            return self.status()

        status = wait_until(probe, deadline_s, f"{self.name} ready", self.log_tail)
        if not self.port:
            self.port = _bound_port(status["addrs"])
        return status

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, deadline_s: float = STOP_DEADLINE_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            raise Timeout(
                f"{self.name} still running {deadline_s} s later{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL (idempotent) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _bound_port(addrs: Sequence[str]) -> int:
    """The TCP port of the node's first 127.0.0.1 address."""
    for addr in addrs:
        found = re.match(r"/ip4/127\.0\.0\.1/tcp/(\d+)", addr)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no 127.0.0.1 TCP address among {list(addrs)}")


@contextmanager
def scratch_dir(prefix: str = "igor-e2e-") -> Iterator[Path]:
    """A short directory under /tmp (admin socket paths must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def node_processes(
    root: Path, names: Sequence[str], extra_args: Sequence[str] = (), **env: str
) -> Iterator[list[NodeProc]]:
    """Node handles under ``root`` (not started); every process is killed on exit."""
    nodes = [
        NodeProc(name, root / name, extra_args=tuple(extra_args), env=dict(env)) for name in names
    ]
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.alive():
                node.signal(signal.SIGKILL)
        for node in nodes:
            node.kill()


def start_cluster(nodes: Sequence[NodeProc], deadline_s: float = START_DEADLINE_S) -> None:
    """Start ``nodes[0]``, wait for it, then start the rest with it as their only bootstrap."""
    first, *rest = nodes
    first.start()
    first.wait_ready(deadline_s)
    for node in rest:
        node.start(bootstrap=[first.addr])
    for node in rest:
        node.wait_ready(deadline_s)


def peers_up(node: NodeProc) -> set[str]:
    return {p["peer_id"] for p in node.admin("peers") if p["up"]}


def peers_down(node: NodeProc) -> set[str]:
    return {p["peer_id"] for p in node.admin("peers") if not p["up"]}


def wait_full_tables(nodes: Sequence[NodeProc], deadline_s: float) -> float:
    """Wait until every node sees every other node up; return the seconds it took."""
    start = time.monotonic()
    ids = {n.peer_id for n in nodes}

    def complete() -> bool:
        return all(peers_up(n) == ids - {n.peer_id} for n in nodes)

    def describe() -> str:
        out = []
        for n in nodes:
            try:
                out.append(f"{n.name}: {len(peers_up(n))} up")
            except (IgorError, OSError) as exc:
                out.append(f"{n.name}: {type(exc).__name__}")
        return "; ".join(out) + "".join(n.log_tail(8) for n in nodes)

    wait_until(complete, deadline_s, "complete peer tables", describe)
    return time.monotonic() - start


# ---------------------------------------------------------------- one-shot CLI calls, the store


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("IGOR_DATA_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    env["IGOR_DEBUG"] = "1"  # error lines name the exception class, which these tests match
    return env


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert "Traceback" not in self.stdout + self.stderr, self.stderr
        return json.loads(self.stdout)


def igor(*args: str | Path, timeout: float = CLI_TIMEOUT_S) -> CliRun:
    """Run ``igor ARGS`` to completion."""
    argv = [str(a) for a in args]
    done = subprocess.run(
        [*IGOR, *argv], capture_output=True, text=True, timeout=timeout, env=_env()
    )
    return CliRun(tuple(argv), done.returncode, done.stdout, done.stderr)


def store_rows(data: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the node's SQLite store directly (read-only)."""
    conn = sqlite3.connect(f"file:{data / 'igor.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def history(data: Path) -> list[dict[str, Any]]:
    with open(data / "history.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
