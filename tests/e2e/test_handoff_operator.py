"""Operator CLI: ``igor agent migrate`` and ``igor agent recover [--force --yes-i-know]``; a
forced recovery shows in ``igor checkpoint verify`` as a forced step naming the operator.

A forced recovery is for a node that holds the agent but can never learn the outcome on its own
(HANDOFF_PENDING with a source gone for good, or RECOVERY_REQUIRED): here the source of the
second hop dies for good right after its target acknowledged the offer, before any witness
accepted the transfer. Four nodes, so that the agent's witnesses (three, never its owner) still
have a quorum without the dead node."""

from __future__ import annotations

import contextlib
import signal
import time

from igor_p2p.errors import IgorError

from .checking import check_nodes
from .handoff_procs import FAST_ARGS, FAST_ENV, launch, migrate, named, row, wait_state, wait_ticks
from .node_procs import igor, node_processes, scratch_dir, start_cluster, wait_full_tables


def test_cli_migrate_then_forced_recovery_is_recorded_with_the_operator() -> None:
    with (
        scratch_dir() as root,
        node_processes(root, ["a", "b", "c", "d"], FAST_ARGS, **FAST_ENV) as nodes,
    ):
        a, b, c, _d = nodes
        b.env["IGOR_CRASH_AT"] = "source:after_send:OFFER"
        start_cluster(nodes)
        wait_full_tables(nodes, 20)
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        moved = igor("agent", "migrate", did, "--to", b.peer_id, "-d", a.data, "--json")
        assert moved.rc == 0 and moved.json()["outcome"] == "TRANSFERRED", moved.stderr
        wait_ticks(b, did, 2, time.monotonic_ns())

        # B dies for good once C holds the offered copy; nothing was decided.
        with contextlib.suppress(IgorError):  # the source dies mid-call
            migrate(b, did, c.peer_id)
        assert b.wait_exit(20) == -signal.SIGKILL
        pending = wait_state(c, did, "HANDOFF_PENDING")
        assert not pending.get("ticking")

        # Plain recover reports what C waits for; --force without the confirmation flag is a
        # typed error; with it C claims a forced epoch from the witnesses that are left.
        plain = igor("agent", "recover", did, "-d", c.data, "--json")
        assert plain.rc == 0 and plain.json()["state"] == "HANDOFF_PENDING", plain.stderr
        unconfirmed = igor("agent", "recover", did, "-d", c.data, "--force")
        assert unconfirmed.rc == 2 and "ForceNotConfirmed" in unconfirmed.stderr
        forced = igor(
            "agent", "recover", did, "-d", c.data, "--force", "--yes-i-know",
            "--operator", "alice", "--json",
        )  # fmt: skip
        assert forced.rc == 0, forced.stderr
        answer = forced.json()
        assert answer["claiming"] == "FORCE" or answer["reason"] == "forced recovery", answer
        owned = wait_state(c, did, "ACTIVE_OWNER")
        assert owned["reason"] == "forced recovery", owned
        wait_ticks(c, did, 2, time.monotonic_ns())

        verified = igor("checkpoint", "verify", did, "-d", c.data)
        assert verified.rc == 0 and "VALID" in verified.stdout, verified.stdout
        assert "forced" in verified.stdout and "'alice'" in verified.stdout, verified.stdout
        report = igor("checkpoint", "verify", did, "-d", c.data, "--json").json()
        assert report["last_epoch"] == row(c, did)["epoch"] and report["transfers"] == 1, report  # type: ignore[index]
        for n in (a, c, _d):
            n.admin("stop")
            n.wait_exit()
        # The forced epoch continues from the copy B offered: no fork, every invariant holds.
        result = check_nodes(named(nodes))
        others = [v for v in result.violations if v.check != "lineage"]
        assert not others, result.to_text()
        for v in result.by_check("lineage"):
            assert any(c.kind == "FORCED" for c in v.children), result.to_text()  # type: ignore[attr-defined]
