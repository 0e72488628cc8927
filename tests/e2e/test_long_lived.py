"""Issue 11: an agent with more than 20,000 committed ticks moves to a node that never held it,
and verifies there. The handoff carries the agent's custody (transfer records and certificates
from the genesis) and its last checkpoint, not every tick; the new node's lineage is a
compacted one whose gaps are per-tick only."""

from __future__ import annotations

import json

import pytest

from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.net.peerid import public_key_from_peer_id_text

from .handoff_procs import FAST_ARGS, FAST_ENV, migrate, now_ns, wait_ticks
from .node_procs import igor, node_processes, scratch_dir, store_rows, wait_full_tables

pytestmark = pytest.mark.e2e

TICKS = 20_001


def test_an_agent_older_than_twenty_thousand_ticks_moves_to_a_fresh_node_and_verifies() -> None:
    with scratch_dir() as root:
        run = igor(
            "agent", "run", "counter", "-d", root / "n1", "--ticks", str(TICKS),
            "--interval", "0", "--budget", "1000000", "--json", timeout=600,
        )  # fmt: skip
        assert run.rc == 0, run.stderr
        stopped = json.loads(run.stdout.splitlines()[-1])
        did = stopped["agent"]
        assert stopped["tick"] >= TICKS

        with node_processes(root, ["n1", "n2"], FAST_ARGS, **FAST_ENV) as (n1, n2):
            started = now_ns()
            n1.start()
            n1.wait_ready()
            n2.start(bootstrap=[n1.addr])
            n2.wait_ready()
            wait_full_tables([n1, n2], 20)
            wait_ticks(n1, did, 1, started)  # it claimed its next epoch and ticks
            assert migrate(n1, did, n2.peer_id) == "TRANSFERRED"
            wait_ticks(n2, did, 3, now_ns())

            blobs = [
                bytes(b)
                for (b,) in store_rows(
                    n2.data, "SELECT blob FROM lineage WHERE agent = ? ORDER BY seq", did
                )
            ]
            assert len(blobs) < 100, "the new node received every tick"
            report = verify_lineage(blobs, expected_agent=did, ordered=True)
            assert report.valid, [p.message for p in report.problems]
            assert report.custodian == public_key_from_peer_id_text(n2.peer_id)
            assert report.last_tick is not None and report.last_tick > TICKS
            assert report.compacted  # the per-tick history it did not receive is named

            verify = igor("checkpoint", "verify", did, "-d", n2.data, "--json")
            assert verify.rc == 0, verify.stdout + verify.stderr
            assert json.loads(verify.stdout)["valid"] is True
