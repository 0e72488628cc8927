"""Payment receipts: Go Igor's ``wallet_pay`` layout, signed by the owner node with the custody
proof of its epoch.

Go Igor signs the receipt with the *agent* key, which travels with the agent (§12a.14). Here the
agent key never leaves the launcher, so the node that owns the epoch signs, and the receipt names
that epoch and the digest of the entry that started it (the genesis, or the witness certificate
of the custody record): with the agent's lineage, anyone can check that the signer owned that
epoch (:func:`verify_receipt`).

Layout, little-endian. Go's part first, so a Go SDK reading amount, timestamp, recipient and
memo reads the same fields::

    [amount i64][timestamp ns i64][u32 rlen][recipient][u32 mlen][memo][agent pubkey 32]
    -- Igor-P2P from here --
    [node key 32][epoch u64][custody digest 32][idempotency key 16]
    [Ed25519 signature 64 by the node key over everything before it]

(Go: ``[…][agent pubkey 32][signature 64 by the agent key]``.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.authority.custody import EpochStart
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.identity import BadSignature, Keypair, public_key_from_did, verify_signature

SIGNING_DOMAIN = b"igor-p2p/payment-receipt/v1\x00"
_FIXED = 8 + 8 + 4 + 4 + 32 + 32 + 8 + 32 + 16 + 64


class BadReceipt(InvalidInput):
    """Bytes that are not a valid payment receipt, or one that does not verify."""


def receipt_size(recipient: str, memo: bytes) -> int:
    return _FIXED + len(recipient.encode()) + len(memo)


@dataclass(frozen=True)
class PaymentReceipt:
    amount: int
    timestamp: int
    recipient: str
    memo: bytes
    agent_key: bytes
    node: bytes
    epoch: int
    custody: bytes
    key: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        recipient = self.recipient.encode()
        return b"".join(
            (
                struct.pack("<qqI", self.amount, self.timestamp, len(recipient)),
                recipient,
                struct.pack("<I", len(self.memo)),
                self.memo,
                self.agent_key,
                self.node,
                struct.pack("<Q", self.epoch),
                self.custody,
                self.key,
            )
        )

    def signed(self, node_key: Keypair) -> PaymentReceipt:
        signature = node_key.sign(SIGNING_DOMAIN + self.body())
        return PaymentReceipt(**{**self.__dict__, "signature": signature})

    def encode(self) -> bytes:
        return self.body() + self.signature


def decode_receipt(data: bytes) -> PaymentReceipt:
    try:
        amount, timestamp, rlen = struct.unpack_from("<qqI", data, 0)
        pos = 20
        recipient = data[pos : pos + rlen].decode("utf-8")
        pos += rlen
        (mlen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        memo = data[pos : pos + mlen]
        pos += mlen
        agent_key, node = data[pos : pos + 32], data[pos + 32 : pos + 64]
        (epoch,) = struct.unpack_from("<Q", data, pos + 64)
        custody = data[pos + 72 : pos + 104]
        key = data[pos + 104 : pos + 120]
        signature = data[pos + 120 :]
    except (struct.error, UnicodeDecodeError):
        raise BadReceipt("receipt truncated or not UTF-8") from None
    if len(memo) != mlen or len(key) != 16 or len(signature) != 64:
        raise BadReceipt("receipt truncated or with trailing bytes")
    return PaymentReceipt(
        amount, timestamp, recipient, memo, agent_key, node, epoch, custody, key, signature
    )


def verify_receipt(data: bytes, agent: str, custody: Sequence[EpochStart]) -> PaymentReceipt:
    """Decode a receipt and check it: signed by the node that owns its epoch according to the
    agent's verified custody chain, naming that epoch's start. Raises :class:`BadReceipt`."""
    receipt = decode_receipt(data)
    if receipt.agent_key != public_key_from_did(agent):
        raise BadReceipt("the receipt names another agent")
    start = next((s for s in custody if s.epoch == receipt.epoch), None)
    if start is None:
        raise BadReceipt(f"the custody chain has no epoch {receipt.epoch}")
    if start.owner != receipt.node or start.digest != receipt.custody:
        raise BadReceipt(f"the signer did not own epoch {receipt.epoch}")
    try:
        verify_signature(receipt.node, SIGNING_DOMAIN + receipt.body(), receipt.signature)
    except BadSignature:
        raise BadReceipt("the receipt's signature does not verify") from None
    return receipt
