"""A target's check of an OFFER before it makes the copy durable (igor_p2p.core.offer_check)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from igor_p2p.authority.custody import EpochStart
from igor_p2p.core import offer_check
from igor_p2p.core.offer_check import OfferInvalid, check_offer, offered_custody
from igor_p2p.errors import IgorError
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.wire.messages import Offer, RejectCode

from .chain import (
    MANIFEST,
    OTHER_AGENT_KEY,
    WASM_HASH,
    A,
    B,
    C,
    Custody,
    D,
    E,
    F,
    make_checkpoint,
)

MID = b"\x05" * 16


def _custody(epochs: int = 1) -> Custody:
    custody = Custody(A, (B, C, D))
    for i in range(epochs - 1):
        custody.hand((F, A)[i % 2])
    return custody


def _offer(custody: Custody, *, after: int = 0, **changes: object) -> Offer:
    latest = custody.latest
    checkpoint = changes.pop("checkpoint", None)
    if checkpoint is None:
        checkpoint = make_checkpoint(latest, latest.digest).encode()
    chain_after, chain = custody.wire(after)
    values: dict[str, object] = {
        "sender": latest.owner,
        "agent": custody.agent,
        "migration_id": MID,
        "epoch": latest.epoch,
        "chain_after": chain_after,
        "chain": chain,
        "checkpoint": checkpoint,
        "wasm_hash": WASM_HASH,
        "manifest": MANIFEST,
        "wasm": None,
    }
    values.update(changes)
    return Offer(**values)  # type: ignore[arg-type]


def _refused(
    offer: Offer,
    code: RejectCode,
    held: list[EpochStart] | None = None,
    sender: bytes | None = None,
) -> OfferInvalid:
    with pytest.raises(OfferInvalid) as caught:
        check_offer(offer, offer.sender if sender is None else sender, held or [])
    assert caught.value.code is code, caught.value.reason
    return caught.value


def test_a_valid_offer_proves_the_custody_and_lists_the_entries_to_store() -> None:
    custody = _custody(3)
    offer = _offer(custody)
    copy = check_offer(offer, offer.sender, [])
    assert list(copy.custody) == custody.starts
    assert copy.epoch_start == custody.latest
    assert copy.checkpoint.kind is CheckpointKind.HANDOFF
    links = [blob for s in custody.starts for blob in s.links()]
    assert copy.entries == (*links, offer.checkpoint)


def test_an_offer_may_continue_the_custody_the_target_holds() -> None:
    custody = _custody(4)
    held = custody.starts[:2]
    offer = _offer(custody, after=2)
    copy = check_offer(offer, offer.sender, held)
    assert list(copy.custody) == custody.starts
    assert offered_custody(offer, held) == custody.starts


def test_a_full_chain_starting_with_what_the_target_holds_verifies_only_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An old agent's OFFER carries its whole custody (the source cannot know what a target
    # holds); a target that held the agent checks only the epochs after its own, and stores
    # only those (testnet soak: at 1,100 epochs each handoff took seconds).
    custody = _custody(6)
    held = custody.starts[:4]
    offer = _offer(custody)
    verified: list[int] = []
    real = offer_check.follow

    def counting(base: EpochStart, chain: Sequence[bytes]) -> list[EpochStart]:
        verified.append(len(chain))
        return real(base, chain)

    monkeypatch.setattr(offer_check, "follow", counting)
    monkeypatch.setattr(offer_check, "chain_from_genesis", None)  # never called
    copy = check_offer(offer, offer.sender, held, stored=True)
    assert list(copy.custody) == custody.starts
    assert verified == [4]  # the record and certificate of epochs 5 and 6
    new_links = [blob for s in custody.starts[4:] for blob in s.links()]
    assert list(copy.entries) == [*new_links, offer.checkpoint]
    # Held but about to be discarded (a pending copy): every entry is listed again.
    again = check_offer(offer, offer.sender, held)
    assert len(again.entries) == sum(len(s.links()) for s in custody.starts) + 1


def test_a_full_chain_that_departs_from_what_the_target_holds_is_refused() -> None:
    custody = _custody(4)
    other = _custody(2)
    other.hand(E)  # a different epoch 3
    _refused(_offer(custody), RejectCode.BAD_CUSTODY, held=other.starts)


def test_an_offer_continuing_from_an_epoch_the_target_lacks_is_a_lineage_gap() -> None:
    custody = _custody(4)
    _refused(_offer(custody, after=3), RejectCode.LINEAGE_GAP, held=custody.starts[:2])


def test_an_offer_without_custody_or_with_custody_that_does_not_verify_is_bad_custody() -> None:
    custody = _custody(3)
    _refused(_offer(custody, chain=()), RejectCode.BAD_CUSTODY)
    _, chain = custody.wire(0)
    _refused(_offer(custody, chain=chain[:-1]), RejectCode.BAD_CUSTODY)
    _refused(_offer(custody, chain=(chain[0], chain[1], chain[1])), RejectCode.BAD_CUSTODY)


def test_custody_that_disagrees_with_what_the_target_holds_is_refused() -> None:
    ours = _custody(1)
    theirs = ours.copy()
    ours.hand(F)
    theirs.hand(E)
    reason = _refused(_offer(theirs), RejectCode.BAD_CUSTODY, held=ours.starts)
    assert "disagrees" in reason.reason


def test_another_agents_custody_is_refused() -> None:
    stranger = Custody(A, (B, C, D), agent_key=OTHER_AGENT_KEY)
    mine = _custody(1)
    _refused(_offer(stranger, agent=mine.agent), RejectCode.BAD_CUSTODY)


def test_the_offer_must_come_from_the_owner_of_the_offered_epoch() -> None:
    custody = _custody(2)  # F owns epoch 2
    offer = _offer(custody)
    _refused(offer, RejectCode.WRONG_SENDER, sender=E.public_key)  # spoofed sender field
    impostor = _offer(custody, sender=A.public_key)  # A owned epoch 1, not 2
    _refused(impostor, RejectCode.WRONG_SENDER)


def test_an_offer_for_another_epoch_than_the_custody_proves_is_stale() -> None:
    custody = _custody(2)
    _refused(_offer(custody, epoch=1), RejectCode.STALE_EPOCH)
    _refused(_offer(custody, epoch=3), RejectCode.STALE_EPOCH)


def test_the_checkpoint_must_be_the_owners_handoff_at_the_epoch() -> None:
    custody = _custody(2)
    latest = custody.latest
    cases = [
        (b"\x93junk", RejectCode.MALFORMED),
        (latest.record, RejectCode.MALFORMED),  # a custody record, not a checkpoint
        (
            make_checkpoint(latest, latest.digest, kind=CheckpointKind.TICK).encode(),
            RejectCode.MALFORMED,
        ),
        (make_checkpoint(custody.at(1), latest.digest).encode(), RejectCode.MALFORMED),
        (make_checkpoint(latest, latest.digest, signer=E).encode(), RejectCode.BAD_SIGNATURE),
    ]
    for checkpoint, code in cases:
        _refused(_offer(custody, checkpoint=checkpoint), code)
    good = make_checkpoint(latest, latest.digest)
    forged = dataclasses.replace(good, signature=bytes(64))
    _refused(_offer(custody, checkpoint=forged.encode()), RejectCode.BAD_SIGNATURE)


def test_the_module_and_manifest_are_the_ones_the_genesis_named() -> None:
    custody = _custody(1)
    latest = custody.latest
    _refused(_offer(custody, wasm_hash=b"\x01" * 32), RejectCode.HASH_MISMATCH)
    _refused(_offer(custody, manifest=b"{}"), RejectCode.HASH_MISMATCH)
    other_module = make_checkpoint(latest, latest.digest, wasm_hash=b"\x02" * 32)
    _refused(
        _offer(custody, checkpoint=other_module.encode(), wasm_hash=b"\x02" * 32),
        RejectCode.HASH_MISMATCH,
    )


def test_an_agent_without_budget_is_refused() -> None:
    custody = _custody(1)
    latest = custody.latest
    spent = make_checkpoint(latest, latest.digest, budget=0)
    _refused(_offer(custody, checkpoint=spent.encode()), RejectCode.BUDGET_INSUFFICIENT)


def test_offer_invalid_is_a_typed_error_carrying_its_wire_code() -> None:
    custody = _custody(1)
    error = _refused(_offer(custody, chain=()), RejectCode.BAD_CUSTODY)
    assert isinstance(error, IgorError) and str(error) == error.reason
