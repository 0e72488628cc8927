"""The capability manifest parser: Go Igor field names, strict types, canonical hash."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.agent.manifest import (
    EMPTY_MANIFEST,
    MAX_MEMORY_CEILING_BYTES,
    ManifestError,
    parse_manifest,
)
from igor_p2p.errors import InvalidInput

FULL = b"""{
  "capabilities": {"clock": {"version": 1}, "log": {"version": 2, "options": {"x": [1, 2]}}},
  "resource_limits": {"max_memory_bytes": 4194304, "max_cpu_millis": 10},
  "migration_policy": {"enabled": false, "max_price_per_second": 250,
                       "preferred_regions": ["eu", "us"]}
}"""


def test_full_manifest_fields_are_parsed() -> None:
    m = parse_manifest(FULL)
    assert set(m.capabilities) == {"clock", "log"}
    assert m.capabilities["log"].version == 2
    assert m.capabilities["log"].options["x"] == [1, 2]
    assert m.resource_limits.max_memory_bytes == 4 << 20
    assert m.resource_limits.max_cpu_millis == 10
    assert m.migration_policy.enabled is False
    assert m.migration_policy.max_price_per_second == 250
    assert m.migration_policy.preferred_regions == ("eu", "us")


@pytest.mark.parametrize("data", [None, b"", b"  \n", b"{}"])
def test_empty_or_absent_manifest_grants_nothing(data: bytes | None) -> None:
    m = parse_manifest(data)
    assert dict(m.capabilities) == {}
    assert m.migration_policy.enabled is True
    assert m.resource_limits.max_memory_bytes is None
    assert m.canonical_bytes == b"{}"
    assert m.hash == EMPTY_MANIFEST.hash


def test_canonical_bytes_and_hash_ignore_key_order_and_whitespace() -> None:
    a = parse_manifest(b'{"capabilities": {"log": {"version": 1}, "clock": {"version": 1}}}')
    b = parse_manifest(b'{"capabilities":{"clock":{"version":1},"log":{"version":1}}}')
    assert a.canonical_bytes == b.canonical_bytes
    assert a.canonical_bytes == b'{"capabilities":{"clock":{"version":1},"log":{"version":1}}}'
    assert a.hash == b.hash and len(a.hash) == 32


def test_hash_changes_when_capabilities_change() -> None:
    a = parse_manifest(b'{"capabilities": {"log": {"version": 1}}}')
    b = parse_manifest(b'{"capabilities": {"log": {"version": 1}, "clock": {"version": 1}}}')
    assert a.hash != b.hash


def test_integral_float_version_is_accepted_like_go() -> None:
    assert (
        parse_manifest(b'{"capabilities": {"log": {"version": 1.0}}}').capabilities["log"].version
        == 1
    )


def test_go_only_and_unknown_capabilities_parse() -> None:
    m = parse_manifest(b'{"capabilities": {"http": {"version": 1}, "future": {"version": 3}}}')
    assert set(m.capabilities) == {"http", "future"}


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"not json",
        b"\xff\xfe",
        b'{"capabilities": []}',
        b'{"capabilities": {"log": {}}}',
        b'{"capabilities": {"log": {"version": 0}}}',
        b'{"capabilities": {"log": {"version": 1.5}}}',
        b'{"capabilities": {"log": {"version": true}}}',
        b'{"capabilities": {"log": {"version": "1"}}}',
        b'{"capabilities": {"log": {"version": 1, "options": 3}}}',
        b'{"capabilities": {"": {"version": 1}}}',
        b'{"resource_limits": {"max_memory_bytes": -1}}',
        b'{"resource_limits": {"max_memory_bytes": 67108865}}',
        b'{"migration_policy": {"enabled": "yes"}}',
        b'{"migration_policy": {"preferred_regions": "eu"}}',
        b'{"migration_policy": {"max_price_per_second": -5}}',
        b'{"capabilities": {"log": {"version": 1}}, "capabilities": {}}',
        b'{"x": NaN}',
        b'{"x": 1e400}',
        b"[" * 100_000,
        b" " * 70_000 + b"{}",
    ],
)
def test_malformed_manifest_raises_manifest_error(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data)


def test_manifest_error_is_invalid_input() -> None:
    assert issubclass(ManifestError, InvalidInput)


def test_memory_ceiling_is_accepted_exactly() -> None:
    m = parse_manifest(
        json.dumps({"resource_limits": {"max_memory_bytes": MAX_MEMORY_CEILING_BYTES}}).encode()
    )
    assert m.resource_limits.max_memory_bytes == MAX_MEMORY_CEILING_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_manifest_or_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_sections = st.fixed_dictionaries(
    {},
    optional={
        "capabilities": st.dictionaries(
            st.sampled_from(["clock", "log", "rand", "http", ""]),
            st.fixed_dictionaries({}, optional={"version": _json, "options": _json}) | _json,
            max_size=3,
        )
        | _json,
        "resource_limits": st.fixed_dictionaries(
            {}, optional={"max_memory_bytes": st.integers(-10, 2**70) | _json}
        ),
        "migration_policy": st.fixed_dictionaries(
            {},
            optional={
                "enabled": _json,
                "max_price_per_second": _json,
                "preferred_regions": _json,
            },
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(_sections)
def test_structured_fuzz_gives_consistent_manifest_or_error(doc: dict) -> None:
    data = json.dumps(doc).encode()
    try:
        m = parse_manifest(data)
    except ManifestError:
        return
    assert parse_manifest(m.canonical_bytes).hash == m.hash
    for grant in m.capabilities.values():
        assert grant.version >= 1
