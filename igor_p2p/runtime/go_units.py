"""Igor-P2P prices in Go Igor's units.

Igor-P2P charges by fuel: the price is µ per 1,000 fuel (``FUEL_PER_PRICE_UNIT``). Go Igor
charges by wall time: µ¢ per second of tick. The money units are the same integer (1 unit =
1,000,000 µ = 1,000,000 µ¢), so only the work unit needs converting. It uses a fixed reference
rate, :data:`REFERENCE_FUEL_PER_SECOND`, of one billion fuel per second of execution (wasmtime
runs plain wasm at about 1–4 × 10⁹ fuel per second on current cores):

    µ¢ per second = price × REFERENCE_FUEL_PER_SECOND / 1,000 = price × 1,000,000

So the default price of 1,000 µ per 1,000 fuel is 10⁹ µ¢/s (1,000 units per second of
execution), and Go's default of 1,000,000 µ¢/s is a price of 1 µ per 1,000 fuel.
"""

from __future__ import annotations

from igor_p2p.runtime.metering import FUEL_PER_PRICE_UNIT

REFERENCE_FUEL_PER_SECOND = 1_000_000_000
_I64_MAX = 2**63 - 1


def go_price_per_second(price: int) -> int:
    """Go Igor's µ¢ per second for a price of ``price`` µ per 1,000 fuel (clamped to int64)."""
    return min(_I64_MAX, price * REFERENCE_FUEL_PER_SECOND // FUEL_PER_PRICE_UNIT)


def price_from_go(price_per_second: int) -> int:
    """The price in µ per 1,000 fuel for Go's µ¢ per second (rounded up, at least 0)."""
    return max(0, -(-price_per_second * FUEL_PER_PRICE_UNIT // REFERENCE_FUEL_PER_SECOND))
