"""Settlement: where an agent's payment actually goes.

The runtime calls :meth:`Settlement.pay` once per payment, after the payment's INTENT is durable
in the lineage, with the payment's idempotency key; it never calls it twice for one key (after a
crash between the INTENT and the OUTCOME, the outcome is unknown and the payment is not repeated).
A settlement must therefore treat the key as the payment's identity: a second call with a key it
already settled returns the first result without paying again.

:class:`MockSettlement` settles locally: it appends each payment to a JSON-lines ledger file
(``DATA_DIR/settlement.jsonl``) and refuses recipients named ``refuse:…``. docs/effects.md
describes a real one (an x402 facilitator or a payment-channel hub behind the same interface).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REFUSE_PREFIX = "refuse:"
"""MockSettlement refuses recipients starting with this (for tests and demos)."""


@dataclass(frozen=True)
class SettlementRequest:
    agent: str
    recipient: str
    amount: int
    """µ (Go Igor's µ¢)."""
    memo: bytes
    """The agent's memo followed by ``igor-idempotency-key=<hex>``."""
    key: bytes


@dataclass(frozen=True)
class SettlementResult:
    settled: bool
    reference: str = ""
    """The settlement's own identifier of the payment (a transaction id)."""
    reason: str = ""


class Settlement(Protocol):
    async def pay(self, request: SettlementRequest) -> SettlementResult:
        """Pay once per ``request.key``; raise (anything) when the outcome is unknown."""
        ...


class MockSettlement:
    """Settles locally, durably, idempotently by key (a ledger file, or memory only)."""

    def __init__(self, ledger: Path | None = None) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._settled: dict[bytes, SettlementResult] = {}
        if ledger is not None and ledger.exists():
            for line in ledger.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._settled[bytes.fromhex(row["key"])] = SettlementResult(
                        True, row["reference"]
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line

    @property
    def payments(self) -> dict[bytes, SettlementResult]:
        return dict(self._settled)

    async def pay(self, request: SettlementRequest) -> SettlementResult:
        if request.recipient.startswith(REFUSE_PREFIX):
            return SettlementResult(False, reason="the recipient refuses payments")
        with self._lock:
            done = self._settled.get(request.key)
            if done is not None:
                return done
            result = SettlementResult(True, f"mock-{request.key.hex()}")
            if self.ledger is not None:
                row = {
                    "key": request.key.hex(),
                    "agent": request.agent,
                    "recipient": request.recipient,
                    "amount": request.amount,
                    "memo": request.memo.decode("utf-8", "replace"),
                    "reference": result.reference,
                }
                with self.ledger.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self._settled[request.key] = result
            return result
