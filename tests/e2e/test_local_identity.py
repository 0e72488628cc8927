"""Identity through the real CLI: resume never changes the DID, keys are private files, and one
process at a time may use a data directory."""

from __future__ import annotations

import signal
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .local_cli import igor, inspect, run_counter, spawn, typed_error

pytestmark = pytest.mark.e2e


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_resume_keeps_the_did_and_keys_are_private(tmp_path: Path) -> None:
    data = tmp_path / "node"
    did, _ = run_counter(data, 2)
    keys = list((data / "agent-keys").iterdir())
    assert [k.name for k in keys] == [did.removeprefix("did:key:") + ".key"]
    assert _mode(keys[0]) == 0o600
    assert _mode(data / "node.key") == 0o600
    assert _mode(data) == 0o700
    node_key = (data / "node.key").read_bytes()
    agent_key = keys[0].read_bytes()

    for round_ in range(2):
        resumed = igor(
            "agent", "resume", did, "-d", data, "--ticks", "2", "--interval", "0", "--json"
        )
        assert resumed.rc == 0, resumed.stderr
        assert resumed.event("started")["agent"] == did
        assert {e["agent"] for e in resumed.committed()} == {did}
        assert resumed.event("stopped")["tick"] == 4 + 2 * round_
    assert inspect(did, data)["agent"] == did
    assert (data / "node.key").read_bytes() == node_key
    assert [k.read_bytes() for k in (data / "agent-keys").iterdir()] == [agent_key]


def test_second_process_on_a_busy_data_dir_fails_with_data_dir_busy(tmp_path: Path) -> None:
    data = tmp_path / "node"
    did, _ = run_counter(data, 1)
    holder = spawn("agent", "resume", did, "-d", data, "--interval", "0.05", "--json")
    try:
        holder.wait_for("committed")
        attempts = [
            ("agent", "resume", did, "-d", data, "--ticks", "1", "--interval", "0"),
            ("agent", "run", "counter", "-d", data, "--ticks", "1"),
            ("checkpoint", "export", did, "-d", data, "-o", tmp_path / "b.igor",
             "--transfer-to", "12D3KooWAvdKSnjrRwEyyp8QNqMCB5pHgoQpXExwJvyAdosqhiBY"),
        ]  # fmt: skip
        with ThreadPoolExecutor(len(attempts)) as pool:
            refused = list(pool.map(lambda args: igor(*args), attempts))
        for result in refused:
            assert typed_error(result) == "DataDirBusy"
            assert result.rc == 2
        assert not (tmp_path / "b.igor").exists()
    finally:
        holder.proc.send_signal(signal.SIGTERM)
        events = holder.finish()
    assert holder.proc.returncode == 0
    assert events[-1]["event"] == "stopped"
    assert events[-1]["state"] == "ACTIVE_OWNER"
    # The holder's lock dies with it: the directory is usable again.
    after = igor("agent", "resume", did, "-d", data, "--ticks", "1", "--interval", "0", "--json")
    assert after.rc == 0, after.stderr
    assert after.event("started")["tick"] == events[-1]["tick"]
