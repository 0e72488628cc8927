"""Execution receipts in Go Igor's byte layout, built from an agent's signed lineage.

Go Igor's lab binary signs one receipt per checkpoint save and keeps them in a receipts file
that travels with the agent; agents read them with ``wallet_receipt_count``/``wallet_receipt``.
Igor-P2P keeps no receipts file: the lineage already holds every checkpoint, signed by the node
that ran it. When a node hosts an agent whose manifest declares ``wallet``, it derives one
receipt per custody epoch of the verified lineage in which ticks ran (the last
:data:`MAX_RECEIPTS` of them) and signs each with its own node key:

* ``AgentID`` = the agent's DID, ``NodeID`` = the peer ID of the signing (hosting) node;
* ``EpochStart``/``EpochEnd`` = the first and last tick run in that custody epoch;
* ``CostMicrocents`` = the budget spent in it, ``BudgetAfter`` = the budget at its last
  checkpoint, ``Timestamp`` = that checkpoint's ``wall_ns``.

Layout (Go's ``receipt.MarshalBinary``, little-endian)::

    [u32 len][AgentID][u32 len][NodeID][u64 EpochStart][u64 EpochEnd]
    [i64 CostMicrocents][i64 BudgetAfter][i64 Timestamp][u32 sigLen][Ed25519 signature]

The signature covers everything before ``sigLen`` (Go's ``MarshalSignData``), so Go's
``Receipt.Verify`` accepts it with the hosting node's public key (the key in its peer ID).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.entries import Checkpoint, LineageEntry
from igor_p2p.lineage.identity import Keypair

MAX_RECEIPTS = 256
"""Receipts for at most this many custody epochs (the most recent)."""

_NUMBERS = struct.Struct("<QQqqq")


class BadReceipt(InvalidInput):
    """Bytes that are not a receipt in Go Igor's layout."""


@dataclass(frozen=True)
class GoReceipt:
    agent_id: str
    node_id: str
    epoch_start: int
    epoch_end: int
    cost: int
    budget_after: int
    timestamp: int
    signature: bytes = b""

    def sign_data(self) -> bytes:
        """Go's ``MarshalSignData``: the bytes the node signs."""
        agent = self.agent_id.encode()
        node = self.node_id.encode()
        return (
            struct.pack("<I", len(agent))
            + agent
            + struct.pack("<I", len(node))
            + node
            + _NUMBERS.pack(
                self.epoch_start, self.epoch_end, self.cost, self.budget_after, self.timestamp
            )
        )

    def signed(self, key: Keypair) -> GoReceipt:
        return GoReceipt(
            self.agent_id,
            self.node_id,
            self.epoch_start,
            self.epoch_end,
            self.cost,
            self.budget_after,
            self.timestamp,
            key.sign(self.sign_data()),
        )

    def encode(self) -> bytes:
        """Go's ``MarshalBinary``: sign data, then ``[u32 sigLen][signature]``."""
        return self.sign_data() + struct.pack("<I", len(self.signature)) + self.signature


def decode_go_receipt(data: bytes) -> GoReceipt:
    """Parse Go's ``MarshalBinary`` layout (the inverse of :meth:`GoReceipt.encode`)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise BadReceipt("receipt truncated")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def text() -> str:
        (length,) = struct.unpack("<I", take(4))
        try:
            return take(length).decode()
        except UnicodeDecodeError:
            raise BadReceipt("receipt text is not UTF-8") from None

    agent, node = text(), text()
    numbers = _NUMBERS.unpack(take(_NUMBERS.size))
    (sig_len,) = struct.unpack("<I", take(4))
    signature = take(sig_len)
    if pos != len(data):
        raise BadReceipt("trailing bytes after the receipt")
    return GoReceipt(agent, node, *numbers, signature)


@dataclass
class _Segment:
    epoch: int
    start_tick: int
    end_tick: int
    budget_before: int
    budget_after: int
    wall_ns: int


def _segments(entries: Sequence[LineageEntry]) -> list[_Segment]:
    segments: list[_Segment] = []
    last: Checkpoint | None = None
    for entry in entries:
        if not isinstance(entry, Checkpoint):
            continue
        if not segments or segments[-1].epoch != entry.epoch:
            before = last if last is not None else entry
            segments.append(
                _Segment(entry.epoch, before.tick, entry.tick, before.budget, entry.budget, 0)
            )
        segment = segments[-1]
        segment.end_tick = entry.tick
        segment.budget_after = entry.budget
        segment.wall_ns = entry.wall_ns
        last = entry
    return [s for s in segments if s.end_tick > s.start_tick]


def receipts_from_lineage(
    entries: Sequence[LineageEntry], did: str, key: Keypair, peer_id: str
) -> tuple[bytes, ...]:
    """Signed receipts (Go's bytes) for the custody epochs of a chain-ordered lineage."""
    out: list[bytes] = []
    for segment in _segments(entries)[-MAX_RECEIPTS:]:
        receipt = GoReceipt(
            agent_id=did,
            node_id=peer_id,
            epoch_start=segment.start_tick + 1,
            epoch_end=segment.end_tick,
            cost=max(0, segment.budget_before - segment.budget_after),
            budget_after=segment.budget_after,
            timestamp=segment.wall_ns,
        )
        out.append(receipt.signed(key).encode())
    return tuple(out)
