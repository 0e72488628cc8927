"""Witnesses that refused a new agent as full are avoided for a while (igor_p2p.core.
full_witnesses), within a bounded memory."""

from __future__ import annotations

import trio
import trio.testing

from igor_p2p.authority.claim import Claim, Failed
from igor_p2p.core.claims import drive
from igor_p2p.core.full_witnesses import FullWitnesses
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Refused, RefusedCode
from tests.authority import chain
from tests.authority.chain import Custody

A, B, C = (bytes([i]) * 32 for i in range(1, 4))


def test_a_full_witness_is_avoided_until_its_time_is_up() -> None:
    full = FullWitnesses(full_for_s=300.0)
    full.note([A], now=10.0)
    assert full.current(10.0) == {A}
    assert full.current(309.9) == {A}
    assert full.current(310.0) == frozenset()  # it may have room again: ask it again


def test_a_new_refusal_extends_the_time_and_the_memory_is_bounded() -> None:
    full = FullWitnesses(full_for_s=10.0, capacity=2)
    full.note([A], now=0.0)
    full.note([A], now=5.0)
    assert full.current(12.0) == {A}
    full.note([B], now=12.0)
    full.note([C], now=12.0)  # A is the oldest refusal: forgotten
    assert full.current(12.0) == {B, C}


class AllFull:
    """Every witness answers that it is full."""

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        return Refused(peer, RefusedCode.BUSY, "this node witnesses as many agents as it may")


async def test_driving_a_claim_notes_the_witnesses_that_refused_as_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    custody = Custody(chain.A, (chain.B, chain.C, chain.D))
    claim = Claim(
        agent=custody.agent,
        slot=2,
        previous=custody.latest,
        custody=list(custody.starts),
        ballot=chain.ballot(chain.A),
    )
    full = FullWitnesses()
    await drive(AllFull(), claim, claim.start(), 5.0, full=full)  # type: ignore[arg-type]
    assert isinstance(claim.outcome, Failed)
    witnesses = {chain.B.public_key, chain.C.public_key, chain.D.public_key}
    assert full.current(trio.current_time()) == claim.full  # those heard before it failed
    assert len(claim.full) >= 2 and claim.full <= witnesses
