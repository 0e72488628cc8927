"""The harness against real processes: the checker catches two owners when fencing is off,
and a partition cuts everything between its sides."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from harness_helpers import evidence, running_testnet, scratch

from igor_p2p.errors import IgorError
from testnet.checker import OverlapViolation
from testnet.collect import check_dir
from testnet.harness import wait_until

pytestmark = pytest.mark.e2e

NO_WANDER = ["--log-format", "json", "--tick-interval", "0.1"]
DB_FILES = ("igor.db", "igor.db-wal", "igor.db-shm")


def _owners(tn, did):  # type: ignore[no-untyped-def]
    return set(tn.owners(did))


def _ticking(tn, name: str) -> bool:  # type: ignore[no-untyped-def]
    return tn.admin(name, "status")["agents_ticking"] == 1


def test_stale_copy_restarted_without_fencing_ticks_beside_the_new_owner_and_check_fails():
    with scratch() as root, running_testnet(root) as tn:
        tn.up(2, NO_WANDER)
        did = tn.launch_labelled("a1", "n1")
        wait_until(lambda: _owners(tn, did) == {"n1"}, 20, "a1 owned by n1")
        # A copy of n1's store while it owns a1 (taken with n1 cleanly stopped).
        backup = root / "n1-backup"
        backup.mkdir()
        tn.stop("n1")
        for name in DB_FILES:
            if (root / "n1" / name).exists():
                shutil.copy2(root / "n1" / name, backup / name)
        tn.restart("n1")
        tn.wait_connected(30)
        wait_until(lambda: _ticking(tn, "n1"), 20, "a1 resumed on n1")
        moved = tn.admin("n1", "migrate", {"agent": did, "to": tn.peer_id("n2")}, timeout_s=60)
        assert moved["outcome"] == "TRANSFERRED", moved
        wait_until(lambda: _owners(tn, did) == {"n2"}, 20, "a1 owned by n2")
        # n1 comes back from the stale copy, with the fence that would stop it disabled.
        tn.kill("n1")
        for name in DB_FILES:
            (root / "n1" / name).unlink(missing_ok=True)
            if (backup / name).exists():
                shutil.copy2(backup / name, root / "n1" / name)
        tn.node("n1").args.append("--test-disable-fencing")
        tn.save()
        tn.restart("n1")

        def overlap_seen() -> object:
            checked = check_dir(root, freeze=tn.frozen)
            return checked if checked.result.by_check("overlap") else None

        checked = wait_until(overlap_seen, 20, "an overlap reported by the checker")
        result = checked.result
        assert not result.ok and result.verdict == "FAIL"
        v = result.by_check("overlap")[0]
        assert isinstance(v, OverlapViolation)
        assert v.agent == did and {v.first.node, v.second.node} == {"n1", "n2"}
        assert v.overlap_ns > 0 and v.first.epoch != v.second.epoch
        # the stale node ticks its old epoch while n2 ticks the next one
        page = checked.report.read_text()
        assert 'class="fail"' in page and "bar violation" in page

        cli = subprocess.run(
            [sys.executable, "-m", "igor_p2p.cli.main", "testnet", "check", "--dir", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert "overlap" in cli.stdout and "FAIL" in cli.stdout
        assert str(root / "report.html") in cli.stdout


def test_partition_cuts_peer_tables_agent_status_and_migration_across_the_cut():
    with scratch() as root, running_testnet(root) as tn:
        tn.up(4, NO_WANDER, env={"IGOR_PEER_DOWN_AFTER_S": "2.0"})
        did = tn.launch_labelled("a1", "n1")
        wait_until(lambda: _owners(tn, did) == {"n1"}, 20, "a1 owned by n1")
        from testnet.nemesis import NemesisStep
        from testnet.nemesis_runner import NemesisRunner

        runner = NemesisRunner(tn)
        applied = runner.apply(NemesisStep(0, "partition", {"shape": "halves"}))
        assert sorted(applied.nodes) == ["n1", "n2", "n3", "n4"]
        left, right = {"n1", "n2"}, {"n3", "n4"}

        def sides_see_each_other_down() -> bool:
            for name in left | right:
                other = right if name in left else left
                same = (left if name in left else right) - {name}
                up = tn.peers_up(name)
                if {tn.peer_id(x) for x in other} & up:
                    return False
                if not {tn.peer_id(x) for x in same} <= up:
                    return False
            return True

        wait_until(sides_see_each_other_down, 20, "each side marks the other down")
        for name in left:
            assert tn.admin(name, "faults")["blocked"] == sorted(tn.peer_id(x) for x in right)
        # agent_status from across the cut: not found, or the owner unreachable
        try:
            remote = tn.admin("n3", "agent_status", {"agent": did}, timeout_s=30)
        except IgorError as exc:
            remote = {"error": type(exc).__name__}
        assert remote.get("error") or remote.get("state") == "UNKNOWN", remote
        assert remote.get("owner_peer") in (None, tn.peer_id("n1"))
        assert remote.get("tick") is None, remote
        # a migration across the cut does not transfer: a1 stays with n1
        try:
            moved = tn.admin("n1", "migrate", {"agent": did, "to": tn.peer_id("n3")}, timeout_s=60)
            outcome = moved["outcome"]
        except IgorError as exc:
            outcome = type(exc).__name__
        assert outcome != "TRANSFERRED", outcome
        assert "n3" not in _owners(tn, did)
        listing = {a["agent"]: a for a in tn.admin("n3", "agents")}
        assert did not in listing or listing[did]["state"] != "ACTIVE_OWNER"
        runner.apply(NemesisStep(0, "heal"))
        tn.wait_connected(30)
        wait_until(lambda: len(_owners(tn, did)) == 1, 20, "one owner after the heal")
        checked = check_dir(root, freeze=tn.frozen)
        assert checked.result.by_check("overlap") == [], evidence(checked.result)
        assert checked.result.by_check("lineage") == [], evidence(checked.result)
