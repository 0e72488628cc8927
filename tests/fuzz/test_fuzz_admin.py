"""Fuzz: admin request lines and every method's parameters. A request is parsed or refused as
MalformedRequest; parameters are accepted or refused with a typed error (BadParams or another
InvalidInput) — never an InternalError (an untyped exception) from the node."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import trio
from hypothesis import strategies as st

from igor_p2p.errors import IgorError
from igor_p2p.node.admin import MalformedRequest, parse_request
from tests.node.admin_helpers import stub_api_methods

from .fuzzing import fuzz

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([1e300, -1e300, 2**63, 2**64, -(2**63) - 1, 0.5, -0.0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)

request_lines = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={"id": json_values, "method": json_values | st.text(), "params": json_values},
    ).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"id": 1, "method": "x", "params": {"a": NaN}}', b'{"id": Infinity}']),
)


@fuzz(request_lines)
def _lines(line: bytes) -> None:
    """Request lines: an AdminRequest with an int64 id and a short method, or MalformedRequest."""
    try:
        request = parse_request(line)
    except MalformedRequest:
        return
    assert type(request.id) is int and abs(request.id) <= 2**63 - 1
    assert 0 < len(request.method) <= 128 and isinstance(request.params, dict)


test_admin_request_lines_parse_or_fail_typed, test_admin_request_lines_soak = _lines


METHODS_BY_NAME, _FAULTS, _HISTORY = stub_api_methods()
METHODS = ["launch", "halt", "agent_status", "recover", "message_faults", "skew", "migrate"]
PARAM_NAMES = [
    "agent", "to", "wasm", "manifest", "budget", "reason", "force", "confirm", "operator",
    "drop", "duplicate", "delay_ms", "reorder", "peers", "seed", "clear", "seconds",
]  # fmt: skip

calls = st.tuples(
    st.sampled_from(METHODS),
    st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=6), json_values, max_size=5),
)


@fuzz(calls)
def _params(call: tuple[str, dict[str, Any]]) -> None:
    """Any JSON parameters for a method: it runs, or fails with a typed (Igor) error."""
    method, params = call
    if method == "migrate" and isinstance(params.get("to"), str) and params["to"].startswith("/"):
        params["to"] = "x" + params["to"]  # a multiaddr would dial: not this test's business
    handler = METHODS_BY_NAME[method]

    async def run() -> None:
        with contextlib.suppress(IgorError):
            await handler(params)

    trio.run(run)


test_admin_params_run_or_fail_typed, test_admin_params_soak = _params
