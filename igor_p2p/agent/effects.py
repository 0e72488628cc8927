"""What the two side-effect hostcalls hand the host environment, and what they get back.

``igor.http_request`` and ``igor.wallet_pay`` check what they can from the guest's memory and
the manifest (lengths, pointers, Go Igor's checks in Go's order), then ask the environment,
which gates the effect on authority, records it in the lineage and performs it
(``igor_p2p.effects``). The error codes are Go Igor's; ``OUTCOME_UNKNOWN`` and ``NOT_OWNER`` are
Igor-P2P's own (docs/agent-abi.md).
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

METHOD_MAX_BYTES = 16
URL_MAX_BYTES = 8 * 1024
HEADERS_MAX_BYTES = 32 * 1024
BODY_MAX_BYTES = 1024 * 1024
RECIPIENT_MAX_BYTES = 256
MEMO_MAX_BYTES = 512


class HttpCode(enum.IntEnum):
    """``igor.http_request`` results other than an HTTP status."""

    NETWORK = -1
    """Network error, or a pointer outside guest memory."""
    TOO_LONG = -2
    """An input is too long (method 16 B, URL 8 KiB, headers 32 KiB, body 1 MiB)."""
    NOT_ALLOWED = -3
    """The host (or an address it resolves to, or a redirect) is not allowed."""
    TIMEOUT = -4
    TOO_BIG = -5
    """The response is bigger than ``max_response_bytes`` or the buffer (a u32 LE size hint is
    written into the buffer)."""
    OUTCOME_UNKNOWN = -7
    """Igor-P2P: this request was made before a crash and its outcome was lost; it is not
    repeated (``effect_unresolved`` lists it)."""
    NOT_OWNER = -8
    """Igor-P2P: this node may not cause effects for the agent now (a handoff or halt began)."""


class PayCode(enum.IntEnum):
    """``igor.wallet_pay`` results other than the receipt length."""

    INSUFFICIENT = -1
    """The budget is below the amount (and its fee)."""
    TOO_LONG = -2
    """Recipient over 256 B or memo over 512 B."""
    NOT_ALLOWED = -3
    """The recipient is not in ``allowed_recipients``."""
    OVER_MAX = -4
    """The amount is over ``max_payment_microcents``."""
    BUFFER_TOO_SMALL = -5
    """The receipt buffer is too small (a u32 LE size hint is written into it)."""
    BAD_INPUT = -6
    """A pointer outside guest memory, or an amount ≤ 0."""
    OUTCOME_UNKNOWN = -7
    """Igor-P2P: this payment was started before a crash and its outcome was lost; it is not
    repeated, and its amount stays charged."""
    NOT_OWNER = -8
    """Igor-P2P: this node may not cause effects for the agent now."""
    SETTLEMENT_FAILED = -9
    """Igor-P2P: the settlement refused the payment; nothing was charged."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    resp_cap: int
    """The guest's response buffer size (``[len u32][body]`` must fit)."""

    def digest(self) -> bytes:
        """SHA-256 of the request as sent (the buffer size is not part of it)."""
        h = hashlib.sha256(b"igor-p2p/http-request/v1\x00")
        for part in (self.method.encode(), self.url.encode()):
            h.update(struct.pack("<I", len(part)) + part)
        h.update(struct.pack("<I", len(self.headers)))
        for name, value in self.headers:
            for part in (name.encode(), value.encode()):
                h.update(struct.pack("<I", len(part)) + part)
        h.update(struct.pack("<I", len(self.body)) + self.body)
        return h.digest()


@dataclass(frozen=True)
class HttpResult:
    code: int
    """An HTTP status (> 0) or an :class:`HttpCode`."""
    body: bytes = b""
    size_hint: int = 0
    """With ``TOO_BIG``: the size the response needs (at least)."""
    key: bytes = b""
    """The idempotency key of the effect whose OUTCOME record holds this result (empty when no
    effect ran: a refusal before anything was sent)."""


@dataclass(frozen=True)
class PaymentRequest:
    amount: int
    recipient: str
    memo: bytes
    receipt_cap: int
    """The guest's receipt buffer size (``[len u32][receipt]`` must fit)."""

    def digest(self) -> bytes:
        h = hashlib.sha256(b"igor-p2p/payment-request/v1\x00")
        recipient = self.recipient.encode()
        h.update(struct.pack("<qI", self.amount, len(recipient)) + recipient)
        h.update(struct.pack("<I", len(self.memo)) + self.memo)
        return h.digest()


@dataclass(frozen=True)
class PaymentResult:
    code: int
    """0: paid (``receipt`` holds it) or a :class:`PayCode`."""
    receipt: bytes = b""
    size_hint: int = 0
    """With ``BUFFER_TOO_SMALL``: the bytes ``[len u32][receipt]`` needs."""
    key: bytes = b""
    """The idempotency key of the payment's effect record (empty when none ran)."""


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """Go Igor's request headers: ``"K: V\\n"`` lines. Lines without a colon or with an empty
    name are skipped; names and values are stripped."""
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name:
            out.append((name, value.strip()))
    return tuple(out)
