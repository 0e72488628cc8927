"""The claimant's attempts (igor_p2p.core.claims): what a claim concludes from the custody this
node stores before it asks any witness."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from igor_p2p.authority.claim import Stale
from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import ClaimPurpose
from igor_p2p.core.claims import Claimant


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
