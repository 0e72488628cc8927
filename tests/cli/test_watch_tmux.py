"""``igor testnet watch`` as a person sees it: in a terminal (tmux), while another shell
pauses, kills and restarts nodes. Each change is on screen within 3 s."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from testnet.harness import Testnet

from .clitools import cli_env, igor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timing,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
SHOW_WITHIN_S = 3.0


def screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def row(text: str, node: str) -> str:
    return next((line for line in text.splitlines() if f"│ {node} " in line), "")


def shown_within(session: str, seconds: float, holds: Callable[[str], bool]) -> float:
    """Seconds until the screen satisfies ``holds`` (fails after ``seconds``)."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < seconds:
        last = screen(session)
        if holds(last):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not on screen within {seconds} s:\n{last}")


def test_watch_shows_a_paused_a_killed_and_a_restarted_node_within_3_s() -> None:
    root = Path(tempfile.mkdtemp(prefix="igw-", dir="/tmp"))
    tn = Testnet(root / "tn")
    session = f"igor-watch-{uuid.uuid4().hex[:8]}"
    env = cli_env(root / "state", COLUMNS="160")
    try:
        tn.up(3, ["--log-format", "json", "--tick-interval", "0.1"])
        command = f"{sys.executable} -m igor_p2p.cli.main testnet watch --dir {tn.dir}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
             "env", f"XDG_STATE_HOME={root / 'state'}", "COLUMNS=160", *command.split()],
            check=True,
        )  # fmt: skip
        shown_within(session, 30, lambda s: all("up" in row(s, n) for n in ("n1", "n2", "n3")))

        assert igor("testnet", "pause", "n2", "--dir", tn.dir, env=env).rc == 0
        shown_within(session, SHOW_WITHIN_S, lambda s: "paused" in row(s, "n2"))
        # the paused node does not freeze the view: the others keep answering
        shown_within(session, SHOW_WITHIN_S, lambda s: "0." in row(s, "n1").split("│")[-2])

        assert igor("testnet", "unpause", "n2", "--dir", tn.dir, env=env).rc == 0
        shown_within(session, SHOW_WITHIN_S, lambda s: "paused" not in row(s, "n2"))

        assert igor("testnet", "kill", "n3", "--dir", tn.dir, env=env).rc == 0
        shown_within(session, SHOW_WITHIN_S, lambda s: "killed" in row(s, "n3"))

        restarted = igor("testnet", "restart", "n3", "--dir", tn.dir, env=env)
        assert restarted.rc == 0, restarted.stderr
        shown_within(
            session,
            SHOW_WITHIN_S,
            lambda s: "killed" not in row(s, "n3") and "up" in row(s, "n3"),
        )
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        Testnet(tn.dir).down(grace_s=5.0)  # re-read: other commands restarted nodes
        shutil.rmtree(root, ignore_errors=True)
