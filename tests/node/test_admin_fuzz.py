"""Hostile bytes thrown at the admin socket never crash it: ``ping`` still answers afterwards."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, given, settings

from igor_p2p.node.admin import MalformedRequest, parse_request
from igor_p2p.node.admin_client import AdminClient

from .admin_helpers import RawConnection, T, short_socket_dir, start_server

MAX_LINE = 4096
KNOWN_ERROR_TYPES = {"MalformedRequest", "UnknownMethod", "FrameTooLarge", "InternalError"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
wrong_shapes = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "method": st.sampled_from(["ping", "methods", "echo", "nope", ""]) | json_values,
            "params": json_values,
        },
    ),
).map(lambda value: json.dumps(value).encode() + b"\n")
valid_line = b'{"id": 1, "method": "echo", "params": {"a": [1, 2, {"b": null}]}}\n'
truncated_valid = st.integers(1, len(valid_line) - 1).map(lambda n: valid_line[:n])
huge_lines = st.integers(MAX_LINE - 2, 3 * MAX_LINE).map(lambda n: b'{"id":1,"x":"' + b"a" * n)
payloads = st.one_of(
    st.binary(max_size=300),
    wrong_shapes,
    truncated_valid,
    huge_lines,
    st.lists(wrong_shapes | st.binary(max_size=40), max_size=5).map(b"".join),
)


async def echo(params: dict[str, Any]) -> Any:
    return params


def _check_responses(data: bytes) -> None:
    for line in data.split(b"\n"):
        if not line:
            continue
        response = json.loads(line)
        assert isinstance(response, dict)
        if not response["ok"]:
            assert response["error"]["type"] in KNOWN_ERROR_TYPES, response


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(payloads, min_size=1, max_size=4))
def test_garbage_on_the_socket_never_stops_the_server(batch: list[bytes]) -> None:
    async def scenario() -> None:
        with short_socket_dir() as directory:
            path = directory / "admin.sock"
            async with trio.open_nursery() as nursery:
                await start_server(
                    nursery, path, {"echo": echo}, max_line=MAX_LINE, idle_timeout_s=T
                )
                for payload in batch:
                    conn = await RawConnection.open(path)
                    try:
                        await conn.send(payload)
                        await conn.stream.send_eof()
                    except trio.BrokenResourceError:
                        pass  # the server closed first (over-long line): also fine
                    _check_responses(await conn.receive_until_closed())
                    await conn.aclose()
                async with AdminClient.connect(path, timeout_s=T) as client:
                    assert await client.call("ping") == "pong"
                nursery.cancel_scope.cancel()

    trio.run(scenario)


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.binary(max_size=200), wrong_shapes.map(lambda b: b[:-1])))
def test_parse_request_accepts_only_well_formed_requests(line: bytes) -> None:
    try:
        request = parse_request(line)
    except MalformedRequest:
        return
    decoded = json.loads(line)
    assert type(decoded["id"]) is int
    assert request.id == decoded["id"]
    assert isinstance(request.method, str) and request.method
    assert isinstance(request.params, dict)
