"""Operator CLI: ``igor agent migrate`` and ``igor agent recover [--force --yes-i-know]``; a
forced recovery shows in ``igor checkpoint verify`` as a forced step naming the operator."""

from __future__ import annotations

import signal
import time

from .checking import check_nodes
from .handoff_procs import handoff_cluster, launch, named, wait_state, wait_ticks
from .node_procs import igor, scratch_dir


def test_cli_migrate_then_forced_recovery_is_recorded_with_the_operator() -> None:
    with scratch_dir() as root, handoff_cluster(root, ["a", "b"]) as nodes:
        a, b = nodes
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        moved = igor("agent", "migrate", did, "--to", b.peer_id, "-d", a.data, "--json")
        assert moved.rc == 0 and moved.json()["outcome"] == "TRANSFERRED", moved.stderr
        wait_ticks(b, did, 2, time.monotonic_ns())

        # The owner dies for good; A holds a retired copy. Plain recover has nothing to do,
        # --force without the confirmation flag is a typed error, with it A takes over.
        b.signal(signal.SIGKILL)
        b.wait_exit()
        plain = igor("agent", "recover", did, "-d", a.data, "--json")
        assert plain.rc == 0 and "result" in plain.json(), plain.stderr
        unconfirmed = igor("agent", "recover", did, "-d", a.data, "--force")
        assert unconfirmed.rc == 2 and "ForceNotConfirmed" in unconfirmed.stderr
        forced = igor(
            "agent", "recover", did, "-d", a.data, "--force", "--yes-i-know",
            "--operator", "alice", "--json",
        )  # fmt: skip
        assert forced.rc == 0, forced.stderr
        assert forced.json()["forced_by"] == "alice" and forced.json()["epoch"] == 3
        wait_state(a, did, "ACTIVE_OWNER")
        wait_ticks(a, did, 2, time.monotonic_ns())

        verified = igor("checkpoint", "verify", did, "-d", a.data)
        assert verified.rc == 0 and "VALID" in verified.stdout, verified.stdout
        assert "forced" in verified.stdout and "'alice'" in verified.stdout, verified.stdout
        report = igor("checkpoint", "verify", did, "-d", a.data, "--json").json()
        assert report["last_epoch"] == 3 and report["transfers"] == 1, report
        a.admin("stop")
        a.wait_exit()
        # The override forks from A's retired head past the ticks the dead owner committed:
        # that fork (one side the FORCED record) is the operator's documented choice. Every
        # other invariant holds (no overlap, epochs, budget along each branch).
        result = check_nodes(named(nodes))
        others = [v for v in result.violations if v.check != "lineage"]
        assert not others, result.to_text()
        for v in result.by_check("lineage"):
            assert any(c.kind == "FORCED" for c in v.children), result.to_text()  # type: ignore[attr-defined]
