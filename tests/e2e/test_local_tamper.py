"""Tampering with a stored lineage, through the real CLI: ``igor checkpoint verify`` names each
kind of damage (exit 1, the problem code in ``--json``), ``igor agent resume`` refuses it with a
typed error line and no traceback, and damaged local state leaves the agent RECOVERY_REQUIRED
with a reason. Forked lineages are refused by ``verify DIR`` and by ``import``."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.identity import Keypair, load_key_file

from .local_cli import (
    CliResult,
    authority_row,
    counter_state,
    db,
    export_entries,
    igor,
    lineage_rows,
    problem_codes,
    run_counter,
    typed_error,
    verify,
)

pytestmark = pytest.mark.e2e

BASE_TICKS = 80
"""Longer than the 64 rows the store's integrity check hashes at open, so damage to early rows
is left for the lineage verifier to catch at resume."""
MALLORY = Keypair.from_seed(bytes([0x66]) * 32)


@dataclass(frozen=True)
class Base:
    data: Path
    did: str


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    data = tmp_path_factory.mktemp("tamper") / "node"
    did, _ = run_counter(data, BASE_TICKS)
    return Base(data, did)


@pytest.fixture
def node(base: Base, tmp_path: Path) -> Path:
    """A private copy of the base data directory (no process holds it)."""
    copy = tmp_path / "node"
    shutil.copytree(base.data, copy)
    return copy


def _blob(data: Path, did: str, seq: int) -> bytes:
    return next(blob for s, _, blob in lineage_rows(data, did) if s == seq)


def _set_row(data: Path, did: str, seq: int, blob: bytes, *, fix_digest: bool) -> None:
    """Overwrite one stored row; with ``fix_digest`` also its digest column (and the head)."""
    conn = db(data)
    try:
        conn.execute("BEGIN")
        old = conn.execute(
            "SELECT digest FROM lineage WHERE agent = ? AND seq = ?", (did, seq)
        ).fetchone()[0]
        conn.execute("UPDATE lineage SET blob = ? WHERE agent = ? AND seq = ?", (blob, did, seq))
        if fix_digest:
            new = hashlib.sha256(blob).digest()
            conn.execute(
                "UPDATE lineage SET digest = ? WHERE agent = ? AND seq = ?", (new, did, seq)
            )
            conn.execute(
                "UPDATE authority SET head = ? WHERE agent = ? AND head = ?", (new, did, old)
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _flip_state_bit(blob: bytes, tick: int) -> bytes:
    at = blob.find(b"\xc4\x08" + counter_state(tick))  # msgpack bin8 of length 8: the state
    assert at > 0
    damaged = bytearray(blob)
    damaged[at + 2] ^= 0x10
    return bytes(damaged)


def _resign_head(data: Path, did: str, change: Callable[[dict[str, object]], None]) -> None:
    """Replace the head checkpoint by a changed copy signed by this node's own key, keeping
    the store self-consistent (digest column and authority head follow)."""
    head_seq = BASE_TICKS
    head = decode_entry(_blob(data, did, head_seq))
    assert isinstance(head, Checkpoint)
    fields = {name: getattr(head.unsigned, name) for name in head.unsigned.__dataclass_fields__}
    change(fields)
    node_key = load_key_file(data / "node.key")
    forged = type(head.unsigned)(**fields).sign(node_key)  # type: ignore[arg-type]
    _set_row(data, did, head_seq, forged.encode(), fix_digest=True)


def _verify_and_resume(data: Path, did: str) -> tuple[int, dict[str, object], CliResult]:
    """``verify DID --json`` and ``resume DID`` on the damaged store, side by side."""
    resume = ("agent", "resume", did, "-d", data, "--ticks", "1", "--interval", "0", "--json")
    with ThreadPoolExecutor(2) as pool:
        checked = pool.submit(verify, did, data)
        resumed = pool.submit(igor, *resume)
        rc, report = checked.result()
        return rc, report, resumed.result()


def _assert_refused(data: Path, did: str, resumed: CliResult, error: str, *, reason: str) -> None:
    """Resume failed with ``error`` and left the agent RECOVERY_REQUIRED naming ``reason``."""
    assert typed_error(resumed) == error
    assert not [e for e in resumed.events if e.get("event") == "committed"]
    state, recorded, _ = authority_row(data, did)
    assert state == "RECOVERY_REQUIRED"
    assert reason in recorded
    assert [seq for seq, _, _ in lineage_rows(data, did)][-1] <= BASE_TICKS, "nothing appended"


def test_flipped_bit_in_a_recent_blob_is_named_and_refused(base: Base, node: Path) -> None:
    seq = BASE_TICKS - 3
    _set_row(
        node, base.did, seq, _flip_state_bit(_blob(node, base.did, seq), seq), fix_digest=False
    )
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1 and not report["valid"]
    assert "BAD_SIGNATURE" in problem_codes(report)
    assert "DIGEST_MISMATCH" in {d["kind"] for d in report["store_problems"]}
    # The integrity check at open records RECOVERY_REQUIRED; resume refuses.
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="DIGEST_MISMATCH")
    # Refused again, now also because of the recorded state: never a silent fresh start.
    again = igor("agent", "resume", base.did, "-d", node, "--ticks", "1", "--interval", "0")
    assert typed_error(again) in ("LineageRejected", "NotOwner")


def test_flipped_bit_in_an_early_blob_is_caught_by_verification_at_resume(
    base: Base, node: Path
) -> None:
    seq = 5  # outside the rows the integrity check hashes: only the lineage verifier sees it
    _set_row(
        node, base.did, seq, _flip_state_bit(_blob(node, base.did, seq), seq), fix_digest=False
    )
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1
    assert "BAD_SIGNATURE" in problem_codes(report)
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="BAD_SIGNATURE")


def test_missing_checkpoint_is_named_and_refused(base: Base, node: Path) -> None:
    conn = db(node)
    conn.execute("DELETE FROM lineage WHERE agent = ? AND seq = ?", (base.did, 40))
    conn.close()
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1 and not report["valid"]
    # The verifier alone cannot tell a deleted row from a compacted one; the store's gap
    # bookkeeping can: a row not marked as a gap whose prev is missing is a broken link.
    assert "BROKEN_LINK" in {d["kind"] for d in report["store_problems"]}
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="BROKEN_LINK")


def _swap_seqs(data: Path, did: str, a: int, b: int) -> None:
    conn = db(data)
    try:
        conn.execute("BEGIN")
        conn.execute("UPDATE lineage SET seq = 1000000 WHERE agent = ? AND seq = ?", (did, a))
        conn.execute("UPDATE lineage SET seq = ? WHERE agent = ? AND seq = ?", (a, did, b))
        conn.execute("UPDATE lineage SET seq = ? WHERE agent = ? AND seq = 1000000", (b, did))
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        (BASE_TICKS - 4, BASE_TICKS - 3, "BROKEN_LINK"),  # the integrity check at open ...
        (5, 6, "BROKEN_LINK"),  # ... checks the links of every row, early ones too
    ],
    ids=["recent", "early"],
)
def test_reordered_checkpoints_are_named_and_refused(
    base: Base, node: Path, a: int, b: int, reason: str
) -> None:
    _swap_seqs(node, base.did, a, b)
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1 and not report["valid"]
    assert "BROKEN_LINK" in {d["kind"] for d in report["store_problems"]}
    _assert_refused(node, base.did, resumed, "LineageRejected", reason=reason)


def test_forged_signature_is_named_and_refused(base: Base, node: Path) -> None:
    """The head re-encoded with a signature by another key, still naming this node as signer."""
    head = decode_entry(_blob(node, base.did, BASE_TICKS))
    assert isinstance(head, Checkpoint)
    forged = Checkpoint(
        **{name: getattr(head.unsigned, name) for name in head.unsigned.__dataclass_fields__},
        signer=head.signer,
        signature=MALLORY.sign(head.signing_bytes()),
    )
    assert forged.encode() != head.encode()
    _set_row(node, base.did, BASE_TICKS, forged.encode(), fix_digest=True)
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1
    assert problem_codes(report) == {"BAD_SIGNATURE"}
    assert report["store_problems"] == []
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="BAD_SIGNATURE")


def test_checkpoint_resigned_by_another_key_is_named_and_refused(base: Base, node: Path) -> None:
    head = decode_entry(_blob(node, base.did, BASE_TICKS))
    assert isinstance(head, Checkpoint)
    resigned = head.unsigned.sign(MALLORY)
    _set_row(node, base.did, BASE_TICKS, resigned.encode(), fix_digest=True)
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1
    assert problem_codes(report) == {"WRONG_SIGNER"}
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="WRONG_SIGNER")


def test_raised_budget_signed_by_the_right_node_is_named_and_refused(
    base: Base, node: Path
) -> None:
    def raise_budget(fields: dict[str, object]) -> None:
        fields["budget"] = 1_000_000_000

    _resign_head(node, base.did, raise_budget)
    rc, report, resumed = _verify_and_resume(node, base.did)
    assert rc == 1
    assert problem_codes(report) == {"BUDGET_INCREASED"}, "only the budget rule may catch it"
    assert report["store_problems"] == []
    _assert_refused(node, base.did, resumed, "LineageRejected", reason="BUDGET_INCREASED")


@pytest.fixture(scope="module")
def forked(base: Base) -> AgentBundle:
    """The base lineage plus a second, different head with the same prev as the real head."""
    blobs = [blob for _, _, blob in lineage_rows(base.data, base.did)]
    head = decode_entry(blobs[-1])
    assert isinstance(head, Checkpoint)
    fields = {name: getattr(head.unsigned, name) for name in head.unsigned.__dataclass_fields__}
    fields["state"] = counter_state(10**6)
    fields["wall_ns"] = head.wall_ns + 1
    other = type(head.unsigned)(**fields).sign(load_key_file(base.data / "node.key"))  # type: ignore[arg-type]
    assert other.prev == head.prev and other.digest() != head.digest()
    copy = export_entries(base.did, base.data, base.data.parent / "copy.igor")
    return AgentBundle(copy.wasm, copy.manifest, (*copy.entries, other.encode()))


def test_forked_directory_of_entries_is_named_by_verify(
    forked: AgentBundle, tmp_path: Path
) -> None:
    bundle = forked
    entries = tmp_path / "entries"
    entries.mkdir()
    for i, blob in enumerate(bundle.entries):
        (entries / f"{i:06d}.entry").write_bytes(blob)
    rc, report = verify(entries)
    assert rc == 1
    assert "FORK" in problem_codes(report)
    # The unforked directory is valid: the fork is what is named.
    (entries / f"{len(bundle.entries) - 1:06d}.entry").unlink()
    rc, report = verify(entries)
    assert rc == 0 and report["valid"], report["problems"]


def test_forked_bundle_is_refused_by_import(forked: AgentBundle, tmp_path: Path) -> None:
    bundle = forked
    path = tmp_path / "forked.igor"
    path.write_bytes(bundle.encode())
    rc, report = verify(path)
    assert rc == 1 and "FORK" in problem_codes(report)
    other = tmp_path / "other"
    result = igor("checkpoint", "import", path, "-d", other)
    assert typed_error(result) == "ImportRefused"
    assert "FORK" in result.stderr
    conn = db(other)
    try:
        assert conn.execute("SELECT count(*) FROM authority").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM lineage").fetchone()[0] == 0
    finally:
        conn.close()
