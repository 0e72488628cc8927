"""An agent wanders across three real node processes: 100 explicit hops, then on its own."""

from __future__ import annotations

import time

from .handoff_procs import (
    checker_passes,
    handoff_cluster,
    launch,
    migrate,
    row,
    ticks,
    wait_ticks,
)
from .node_procs import igor, scratch_dir, wait_until

HOPS = 100


def test_hundred_hops_keep_one_chain_with_one_epoch_per_hop_and_conserve_budget() -> None:
    with scratch_dir() as root, handoff_cluster(root, ["n1", "n2", "n3"]) as nodes:
        did = launch(nodes[0])
        wait_ticks(nodes[0], did, 2, 0)
        started = time.monotonic()
        for hop in range(HOPS):
            source, target = nodes[hop % 3], nodes[(hop + 1) % 3]
            outcome = migrate(source, did, target.peer_id)
            assert outcome == "TRANSFERRED", (hop, outcome, source.log_tail())
        per_hop = (time.monotonic() - started) / HOPS
        print(f"\nper-hop time over {HOPS} hops: {per_hop * 1000:.0f} ms")
        final = nodes[HOPS % 3]
        # The final owner keeps ticking at epoch 101; stop it cleanly so every tick is committed.
        since = time.monotonic_ns()
        wait_ticks(final, did, 2, since)
        final.admin("stop")
        final.wait_exit()

        verified = igor("checkpoint", "verify", did, "-d", final.data, "--json")
        report = verified.json()
        assert verified.rc == 0 and report["valid"], report
        assert report["first_epoch"] == 1 and report["last_epoch"] == HOPS + 1, report
        assert report["transfers"] == HOPS, report
        for other in nodes:
            if other is not final:
                r = row(other, did)
                assert r is not None and r["state"] == "RETIRED", (other.name, r)
                assert not [t for t in ticks(other, did) if t["start_ns"] >= since]
        # Overlap, one chain, epoch owners, and budget: budget_start − budget_end equals the
        # sum of the costs of the counted ticks along the chain (checker's budget check).
        checker_passes(nodes)
        spent = report["budget_start"] - report["budget_end"]
        assert spent > 0, report


def test_wander_random_moves_the_agent_on_its_own_and_stays_safe() -> None:
    with (
        scratch_dir() as root,
        handoff_cluster(root, ["w1", "w2", "w3"], extra_args=("--wander", "random")) as nodes,
    ):
        did = launch(nodes[0], "wanderer")

        def transfers() -> int:
            return sum(
                1
                for n in nodes
                for e in _handoffs(n, did)
                if e["step"] == "confirmed" or e["step"] == "commit_sent"
            )

        wait_until(lambda: transfers() >= 4, 40, "four wander hops")
        owners = [n.name for n in nodes if (r := row(n, did)) and r["state"] == "ACTIVE_OWNER"]
        assert len(owners) <= 1, owners
        for n in nodes:
            n.admin("stop")
            n.wait_exit()
        checker_passes(nodes)
        epochs = {t["epoch"] for n in nodes for t in ticks(n, did)}
        assert max(epochs) >= 4 and len({n.name for n in nodes if ticks(n, did)}) >= 2


def _handoffs(node, did):  # type: ignore[no-untyped-def]
    from .node_procs import history

    return [e for e in history(node.data) if e["type"] == "handoff" and e["agent"] == did]
