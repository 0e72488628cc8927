"""What an effect costs the agent, in µ, charged straight to its budget (not through fuel).

An effect is charged a fixed fee for the node's work, a fee per KiB it moved over the network
and the storage of its two lineage records (at the checkpoint storage price); a payment also
costs its amount. The INTENT reserves the most it may cost (``cap``); the OUTCOME records what
it cost. Prices are in docs/agent-abi.md.
"""

from __future__ import annotations

from igor_p2p.runtime.metering import storage_cost

EFFECT_FEE = 1_000
"""µ per effect (an http request or a payment)."""
TRANSFER_FEE_PER_KIB = 10
"""µ per KiB (rounded up) an http request sends and receives."""
RECORD_ALLOWANCE_BYTES = 2 * 512
"""Envelope bytes of the INTENT and OUTCOME records besides the result."""


def http_fee(request_bytes: int, response_bytes: int) -> int:
    moved = request_bytes + response_bytes
    return (
        EFFECT_FEE
        + TRANSFER_FEE_PER_KIB * ((moved + 1023) // 1024)
        + storage_cost(response_bytes + RECORD_ALLOWANCE_BYTES)
    )


def payment_fee(receipt_bytes: int) -> int:
    return EFFECT_FEE + storage_cost(receipt_bytes + RECORD_ALLOWANCE_BYTES)
