"""The whole-lineage verifier: the happy path, and every problem it can report."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.custody import ForcedRecovery
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4, verify_go_history
from igor_p2p.lineage.verify import ProblemCode, VerifyReport, verify_lineage

from .builders import (
    AGENT_KEY,
    GO_AGENT,
    GO_WASM_HASH,
    KEYS_BY_PUBLIC,
    MALLORY,
    MANIFEST,
    NODE_A,
    NODE_B,
    NODE_C,
    OTHER_AGENT_KEY,
    WASM,
    WITNESSES,
    LineageBuilder,
    go_chain,
    happy_lineage,
    node_keys,
    resign,
    write_go_history,
)


def test_happy_lineage_verifies_valid_in_any_order() -> None:
    b = happy_lineage()
    shuffled = b.encoded()
    random.Random(7).shuffle(shuffled)
    report = verify_lineage(shuffled, expected_agent=AGENT_KEY.did)
    assert report.valid, report.problems
    assert report.problems == []
    assert report.agent == AGENT_KEY.did
    assert report.entries == len(b.entries) == 11
    assert report.checkpoints == 7
    assert report.transfers == 1
    assert report.certs == 2
    assert report.custodian == NODE_C.public_key
    assert report.witnesses == node_keys(WITNESSES)
    assert report.pending_record is None
    assert [f.node for f in report.forced] == [NODE_C.public_key]
    assert report.head == b.head
    assert (report.first_epoch, report.last_epoch) == (1, 4)
    assert (report.first_tick, report.last_tick) == (0, b.tick)
    assert (report.budget_start, report.budget_end) == (1_000_000, b.budget)
    assert report.budget_end < report.budget_start


def test_report_serialises_to_json() -> None:
    report = verify_lineage(happy_lineage().entries)
    decoded = json.loads(json.dumps(report.to_json()))
    assert decoded["valid"] is True
    assert decoded["head"] == report.head.hex()
    assert decoded["forced"][0]["forced_by"] == "operator@example"


def test_exact_duplicate_entries_count_once() -> None:
    b = happy_lineage()
    report = verify_lineage(b.encoded() + b.encoded()[:3])
    assert report.valid and report.entries == len(b.entries)


def test_a_checkpoint_may_repeat_the_tick_unless_it_is_a_tick_checkpoint() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.handoff()  # same tick as the last TICK: allowed
    b.transfer(NODE_B)
    b.final()  # same tick again: allowed
    assert verify_lineage(b.entries).valid


def test_import_genesis_with_go_blob_hash_as_prev_is_valid() -> None:
    b = LineageBuilder()
    b.checkpoint(CheckpointKind.IMPORT, signer=AGENT_KEY, prev=b"\x5a" * 32, advance=40)
    b.tick_checkpoint()
    report = verify_lineage(b.entries)
    assert report.valid, report.problems
    assert report.first_tick == 40


# --- one scenario per problem code -------------------------------------------------------------


def _lineage(b: LineageBuilder, **kw: object) -> VerifyReport:
    return verify_lineage(b.entries, **kw)  # type: ignore[arg-type]


def corrupt_entry(tmp_path: Path) -> VerifyReport:
    b = happy_lineage()
    return verify_lineage([*b.encoded(), b"\x9f garbage"])


def no_genesis(tmp_path: Path) -> VerifyReport:
    return verify_lineage(happy_lineage().entries[1:])


def multiple_genesis(tmp_path: Path) -> VerifyReport:
    b = happy_lineage()
    other = LineageBuilder(first_owner=NODE_B)
    other.genesis(state=b"another start")
    return verify_lineage([*b.entries, *other.entries])


def bad_genesis(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis(tick=3)
    b.tick_checkpoint()
    return _lineage(b)


def fork(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    rival = b.checkpoint(CheckpointKind.TICK, advance=5, state=b"rival", append=False)
    b.tick_checkpoint()
    return verify_lineage([*b.entries, rival])


def orphan(tmp_path: Path) -> VerifyReport:
    entries = happy_lineage().entries
    return verify_lineage(entries[:3] + entries[4:])


def bad_signature(tmp_path: Path) -> VerifyReport:
    b = happy_lineage()
    victim = b.entries[2]
    forged = dataclasses.replace(victim, signature=bytes(64))
    b.entries[2] = forged
    for i in range(3, len(b.entries)):  # keep the chain linked past the forgery
        b.entries[i] = _relink(b.entries[i], b.entries[i - 1].digest())
    return _lineage(b)


def _relink(entry: object, prev: bytes) -> object:
    from igor_p2p.lineage.cert import WitnessCert, sign_vote
    from igor_p2p.lineage.custody import (
        TransferRecord,
        UnsignedForcedRecovery,
        UnsignedTransferRecord,
    )
    from igor_p2p.lineage.envelope import Checkpoint

    signer = KEYS_BY_PUBLIC
    if isinstance(entry, Checkpoint):
        return resign(entry, signer[entry.signer], prev=prev)
    if isinstance(entry, WitnessCert):  # the votes are over the record digest: vote again
        votes = [
            sign_vote(signer[w], entry.agent, entry.slot, entry.ballot, prev) for w in entry.voters
        ]
        return WitnessCert.build(entry.agent, entry.slot, entry.ballot, prev, votes)
    names = [f.name for f in dataclasses.fields(entry) if f.name != "signature"]  # type: ignore[arg-type]
    fields = {name: getattr(entry, name) for name in names} | {"prev": prev}
    if isinstance(entry, TransferRecord):
        return UnsignedTransferRecord(**fields).sign(signer[entry.from_node])
    assert isinstance(entry, ForcedRecovery)
    return UnsignedForcedRecovery(**fields).sign(signer[entry.node])


def wrong_signer(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(signer=MALLORY)  # validly signed, but not by the custodian
    return _lineage(b)


def agent_mismatch(tmp_path: Path) -> VerifyReport:
    return verify_lineage(happy_lineage().entries, expected_agent=OTHER_AGENT_KEY.did)


def epoch_decreased(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.migrate(NODE_B)
    b.tick_checkpoint(epoch=1)
    return _lineage(b)


def epoch_skipped(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(epoch=2)
    return _lineage(b)


def transfer_mismatch(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.transfer(NODE_B)  # no HANDOFF checkpoint before it
    b.tick_checkpoint()
    return _lineage(b)


def budget_increased(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(spend=-1)
    return _lineage(b)


def negative_budget(tmp_path: Path) -> VerifyReport:
    blobs = go_chain(2)
    negative = bytearray(blobs[1])
    negative[1:9] = (-5).to_bytes(8, "little", signed=True)
    directory = write_go_history(tmp_path / "h", [blobs[0], bytes(negative)], ticks=[0, 5])
    return verify_go_history(directory)


def tick_decreased(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(advance=10)
    b.checkpoint(CheckpointKind.FINAL, advance=-1)
    return _lineage(b)


def tick_repeated(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.tick_checkpoint(advance=0)
    return _lineage(b)


def module_changed(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(wasm_hash=b"\x11" * 32)
    return _lineage(b)


def module_mismatch(tmp_path: Path) -> VerifyReport:
    bundle = AgentBundle(
        wasm=WASM + b"\x00", manifest=MANIFEST, entries=tuple(happy_lineage().encoded())
    )
    return bundle.verify()


def unsigned_checkpoint(tmp_path: Path) -> VerifyReport:
    v3 = Path(__file__).parent / "fixtures" / "igor-go" / "checkpoint_v3.bin"
    blobs = go_chain(1)
    directory = write_go_history(tmp_path / "h", blobs)
    (directory / "0000000010.ckpt").write_bytes(v3.read_bytes())
    return verify_go_history(directory)


def after_export(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.export()
    b.tick_checkpoint()
    return _lineage(b)


def bad_gap(tmp_path: Path) -> VerifyReport:
    entries = happy_lineage().entries
    handoff_index = 3  # genesis, tick, tick, HANDOFF, transfer, cert, ...
    compacted = entries[: handoff_index + 1] + entries[handoff_index + 2 :]  # transfer missing
    return verify_lineage(compacted, ordered=True)


def uncertified(tmp_path: Path) -> VerifyReport:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    b.transfer(NODE_B, certify=False)
    b.tick_checkpoint()  # the new owner ticks with no certificate for its epoch
    return _lineage(b)


def bad_effect(tmp_path: Path) -> VerifyReport:
    from igor_p2p.lineage.effect import EffectKind, EffectPhase, UnsignedEffectRecord

    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    outcome = UnsignedEffectRecord(  # an OUTCOME with no INTENT before it
        agent=b.agent,
        epoch=b.epoch,
        tick=b.tick + 1,
        owner=b.custodian.public_key,
        prev=b.head,
        key=b"\x01" * 16,
        phase=EffectPhase.OUTCOME,
        effect=EffectKind.HTTP,
        request=b"\x02" * 32,
        target="GET http://example.test/",
        charge=10,
        status=200,
        result=b"ok",
        wall_ns=1,
    ).sign(b.custodian)
    b.entries.append(outcome)
    return _lineage(b)


def replay_mismatch(tmp_path: Path) -> VerifyReport:
    # Only a re-execution can find it: `igor checkpoint verify --replay` adds it to a report
    # (tests/effects/test_replay.py runs that end to end with a tampered recorded input).
    report = _lineage(happy_lineage())
    report.add(ProblemCode.REPLAY_MISMATCH, "tick 2: state differs from the recorded one")
    report.valid = not report.problems  # as `verify --replay` does
    return report


SCENARIOS: dict[ProblemCode, Callable[[Path], VerifyReport]] = {
    ProblemCode.CORRUPT_ENTRY: corrupt_entry,
    ProblemCode.NO_GENESIS: no_genesis,
    ProblemCode.MULTIPLE_GENESIS: multiple_genesis,
    ProblemCode.BAD_GENESIS: bad_genesis,
    ProblemCode.FORK: fork,
    ProblemCode.ORPHAN: orphan,
    ProblemCode.BAD_SIGNATURE: bad_signature,
    ProblemCode.WRONG_SIGNER: wrong_signer,
    ProblemCode.AGENT_MISMATCH: agent_mismatch,
    ProblemCode.EPOCH_DECREASED: epoch_decreased,
    ProblemCode.EPOCH_SKIPPED: epoch_skipped,
    ProblemCode.TRANSFER_MISMATCH: transfer_mismatch,
    ProblemCode.BUDGET_INCREASED: budget_increased,
    ProblemCode.NEGATIVE_BUDGET: negative_budget,
    ProblemCode.TICK_DECREASED: tick_decreased,
    ProblemCode.TICK_REPEATED: tick_repeated,
    ProblemCode.MODULE_CHANGED: module_changed,
    ProblemCode.MODULE_MISMATCH: module_mismatch,
    ProblemCode.UNSIGNED_CHECKPOINT: unsigned_checkpoint,
    ProblemCode.AFTER_EXPORT: after_export,
    ProblemCode.BAD_GAP: bad_gap,
    ProblemCode.UNCERTIFIED: uncertified,
    ProblemCode.BAD_EFFECT: bad_effect,
    ProblemCode.REPLAY_MISMATCH: replay_mismatch,
}


def test_every_problem_code_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(ProblemCode)


@pytest.mark.parametrize("code", list(SCENARIOS), ids=str)
def test_each_defect_is_reported_with_its_code(code: ProblemCode, tmp_path: Path) -> None:
    report = SCENARIOS[code](tmp_path)
    assert not report.valid
    assert code in report.codes(), report.problems


# --- finer points ------------------------------------------------------------------------------


def test_genesis_signed_by_a_node_key_is_wrong_signer() -> None:
    b = LineageBuilder()
    b.checkpoint(CheckpointKind.GENESIS, signer=NODE_A)
    report = _lineage(b)
    assert report.codes() == {ProblemCode.WRONG_SIGNER}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"epoch": 2}, ProblemCode.BAD_GENESIS),
        ({"prev": b"\x01" * 32}, ProblemCode.BAD_GENESIS),
    ],
)
def test_genesis_must_be_epoch_one_with_zero_prev(change: dict, code: ProblemCode) -> None:
    b = LineageBuilder()
    b.genesis(**change)
    assert code in _lineage(b).codes()


def test_import_genesis_with_zero_prev_is_bad_genesis() -> None:
    b = LineageBuilder()
    b.checkpoint(CheckpointKind.IMPORT, signer=AGENT_KEY, prev=ZERO_HASH)
    assert ProblemCode.BAD_GENESIS in _lineage(b).codes()


def test_old_owner_cannot_keep_checkpointing_after_a_transfer() -> None:
    b = LineageBuilder()
    b.genesis()
    b.migrate(NODE_B)
    b.tick_checkpoint(signer=NODE_A, owner=NODE_A.public_key)
    assert ProblemCode.WRONG_SIGNER in _lineage(b).codes()


def test_checkpoint_naming_another_owner_is_wrong_signer() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(owner=NODE_B.public_key)
    assert _lineage(b).codes() == {ProblemCode.WRONG_SIGNER}


def test_transfer_signed_by_a_non_custodian_is_wrong_signer() -> None:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    b.transfer(NODE_B, signer=MALLORY, from_node=MALLORY.public_key)
    b.tick_checkpoint()
    assert _lineage(b).codes() == {ProblemCode.WRONG_SIGNER}


def test_transfer_claiming_the_custodian_but_signed_by_another_is_bad_signature() -> None:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    b.transfer(NODE_B, signer=MALLORY)  # from_node = NODE_A, signature by MALLORY
    assert ProblemCode.BAD_SIGNATURE in _lineage(b).codes()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"to_epoch": 3}, ProblemCode.EPOCH_SKIPPED),
        ({"to_epoch": 1}, ProblemCode.EPOCH_DECREASED),
        ({"from_epoch": 2, "to_epoch": 3}, ProblemCode.TRANSFER_MISMATCH),
    ],
)
def test_transfer_epochs_must_step_by_one_from_the_current(change: dict, code: ProblemCode) -> None:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    b.transfer(NODE_B, certify=False, **change)
    assert code in _lineage(b).codes()


def test_forced_recovery_is_reported_but_valid() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.forced(NODE_B, to_epoch=5)
    b.tick_checkpoint()
    report = _lineage(b)
    assert report.valid
    assert len(report.forced) == 1 and report.forced[0].to_epoch == 5
    assert report.last_epoch == 5


def test_forced_recovery_must_raise_the_epoch() -> None:
    b = LineageBuilder()
    b.genesis()
    b.forced(NODE_B, to_epoch=1, certify=False)
    assert ProblemCode.EPOCH_DECREASED in _lineage(b).codes()


def test_forced_recovery_from_the_wrong_epoch_is_transfer_mismatch() -> None:
    b = LineageBuilder()
    b.genesis()
    b.forced(NODE_B, from_epoch=3, to_epoch=4)
    assert ProblemCode.TRANSFER_MISMATCH in _lineage(b).codes()


def test_manifest_change_is_module_changed() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(manifest_hash=b"\x22" * 32)
    assert _lineage(b).codes() == {ProblemCode.MODULE_CHANGED}


def test_entry_for_another_agent_is_agent_mismatch() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(agent=OTHER_AGENT_KEY.did)
    assert ProblemCode.AGENT_MISMATCH in _lineage(b).codes()


def test_fork_walk_follows_the_custodians_branch_and_reports_the_fork() -> None:
    b = LineageBuilder()
    b.genesis()
    intruder = b.checkpoint(CheckpointKind.TICK, signer=MALLORY, advance=5, append=False)
    b.tick_checkpoint()
    report = verify_lineage([*b.entries, intruder])
    assert ProblemCode.FORK in report.codes()
    assert report.head == b.head


def test_all_problems_are_reported_not_just_the_first() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint(spend=-10)  # budget up
    b.tick_checkpoint(advance=0)  # tick repeated
    b.tick_checkpoint(wasm_hash=b"\x33" * 32)  # module changed
    b.tick_checkpoint(signer=MALLORY)  # wrong signer
    report = verify_lineage([*b.encoded(), b"junk"])
    assert {
        ProblemCode.BUDGET_INCREASED,
        ProblemCode.TICK_REPEATED,
        ProblemCode.MODULE_CHANGED,
        ProblemCode.WRONG_SIGNER,
        ProblemCode.CORRUPT_ENTRY,
    } <= report.codes()


def test_empty_input_is_no_genesis() -> None:
    report = verify_lineage([])
    assert not report.valid and report.codes() == {ProblemCode.NO_GENESIS}
    assert report.head is None


_HAPPY = happy_lineage()


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_any_subset_in_any_order_is_valid_exactly_when_it_is_a_prefix(data: st.DataObject) -> None:
    n = len(_HAPPY.entries)
    keep = data.draw(st.sets(st.integers(0, n - 1)))
    order = data.draw(st.permutations(sorted(keep)))
    report = verify_lineage([_HAPPY.entries[i].encode() for i in order])
    is_prefix = keep == set(range(len(keep)))
    assert report.valid == (is_prefix and len(keep) > 0)
    if report.valid:
        assert report.head == _HAPPY.entries[len(keep) - 1].digest()


def test_go_signed_v4_blob_in_a_lineage_is_a_corrupt_entry() -> None:
    blob = encode_go_v4(GoCheckpointFields(1, 1, 0, GO_WASM_HASH), GO_AGENT)
    report = verify_lineage([*happy_lineage().encoded(), blob])
    assert report.codes() == {ProblemCode.CORRUPT_ENTRY}


# --- witness certificates ----------------------------------------------------------------------


def _transfer_with_cert(**cert_args: object) -> LineageBuilder:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    rec = b.transfer(NODE_B, certify=False)
    b.cert(rec, previous=WITNESSES, **cert_args)  # type: ignore[arg-type]
    b.tick_checkpoint()
    return b


def test_a_record_followed_by_its_quorum_certificate_moves_custody() -> None:
    report = _lineage(_transfer_with_cert(voters=(NODE_B, NODE_C)))
    assert report.valid, report.problems
    assert report.custodian == NODE_B.public_key and report.last_epoch == 2
    assert report.certs == 1


def test_a_single_vote_of_three_witnesses_is_uncertified() -> None:
    report = _lineage(_transfer_with_cert(voters=(NODE_C,)))
    assert report.codes() == {ProblemCode.UNCERTIFIED}
    assert any("1 of 2 votes" in p.message for p in report.problems)


def test_the_proposers_own_vote_does_not_count_among_three_witnesses() -> None:
    # A signs the transfer and proposes it: A + C is two votes, but only C counts (2q < k + 2).
    report = _lineage(_transfer_with_cert(voters=(NODE_A, NODE_C)))
    assert report.codes() == {ProblemCode.UNCERTIFIED}


def test_the_proposers_own_vote_counts_when_the_quorum_is_large_enough() -> None:
    # Two witnesses: q = 2 and 2q >= k + 2, so the proposer's vote is one of the two needed.
    b = LineageBuilder(witnesses=(NODE_A, NODE_B))
    b.genesis()
    b.handoff()
    rec = b.transfer(NODE_B, certify=False)
    b.cert(rec, voters=(NODE_A, NODE_B))
    assert _lineage(b).valid


def test_a_changed_witness_set_needs_a_quorum_of_the_old_and_of_the_new_set() -> None:
    new_set = (NODE_B, NODE_C, MALLORY)
    for voters, valid in [
        ((NODE_B, NODE_C), True),  # two of {A,B,C} and two of {B,C,M}
        ((NODE_C, MALLORY), False),  # only one of the old set
        ((NODE_B, NODE_C, NODE_A), True),
        ((NODE_A, MALLORY), False),  # one of each
    ]:
        b = LineageBuilder()
        b.genesis()
        b.handoff()
        rec = b.transfer(NODE_B, witnesses=new_set, certify=False)
        b.cert(rec, previous=WITNESSES, voters=voters, proposer=NODE_A)
        report = _lineage(b)
        assert report.valid is valid, (voters, report.problems)
        if valid:
            assert report.witnesses == node_keys(new_set)


def test_a_vote_with_a_bad_signature_is_reported_and_does_not_count() -> None:
    b = _transfer_with_cert(voters=(NODE_B, NODE_C))
    cert_index = next(i for i, e in enumerate(b.entries) if type(e).__name__ == "WitnessCert")
    cert = b.entries[cert_index]
    forged_votes = (cert.votes[0], dataclasses.replace(cert.votes[1], signature=bytes(64)))
    b.entries[cert_index] = dataclasses.replace(cert, votes=forged_votes)
    b.entries[cert_index + 1] = _relink(b.entries[cert_index + 1], b.entries[cert_index].digest())
    report = _lineage(b)
    assert {ProblemCode.BAD_SIGNATURE, ProblemCode.UNCERTIFIED} <= report.codes()


def test_a_trusted_certificate_counts_its_votes_without_checking_them() -> None:
    b = _transfer_with_cert(voters=(NODE_B, NODE_C))
    report = verify_lineage(b.entries, trusted={e.digest() for e in b.entries})
    assert report.valid


def test_a_certificate_for_another_slot_is_uncertified() -> None:
    report = _lineage(_transfer_with_cert(voters=(NODE_B, NODE_C), slot=3))
    assert ProblemCode.UNCERTIFIED in report.codes()


def test_a_certificate_after_a_checkpoint_is_uncertified() -> None:
    other = LineageBuilder()
    other.genesis()
    other.handoff()
    stray = other.transfer(NODE_B, certify=False)
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    b.entries.append(other.cert(stray, append=False, prev=b.head))  # follows no custody record
    report = _lineage(b)
    assert ProblemCode.UNCERTIFIED in report.codes()


def test_a_record_still_waiting_for_its_certificate_is_reported_as_pending() -> None:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    rec = b.transfer(NODE_B, certify=False)
    report = _lineage(b)
    assert report.valid
    assert report.pending_record == rec.digest()
    assert report.custodian == NODE_A.public_key and report.last_epoch == 1


def test_the_walk_follows_the_certificate_of_a_pending_record_at_a_fork() -> None:
    b = LineageBuilder()
    b.genesis()
    b.handoff()
    rec = b.transfer(NODE_B, certify=False)
    rival = b.checkpoint(CheckpointKind.TICK, advance=1, append=False)  # A ticks on, wrongly
    cert = b.cert(rec, previous=WITNESSES)
    report = verify_lineage([*b.entries, rival])
    assert ProblemCode.FORK in report.codes()
    assert report.head == cert.digest() and report.custodian == NODE_B.public_key


# --- compacted lineages (ordered=True) ---------------------------------------------------------


def test_ordered_lineage_may_skip_ticks_inside_one_epoch() -> None:
    b = LineageBuilder()
    b.genesis()
    first = b.tick_checkpoint()
    b.tick_checkpoint()
    b.tick_checkpoint()
    last = b.tick_checkpoint()
    kept = [b.entries[0], first, last]
    report = verify_lineage(kept, ordered=True)
    assert report.valid, report.problems
    assert report.head == last.digest()
    [gap] = report.compacted
    assert (gap.after, gap.before, gap.epoch) == (first.digest(), last.digest(), 1)
    assert gap.signer == NODE_A.public_key and gap.missing_prev == last.prev


def test_unordered_input_with_a_gap_is_an_orphan_not_a_compaction() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.tick_checkpoint()
    last = b.tick_checkpoint()
    report = verify_lineage([b.entries[0], last])
    assert ProblemCode.ORPHAN in report.codes() and report.compacted == []


def test_a_gap_across_epochs_is_a_bad_gap() -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.migrate(NODE_B)
    b.tick_checkpoint()
    last = b.tick_checkpoint()
    report = verify_lineage([b.entries[0], b.entries[1], last], ordered=True)
    assert ProblemCode.BAD_GAP in report.codes()


def test_a_gap_before_a_certificate_is_a_bad_gap() -> None:
    entries = happy_lineage().entries
    # genesis, tick, tick, HANDOFF, transfer, cert: drop the transfer, keep its certificate
    report = verify_lineage([*entries[:4], *entries[5:]], ordered=True)
    assert ProblemCode.BAD_GAP in report.codes()


def test_a_transfer_after_a_gap_in_its_epoch_is_allowed() -> None:
    b = LineageBuilder()
    b.genesis()
    first = b.tick_checkpoint()
    b.tick_checkpoint()
    b.handoff()  # compacted away with the tick before it
    b.transfer(NODE_B)
    kept = [b.entries[0], first, *b.entries[4:]]
    report = verify_lineage(kept, ordered=True)
    assert report.valid, report.problems
    assert report.custodian == NODE_B.public_key
