"""What a target checks of an OFFER's replay window before replaying anything
(igor_p2p.effects.arrival): one chain to the offered checkpoint, signed by the owners its custody
proves, reaching back as many ticks as its policy asks — each refusal with its wire code."""

from __future__ import annotations

import dataclasses

import pytest

from igor_p2p.effects.arrival import ArrivalRefused, checked_window, replay_window
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint, UnsignedCheckpoint
from igor_p2p.wire.messages import Offer, RejectCode
from tests.core.builders import NODE_A, NODE_B, AgentLife

TICKS = 3


def moving_agent(ticks: int = 8) -> tuple[AgentLife, list[bytes], Checkpoint]:
    """An agent that ticked ``ticks`` times on its first owner: its stored blobs and the
    HANDOFF checkpoint it is offered with (not stored)."""
    life = AgentLife()
    life.genesis(NODE_A)
    life.ticks(ticks)
    stored = life.blobs()
    return life, stored, life.handoff()


def offer_of(life: AgentLife, handoff: Checkpoint, replay: tuple[bytes, ...] | None) -> Offer:
    return Offer(
        sender=NODE_A.public_key,
        agent=life.agent,
        migration_id=b"\x07" * 16,
        epoch=1,
        chain_after=0,
        chain=(),
        checkpoint=handoff.encode(),
        wasm_hash=handoff.wasm_hash,
        manifest=b"{}",
        replay=replay,
    )


def refusal(
    life: AgentLife, handoff: Checkpoint, replay: tuple[bytes, ...] | None
) -> ArrivalRefused:
    with pytest.raises(ArrivalRefused) as refused:
        checked_window(offer_of(life, handoff, replay), handoff, life.starts, TICKS)
    return refused.value


def test_the_window_of_the_last_ticks_leads_to_the_offered_checkpoint() -> None:
    life, stored, handoff = moving_agent()
    window = replay_window(stored, handoff, TICKS)
    entries = checked_window(offer_of(life, handoff, window), handoff, life.starts, TICKS)
    assert isinstance(entries[0], Checkpoint) and handoff.tick - entries[0].tick == TICKS


def test_an_offer_without_a_window_is_asked_for_the_ticks() -> None:
    life, _stored, handoff = moving_agent()
    refused = refusal(life, handoff, None)
    assert (refused.code, refused.replay_ticks) == (RejectCode.REPLAY_REQUIRED, TICKS)


@pytest.mark.parametrize("window", [(), (b"\x00not an entry",)], ids=["empty", "garbage"])
def test_an_empty_or_undecodable_window_is_malformed(window: tuple[bytes, ...]) -> None:
    life, _stored, handoff = moving_agent()
    assert refusal(life, handoff, window).code is RejectCode.MALFORMED


def test_a_window_with_an_entry_left_out_is_a_lineage_gap() -> None:
    life, stored, handoff = moving_agent()
    window = replay_window(stored, handoff, TICKS)
    assert refusal(life, handoff, window[:1] + window[2:]).code is RejectCode.LINEAGE_GAP


def test_an_entry_signed_by_a_node_that_did_not_own_its_epoch_is_refused() -> None:
    life, stored, handoff = moving_agent()
    window = list(replay_window(stored, handoff, TICKS))
    resigned = _unsigned(window[-1]).sign(NODE_B)  # NODE_B never owned epoch 1
    window[-1] = resigned.encode()
    # The offered checkpoint names the re-signed entry, so the chain itself holds.
    handoff = dataclasses.replace(_unsigned(handoff.encode()), prev=resigned.digest()).sign(NODE_A)
    assert refusal(life, handoff, tuple(window)).code is RejectCode.BAD_SIGNATURE


def test_a_window_shorter_than_the_policy_is_denied_unless_the_agent_began_there() -> None:
    life, stored, handoff = moving_agent()
    short = replay_window(stored, handoff, TICKS - 1)
    assert refusal(life, handoff, short).code is RejectCode.POLICY_DENIED
    young, young_stored, young_handoff = moving_agent(ticks=TICKS - 1)
    whole_life = replay_window(young_stored, young_handoff, TICKS)  # from the genesis
    offer = offer_of(young, young_handoff, whole_life)
    assert checked_window(offer, young_handoff, young.starts, TICKS)


def _unsigned(blob: bytes) -> UnsignedCheckpoint:
    """The unsigned form of a checkpoint blob (to re-sign it with another key)."""
    entry = decode_entry(blob)
    assert isinstance(entry, Checkpoint)
    fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(UnsignedCheckpoint)}
    return UnsignedCheckpoint(**fields)
