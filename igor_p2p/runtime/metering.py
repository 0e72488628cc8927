"""Budget arithmetic: fuel to cost, in integer micro-units, never below zero.

Price is µ per 1,000 fuel (``FUEL_PER_PRICE_UNIT``). A tick's cost is
``ceil(fuel_used × price / 1000)`` clamped to the remaining budget, so the budget never goes
negative (Go Igor flaw §12a.4) and the final checkpoint after exhaustion stays loadable.
"""

from __future__ import annotations

from dataclasses import dataclass

MICRO_PER_UNIT = 1_000_000
FUEL_PER_PRICE_UNIT = 1_000
DEFAULT_PRICE = 1_000
"""Default node price: 1,000 µ per 1,000 fuel, i.e. one micro-unit per unit of fuel."""

MAX_TICK_FUEL = 10_000_000_000
"""Upper bound on the fuel handed to a single tick, whatever the budget."""


@dataclass(frozen=True)
class Charge:
    """What one tick cost and what is left."""

    fuel_used: int
    cost: int
    budget_after: int


def units_to_micro(units: float) -> int:
    """Convert a CLI budget in units (e.g. ``1.5``) to micro-units, truncating."""
    if units < 0:
        raise ValueError("budget must not be negative")
    return round(units * MICRO_PER_UNIT)


def format_micro(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    return f"{sign}{micro // MICRO_PER_UNIT}.{micro % MICRO_PER_UNIT:06d}"


def fuel_allowance(budget: int, price: int) -> int:
    """The most fuel a tick may burn without the cost exceeding ``budget``."""
    if budget <= 0:
        return 0
    if price <= 0:
        return MAX_TICK_FUEL
    return min(MAX_TICK_FUEL, budget * FUEL_PER_PRICE_UNIT // price)


def cost_of(fuel_used: int, price: int) -> int:
    """``ceil(fuel_used × price / 1000)``."""
    return -(-fuel_used * price // FUEL_PER_PRICE_UNIT)


def charge(budget: int, price: int, fuel_used: int) -> Charge:
    """Charge a tick against ``budget``; the result is clamped so the budget stays ≥ 0."""
    cost = min(budget, cost_of(fuel_used, price))
    return Charge(fuel_used=fuel_used, cost=cost, budget_after=budget - cost)
