"""Five real ``igor node run`` processes: discovery, failure detection, restart, DHT lookup.

Every node is given only the first node as ``--bootstrap``; the rest is gossip discovery.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from .node_procs import (
    NodeProc,
    igor,
    node_processes,
    peers_down,
    peers_up,
    scratch_dir,
    start_cluster,
    wait_full_tables,
    wait_until,
)

PEER_DOWN_AFTER_S = 4.0
"""The node default (``NodeConfig.peer_down_after_s``), passed explicitly so the test pins it."""
DOWN_SLACK_S = 3.0
FULL_TABLES_DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[NodeProc]]:
    with (
        scratch_dir() as root,
        node_processes(
            root,
            [f"n{i}" for i in range(5)],
            extra_args=("--tick-interval", "0.1"),
            IGOR_PEER_DOWN_AFTER_S=str(PEER_DOWN_AFTER_S),
        ) as nodes,
    ):
        start_cluster(nodes)
        yield nodes


def test_five_nodes_reach_full_tables_notice_a_kill_and_readmit_the_restarted_node(
    cluster: list[NodeProc],
) -> None:
    nodes = cluster
    wait_full_tables(nodes, FULL_TABLES_DEADLINE_S)
    for node in nodes:
        status = node.status()
        assert status["peer_id"] == node.peer_id
        assert status["peers_up"] == 4 and status["peers_known"] == 4

    victim = nodes[3]
    survivors = [n for n in nodes if n is not victim]
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait_exit()

    def all_marked_down() -> bool:
        return all(victim.peer_id in peers_down(n) for n in survivors)

    wait_until(all_marked_down, PEER_DOWN_AFTER_S + DOWN_SLACK_S, "victim marked down")
    noticed_after = time.monotonic() - killed_at
    # Not before the configured silence: a peer is down only after peer_down_after_s.
    assert noticed_after >= PEER_DOWN_AFTER_S - 1.5, noticed_after
    for node in survivors:
        assert peers_up(node) == {n.peer_id for n in survivors} - {node.peer_id}

    victim.start(bootstrap=[nodes[0].addr])
    assert victim.wait_ready()["peer_id"] == victim.peer_id  # same data dir → same identity
    wait_full_tables(nodes, FULL_TABLES_DEADLINE_S)


def test_agent_ticks_on_its_node_and_is_found_from_another_via_the_dht(
    cluster: list[NodeProc],
) -> None:
    nodes = cluster
    wait_full_tables(nodes, FULL_TABLES_DEADLINE_S)
    a, e = nodes[0], nodes[4]
    launched = igor("agent", "launch", "counter", "-d", a.data, "--json")
    assert launched.rc == 0, launched.stderr
    did = launched.json()["agent"]
    assert launched.json()["peer_id"] == a.peer_id

    def ticking_past(tick: int) -> dict | None:
        (agent,) = [x for x in a.admin("agents") if x["agent"] == did]
        return agent if agent.get("committed_tick", 0) > tick else None

    first = wait_until(lambda: ticking_past(2), 15, "agent ticks on A")
    later = wait_until(lambda: ticking_past(first["committed_tick"] + 2), 15, "tick grows")
    assert later["state"] == "ACTIVE_OWNER" and later["owner_peer"] == a.peer_id

    # verify only reads: it works on the data dir the running node holds locked.
    verified = igor("checkpoint", "verify", did, "-d", a.data, "--json")
    report = verified.json()
    assert verified.rc == 0 and report["valid"], report
    assert report["last_tick"] >= later["committed_tick"]
    assert report["last_epoch"] == 1 and report["checkpoints"] == report["last_tick"] + 1

    found = igor("agent", "status", did, "-d", e.data, "--json")
    assert found.rc == 0, found.stderr
    status = found.json()
    # The owner answers with its custody, which E verifies from the genesis (the answer carries
    # no tick: nothing about ticks can be proven that way).
    assert (status["source"], status["verified"]) == ("network", True), status
    assert status["owner_peer"] == a.peer_id
    assert status["state"] == "ACTIVE_OWNER" and status["epoch"] == 1
    # E itself holds no record of the agent.
    assert all(x["agent"] != did for x in e.admin("agents"))
