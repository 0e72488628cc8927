"""Lies a Byzantine peer can tell: every field of every message, wrong in turn.

:func:`field_lies` takes one honest message and returns copies of it with exactly one field
wrong (another node's key, another agent, an epoch one higher or lower or the largest there is,
a digest with a bit flipped, a chain with an entry missing or doubled, another enum member,
…). Every lie still encodes under the real wire codec, so it reaches the receiver's protocol
logic instead of being refused as malformed (malformed frames are the fuzz suites' job).

Used by the simulation (a lying node passes every message it sends, requests and replies,
through :class:`FieldLiar`) and by the e2e liar process (``tests/e2e/liar_node.py``).

Out of scope, and so never told (THREAT_MODEL A2; witness-notes §6: Byzantine *witnesses* are
out of scope): a witness hiding or re-dating a vote it holds — the ``accepted_ballot`` and
``accepted_record`` of PROMISE and STATUS_REPLY. Every other lie must leave honest nodes safe
and running.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import random
from typing import Any

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.cert import Ballot
from igor_p2p.wire.codec import Message, encode
from igor_p2p.wire.messages import MESSAGES

OUT_OF_SCOPE: frozenset[tuple[str, str]] = frozenset(
    {
        ("PROMISE", "accepted_ballot"),
        ("PROMISE", "accepted_record"),
        ("STATUS_REPLY", "accepted_ballot"),
        ("STATUS_REPLY", "accepted_record"),
    }
)
"""(message type, field) a liar never changes: a Byzantine witness's own votes."""

_INT_MAX = 2**63 - 1
_OTHER_AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def _flip(data: bytes) -> bytes:
    if not data:
        return b"\x00"
    return bytes([data[0] ^ 0x01]) + data[1:]


def _wrong_values(value: Any, other_node: bytes) -> list[Any]:
    """Wrong values of the same shape as ``value``."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, enum.Enum):
        return [m for m in type(value) if m is not value][:3]
    if isinstance(value, int):
        return [v for v in (value + 1, value - 1, 0, _INT_MAX) if v != value and v >= 0]
    if isinstance(value, str):
        return [_OTHER_AGENT, value + "x", ""]
    if isinstance(value, bytes):
        wrong = [_flip(value), hashlib.sha256(b"a lie" + value).digest()[: len(value) or 32]]
        if len(value) == 32:
            wrong.append(other_node)
        return [w for w in wrong if w != value]
    if isinstance(value, Ballot):
        return [  # a Ballot validates itself: every one of these is well formed
            dataclasses.replace(value, round=value.round + 1),
            dataclasses.replace(value, proposer=other_node),
            dataclasses.replace(value, nonce=_flip(value.nonce)),
        ]
    if isinstance(value, tuple):
        wrong: list[Any] = [(), (hashlib.sha256(b"a lie").digest(),)]
        if value:
            wrong += [value[:-1], value + value[-1:], tuple(reversed(value))]
            wrong += [(_flip(value[0]), *value[1:])] if isinstance(value[0], bytes) else []
        return [w for w in wrong if w != value]
    return []


def field_lies(message: Message, other_node: bytes) -> list[tuple[str, Message]]:
    """``(field, lie)`` for every field of ``message`` and every wrong value that still
    encodes; ``other_node`` is a real node key to put where a node key belongs."""
    lies: list[tuple[str, Message]] = []
    for f in dataclasses.fields(message):
        if (message.TYPE, f.name) in OUT_OF_SCOPE:
            continue
        value = getattr(message, f.name)
        wrongs = _wrong_values(value, other_node)
        if value is None:  # an absent optional field, made present
            if "Ballot" in str(f.type):
                wrongs = [Ballot(1, other_node, b"\x00" * 8)]
            elif "bytes" in str(f.type):
                wrongs = [b"a lie", hashlib.sha256(b"a lie").digest()]
        for wrong in wrongs:
            try:
                lie = dataclasses.replace(message, **{f.name: wrong})
                MESSAGES.decode(encode(lie))
            except (InvalidInput, ValueError, TypeError):
                continue
            lies.append((f.name, lie))
    return lies


def every_lie() -> list[tuple[str, str]]:
    """Every ``(message type, field)`` a liar can lie in (all but :data:`OUT_OF_SCOPE`)."""
    return [
        (kind, f.name)
        for kind, cls in sorted(MESSAGES.by_type.items())
        for f in dataclasses.fields(cls)
        if (kind, f.name) not in OUT_OF_SCOPE
    ]


class OneLie:
    """Tells one lie, in every message of one type: ``field`` gets its ``variant``-th wrong
    value (the last one when there are fewer). ``told`` counts the lies."""

    def __init__(self, me: bytes, kind: str, field: str, variant: int, others: list[bytes]):
        self.me = me
        self.kind = kind
        self.field = field
        self.variant = variant
        self.other = next((o for o in others if o != me), hashlib.sha256(b"nobody").digest())
        self.told = 0

    def __call__(self, message: Message) -> Message:
        if self.kind != message.TYPE:
            return message
        lies = [lie for name, lie in field_lies(message, self.other) if name == self.field]
        if not lies:
            return message
        self.told += 1
        return lies[min(self.variant, len(lies) - 1)]


class FieldLiar:
    """Passes each message a node sends through one random field lie, with ``rate``."""

    def __init__(self, me: bytes, rng: random.Random, others: list[bytes], rate: float) -> None:
        self.me = me
        self.rng = rng
        self.others = [o for o in others if o != me] or [hashlib.sha256(b"nobody").digest()]
        self.rate = rate
        self.told: dict[str, int] = {}
        """How many lies were told per ``TYPE.field`` (coverage)."""

    def __call__(self, message: Message) -> Message:
        if self.rng.random() >= self.rate:
            return message
        lies = field_lies(message, self.rng.choice(self.others))
        if not lies:
            return message
        name, lie = self.rng.choice(lies)
        key = f"{message.TYPE}.{name}"
        self.told[key] = self.told.get(key, 0) + 1
        return lie


class ClaimForger:
    """Forges authority claims on gossip from the real ones it hears, as the e2e liar does
    (``tests/e2e/liar_node.py``): a bare far epoch, the real proof replayed for a far epoch, a
    damaged record or certificate for the next epoch, the largest epoch with no proof, junk.

    Each real ``(agent, epoch)`` claim is forged from at most ``per_claim`` times (an owner
    repeats its claim every announce interval), ``limit`` times in all, never from a forgery;
    each lie leaves after a delay drawn in ``[0, spread)`` seconds, so lies keep landing in
    the middle of later handoffs. ``told`` counts the claims forged from."""

    FAR_EPOCH = 99

    def __init__(
        self, rng: random.Random, *, limit: int = 60, per_claim: int = 8, spread: float = 3.0
    ) -> None:
        self.rng = rng
        self.limit = limit
        self.per_claim = per_claim
        self.spread = spread
        self.told = 0
        self._seen: dict[tuple[str, int], int] = {}

    def __call__(self, message: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
        """``(delay, message)`` for every lie to publish in reply to ``message``."""
        claims = message.get("claims")
        if message.get("type") != "claims" or not isinstance(claims, list):
            return []
        lies: list[Any] = []
        for claim in claims:
            if not isinstance(claim, dict) or self.told >= self.limit:
                continue
            agent, epoch = claim.get("agent"), claim.get("epoch")
            record, cert = claim.get("record"), claim.get("cert")
            if not isinstance(agent, str) or not isinstance(epoch, int):
                continue
            if not isinstance(record, bytes) or not isinstance(cert, bytes):
                continue
            heard = self._seen.get((agent, epoch), 0)
            if epoch >= self.FAR_EPOCH or heard >= self.per_claim:
                continue
            if len(self._seen) < 1024:  # bounded: a flood of fake agents is not remembered
                self._seen[(agent, epoch)] = heard + 1
            self.told += 1
            lies += [
                {"agent": agent, "epoch": self.FAR_EPOCH},
                {"agent": agent, "epoch": self.FAR_EPOCH, "record": record, "cert": cert},
                {"agent": agent, "epoch": epoch + 1, "record": _flip(record), "cert": cert},
                {"agent": agent, "epoch": epoch + 1, "record": record, "cert": _flip(cert)},
                {"agent": agent, "epoch": _INT_MAX, "record": b"", "cert": b""},
                "junk",
            ]
        return [
            (self.rng.uniform(0.0, self.spread), {"type": "claims", "claims": [lie]})
            for lie in lies
        ]
