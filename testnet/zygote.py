"""A fork server that starts ``igor node run`` processes without paying their imports again.

A node process spends about a second of CPU importing (py-libp2p's ``__init__`` imports every
transport it ships, G26), so 64 nodes on 2 cores spent most of a minute importing the same
modules. The zygote imports the node code once, then forks one child per node: each child is
a complete ``igor node run`` process (its own pid, trio loop, sockets, data dir and log) that
starts at the point where a fresh process would have finished importing.

Protocol (JSON lines): the harness writes ``{"argv": [...], "env": {...}, "log": path,
"netns": name|null, "name": process name}`` to the zygote's stdin and reads ``{"pid": n}`` (or
``{"error": ...}``) from its stdout. When stdin closes, the zygote stops taking requests and
stays alive, reaping its children, until the last of them has exited (so no node is ever left a
zombie).

Run as ``python -m testnet.zygote``; the harness does that (:class:`Zygote`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

CLONE_NEWNET = 0x40000000
PR_SET_NAME = 15
NETNS_DIR = "/var/run/netns"
READY = "zygote ready"


class ZygoteError(RuntimeError):
    """The fork server could not start a node."""


def enter_netns(name: str) -> None:
    """Move the calling process into network namespace ``name`` (needs CAP_SYS_ADMIN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _set_process_name(name: str) -> None:
    """The name ``ps -o comm`` and ``top`` show (the command line stays the zygote's)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _child(request: Mapping[str, Any]) -> None:
    """In the forked child: become the node process. Never returns."""
    code = 1
    try:
        os.setsid()
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        _set_process_name(str(request.get("name") or "igor-node"))
        if request.get("netns"):
            enter_netns(str(request["netns"]))
        from igor_p2p.cli.main import app

        sys.argv = ["igor", *request["argv"]]
        try:
            app(args=list(request["argv"]), prog_name="igor", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # report, then leave without running the zygote's code
        with contextlib.suppress(Exception):
            sys.stderr.write(f"zygote child failed: {exc!r}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(*_: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """Preload, then fork one node per request line; afterwards reap until no child is left."""
    import igor_p2p.cli.main
    import igor_p2p.node.node  # noqa: F401

    gc.collect()
    gc.freeze()  # keep the preloaded objects out of the children's collections (fewer COW copies)
    signal.signal(signal.SIGCHLD, _reap)
    stdout.write(READY + "\n")
    stdout.flush()
    for line in stdin:
        try:
            request = json.loads(line)
            pid = os.fork()
        except (ValueError, OSError) as exc:
            stdout.write(json.dumps({"error": str(exc)}) + "\n")
            stdout.flush()
            continue
        if pid == 0:
            _child(request)
        stdout.write(json.dumps({"pid": pid}) + "\n")
        stdout.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue


class Zygote:
    """The harness side: one fork server process, asked for nodes one at a time."""

    def __init__(self, env: Mapping[str, str] | None = None, start_deadline_s: float = 60.0):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testnet.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        end = time.monotonic() + start_deadline_s
        line = self.proc.stdout.readline().strip()
        if line != READY or time.monotonic() > end:
            self.close()
            raise ZygoteError(f"the fork server did not start ({line or 'no output'})")

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: str,
        netns: str | None = None,
        name: str = "igor-node",
    ) -> int:
        """Fork ``igor ARGV`` with exactly ``env``; stdout/stderr appended to ``log``."""
        if self.proc.stdin is None or self.proc.stdout is None or self.proc.poll() is not None:
            raise ZygoteError("the fork server is not running")
        request = {"argv": list(argv), "env": dict(env), "log": log, "netns": netns, "name": name}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or "{}")
        if "pid" not in answer:
            raise ZygoteError(f"the fork server could not start a node: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        """Stop taking requests; the zygote lives on until its last node has exited."""
        with contextlib.suppress(Exception):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(Exception):
            if self.proc.stdout is not None:
                self.proc.stdout.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
