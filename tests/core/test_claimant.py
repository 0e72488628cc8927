"""The claimant's attempts (igor_p2p.core.claims): what a claim concludes from the custody this
node stores before it asks any witness."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from igor_p2p.authority.claim import Failed, Stale
from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import ClaimStale, SourceAborted
from igor_p2p.authority.record import ClaimPurpose, PendingCopy, Phase
from igor_p2p.core.claims import Claimant
from igor_p2p.wire.messages import Holding, StatusReply


async def test_a_claim_for_a_slot_the_stored_custody_already_passed_is_stale_not_retried() -> None:
    """A pending copy of epoch 97 on a node whose verified custody already reaches epoch 106
    (seen in a testnet run: the settle claim retried forever, "stored custody ends at epoch
    106, not 96"): the slot is decided, and the custody proves the later epoch."""
    latest = EpochStart(
        agent="did:key:z", epoch=106, owner=b"\x03" * 32, witnesses=(), digest=b"\x04" * 32
    )

    async def custody(agent: str) -> list[EpochStart]:
        return [latest]

    ctx: Any = SimpleNamespace(store=SimpleNamespace(custody=custody))
    outcome = await Claimant(ctx)._attempt("did:key:z", ClaimPurpose.SETTLE, 97, "", 0)
    assert isinstance(outcome, Stale) and outcome.latest == latest


async def test_a_claim_result_the_table_does_not_act_on_keeps_the_claim_going() -> None:
    """A result the table ignores (a proof it cannot use) must not end the loop: the machine
    would wait in CLAIMING with nobody claiming for it (a pending target stuck until restart)."""
    machine = SimpleNamespace(
        run=SimpleNamespace(phase=Phase.CLAIMING, claim=ClaimPurpose.RESUME, waiting=""),
        record=SimpleNamespace(epoch=96),
    )
    proof = EpochStart(
        agent="did:key:z", epoch=97, owner=b"\x03" * 32, witnesses=(), digest=b"\x04" * 32
    )
    fed: list[object] = []

    async def feed(agent: str, event: object) -> None:
        fed.append(event)
        if len(fed) == 2:  # the second result settles it
            machine.run.phase = Phase.TICKING

    async def no_wait() -> None:
        return None

    ctx: Any = SimpleNamespace(
        gate=SimpleNamespace(peek=lambda agent: machine, feed=feed),
        backoff=SimpleNamespace(retries=lambda: SimpleNamespace(wait=no_wait)),
        env=SimpleNamespace(history=SimpleNamespace(emit=lambda *a, **k: None)),
    )

    class Proving(Claimant):
        async def _attempt(self, *args: Any) -> Stale:
            return Stale((proof,))

    await Proving(ctx)._loop("did:key:z", ClaimPurpose.RESUME, 97, "")
    assert fed == [ClaimStale(proof), ClaimStale(proof)]


async def test_a_claim_loop_ends_when_the_machine_claims_a_later_slot() -> None:
    machine = SimpleNamespace(
        run=SimpleNamespace(phase=Phase.CLAIMING, claim=ClaimPurpose.RESUME, waiting=""),
        record=SimpleNamespace(epoch=97),  # a newer loop claims slot 98
    )
    ctx: Any = SimpleNamespace(
        gate=SimpleNamespace(peek=lambda agent: machine),
        backoff=SimpleNamespace(retries=lambda: None),
    )

    class Never(Claimant):
        async def _attempt(self, *args: Any) -> None:
            raise AssertionError("a stale loop must not ask again")

    await Never(ctx)._loop("did:key:z", ClaimPurpose.RESUME, 97, "")


SOURCE = b"\x05" * 32


def _source_answers(holding: Holding, migration_id: bytes | None) -> StatusReply:
    return StatusReply(
        sender=SOURCE,
        agent="did:key:z",
        chosen=5,
        chain_after=5,
        chain=(),
        accepted_ballot=None,
        accepted_record=None,
        holding=holding,
        epoch=5,
        migration_id=migration_id,
    )


async def _settled_by(reply: StatusReply) -> object:
    pending = PendingCopy(migration_id=b"\x01" * 16, source=SOURCE, head=b"\x02" * 32)
    machine = SimpleNamespace(record=SimpleNamespace(pending=pending))
    previous = EpochStart(
        agent="did:key:z", epoch=5, owner=SOURCE, witnesses=(SOURCE,), digest=b"\x04" * 32
    )
    ctx: Any = SimpleNamespace(gate=SimpleNamespace(peek=lambda agent: machine))

    class Asking(Claimant):
        async def _status_all(self, *args: Any) -> list[tuple[bytes, StatusReply]]:
            return [(SOURCE, reply)]

    return await Asking(ctx)._settle("did:key:z", [previous], 0)


async def test_a_pending_target_whose_source_ended_the_agent_discards_its_copy() -> None:
    # Testnet soak seed 1042: the source's handoff aborted (its ABORT lost), the agent ticked on
    # and spent its budget; the target waited for a decision that would never come.
    outcome = await _settled_by(_source_answers(Holding.BUDGET_EXHAUSTED, None))
    assert outcome == SourceAborted(b"\x01" * 16)


async def test_a_pending_target_keeps_waiting_while_its_source_may_still_decide() -> None:
    for holding, mid in ((Holding.HANDING_OFF, b"\x01" * 16), (Holding.CLAIMING, None)):
        outcome = await _settled_by(_source_answers(holding, mid))
        assert isinstance(outcome, Failed), (holding, outcome)
