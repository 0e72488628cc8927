"""Admin parameters are typed and range-checked: a bad value is a BadParams answer naming the
parameter, never accepted as something else and never an InternalError."""

from __future__ import annotations

from typing import Any

import pytest

from igor_p2p.node.admin_methods import BadParams

from .admin_helpers import stub_api_methods


@pytest.mark.parametrize(
    ("method", "params", "names"),
    [
        ("skew", {"seconds": True}, "seconds"),
        ("skew", {"seconds": 1e300}, "seconds"),
        ("skew", {"seconds": "5"}, "seconds"),
        ("message_faults", {"delay_ms": 1e300}, "delay_ms"),
        ("message_faults", {"delay_ms": 10**12}, "delay_ms"),
        ("message_faults", {"drop": "abc"}, "drop"),
        ("message_faults", {"drop": 1.5}, "drop"),
        ("message_faults", {"reorder": 1}, "reorder"),
        ("message_faults", {"dorp": 0.5}, "did you mean 'drop'"),
        ("message_faults", {"seed": 2**64}, "seed"),
        ("launch", {"wasm": "00", "budget": 2**63}, "budget"),
        ("launch", {"wasm": "00", "budget": True}, "budget"),
        ("halt", {"agent": "a", "reason": 5}, "reason"),
        ("halt", {"agent": "x" * 1000}, "agent"),
        ("partition", {"peers": "not-a-list"}, "peers"),
        ("recover", {"agent": "a", "force": True, "confirm": True, "operator": 7}, "operator"),
    ],
)
async def test_bad_admin_params_are_refused_by_name(
    method: str, params: dict[str, Any], names: str
) -> None:
    methods, _faults, _history = stub_api_methods()
    with pytest.raises(BadParams, match=names):
        await methods[method](params)


async def test_good_fault_params_are_applied() -> None:
    methods, faults, _history = stub_api_methods()
    result = await methods["message_faults"]({"drop": 0.5, "delay_ms": 10, "seed": 3})
    assert "drop=0.5" in result["faults"]
    assert (await methods["skew"]({"seconds": 2}))["offset_s"] == 2.0
    assert faults.clock_offset_ns == 2_000_000_000
