"""The agent and node commands against real detached nodes: suffixes, one status schema,
wide and quiet output, migration progress and its exit codes, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from igor_p2p.cli.agent import STATUS_SCHEMA, normalize_status
from igor_p2p.cli.common import ExitCode

from .clitools import IGOR, cli_env, detached_node, igor

UNUSED_PEER = "12D3KooWAvdKSnjrRwEyyp8QNqMCB5pHgoQpXExwJvyAdosqhiBY"


def test_status_has_one_schema_whatever_the_source() -> None:
    did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    local = {"found": True, "agent": did, "state": "ACTIVE_OWNER", "epoch": 2, "reason": "",
             "owner_peer": "12D3KooWx", "node": "n1", "tick": 5, "budget": 9, "committed_tick": 5,
             "source": "local"}  # fmt: skip
    dht_unknown = {"agent": did, "found": True, "source": "dht", "owner_peer": "12D3KooWx",
                   "epoch": 3, "state": "UNKNOWN",
                   "reason": "owner unreachable: SwarmException"}  # fmt: skip
    remote = {"type": "agent_status", **local, "source": "dht"}
    tombstone = {**local, "source": "tombstone", "hops": 2}
    for raw in (local, dht_unknown, remote, tombstone):
        out = normalize_status(raw)
        assert list(out) == list(STATUS_SCHEMA)
    assert normalize_status(dht_unknown)["reason"] == "owner unreachable: could not connect"
    assert normalize_status(dht_unknown)["tick"] is None


@pytest.mark.e2e
def test_two_nodes_suffix_status_schema_wide_quiet_migration_progress_and_ctrl_c(
    tmp_path: Path,
) -> None:
    n1, n2 = tmp_path / "n1", tmp_path / "n2"
    with detached_node(n1, "n1") as p1:
        port1 = igor("node", "status", "-d", n1, "--json").json()["addrs"][0]
        with detached_node(n2, "n2", "--bootstrap", port1) as p2:
            launched = igor("agent", "launch", "counter", "-d", n1)
            assert launched.rc == 0, launched.stderr
            did = launched.stdout.strip()
            suffix = did[-8:]

            # one schema, from the owner and (through the DHT) from the other node
            deadline = time.monotonic() + 30
            while True:
                here = igor("agent", "status", suffix, "-d", n1, "--json")
                there = igor("agent", "status", did, "-d", n2, "--json")
                if there.rc == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert here.rc == 0 and there.rc == 0, here.stderr + there.stderr
            assert list(here.json()) == list(STATUS_SCHEMA) == list(there.json())
            assert here.json()["agent"] == did and here.json()["source"] == "local"
            assert there.json()["owner_peer"] == p1

            # wide: the whole DID on one line at 80 columns; quiet: DIDs only
            env = cli_env(COLUMNS="80")
            wide = igor("agent", "list", "-d", n1, "--wide", env=env)
            assert any(did in line for line in wide.stdout.splitlines()), wide.stdout
            same = igor("agent", "list", "-d", n1, "-o", "wide", env=env)
            assert any(did in line for line in same.stdout.splitlines()), same.stdout
            assert igor("agent", "list", "-d", n1, "-q").stdout.split() == [did]
            peers = igor("node", "peers", "-d", n1, "--wide", env=env)
            assert any(p2 in line for line in peers.stdout.splitlines()), peers.stdout
            assert igor("node", "peers", "-d", n1, "-q").stdout.split() == [p2]

            # migration to a peer nobody knows: not transferred, non-zero, the reason in words
            lost = igor("agent", "migrate", suffix, "--to", UNUSED_PEER, "-d", n1, "--json")
            assert lost.rc != 0
            lost.assert_words()
            body = lost.json()
            assert not body.get("transferred", False)
            assert body.get("reason") or body.get("error", {}).get("message")

            # a real move, each step shown as it happens
            moved = igor("agent", "migrate", suffix, "--to", p2, "-d", n1)
            assert moved.rc == 0, moved.stdout + moved.stderr
            steps = ("begin", "ack received", "authority → RETIRED", "transferred", "confirmed")
            at = [moved.stdout.find(step) for step in steps]
            assert -1 not in at and at == sorted(at), moved.stdout  # each, in protocol order
            assert "TRANSFERRED" in moved.stdout
            after = igor("agent", "status", did, "-d", n2, "--json").json()
            assert after["state"] == "ACTIVE_OWNER" and after["node"] == "n2"

            # Ctrl-C while the handoff waits (a target address nothing listens on): the
            # command says that the node goes on, and how to follow it
            target = f"/ip4/127.0.0.1/tcp/9/p2p/{UNUSED_PEER}"
            proc = subprocess.Popen(
                [*IGOR, "agent", "migrate", did, "--to", target, "-d", str(n2)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cli_env(),
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("migrating"), line
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
            assert proc.returncode == ExitCode.INTERRUPTED, err
            assert "the node goes on with the handoff" in err
            assert f"igor agent status {did}" in err
