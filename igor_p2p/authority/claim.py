"""A claim: the proposer side of single-decree Paxos for one epoch slot of an agent (pure).

Every start of ownership is a claim of a new slot (witness-notes §0): a handoff (the source
proposes the transfer to the target), an owner's restart or an operator's resume (a self-transfer),
a pending target settling a handoff (it can only complete a record someone already proposed), and a
forced recovery. Nobody ticks epoch ``s`` before holding a certificate for ``s``.

A :class:`Claim` is one ballot:

1. PREPARE goes to the witness set of epoch ``s − 1``. A quorum of PROMISEs (the proposer's own
   vote does not count unless ``2q ≥ k + 2``) fixes the value: the highest-ballot record any of
   them accepted (the ABD write-back), else the proposer's own record — supplied later for a
   handoff, once the target has acked.
2. ACCEPT goes to the old and the new witness sets. A joint quorum of signed ACCEPTED votes is a
   certificate: the value is chosen.

HIGHER answers end the claim as :class:`Stale` with the verified custody that proves a later
epoch; BEHIND answers are resent with the custody the witness lacks; PROMISED answers end the
ballot as :class:`Failed` once a quorum is out of reach, and the driver retries with a higher
ballot after a backoff. A claim never guesses: an answer that does not verify counts as no answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from igor_p2p.authority.custody import (
    EpochStart,
    InvalidCustody,
    chain_after,
    decode_record,
    next_start,
    read_chain,
)
from igor_p2p.lineage.cert import (
    BadSignature,
    Ballot,
    Vote,
    WitnessCert,
    cert_shortfall,
    counted_voters,
    quorum,
    vote_bytes,
)
from igor_p2p.lineage.identity import verify_signature
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Accept,
    Accepted,
    Nack,
    NackCode,
    Prepare,
    Promise,
    Refused,
    RefusedCode,
)


class ClaimPhase(enum.StrEnum):
    PREPARING = "PREPARING"
    WAITING_VALUE = "WAITING_VALUE"
    ACCEPTING = "ACCEPTING"
    DONE = "DONE"


@dataclass(frozen=True)
class SendTo:
    """Send ``message`` to the witness ``node``; its reply goes to :meth:`Claim.on_reply`."""

    node: bytes
    message: Message


@dataclass(frozen=True)
class Chosen:
    """The slot is decided: ``start`` holds the chosen record and its certificate."""

    start: EpochStart
    adopted: bool
    """The value was another proposer's record found in phase 1 (a write-back)."""


@dataclass(frozen=True)
class Stale:
    """A later epoch is already chosen; ``starts`` is the verified custody that proves it."""

    starts: tuple[EpochStart, ...]

    @property
    def latest(self) -> EpochStart:
        return self.starts[-1]


@dataclass(frozen=True)
class Failed:
    """This ballot cannot win (outbid, or too many refusals); retry with a higher ballot."""

    reason: str
    highest_round: int


ClaimOutcome = Chosen | Stale | Failed


@dataclass
class Claim:
    """One ballot of a claim for ``slot`` after the verified epoch start ``previous``."""

    agent: str
    slot: int
    previous: EpochStart
    custody: Sequence[EpochStart]
    """This node's verified custody up to ``previous`` (to catch up witnesses that are BEHIND)."""
    ballot: Ballot
    value: bytes | None = None
    phase: ClaimPhase = ClaimPhase.PREPARING
    outcome: ClaimOutcome | None = None
    promises: dict[bytes, Promise] = field(default_factory=dict)
    votes: dict[bytes, Vote] = field(default_factory=dict)
    refused: set[bytes] = field(default_factory=set)
    full: set[bytes] = field(default_factory=set)
    """Witnesses that refused as full (their witness quota): new witness sets avoid them."""
    caught_up: set[bytes] = field(default_factory=set)
    highest_round: int = 0
    adopted: bool = False
    accept_targets: tuple[bytes, ...] = ()
    behind: dict[bytes, int] = field(default_factory=dict)
    """Witnesses that answered BEHIND, with the epoch they know."""
    own_value: bytes | None = None

    def __post_init__(self) -> None:
        if self.slot != self.previous.epoch + 1:
            raise ValueError("a claim is for the slot right after the known epoch")
        self.highest_round = self.ballot.round
        self.own_value = self.value

    # ---------------------------------------------------------------- properties

    @property
    def me(self) -> bytes:
        return self.ballot.proposer

    @property
    def old_set(self) -> tuple[bytes, ...]:
        return self.previous.witnesses

    @property
    def accept_sent(self) -> bool:
        """Whether ACCEPT may have reached a witness: from here on the value may be chosen."""
        return self.phase in (ClaimPhase.ACCEPTING, ClaimPhase.DONE) and self.value is not None

    def _prepare(self, node: bytes) -> Prepare:
        after, chain = (0, ())
        if node in self.caught_up:
            after, chain = self._custody_for(node)
        return Prepare(
            sender=self.me,
            agent=self.agent,
            slot=self.slot,
            ballot=self.ballot,
            chain_after=after,
            chain=chain,
        )

    def _accept(self, node: bytes) -> Accept:
        assert self.value is not None
        after, chain = (0, ())
        if node in self.caught_up:
            after, chain = self._custody_for(node)
        return Accept(
            sender=self.me,
            agent=self.agent,
            slot=self.slot,
            ballot=self.ballot,
            record=self.value,
            chain_after=after,
            chain=chain,
        )

    def _custody_for(self, node: bytes) -> tuple[int, tuple[bytes, ...]]:
        return chain_after(self.custody, self.behind.get(node, 0))

    # ---------------------------------------------------------------- driving

    def start(self) -> list[SendTo]:
        """PREPARE to every member of the previous epoch's witness set."""
        if not self.old_set:
            # No witnesses (an agent launched alone): nothing to ask, nothing can disagree.
            return self._after_promises()
        if len(self._eligible(self.old_set)) < quorum(self.old_set):
            return self._fail("the witness set can never form a quorum for this proposer")
        return [SendTo(w, self._prepare(w)) for w in self.old_set]

    def provide_value(self, record: bytes) -> list[SendTo]:
        """Our own record, for a claim that found nothing accepted in phase 1."""
        if self.phase is not ClaimPhase.WAITING_VALUE:
            return []
        self.value = self.own_value = record
        return self._start_accept()

    def presume_behind(self, node: bytes) -> None:
        """``node`` never witnessed this agent (it is in no witness set of the custody): its
        requests carry the custody from the genesis at once, sparing it a BEHIND round trip."""
        if node not in self.caught_up:
            self.caught_up.add(node)
            self.behind[node] = 0

    def on_reply(self, node: bytes, reply: Message) -> list[SendTo]:
        if self.phase is ClaimPhase.DONE:
            return []
        if isinstance(reply, Nack) and reply.agent == self.agent and reply.slot == self.slot:
            return self._on_nack(node, reply)
        if isinstance(reply, Refused) and reply.code is RefusedCode.BUSY:
            # A witness at its quota takes no new agent (it wrote nothing): a refusal, named.
            self.full.add(node)
            return self._refuse(node, "a witness is full (its witness quota)")
        if (
            self.phase is ClaimPhase.PREPARING
            and isinstance(reply, Promise)
            and reply.agent == self.agent
            and reply.slot == self.slot
            and reply.ballot == self.ballot
            and node in self.old_set
        ):
            self.promises[node] = reply
            if len(counted_voters(self.old_set, self.promises, self.me)) >= quorum(self.old_set):
                return self._after_promises()
            return []
        if (
            self.phase is ClaimPhase.ACCEPTING
            and isinstance(reply, Accepted)
            and reply.agent == self.agent
            and reply.slot == self.slot
            and reply.ballot == self.ballot
            and self.value is not None
        ):
            return self._on_accepted(node, reply)
        return []

    def on_unreachable(self, node: bytes) -> list[SendTo]:
        """No answer from ``node`` in this ballot: it counts as a refusal."""
        if self.phase is ClaimPhase.DONE:
            return []
        return self._refuse(node, "a witness did not answer")

    # ---------------------------------------------------------------- phases

    def _eligible(self, members: Sequence[bytes]) -> set[bytes]:
        return counted_voters(members, members, self.me)

    def _after_promises(self) -> list[SendTo]:
        prior = [p for p in self.promises.values() if p.accepted_record is not None]
        if prior:
            best = max(prior, key=lambda p: p.accepted_ballot)  # type: ignore[arg-type,return-value]
            self.value = best.accepted_record
            self.adopted = self.value != self.own_value
        if self.value is None:
            self.phase = ClaimPhase.WAITING_VALUE
            return []
        return self._start_accept()

    def _start_accept(self) -> list[SendTo]:
        assert self.value is not None
        try:
            record = decode_record(self.value)
        except InvalidCustody:
            return self._fail("the value to propose is not a custody record")
        self.phase = ClaimPhase.ACCEPTING
        targets = sorted(set(self.old_set) | set(record.witnesses))
        self.accept_targets = tuple(targets)
        self.refused.clear()
        if cert_shortfall((), self.me, self.old_set, record.witnesses) is None:
            return self._choose()
        return [SendTo(w, self._accept(w)) for w in targets]

    def _on_accepted(self, node: bytes, reply: Accepted) -> list[SendTo]:
        assert self.value is not None
        record = decode_record(self.value)
        if reply.record_digest != record.digest() or node not in self.accept_targets:
            return []
        try:
            verify_signature(
                node,
                vote_bytes(self.agent, self.slot, self.ballot, reply.record_digest),
                reply.signature,
            )
        except BadSignature:
            return []
        self.votes[node] = Vote(node, reply.signature)
        if cert_shortfall(self.votes, self.me, self.old_set, record.witnesses) is None:
            return self._choose()
        return []

    def _choose(self) -> list[SendTo]:
        assert self.value is not None
        record = decode_record(self.value)
        cert = WitnessCert.build(
            self.agent, self.slot, self.ballot, record.digest(), self.votes.values()
        )
        try:
            start = next_start(self.previous, self.value, cert.encode(), verified=True)
        except InvalidCustody as exc:
            return self._fail(f"the chosen record does not verify: {exc}")
        self.phase = ClaimPhase.DONE
        self.outcome = Chosen(start, self.adopted)
        return []

    def _fail(self, reason: str) -> list[SendTo]:
        self.phase = ClaimPhase.DONE
        self.outcome = Failed(reason, self.highest_round)
        return []

    def _on_nack(self, node: bytes, nack: Nack) -> list[SendTo]:
        if nack.code is NackCode.HIGHER:
            try:
                starts = read_chain(nack.chain_after, nack.chain, self.previous)
            except InvalidCustody:
                starts = []
            if starts and starts[-1].epoch >= self.slot:
                self.phase = ClaimPhase.DONE
                self.outcome = Stale(tuple(starts))
                return []
            return self._refuse(node, "an unproven HIGHER answer")
        if (
            nack.code is NackCode.BEHIND
            and node not in self.caught_up
            and nack.chosen < self.previous.epoch
        ):
            self.caught_up.add(node)
            self.behind[node] = nack.chosen
            if self.phase is ClaimPhase.PREPARING:
                return [SendTo(node, self._prepare(node))]
            if self.phase is ClaimPhase.ACCEPTING:
                return [SendTo(node, self._accept(node))]
            return []
        if nack.code is NackCode.PROMISED and nack.promised is not None:
            self.highest_round = max(self.highest_round, nack.promised.round)
        return self._refuse(node, f"{nack.code.value} from a witness")

    def _refuse(self, node: bytes, reason: str) -> list[SendTo]:
        if self.phase is ClaimPhase.ACCEPTING and node in self.votes:
            return []  # a signed vote already held stays counted (a later NACK is stale news)
        self.refused.add(node)
        if self.phase is ClaimPhase.PREPARING:
            possible = self._eligible(self.old_set) - self.refused
            if len(possible) < quorum(self.old_set):
                return self._fail(f"no quorum of promises: {reason}")
        elif self.phase is ClaimPhase.ACCEPTING and self.value is not None:
            record = decode_record(self.value)
            possible = set(self.accept_targets) - self.refused
            if cert_shortfall(possible, self.me, self.old_set, record.witnesses) is not None:
                return self._fail(f"no quorum of acceptances: {reason}")
        return []

    def missing(self) -> str:
        """Words for a status line: what this ballot is waiting for."""
        if self.phase is ClaimPhase.PREPARING:
            got = len(counted_voters(self.old_set, self.promises, self.me))
            return f"{got} of {quorum(self.old_set)} witness promises"
        if self.phase is ClaimPhase.ACCEPTING and self.value is not None:
            record = decode_record(self.value)
            why = cert_shortfall(self.votes, self.me, self.old_set, record.witnesses)
            return why or "a certificate"
        if self.phase is ClaimPhase.WAITING_VALUE:
            return "the record to propose"
        return ""
