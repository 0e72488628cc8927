"""A signalled node stops cleanly: exit 0, the agent's last tick committed, port and socket gone."""

from __future__ import annotations

import signal
import time

import pytest

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.lineage.entries import Checkpoint, decode_entry

from .node_procs import history, node_processes, port_accepts, scratch_dir, store_rows, wait_until

EXIT_DEADLINE_S = 5.0
UNCOMMITTED_TICKS = 10
"""Ticks run past the last checkpoint before the signal, so the final commit has work to do."""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_node_cleanly_and_commits_the_last_tick(sig: signal.Signals) -> None:
    with (
        scratch_dir() as root,
        node_processes(
            root, ["solo"], extra_args=("--tick-interval", "0.02", "--checkpoint-every", "100000")
        ) as (node,),
    ):
        node.start()
        node.wait_ready()
        launched = node.admin(
            "launch",
            wasm=load_agent_source("counter").hex(),
            manifest=load_agent_manifest("counter").canonical_bytes.hex(),
        )
        did = launched["agent"]

        def ticked() -> dict | None:
            (agent,) = node.admin("agents")
            return agent if agent["tick"] >= UNCOMMITTED_TICKS else None

        before = wait_until(ticked, 15, "agent ticks")
        # Only the genesis is committed so far: everything after it rides on the clean stop.
        assert before["committed_tick"] == 0, before
        assert port_accepts(node.port)

        node.signal(sig)
        signalled = time.monotonic()
        assert node.wait_exit(EXIT_DEADLINE_S) == 0, node.log_tail()
        assert time.monotonic() - signalled < EXIT_DEADLINE_S
        assert not port_accepts(node.port)
        assert not node.admin_socket.exists()
        assert "Traceback" not in node.log_tail(400)

        events = history(node.data)
        last_tick = max(e["tick"] for e in events if e["type"] == "tick" and e["agent"] == did)
        assert last_tick >= before["tick"]
        assert events[-1]["type"] == "node" and events[-1]["detail"] == "clean"

        rows = store_rows(node.data, "SELECT blob FROM lineage WHERE agent = ? ORDER BY seq", did)
        head = decode_entry(rows[-1][0])
        assert isinstance(head, Checkpoint)
        assert head.tick == last_tick, (head.tick, last_tick)
        assert head.state == last_tick.to_bytes(8, "little")  # the counter's memory
        assert len(rows) == 2  # genesis + the one checkpoint written by the clean stop
        authority = store_rows(node.data, "SELECT state, epoch FROM authority WHERE agent = ?", did)
        assert authority == [("ACTIVE_OWNER", 1)]
