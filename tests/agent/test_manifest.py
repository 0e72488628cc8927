"""The capability manifest parser: Go Igor field names, strict types, canonical hash."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

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


@pytest.mark.parametrize("data", [None, b"", b"{}", b"null"])
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


# ---------------------------------------------------------------- Go Igor's ParseManifest
# Go decodes into typed structs with encoding/json: ``version`` is an ``int``, the
# resource limits ``uint64``, ``max_price_per_second`` an ``int64``, ``enabled`` a ``bool``
# with no default, and ``migration_policy`` a pointer that is nil when absent or null.


@pytest.mark.parametrize("literal", [b"1.0", b"1e0", b"2.5", b"true", b'"1"', b"0", b"-1", b"null"])
def test_version_must_be_a_json_integer_of_at_least_1_like_go(literal: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(b'{"capabilities": {"log": {"version": ' + literal + b"}}}")


@pytest.mark.parametrize(
    "data",
    [b'{"capabilities": {"log": {}}}', b'{"capabilities": {"log": null}}'],
)
def test_missing_or_null_version_is_refused_like_go(data: bytes) -> None:
    with pytest.raises(ManifestError, match="version must be >= 1, got 0"):
        parse_manifest(data)


def test_version_above_1_is_kept() -> None:
    assert (
        parse_manifest(b'{"capabilities": {"log": {"version": 7}}}').capabilities["log"].version
        == 7
    )


@pytest.mark.parametrize(
    ("section", "enabled"),
    [
        (b"", True),
        (b', "migration_policy": null', True),
        (b', "migration_policy": {}', False),
        (b', "migration_policy": {"max_price_per_second": 10000}', False),
        (b', "migration_policy": {"enabled": null}', False),
        (b', "migration_policy": {"enabled": true}', True),
        (b', "migration_policy": {"enabled": false}', False),
    ],
)
def test_migration_policy_defaults_follow_go(section: bytes, enabled: bool) -> None:
    m = parse_manifest(b'{"capabilities": {}' + section + b"}")
    assert m.migration_policy.enabled is enabled


def test_max_price_per_second_is_any_int64_like_go() -> None:
    m = parse_manifest(b'{"migration_policy": {"enabled": true, "max_price_per_second": -5}}')
    assert m.migration_policy.max_price_per_second == -5
    with pytest.raises(ManifestError):
        parse_manifest(b'{"migration_policy": {"max_price_per_second": 1.5}}')


def test_field_names_match_ignoring_ascii_case_like_go() -> None:
    m = parse_manifest(
        b'{"Capabilities": {"log": {"Version": 2}}, "MIGRATION_POLICY": {"Enabled": true}}'
    )
    assert m.capabilities["log"].version == 2
    assert m.migration_policy.enabled is True


def test_capability_names_are_map_keys_and_keep_their_case() -> None:
    assert set(parse_manifest(b'{"capabilities": {"Log": {"version": 1}}}').capabilities) == {"Log"}


def test_whitespace_only_manifest_is_refused_like_go() -> None:
    with pytest.raises(ManifestError):
        parse_manifest(b"  \n")


GO_MANIFESTS = (
    Path(__file__).resolve().parents[1] / "lineage" / "fixtures" / "igor-go" / "manifests"
)


@pytest.mark.parametrize(
    ("name", "capabilities", "migration_enabled"),
    [
        ("heartbeat", {"clock", "log"}, True),
        ("liquidation", {"clock", "log"}, True),
        ("sentinel", {"clock", "rand", "log"}, True),
        ("research_reconciliation", {"clock", "rand", "log"}, True),
        ("research_example", {"clock", "rand", "log", "pricing"}, True),
        ("pricewatcher", {"clock", "log", "http"}, True),
        ("x402buyer", {"clock", "rand", "log", "http", "x402"}, True),
        ("deployer", {"clock", "rand", "log", "wallet", "http", "x402"}, True),
    ],
)
def test_go_igor_manifests_parse(
    name: str, capabilities: set[str], migration_enabled: bool
) -> None:
    m = parse_manifest((GO_MANIFESTS / f"{name}.manifest.json").read_bytes())
    assert set(m.capabilities) == capabilities
    assert m.resource_limits.max_memory_bytes == MAX_MEMORY_CEILING_BYTES
    assert m.migration_policy.enabled is migration_enabled


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


@pytest.mark.parametrize(
    "name", ["heartbeat", "liquidation", "sentinel", "research_reconciliation", "research_example"]
)
def test_go_igor_manifests_load_for_a_module(name: str) -> None:
    from igor_p2p.agent import LocalEnvironment, Sandbox

    from .helpers import agent_wat

    manifest = parse_manifest((GO_MANIFESTS / f"{name}.manifest.json").read_bytes())
    with Sandbox() as sandbox:
        instance = sandbox.instantiate(sandbox.compile(agent_wat()), manifest, LocalEnvironment())
        instance.tick(1_000_000)


@pytest.mark.parametrize(
    ("name", "capability"),
    [("pricewatcher", "http"), ("x402buyer", "http"), ("deployer", "http")],
)
def test_go_igor_effect_manifests_load_with_their_options(name: str, capability: str) -> None:
    from igor_p2p.agent import LocalEnvironment, Sandbox
    from igor_p2p.agent.effect_policy import http_policy

    from .helpers import agent_wat

    manifest = parse_manifest((GO_MANIFESTS / f"{name}.manifest.json").read_bytes())
    with Sandbox() as sandbox:
        sandbox.instantiate(sandbox.compile(agent_wat()), manifest, LocalEnvironment()).close()
    policy = http_policy(manifest)
    assert policy is not None and manifest.declares(capability)
    assert policy.names and policy.timeout_ms in (5000, 10000)
