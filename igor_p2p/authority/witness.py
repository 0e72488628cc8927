"""The witness: the acceptor side of single-decree Paxos for each epoch slot of an agent (pure).

A node is a witness of an agent when an epoch-starting record names it. Per agent it keeps a
:class:`WitnessRecord` that never moves backwards:

- ``chosen``: the highest epoch it knows was chosen, with the verified custody that proves it
  (a max-register: only a certificate moves it, and only forward);
- ``promised`` / ``accepted``: acceptor state for slot ``chosen + 1``.

Every handler is pure: it returns the new durable record (or None), the custody links it learned,
and the reply. The driver makes the record and links durable *before* it sends the reply, which is
what makes a promise or an acceptance binding.

Rules (witness-notes §1.5): a PREPARE for slot ``s`` is answered only by members of the witness
set of epoch ``s − 1``; a higher ballot than any promised wins a PROMISE (carrying any value
already accepted); an ACCEPT at a ballot no lower than the promise is accepted and signed;
requests for a slot at or below ``chosen`` get HIGHER with the custody that proves it; requests
for a slot beyond ``chosen + 1`` get BEHIND, and the proposer resends them with the missing
custody, which the witness verifies link by link before learning it. A ballot always names its
proposer, which must be the authenticated sender.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from igor_p2p.authority.custody import (
    EpochStart,
    InvalidCustody,
    check_record,
    decode_record,
    read_chain,
)
from igor_p2p.lineage.cert import Ballot, sign_vote
from igor_p2p.lineage.identity import Keypair
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Accept,
    Accepted,
    Done,
    Learn,
    Nack,
    NackCode,
    Prepare,
    Promise,
    Status,
)


@dataclass(frozen=True)
class WitnessRecord:
    """What a witness durably keeps about one agent."""

    agent: str
    chosen: EpochStart
    promised: Ballot | None = None
    accepted_ballot: Ballot | None = None
    accepted_record: bytes | None = None
    """A record accepted for slot ``chosen.epoch + 1`` (with its ballot)."""


@dataclass(frozen=True)
class WitnessStep:
    """What handling one request produced."""

    record: WitnessRecord | None
    """The new durable record, or None when nothing changed."""
    learned: tuple[EpochStart, ...]
    """Custody links verified from the request, oldest first (persist with the record)."""
    reply: Message
    chain_after: int | None = None
    """When set, the driver attaches the stored custody after this epoch to the reply."""


@dataclass(frozen=True)
class WitnessView:
    """A witness's answer to STATUS (the driver adds what the node itself holds)."""

    chosen: int
    accepted_ballot: Ballot | None
    accepted_record: bytes | None


class WitnessCore:
    """Handles witness requests for one node (``key`` signs its ACCEPTED votes)."""

    def __init__(self, key: Keypair) -> None:
        self.key = key
        self.me = key.public_key

    # ---------------------------------------------------------------- helpers

    def _learn(
        self, record: WitnessRecord | None, agent: str, after: int, chain: tuple[bytes, ...]
    ) -> tuple[WitnessRecord | None, tuple[EpochStart, ...]]:
        """Advance ``chosen`` over a verified chain; a chain that does not verify is ignored."""
        if not chain:
            return record, ()
        try:
            starts = read_chain(after, chain, record.chosen if record else None)
        except InvalidCustody:
            return record, ()
        if not starts or starts[0].agent != agent:
            return record, ()
        # A new chosen epoch: acceptor state for the old slot is moot.
        return WitnessRecord(agent=agent, chosen=starts[-1]), tuple(starts)

    def _nack(
        self,
        agent: str,
        slot: int,
        code: NackCode,
        record: WitnessRecord | None,
        *,
        promised: Ballot | None = None,
    ) -> Nack:
        return Nack(
            sender=self.me,
            agent=agent,
            slot=slot,
            code=code,
            chosen=record.chosen.epoch if record else 0,
            promised=promised,
            chain_after=0,
            chain=(),
        )

    def _step(
        self,
        before: WitnessRecord | None,
        after: WitnessRecord | None,
        learned: tuple[EpochStart, ...],
        reply: Message,
        chain_after: int | None = None,
    ) -> WitnessStep:
        changed = after if after is not None and after != before else None
        return WitnessStep(changed, learned, reply, chain_after)

    def _gate(
        self, record: WitnessRecord | None, agent: str, slot: int, sender: bytes, ballot: Ballot
    ) -> tuple[NackCode, int | None] | None:
        """The checks PREPARE and ACCEPT share: (code, chain to attach) or None to proceed."""
        if ballot.proposer != sender:
            return NackCode.WRONG_SENDER, None
        if record is None:
            return NackCode.BEHIND, None
        chosen = record.chosen.epoch
        if slot <= chosen:
            return NackCode.HIGHER, slot - 1
        if slot > chosen + 1:
            return NackCode.BEHIND, None
        return None

    # ---------------------------------------------------------------- handlers

    def prepare(self, record: WitnessRecord | None, msg: Prepare) -> WitnessStep:
        current, learned = self._learn(record, msg.agent, msg.chain_after, msg.chain)
        refused = self._gate(current, msg.agent, msg.slot, msg.sender, msg.ballot)
        if refused is not None:
            code, attach = refused
            nack = self._nack(msg.agent, msg.slot, code, current)
            return self._step(record, current, learned, nack, attach)
        assert current is not None
        if self.me not in current.chosen.witnesses:
            nack = self._nack(msg.agent, msg.slot, NackCode.NOT_WITNESS, current)
            return self._step(record, current, learned, nack)
        if current.promised is not None and msg.ballot < current.promised:
            nack = self._nack(
                msg.agent, msg.slot, NackCode.PROMISED, current, promised=current.promised
            )
            return self._step(record, current, learned, nack)
        current = replace(current, promised=msg.ballot)
        promise = Promise(
            sender=self.me,
            agent=msg.agent,
            slot=msg.slot,
            ballot=msg.ballot,
            accepted_ballot=current.accepted_ballot,
            accepted_record=current.accepted_record,
        )
        return self._step(record, current, learned, promise)

    def accept(self, record: WitnessRecord | None, msg: Accept) -> WitnessStep:
        current, learned = self._learn(record, msg.agent, msg.chain_after, msg.chain)
        refused = self._gate(current, msg.agent, msg.slot, msg.sender, msg.ballot)
        if refused is not None:
            code, attach = refused
            nack = self._nack(msg.agent, msg.slot, code, current)
            return self._step(record, current, learned, nack, attach)
        assert current is not None
        try:
            value = decode_record(msg.record)
            check_record(current.chosen, value)
        except InvalidCustody:
            nack = self._nack(msg.agent, msg.slot, NackCode.INVALID, current)
            return self._step(record, current, learned, nack)
        if self.me not in current.chosen.witnesses and self.me not in value.witnesses:
            nack = self._nack(msg.agent, msg.slot, NackCode.NOT_WITNESS, current)
            return self._step(record, current, learned, nack)
        if current.promised is not None and msg.ballot < current.promised:
            nack = self._nack(
                msg.agent, msg.slot, NackCode.PROMISED, current, promised=current.promised
            )
            return self._step(record, current, learned, nack)
        if current.accepted_ballot == msg.ballot and current.accepted_record != msg.record:
            # One ballot, one value: a second value at the same ballot is never accepted.
            nack = self._nack(msg.agent, msg.slot, NackCode.INVALID, current)
            return self._step(record, current, learned, nack)
        current = replace(
            current,
            promised=msg.ballot,
            accepted_ballot=msg.ballot,
            accepted_record=msg.record,
        )
        digest = value.digest()
        vote = sign_vote(self.key, msg.agent, msg.slot, msg.ballot, digest)
        accepted = Accepted(
            sender=self.me,
            agent=msg.agent,
            slot=msg.slot,
            ballot=msg.ballot,
            record_digest=digest,
            signature=vote.signature,
        )
        return self._step(record, current, learned, accepted)

    def learn(self, record: WitnessRecord | None, msg: Learn) -> WitnessStep:
        current, learned = self._learn(record, msg.agent, msg.chain_after, msg.chain)
        return self._step(record, current, learned, Done(sender=self.me, agent=msg.agent))

    def status(self, record: WitnessRecord | None, msg: Status) -> WitnessView:
        if record is None:
            return WitnessView(0, None, None)
        return WitnessView(record.chosen.epoch, record.accepted_ballot, record.accepted_record)
