"""Witness certificates: proof that a quorum of an agent's witnesses chose one epoch-starting
record for one epoch slot.

Every epoch after the first starts with a custody record (a transfer, a resume or a forced
recovery) that names the witness set of the new epoch. The record counts only once a
:class:`WitnessCert` follows it in the chain: the ACCEPTED votes of a quorum of the previous
epoch's witnesses *and* of the new epoch's witnesses (joint quorums, so a witness set can change at
any transfer), each an Ed25519 signature over (agent, slot, ballot, record digest).

Quorum rule (:func:`cert_shortfall`): for each of the two sets X, ``quorum(X) = |X| // 2 + 1``
distinct members of X must have voted, not counting the ballot's proposer unless
``2·quorum(X) ≥ |X| + 2`` — a node restored from an old backup must not be able to vote for its
own claim with state it no longer remembers. An empty set needs no votes (an agent launched with no
peers has no witness protection until its owner names witnesses at a transfer).

Encoding: ``mp(["igor/cert/1", agent, slot, [round, proposer, nonce], prev, [[witness, sig], …]])``
with the votes sorted by witness key. ``prev`` is the digest of the certified record; the digest of
the certificate is what the epoch's first checkpoint names as its ``prev``.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from igor_p2p.lineage._codec import (
    INT64_MAX,
    MAX_WITNESSES,
    CorruptEntry,
    FieldReader,
    check_bytes,
    check_canonical,
    check_int,
    check_str,
    fail,
    pack,
    sha256,
    unpack_array,
)
from igor_p2p.lineage.identity import (
    MAX_DID_CHARS,
    BadSignature,
    InvalidDID,
    Keypair,
    public_key_from_did,
    verify_signature,
)

CERT_TAG = "igor/cert/1"
VOTE_DOMAIN = b"igor-p2p/witness-accepted/v1\x00"
BALLOT_NONCE_BYTES = 8
MAX_CERT_BYTES = 4096


class CorruptCert(CorruptEntry):
    """Bytes or fields that are not a valid witness certificate."""


@dataclass(frozen=True, order=True)
class Ballot:
    """A Paxos ballot: ``(round, proposer, nonce)``, compared in that order.

    Ballots live only in a proposer's memory; the nonce is drawn once per process incarnation so
    that a node restarted from an old disk never reuses a ballot with a different value.
    """

    round: int
    proposer: bytes
    nonce: bytes

    def __post_init__(self) -> None:
        check_int(self.round, "ballot round", CorruptCert, 0, INT64_MAX)
        check_bytes(self.proposer, "ballot proposer", CorruptCert, 32)
        check_bytes(self.nonce, "ballot nonce", CorruptCert, BALLOT_NONCE_BYTES)

    def to_wire(self) -> list[Any]:
        return [self.round, self.proposer, self.nonce]

    @classmethod
    def from_wire(cls, value: Any, error: type[CorruptEntry] = CorruptCert) -> Ballot:
        if type(value) is not list or len(value) != 3:
            fail(error, "ballot: expected [round, proposer, nonce]")
        try:
            return cls(value[0], value[1], value[2])
        except CorruptCert as exc:
            raise error(str(exc)) from None

    def next_round(self, above: int) -> Ballot:
        return Ballot(max(self.round, above) + 1, self.proposer, self.nonce)


def vote_bytes(agent: str, slot: int, ballot: Ballot, record_digest: bytes) -> bytes:
    """What a witness signs when it accepts ``record_digest`` for ``slot`` at ``ballot``."""
    return VOTE_DOMAIN + pack([agent, slot, ballot.to_wire(), record_digest])


@dataclass(frozen=True)
class Vote:
    witness: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_bytes(self.witness, "vote witness", CorruptCert, 32)
        check_bytes(self.signature, "vote signature", CorruptCert, 64)


def sign_vote(key: Keypair, agent: str, slot: int, ballot: Ballot, record_digest: bytes) -> Vote:
    return Vote(key.public_key, key.sign(vote_bytes(agent, slot, ballot, record_digest)))


def quorum(members: Collection[bytes]) -> int:
    """Votes needed from a witness set (0 for the empty set)."""
    return len(members) // 2 + 1 if members else 0


def proposer_counts(members: Collection[bytes]) -> bool:
    """Whether the proposer's own vote counts toward ``members``' quorum (2q ≥ k + 2)."""
    return 2 * quorum(members) >= len(members) + 2


def counted_voters(
    members: Collection[bytes], voters: Iterable[bytes], proposer: bytes
) -> set[bytes]:
    """The voters that count toward ``members``' quorum."""
    counted = {v for v in voters if v in members}
    if not proposer_counts(members):
        counted.discard(proposer)
    return counted


def quorum_reachable(members: Collection[bytes], proposer: bytes) -> bool:
    """Whether a quorum of ``members`` can form at all for this proposer."""
    eligible = set(members) if proposer_counts(members) else set(members) - {proposer}
    return len(eligible) >= quorum(members)


def cert_shortfall(
    voters: Iterable[bytes],
    proposer: bytes,
    previous: Collection[bytes],
    new: Collection[bytes],
) -> str | None:
    """Why ``voters`` are not a joint quorum of ``previous`` and ``new`` (None when they are)."""
    voters = set(voters)
    for name, members in (("previous", previous), ("new", new)):
        got = len(counted_voters(members, voters, proposer))
        need = quorum(members)
        if got < need:
            return f"{got} of {need} votes needed from the {name} witness set"
    return None


@dataclass(frozen=True)
class WitnessCert:
    """The votes that chose the record ``prev`` for epoch ``slot`` of ``agent``."""

    agent: str
    slot: int
    ballot: Ballot
    prev: bytes
    votes: tuple[Vote, ...]

    def __post_init__(self) -> None:
        check_str(self.agent, "agent", CorruptCert, MAX_DID_CHARS)
        try:
            public_key_from_did(self.agent)
        except InvalidDID as exc:
            raise CorruptCert(f"agent: {exc}") from None
        check_int(self.slot, "slot", CorruptCert, 2, INT64_MAX)
        check_bytes(self.prev, "prev", CorruptCert, 32)
        if type(self.votes) is not tuple or len(self.votes) > 2 * MAX_WITNESSES:
            raise CorruptCert("votes: expected a tuple of at most 14 votes")
        keys = [v.witness for v in self.votes]
        if keys != sorted(set(keys)):
            raise CorruptCert("votes: witnesses must be distinct and sorted")

    KIND = "cert"

    @property
    def record_digest(self) -> bytes:
        return self.prev

    @property
    def voters(self) -> tuple[bytes, ...]:
        return tuple(v.witness for v in self.votes)

    @property
    def signer(self) -> bytes:
        """A certificate carries its witnesses' signatures, not one of its own."""
        return b""

    def encode(self) -> bytes:
        return self._encoded

    @functools.cached_property
    def _encoded(self) -> bytes:
        return pack(
            [
                CERT_TAG,
                self.agent,
                self.slot,
                self.ballot.to_wire(),
                self.prev,
                [[v.witness, v.signature] for v in self.votes],
            ]
        )

    @functools.cached_property
    def _digest(self) -> bytes:
        return sha256(self.encode())

    def digest(self) -> bytes:
        return self._digest

    def valid_voters(self) -> set[bytes]:
        """Witnesses whose vote signature verifies."""
        message = vote_bytes(self.agent, self.slot, self.ballot, self.prev)
        good: set[bytes] = set()
        for vote in self.votes:
            try:
                verify_signature(vote.witness, message, vote.signature)
            except BadSignature:
                continue
            good.add(vote.witness)
        return good

    def verify_signature(self) -> None:
        """Raise ``BadSignature`` if any vote's signature does not verify."""
        if len(self.valid_voters()) != len(self.votes):
            raise BadSignature("a witness vote does not verify")

    def shortfall(
        self, previous: Collection[bytes], new: Collection[bytes], *, trusted: bool = False
    ) -> str | None:
        """Why this certificate is not a joint quorum (None when it is)."""
        voters = set(self.voters) if trusted else self.valid_voters()
        return cert_shortfall(voters, self.ballot.proposer, previous, new)

    @classmethod
    def build(
        cls, agent: str, slot: int, ballot: Ballot, record_digest: bytes, votes: Iterable[Vote]
    ) -> WitnessCert:
        unique = {v.witness: v for v in votes}
        return cls(agent, slot, ballot, record_digest, tuple(unique[k] for k in sorted(unique)))

    @classmethod
    def decode(cls, data: bytes) -> WitnessCert:
        return cls._from_items(unpack_array(data, CorruptCert, max_bytes=MAX_CERT_BYTES), data)

    @classmethod
    def _from_items(cls, items: list[Any], data: bytes) -> WitnessCert:
        if len(data) > MAX_CERT_BYTES:
            raise CorruptCert(f"certificate larger than {MAX_CERT_BYTES} bytes")
        r = FieldReader(items, CorruptCert, ("tag", "agent", "slot", "ballot", "prev", "votes"))
        if r.raw("tag") != CERT_TAG:
            raise CorruptCert("not a witness certificate (format tag)")
        raw_votes = r.raw("votes")
        if type(raw_votes) is not list:
            raise CorruptCert("votes: expected an array")
        votes: list[Vote] = []
        for item in raw_votes:
            if type(item) is not list or len(item) != 2:
                raise CorruptCert("vote: expected [witness, signature]")
            votes.append(Vote(item[0], item[1]))
        cert = cls(
            agent=r.str("agent", MAX_DID_CHARS),
            slot=r.int("slot"),
            ballot=Ballot.from_wire(r.raw("ballot")),
            prev=r.bytes("prev", 32),
            votes=tuple(votes),
        )
        check_canonical(data, cert.encode(), CorruptCert)
        return cert
