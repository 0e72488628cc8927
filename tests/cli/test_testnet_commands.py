"""``igor testnet``: where the testnet is, scenarios, partitions by group, labels, logs, the
readable run summary, Ctrl-C during ``up``."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from igor_p2p.cli.common import ExitCode
from igor_p2p.cli.testnet import remember, resolve_dir
from testnet.checker import CheckResult
from testnet.harness import Testnet, free_ports
from testnet.run import RunOutcome, summary_lines

from .clitools import IGOR, cli_env, igor


def test_dir_comes_from_the_flag_then_the_last_testnet_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert resolve_dir(None) == Path("testnet-data")
    last = tmp_path / "tn"
    last.mkdir()
    (last / "testnet.json").write_text('{"nodes": [], "agents": {}}')
    remember(last)
    assert resolve_dir(None) == last
    assert resolve_dir(tmp_path / "other") == tmp_path / "other"


def test_igor_testnet_dir_is_honoured(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "state", IGOR_TESTNET_DIR=str(tmp_path / "from-env"))
    run = igor("testnet", "status", env=env)
    assert run.rc == ExitCode.NOT_FOUND
    assert str(tmp_path / "from-env") in run.stderr


def test_scenarios_are_listed_with_what_they_do() -> None:
    run = igor("testnet", "scenarios", "--json")
    assert run.rc == 0
    names = {s["name"] for s in run.json()}
    assert {"partition-during-migration", "random", "fs1-source-crash"} <= names
    assert all(s["description"] for s in run.json())
    text = igor("testnet", "scenarios", env=cli_env(COLUMNS="200"))
    assert "partition-during-migration" in text.stdout


def test_run_summary_reads_as_sentences_not_dicts(tmp_path: Path) -> None:
    result = CheckResult((), {}, 10, 0.01)
    outcome = RunOutcome(
        name="demo",
        seed=3,
        result=result,
        report=tmp_path / "report.html",
        schedule=[],
        faults=Counter({"partition": 2, "heal": 2}),
        migrations=[{"agent": "a1", "from": "n1", "to": "n4", "outcome": "TRANSFERRED"}],
        up_s=4.2,
        elapsed_s=20.0,
    )
    text = "\n".join(summary_lines(outcome))
    assert "demo (seed 3): PASS" in text
    assert "faults applied: 2 heal, 2 partition" in text
    assert "a1: n1 → n4: TRANSFERRED" in text
    assert "{" not in text and "Counter" not in text


@pytest.mark.e2e
def test_a_testnet_driven_by_labels_groups_and_a_remembered_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "state", COLUMNS="200")
    where = tmp_path / "tn"
    base = free_ports(1)[0]
    up = igor("testnet", "up", "-n", "3", "--dir", where, "--base-port", base, "--no-wander",
              env=env)  # fmt: skip
    try:
        assert up.rc == 0, up.stdout + up.stderr
        ports = [n["port"] for n in json.loads((where / "testnet.json").read_text())["nodes"]]
        assert ports == [base, base + 1, base + 2]
        # no --dir from here on: the last testnet is remembered
        launched = igor("testnet", "launch", "counter", env=env)
        assert launched.rc == 0 and launched.stdout.startswith("a1 "), launched.stderr
        cut = igor("testnet", "partition", "--shape", "halves", env=env)
        assert cut.rc == 0
        assert "partition: n1 | n2 n3" in cut.stdout, cut.stdout
        assert igor("testnet", "heal", env=env).rc == 0
        moved = igor("testnet", "migrate", "a1", "n3", env=env)
        assert moved.rc == 0, moved.stdout + moved.stderr
        assert (
            "a1" in moved.stdout and "transferred" in moved.stdout and "confirmed" in moved.stdout
        )
        assert "TRANSFERRED" in moved.stdout
        again = igor("testnet", "migrate", "a1", "n3", env=env)
        assert again.rc == ExitCode.USAGE and "already on n3" in again.stderr
        unknown = igor("testnet", "kill", "n9", env=env)
        assert unknown.rc == ExitCode.NOT_FOUND
        unknown.assert_words()

        # logs -f prints new lines as they are appended to the node's log
        follow = subprocess.Popen(
            [*IGOR, "testnet", "logs", "n1", "-f", "--lines", "1"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert follow.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        try:
            assert lines.get(timeout=20).strip(), "the last line of the log first"
            with (where / "n1.log").open("a") as log:
                log.write('{"event": "marker for logs -f"}\n')
            deadline = time.monotonic() + 20
            seen = ""
            while "marker for logs -f" not in seen and time.monotonic() < deadline:
                try:
                    seen = lines.get(timeout=1)
                except queue.Empty:
                    continue
            assert "marker for logs -f" in seen
        finally:
            follow.send_signal(signal.SIGINT)
            follow.wait(timeout=10)
        assert follow.returncode == 0
    finally:
        Testnet(where).down(grace_s=5.0)


@pytest.mark.e2e
def test_ctrl_c_during_up_stops_the_nodes_it_started(tmp_path: Path) -> None:
    where = tmp_path / "tn"
    proc = subprocess.Popen(
        [*IGOR, "testnet", "up", "-n", "3", "--dir", str(where)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path / "state"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until a node has been spawned
        state = where / "testnet.json"
        if state.exists() and any(n.get("pid") for n in json.loads(state.read_text())["nodes"]):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "stopped the 3 node(s)" in err
    tn = Testnet(where)
    assert tn.running() == [], "no node is left running"
