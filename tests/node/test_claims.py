"""Authority claims on gossip (igor_p2p.node.claims): a claim is a hint, and only proof of a
*different* start of an epoch this node holds, or of a later epoch, reaches the gate."""

from __future__ import annotations

from typing import Any

import trio

from igor_p2p.authority.custody import EpochStart, next_start
from igor_p2p.node.claims import Claim, ClaimGossip
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Holding, Status, StatusReply
from tests.authority.chain import A, B, C, Custody, D, E, F, make_cert, make_transfer


class Store:
    """The custody a node holds; ``then`` replaces it after the first read (a commit landed
    while a question to the witnesses was in flight)."""

    def __init__(self, custody: list[EpochStart], then: list[EpochStart] | None = None) -> None:
        self._reads = [custody] if then is None else [custody, then]

    async def custody(self, agent: str) -> list[EpochStart]:
        return self._reads.pop(0) if len(self._reads) > 1 else self._reads[0]


class Core:
    """The node core as claims see it: what it holds of the agent, and the proofs it was fed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.proofs: list[EpochStart] = []

    def describe(self, agent: str) -> dict[str, Any]:
        return {"epoch": self.epoch}

    async def superseded(self, agent: str, latest: EpochStart) -> None:
        self.proofs.append(latest)


class Witnesses:
    """Every witness answers STATUS with the same chain after ``after``."""

    me = E.public_key

    def __init__(self, after: int, chain: tuple[bytes, ...]) -> None:
        self.after, self.chain = after, chain
        self.asked = 0

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        assert isinstance(message, Status)
        self.asked += 1
        return StatusReply(
            peer,
            message.agent,
            chosen=self.after + len(self.chain) // 2,
            chain_after=self.after,
            chain=self.chain,
            accepted_ballot=None,
            accepted_record=None,
            holding=Holding.NONE,
            epoch=0,
            migration_id=None,
        )


def claims_of(core: Core, store: Store, transport: Witnesses) -> ClaimGossip:
    return ClaimGossip(
        core=core,  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        gossip=None,  # type: ignore[arg-type]
        interval_s=lambda: 1.0,
    )


async def observe(claims: ClaimGossip, claim: Claim) -> None:
    """``observe`` and every question to the witnesses it started."""
    async with trio.open_nursery() as nursery:
        claims._nursery = nursery
        await claims.observe(claim)
    claims._nursery = None


def moved_to_e() -> tuple[Custody, bytes, bytes, bytes]:
    """Epoch 2 moved to E: (custody to epoch 1, record, certificate by B+C, another by C+D)."""
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E, witnesses=(B, C, D))
    return (
        custody,
        record.encode(),
        make_cert(record, (B, C)).encode(),
        make_cert(record, (C, D)).encode(),
    )


async def test_the_owned_start_under_another_quorums_certificate_never_reaches_the_gate() -> None:
    """A forged claim for a far epoch makes E ask the witnesses while it still holds epoch 1;
    E's commit of epoch 2 lands meanwhile, and a witness answers with the same record under
    the certificate of another quorum. That is the start E owns, not a conflict (the e2e
    test saw the owner halt in CONFLICTING_CUSTODY here)."""
    custody, record, cert, other_cert = moved_to_e()
    held = next_start(custody.latest, record, cert)
    witnesses = Witnesses(1, (record, other_cert))
    core = Core(epoch=2)
    claims = claims_of(core, Store([custody.latest], then=[custody.latest, held]), witnesses)
    await observe(claims, Claim(custody.agent, 99, record, cert))
    assert witnesses.asked == 3
    assert core.proofs == [] and claims.counts.proven == 0


async def test_another_certified_record_of_an_owned_epoch_reaches_the_gate() -> None:
    """The control: a different record certified for E's epoch is a real conflict."""
    custody, record, cert, _ = moved_to_e()
    held = next_start(custody.latest, record, cert)
    rival = make_transfer(custody.latest, F, witnesses=(B, C, D))
    rival_cert = make_cert(rival, (C, D))
    witnesses = Witnesses(1, (rival.encode(), rival_cert.encode()))
    core = Core(epoch=2)
    claims = claims_of(core, Store([custody.latest], then=[custody.latest, held]), witnesses)
    await observe(claims, Claim(custody.agent, 99, record, cert))
    assert [(p.epoch, p.owner) for p in core.proofs] == [(2, F.public_key)]


async def test_a_claim_of_the_owned_epoch_with_the_held_record_is_no_news() -> None:
    custody, record, cert, other_cert = moved_to_e()
    held = next_start(custody.latest, record, cert)
    core = Core(epoch=2)
    claims = claims_of(core, Store([custody.latest, held]), Witnesses(0, ()))
    await observe(claims, Claim(custody.agent, 2, record, other_cert))
    assert core.proofs == []


async def test_a_proven_claim_of_the_next_epoch_reaches_the_gate_without_asking() -> None:
    custody, record, cert, _ = moved_to_e()
    witnesses = Witnesses(0, ())
    core = Core(epoch=1)
    claims = claims_of(core, Store([custody.latest]), witnesses)
    await observe(claims, Claim(custody.agent, 2, record, cert))
    assert [(p.epoch, p.owner) for p in core.proofs] == [(2, E.public_key)]
    assert witnesses.asked == 0


async def test_a_damaged_proof_of_the_next_epoch_is_ignored() -> None:
    custody, record, cert, _ = moved_to_e()
    core = Core(epoch=1)
    claims = claims_of(core, Store([custody.latest]), Witnesses(0, ()))
    await observe(claims, Claim(custody.agent, 2, record, bytes([cert[0] ^ 1]) + cert[1:]))
    await observe(claims, Claim(custody.agent, 2, bytes([record[0] ^ 1]) + record[1:], cert))
    assert core.proofs == [] and claims.counts.ignored == 2


async def test_the_certificate_of_the_epoch_handed_to_this_node_is_left_to_its_commit() -> None:
    """E is the pending target of epoch 2 (its custody still ends at epoch 1) when a forged
    claim makes it ask the witnesses, who already know epoch 2 certified to E: that is the
    handoff E is part of, not news about another owner (the COMMIT settles it)."""
    custody, record, cert, _ = moved_to_e()
    witnesses = Witnesses(1, (record, cert))
    core = Core(epoch=2)
    claims = claims_of(core, Store([custody.latest]), witnesses)
    await observe(claims, Claim(custody.agent, 99, record, cert))
    assert witnesses.asked == 3
    assert core.proofs == [] and claims.counts.proven == 0
