"""Budget arithmetic: what an agent pays for fuel, stored checkpoint bytes and log bytes, in
integer micro-units (µ), never below zero. The prices are documented in ``docs/agent-abi.md``.

* **Fuel.** Price is µ per 1,000 fuel (``FUEL_PER_PRICE_UNIT``), set per node. A tick's cost is
  ``ceil(fuel_used × price / 1000)`` clamped to the remaining budget, so the budget never goes
  negative (Go Igor flaw §12a.4) and the final checkpoint after exhaustion stays loadable. A tick
  that fails by the agent's doing (trap, watchdog timeout, bad snapshot) pays for the fuel it
  burned like any other tick; only a stop the host caused (an interruption, a host fault) is
  free, so a failed interaction never drains an agent's budget.
* **Storage.** Every checkpoint this node stores costs ``STORAGE_MICRO_PER_KIB`` µ per KiB of
  its encoding (rounded up), charged with the tick that produced it.
* **Logs.** Every byte of ``log_emit`` output written to the node log costs
  ``LOG_MICRO_PER_KIB`` µ per KiB (rounded up per tick); output beyond the caps is dropped and
  not charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from igor_p2p.errors import InvalidInput

MICRO_PER_UNIT = 1_000_000
FUEL_PER_PRICE_UNIT = 1_000
DEFAULT_PRICE = 1_000
"""Default node price: 1,000 µ per 1,000 fuel, i.e. one micro-unit per unit of fuel."""

MAX_TICK_FUEL = 10_000_000_000
"""Upper bound on the fuel handed to a single tick, whatever the budget."""

MAX_PRICE = 1_000_000_000
"""Highest fuel price a node may set (1,000 units per 1,000 fuel)."""
MAX_BUDGET = 2**63 - 1
"""Budgets are signed 64-bit in checkpoints."""

KIB = 1024
STORAGE_MICRO_PER_KIB = 1
"""µ per KiB of checkpoint encoding stored (rounded up per checkpoint)."""
LOG_MICRO_PER_KIB = 10
"""µ per KiB of agent log output written to the node log (rounded up per tick)."""


WATCHDOG_FUEL_PER_S = 1_000_000_000
"""A tick the watchdog stops pays at least this much fuel per second it ran (about what a
tight loop burns per CPU second here). Wasmtime does not report the fuel a guest burned since
its last call out before an epoch interruption, so the measured figure alone would make a
timed-out tick nearly free."""


class BadBudget(InvalidInput):
    """A budget that is negative, not a finite number, or larger than a checkpoint can hold."""


@dataclass(frozen=True)
class Charge:
    """What one tick cost and what is left."""

    fuel_used: int
    cost: int
    budget_after: int


def units_to_micro(units: float) -> int:
    """Convert a CLI budget in units (e.g. ``1.5``) to micro-units, rounding."""
    if not isinstance(units, int | float) or isinstance(units, bool) or not math.isfinite(units):
        raise BadBudget("the budget must be a finite number of units")
    if units < 0:
        raise BadBudget("the budget must not be negative")
    micro = round(units * MICRO_PER_UNIT)
    if micro > MAX_BUDGET:
        raise BadBudget(f"the budget must be at most {format_micro(MAX_BUDGET)} units")
    return micro


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


def storage_cost(stored_bytes: int) -> int:
    """µ for storing ``stored_bytes`` of checkpoint encoding (``ceil`` per KiB)."""
    return -(-max(0, stored_bytes) // KIB) * STORAGE_MICRO_PER_KIB


def log_cost(logged_bytes: int) -> int:
    """µ for ``logged_bytes`` of agent log output written (``ceil`` per KiB)."""
    return -(-max(0, logged_bytes) // KIB) * LOG_MICRO_PER_KIB


def charge_micro(budget: int, cost: int) -> Charge:
    """Charge a cost already in µ (storage, logs); clamped so the budget stays ≥ 0."""
    paid = min(budget, max(0, cost))
    return Charge(fuel_used=0, cost=paid, budget_after=budget - paid)


def failed_tick_fuel(fuel_used: int, elapsed_s: float, *, timed_out: bool, allowance: int) -> int:
    """The fuel a failed tick pays for: what it burned; for a watchdog stop, at least its wall
    time priced at :data:`WATCHDOG_FUEL_PER_S`, never more than the fuel it was given."""
    burned = max(0, fuel_used)
    if timed_out and math.isfinite(elapsed_s):
        burned = max(burned, math.ceil(max(0.0, elapsed_s) * WATCHDOG_FUEL_PER_S))
    return min(burned, max(0, allowance))
