"""Quick rejoin: a restarted node redials the peers it knew (the known-peers file in its data
dir), with no bootstrap list, is back in every peer table within 5 s, and can migrate an agent
to a peer right away."""

from __future__ import annotations

import signal
import time

import pytest

from .node_procs import (
    igor,
    node_processes,
    peers_down,
    peers_up,
    scratch_dir,
    start_cluster,
    wait_full_tables,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timing]

BACK_IN_TABLES_S = 5.0


def test_a_restarted_node_without_bootstrap_rejoins_from_its_known_peers_and_migrates_at_once() -> (
    None
):
    with (
        scratch_dir() as root,
        node_processes(
            root,
            [f"n{i}" for i in range(4)],
            extra_args=("--tick-interval", "0.1"),
            IGOR_PEER_DOWN_AFTER_S="2",
        ) as nodes,
    ):
        start_cluster(nodes)
        wait_full_tables(nodes, 20)
        victim, target = nodes[2], nodes[3]
        others = [n for n in nodes if n is not victim]
        launched = igor("agent", "launch", "counter", "-d", victim.data, "--json")
        assert launched.rc == 0, launched.stderr
        did = launched.json()["agent"]

        victim.signal(signal.SIGTERM)  # a clean stop writes the known-peers file
        assert victim.wait_exit() == 0
        assert (victim.data / "known-peers.json").exists()
        wait_until(
            lambda: all(victim.peer_id in peers_down(n) for n in others), 15, "victim marked down"
        )

        victim.start(bootstrap=())  # no bootstrap: only what it knew
        victim.wait_ready()
        ready = time.monotonic()
        moved = igor("agent", "migrate", did, "--to", target.peer_id, "-d", victim.data, "--json")
        assert moved.rc == 0, moved.stderr + moved.stdout
        wait_until(
            lambda: all(victim.peer_id in peers_up(n) for n in others),
            BACK_IN_TABLES_S,
            "victim back in every peer table",
        )
        assert time.monotonic() - ready <= BACK_IN_TABLES_S
        owners = [a for a in target.admin("agents") if a["agent"] == did]
        assert owners and owners[0]["state"] == "ACTIVE_OWNER"
