"""Portable bundles through the real CLI: an export with ``--transfer-to`` moves authority to
exactly one other node (a certified transfer to the next epoch, same DID, counter continues)
and retires the old one; a read-only export never confers authority.

Every start of ownership is a claim of a new epoch: the exporting process first proves it owns
the agent (a self-transfer, 1 → 2), then transfers it (2 → 3); the importing node's first run
claims once more (3 → 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.services import default_peer_id

from .local_cli import (
    authority_row,
    counter_state,
    igor,
    inspect,
    run_counter,
    typed_error,
    verify,
)

pytestmark = pytest.mark.e2e


def _peer_id(data: Path) -> str:
    return default_peer_id(DataDir(data).node_keypair())


def test_transfer_export_moves_the_agent_to_exactly_one_node(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    did, _ = run_counter(a, 4)
    peer_b = _peer_id(b)
    bundle = tmp_path / "agent.igor"
    out = igor("checkpoint", "export", did, "-d", a, "-o", bundle, "--transfer-to", peer_b)
    assert out.rc == 0, out.stderr
    assert authority_row(a, did)[0] == "RETIRED"

    imported = igor("checkpoint", "import", bundle, "-d", b)
    assert imported.rc == 0, imported.stderr
    assert f"imported {did}: ACTIVE_OWNER at epoch 3" in imported.stdout

    resumed = igor("agent", "resume", did, "-d", b, "--ticks", "3", "--interval", "0", "--json")
    assert resumed.rc == 0, resumed.stderr
    started = resumed.event("started")
    assert (started["agent"], started["epoch"], started["tick"]) == (did, 4, 4)
    assert started["peer_id"] == peer_b
    commits = resumed.committed()
    assert [(e["epoch"], e["tick"]) for e in commits] == [(4, 5), (4, 6), (4, 7)]
    head = inspect(did, b)
    assert head["state_head"] == counter_state(7).hex()
    rc, report = verify(did, b)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["transfers"], report["first_epoch"], report["last_epoch"]) == (3, 1, 4)
    assert report["custodian"] == DataDir(b).node_keypair().public_key.hex()

    # The old node refuses: it retired the agent durably before the bundle was written.
    old = igor("agent", "resume", did, "-d", a, "--ticks", "1", "--interval", "0", "--json")
    assert typed_error(old) == "NotOwner"
    assert "RETIRED" in old.stderr
    assert not old.committed()
    rc, report = verify(did, a)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["transfers"], report["last_tick"], report["last_epoch"]) == (2, 4, 3)
    assert report["custodian"] == DataDir(b).node_keypair().public_key.hex()


def test_read_only_export_imported_elsewhere_cannot_be_resumed(tmp_path: Path) -> None:
    a, c = tmp_path / "a", tmp_path / "c"
    did, _ = run_counter(a, 3)
    copy = tmp_path / "copy.igor"
    assert igor("checkpoint", "export", did, "-d", a, "-o", copy).rc == 0
    assert authority_row(a, did)[0] == "ACTIVE_OWNER", "a copy moves no authority"

    imported = igor("checkpoint", "import", copy, "-d", c)
    assert imported.rc == 0, imported.stderr
    assert f"imported {did}: RETIRED" in imported.stdout
    refused = igor("agent", "resume", did, "-d", c, "--ticks", "1", "--interval", "0", "--json")
    assert typed_error(refused) == "NotOwner"
    assert not refused.committed()
    rc, report = verify(did, c)
    assert rc == 0 and report["valid"] and report["last_tick"] == 3

    # The owner is unaffected and keeps going.
    more = igor("agent", "resume", did, "-d", a, "--ticks", "1", "--interval", "0", "--json")
    assert more.rc == 0, more.stderr
    assert [e["tick"] for e in more.committed()] == [4]
