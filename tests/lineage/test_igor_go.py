"""Go Igor checkpoints: the upstream fixtures, v0x04 blobs, and history verification."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.identity import BadSignature, Keypair
from igor_p2p.lineage.igor_go import (
    GoCheckpointError,
    GoCheckpointFields,
    NegativeGoValue,
    encode_go_v4,
    looks_like_go_checkpoint,
    parse_go_checkpoint,
    verify_go_history,
    verify_go_signature,
)
from igor_p2p.lineage.verify import ProblemCode

from .builders import GO_AGENT, GO_WASM_HASH, go_chain, happy_lineage, write_go_history

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "igor-go"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "igor-go"
FIXTURE_NAMES = ["checkpoint.bin", "checkpoint_empty_state.bin", "checkpoint_v3.bin"]
KNOWN_WASM_HASH = hashlib.sha256(b"known-wasm-binary-for-golden-test").digest()


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


COPIED = [
    *FIXTURE_NAMES,
    "agent_package.json",  # Go's migration payloads (tests/net/test_transport_go_refusal.py)
    "agent_package_with_replay.json",
    *(f"v4-go-written/{n}" for n in ("agent.checkpoint", "agent.identity", "agent.v3.checkpoint")),
    *(f"v4-go-written/history/agent/{t:010d}.ckpt" for t in (5, 10, 15)),
    *(
        f"manifests/{n}.manifest.json"
        for n in (
            "heartbeat", "liquidation", "sentinel", "research_reconciliation",
            "research_example", "pricewatcher", "x402buyer", "deployer",
        )
    ),
]  # fmt: skip


@pytest.mark.parametrize("name", COPIED)
def test_copied_fixtures_match_the_shared_originals(name: str) -> None:
    original = SHARED_FIXTURES / name
    if not original.exists():
        pytest.skip("../shared is not present in this checkout")
    assert (FIXTURES / name).read_bytes() == original.read_bytes()


def test_v2_fixture_decodes_to_the_documented_values() -> None:
    ck = parse_go_checkpoint(_fixture("checkpoint.bin"))
    assert (ck.version, ck.budget, ck.price, ck.tick) == (2, 1_000_000, 1000, 5)
    assert ck.wasm_hash == KNOWN_WASM_HASH
    assert int.from_bytes(ck.state, "little") == 3 and len(ck.state) == 8
    assert ck.major is ck.generation is ck.lease_expiry is ck.prev_hash is ck.agent_pubkey is None
    assert len(ck.raw) == 57 + 8


def test_v2_empty_state_fixture_decodes_to_the_documented_values() -> None:
    ck = parse_go_checkpoint(_fixture("checkpoint_empty_state.bin"))
    assert (ck.version, ck.budget, ck.price, ck.tick, ck.state) == (2, 500_000, 2000, 0, b"")
    assert ck.wasm_hash == KNOWN_WASM_HASH


def test_v3_fixture_decodes_to_the_documented_values() -> None:
    ck = parse_go_checkpoint(_fixture("checkpoint_v3.bin"))
    assert (ck.version, ck.budget, ck.price, ck.tick) == (3, 2_000_000, 1500, 10)
    assert (ck.major, ck.generation) == (3, 7)
    assert ck.lease_expiry == 1_700_000_000_000_000_000
    assert int.from_bytes(ck.state, "little") == 5
    assert ck.wasm_hash == KNOWN_WASM_HASH
    assert ck.digest() == hashlib.sha256(_fixture("checkpoint_v3.bin")).digest()


def test_unsigned_versions_have_no_signature_to_verify() -> None:
    with pytest.raises(BadSignature):
        verify_go_signature(parse_go_checkpoint(_fixture("checkpoint_v3.bin")))


def test_v4_round_trips_and_signs_bytes_0_to_145_plus_state() -> None:
    fields = GoCheckpointFields(
        budget=42,
        price=7,
        tick=99,
        wasm_hash=GO_WASM_HASH,
        major=2,
        generation=3,
        lease_expiry=123,
        prev_hash=b"\x01" * 32,
        state=b"agent-state",
    )
    blob = encode_go_v4(fields, GO_AGENT)
    ck = parse_go_checkpoint(blob)
    assert len(blob) == 209 + len(b"agent-state")
    assert (ck.version, ck.budget, ck.price, ck.tick) == (4, 42, 7, 99)
    assert (ck.major, ck.generation, ck.lease_expiry) == (2, 3, 123)
    assert ck.prev_hash == b"\x01" * 32 and ck.state == b"agent-state"
    assert ck.agent_pubkey == GO_AGENT.public_key
    assert ck.signing_bytes() == blob[:145] + blob[209:]
    assert ck.did == GO_AGENT.did
    verify_go_signature(ck)
    tampered = parse_go_checkpoint(blob[:-1] + b"X")
    with pytest.raises(BadSignature):
        verify_go_signature(tampered)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", GoCheckpointError),
        (b"\x05" + bytes(300), GoCheckpointError),
        (b"\x02" + bytes(55), GoCheckpointError),
        (b"\x03" + bytes(79), GoCheckpointError),
        (b"\x04" + bytes(207), GoCheckpointError),
        (b"\x02" + (-1).to_bytes(8, "little", signed=True) + bytes(48), NegativeGoValue),
        (b"\x02" + bytes(8) + (-1).to_bytes(8, "little", signed=True) + bytes(40), NegativeGoValue),
    ],
)
def test_malformed_go_checkpoints_are_rejected(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_go_checkpoint(data)
    assert issubclass(error, InvalidInput)


def test_go_and_igor_p2p_encodings_are_told_apart() -> None:
    for name in FIXTURE_NAMES:
        assert looks_like_go_checkpoint(_fixture(name))
    assert looks_like_go_checkpoint(go_chain(1)[0])
    for entry in happy_lineage().entries:
        assert not looks_like_go_checkpoint(entry.encode())
    assert not looks_like_go_checkpoint(b"\x04" + bytes(10))


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_random_bytes_never_escape_the_go_parser_untyped(data: bytes) -> None:
    with contextlib.suppress(GoCheckpointError):
        parse_go_checkpoint(data)


def test_v4_history_verifies_valid(tmp_path: Path) -> None:
    blobs = go_chain(5)
    report = verify_go_history(write_go_history(tmp_path / "hist", blobs))
    assert report.valid, report.problems
    assert report.agent == GO_AGENT.did
    assert (report.entries, report.checkpoints) == (5, 5)
    assert (report.first_tick, report.last_tick) == (0, 20)
    assert (report.budget_start, report.budget_end) == (1_000_000, 996_000)
    assert report.head == hashlib.sha256(blobs[-1]).digest()


def _history(tmp_path: Path, blobs: list[bytes], ticks: list[int] | None = None) -> set:
    return verify_go_history(write_go_history(tmp_path / "hist", blobs, ticks)).codes()


def test_tampered_state_is_bad_signature_and_breaks_the_next_link(tmp_path: Path) -> None:
    blobs = go_chain(4)
    blobs[1] = blobs[1][:-1] + b"\xff"
    assert _history(tmp_path, blobs) == {ProblemCode.BAD_SIGNATURE, ProblemCode.ORPHAN}


def test_missing_middle_file_is_a_broken_link(tmp_path: Path) -> None:
    blobs = go_chain(4)
    assert _history(tmp_path, blobs[:2] + blobs[3:]) == {ProblemCode.ORPHAN}


def test_partial_history_without_genesis_is_invalid_unlike_go(tmp_path: Path) -> None:
    assert _history(tmp_path, go_chain(4)[1:]) == {ProblemCode.NO_GENESIS}


def test_other_agent_key_is_agent_mismatch(tmp_path: Path) -> None:
    blobs = go_chain(3)
    intruder = Keypair.from_seed(b"\x61" * 32)
    ck = parse_go_checkpoint(blobs[2])
    blobs[2] = encode_go_v4(
        GoCheckpointFields(
            ck.budget, ck.price, ck.tick, ck.wasm_hash, 1, 0, 0, ck.prev_hash, ck.state
        ),
        intruder,
    )
    assert _history(tmp_path, blobs) == {ProblemCode.AGENT_MISMATCH}


def _chain(specs: list[dict]) -> list[bytes]:
    blobs: list[bytes] = []
    prev = bytes(32)
    for spec in specs:
        fields = {"budget": 100, "price": 1, "wasm_hash": GO_WASM_HASH, "major": 1} | spec
        blob = encode_go_v4(GoCheckpointFields(**fields, prev_hash=prev), GO_AGENT)
        blobs.append(blob)
        prev = hashlib.sha256(blob).digest()
    return blobs


@pytest.mark.parametrize(
    ("specs", "ticks", "code"),
    [
        ([{"tick": 0}, {"tick": 5, "budget": 200}], None, ProblemCode.BUDGET_INCREASED),
        ([{"tick": 0, "major": 3}, {"tick": 5, "major": 2}], None, ProblemCode.EPOCH_DECREASED),
        (
            [{"tick": 0, "major": 3, "generation": 5}, {"tick": 5, "major": 3, "generation": 4}],
            None,
            ProblemCode.EPOCH_DECREASED,
        ),
        ([{"tick": 5}, {"tick": 3}], [1, 2], ProblemCode.TICK_DECREASED),
        ([{"tick": 5}, {"tick": 5}], [1, 2], ProblemCode.TICK_REPEATED),
    ],
)
def test_history_rules_go_misses_are_enforced(
    tmp_path: Path, specs: list[dict], ticks: list[int] | None, code: ProblemCode
) -> None:
    assert _history(tmp_path, _chain(specs), ticks) == {code}


def test_unparseable_file_is_reported_and_skipped_like_go(tmp_path: Path) -> None:
    blobs = go_chain(3)
    directory = write_go_history(tmp_path / "hist", blobs)
    (directory / "0000000007.ckpt").write_bytes(b"\x09garbage")
    report = verify_go_history(directory)
    assert report.codes() == {ProblemCode.CORRUPT_ENTRY}
    assert (report.entries, report.checkpoints) == (4, 3)


def test_empty_history_is_no_genesis(tmp_path: Path) -> None:
    (tmp_path / "hist").mkdir()
    assert verify_go_history(tmp_path / "hist").codes() == {ProblemCode.NO_GENESIS}


def test_v2_fixture_first_then_nothing_else_is_valid_as_in_go(tmp_path: Path) -> None:
    directory = tmp_path / "hist"
    directory.mkdir()
    (directory / "0000000005.ckpt").write_bytes(_fixture("checkpoint.bin"))
    report = verify_go_history(directory)
    assert report.valid and report.agent is None


# ---------------------------------------------------------------- histories Go Igor wrote

GO_WRITTEN = FIXTURES / "v4-go-written"
GO_WRITTEN_DID = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"


def test_the_go_written_history_is_valid_as_go_says() -> None:
    report = verify_go_history(GO_WRITTEN / "history" / "agent")
    assert report.valid, report.problems
    assert report.warnings == []
    assert report.agent == GO_WRITTEN_DID
    assert (report.checkpoints, report.first_tick, report.last_tick) == (3, 5, 15)
    tip = (GO_WRITTEN / "history" / "agent" / "0000000015.ckpt").read_bytes()
    assert (GO_WRITTEN / "agent.checkpoint").read_bytes() == tip
    assert report.head == hashlib.sha256(tip).digest()
    assert int.from_bytes(parse_go_checkpoint(tip).state, "little") == 15


def test_an_epoch_reset_to_zero_like_igord_lab_writes_is_valid_with_a_warning(
    tmp_path: Path,
) -> None:
    blobs = _chain(
        [
            {"tick": 5, "major": 3, "generation": 7},
            {"tick": 10, "major": 0, "generation": 0},  # igord-lab restarted
            {"tick": 15, "major": 0, "generation": 1},  # and renewed its lease
        ]
    )
    report = verify_go_history(write_go_history(tmp_path / "hist", blobs))
    assert report.valid, report.problems
    (warning,) = report.warnings
    assert warning.code is ProblemCode.EPOCH_DECREASED
    assert "0000000010.ckpt" in warning.message and "reset" in warning.message
    assert "(3, 7)" in warning.message
    assert report.to_json()["warnings"][0]["message"] == warning.message


def test_an_epoch_decrease_that_is_not_a_reset_to_zero_stays_invalid(tmp_path: Path) -> None:
    blobs = _chain([{"tick": 5, "major": 3, "generation": 7}, {"tick": 10, "major": 1}])
    report = verify_go_history(write_go_history(tmp_path / "hist", blobs))
    assert report.codes() == {ProblemCode.EPOCH_DECREASED}
    assert report.warnings == []


@pytest.mark.parametrize("damage", ["truncate", "version", "negative"])
def test_one_damaged_file_is_reported_as_that_file_only(tmp_path: Path, damage: str) -> None:
    directory = write_go_history(tmp_path / "hist", go_chain(5))
    victim = directory / "0000000010.ckpt"
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[:100]
    elif damage == "version":
        data[0] = 0x09
    else:
        data[1:9] = (-5).to_bytes(8, "little", signed=True)
    victim.write_bytes(bytes(data))
    report = verify_go_history(directory)
    assert not report.valid
    assert len(report.problems) == 1
    assert report.problems[0].message.startswith("0000000010.ckpt")
    assert (report.first_tick, report.last_tick) == (0, 20)


def test_a_corrupt_first_file_does_not_hide_the_rest(tmp_path: Path) -> None:
    directory = write_go_history(tmp_path / "hist", go_chain(3))
    (directory / "0000000000.ckpt").write_bytes(b"\x04short")
    report = verify_go_history(directory)
    assert [p.code for p in report.problems] == [ProblemCode.CORRUPT_ENTRY]
    assert (report.first_tick, report.last_tick, report.checkpoints) == (5, 10, 2)


@pytest.mark.parametrize("tick", [5, 10, 15])
def test_encode_go_v4_reproduces_the_go_written_bytes(tick: int) -> None:
    blob = (GO_WRITTEN / "history" / "agent" / f"{tick:010d}.ckpt").read_bytes()
    ck = parse_go_checkpoint(blob)
    go_key = Keypair.from_seed(bytes(range(32)))  # the fixture's agent seed
    fields = GoCheckpointFields(
        budget=ck.budget,
        price=ck.price,
        tick=ck.tick,
        wasm_hash=ck.wasm_hash,
        major=ck.major or 0,
        generation=ck.generation or 0,
        lease_expiry=ck.lease_expiry or 0,
        prev_hash=ck.prev_hash or bytes(32),
        state=ck.state,
    )
    assert encode_go_v4(fields, go_key) == blob
    assert go_key.did == GO_WRITTEN_DID


def test_the_go_identity_file_round_trips() -> None:
    from igor_p2p.lineage.identity import encode_go_identity, load_go_identity

    key = load_go_identity(GO_WRITTEN / "agent.identity")
    assert key.did == GO_WRITTEN_DID
    assert encode_go_identity(key) == (GO_WRITTEN / "agent.identity").read_bytes()
