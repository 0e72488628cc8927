from hypothesis import given
from hypothesis import strategies as st

from igor_p2p.runtime.metering import charge, cost_of, fuel_allowance, units_to_micro


@given(
    budget=st.integers(0, 10**15),
    price=st.integers(0, 10**9),
    fuel=st.integers(0, 10**12),
)
def test_budget_never_goes_negative_and_never_grows(budget: int, price: int, fuel: int) -> None:
    c = charge(budget, price, fuel)
    assert 0 <= c.budget_after <= budget
    assert c.cost == budget - c.budget_after


@given(budget=st.integers(1, 10**15), price=st.integers(1, 10**9))
def test_fuel_allowance_never_costs_more_than_the_budget(budget: int, price: int) -> None:
    fuel = fuel_allowance(budget, price)
    assert cost_of(fuel, price) <= budget


def test_cost_rounds_up_so_work_is_never_free() -> None:
    assert cost_of(1, 1) == 1
    assert cost_of(1000, 1000) == 1000
    assert cost_of(0, 1000) == 0


def test_units_convert_to_micro_units() -> None:
    assert units_to_micro(1.5) == 1_500_000
