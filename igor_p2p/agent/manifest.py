"""The capability manifest: what an agent may call, how much memory it may use, where it may go.

Field names follow Go Igor's JSON sidecar (``<agent>.manifest.json``). An absent or empty
manifest is ``{}``: no capabilities. The manifest is canonicalised (sorted keys, compact JSON,
no duplicate keys) and hashed; the hash is bound into every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from igor_p2p.errors import InvalidInput

MAX_MANIFEST_BYTES = 64 * 1024
MAX_MEMORY_CEILING_BYTES = 64 * 1024 * 1024
MAX_CAPABILITY_NAME_LEN = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

#: Capabilities Igor-P2P offers (each maps to hostcalls in module ``igor``).
KNOWN_CAPABILITIES: frozenset[str] = frozenset(
    {"clock", "rand", "log", "budget", "lifecycle", "migrate", "wallet", "pricing", "http", "x402"}
)


class ManifestError(InvalidInput):
    """The manifest bytes are not a valid capability manifest."""


@dataclass(frozen=True)
class CapabilityGrant:
    """One declared capability: ``{"version": int >= 1, "options": {...}}``."""

    name: str
    version: int
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ResourceLimits:
    """``resource_limits``; only ``max_memory_bytes`` is enforced (it lowers the memory cap)."""

    max_memory_bytes: int | None = None
    max_cpu_millis: int | None = None
    max_storage_bytes: int | None = None


MAX_REPLAY_ON_ARRIVAL = 64
"""The most ticks a manifest may ask a target to replay (the wire's ``MAX_REPLAY_TICKS``)."""


@dataclass(frozen=True)
class MigrationPolicy:
    """``migration_policy``; ``max_price_per_second`` is in Go's µ¢ per second (compare it
    with ``node_price``); it is parsed, not enforced."""

    enabled: bool = True
    max_price_per_second: int | None = None
    preferred_regions: tuple[str, ...] = ()
    replay_on_arrival: int = 0
    """Igor-P2P: ask every target to re-execute this agent's last N ticks before it takes
    the agent (0..:data:`MAX_REPLAY_ON_ARRIVAL`; docs/effects.md#replay-on-arrival)."""


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest plus its canonical bytes and their sha256."""

    capabilities: Mapping[str, CapabilityGrant]
    resource_limits: ResourceLimits
    migration_policy: MigrationPolicy
    canonical_bytes: bytes
    hash: bytes

    def declares(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()


def _reject_constant(name: str) -> Any:
    raise ManifestError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _as_int(value: Any, where: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """A JSON integer literal, as Go's ``encoding/json`` reads it into an int field: floats
    (even ``1.0`` or ``1e2``), strings and booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where} must be an integer")
    if value < minimum:
        raise ManifestError(f"{where} must be >= {minimum}")
    if value > maximum:
        raise ManifestError(f"{where} is too large")
    return value


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Go's field lookup: the last key equal to ``name`` ignoring ASCII case, else ``None``
    (a JSON ``null`` is the same as an absent key)."""
    found = None
    for key, value in obj.items():
        if key == name or key.lower() == name:
            found = value
    return found


def _optional_int(
    section: Mapping[str, Any], key: str, where: str, minimum: int = 0, maximum: int = INT64_MAX
) -> int | None:
    value = _field(section, key)
    return None if value is None else _as_int(value, f"{where}.{key}", minimum, maximum)


def _section(root: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = _field(root, key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"{key} must be an object")
    return value


def _parse_capabilities(raw: Mapping[str, Any]) -> dict[str, CapabilityGrant]:
    grants: dict[str, CapabilityGrant] = {}
    for name, spec in raw.items():
        if not name or len(name) > MAX_CAPABILITY_NAME_LEN:
            raise ManifestError("capability names must be 1..64 characters")
        if spec is None:
            spec = {}  # Go: a null entry is the zero config, whose version 0 is refused below
        if not isinstance(spec, dict):
            raise ManifestError(f"capabilities.{name} must be an object")
        version = _field(spec, "version")
        if version is None:
            raise ManifestError(f"capabilities.{name}: version must be >= 1, got 0")
        version = _as_int(version, f"capabilities.{name}.version", minimum=1)
        options = _field(spec, "options")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ManifestError(f"capabilities.{name}.options must be an object")
        grants[name] = CapabilityGrant(name, version, MappingProxyType(dict(options)))
    return grants


def _parse_limits(raw: Mapping[str, Any]) -> ResourceLimits:
    where = "resource_limits"
    limits = ResourceLimits(
        max_memory_bytes=_optional_int(raw, "max_memory_bytes", where, maximum=UINT64_MAX),
        max_cpu_millis=_optional_int(raw, "max_cpu_millis", where, maximum=UINT64_MAX),
        max_storage_bytes=_optional_int(raw, "max_storage_bytes", where, maximum=UINT64_MAX),
    )
    if limits.max_memory_bytes is not None and limits.max_memory_bytes > MAX_MEMORY_CEILING_BYTES:
        raise ManifestError("resource_limits.max_memory_bytes is over the 64 MiB ceiling")
    return limits


def _parse_migration(raw: Mapping[str, Any] | None) -> MigrationPolicy:
    if raw is None:
        return MigrationPolicy()  # Go: no section (or null) = migration allowed
    enabled = _field(raw, "enabled")
    if enabled is None:
        enabled = False  # Go: a present section without "enabled" disables migration
    if not isinstance(enabled, bool):
        raise ManifestError("migration_policy.enabled must be a boolean")
    regions = _field(raw, "preferred_regions") or []
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise ManifestError("migration_policy.preferred_regions must be a list of strings")
    return MigrationPolicy(
        enabled=enabled,
        max_price_per_second=_optional_int(
            raw, "max_price_per_second", "migration_policy", minimum=INT64_MIN
        ),
        preferred_regions=tuple(regions),
        replay_on_arrival=_optional_int(
            raw, "replay_on_arrival", "migration_policy", maximum=MAX_REPLAY_ON_ARRIVAL
        )
        or 0,
    )


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_manifest(data: bytes | None) -> Manifest:
    """Parse manifest bytes as Go Igor's ``ParseManifest`` does; ``None``, empty bytes and the
    JSON ``null`` give the empty manifest ``{}``.

    Raises :class:`ManifestError` for anything malformed (docs/agent-abi.md lists where this is
    stricter than Go).
    """
    root: dict[str, Any]
    if data is None or not data:
        root = {}
    else:
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is over {MAX_MANIFEST_BYTES} bytes")
        try:
            text = bytes(data).decode("utf-8")
            root = json.loads(
                text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
            )
        except ManifestError:
            raise
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        if root is None:
            root = {}  # Go: unmarshalling null into the manifest struct leaves it empty
        if not isinstance(root, dict):
            raise ManifestError("manifest must be a JSON object")
    capabilities = _parse_capabilities(_section(root, "capabilities") or {})
    limits = _parse_limits(_section(root, "resource_limits") or {})
    migration = _parse_migration(_section(root, "migration_policy"))
    try:
        canonical = canonical_json(root)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"manifest cannot be canonicalised: {exc}") from exc
    return Manifest(
        capabilities=MappingProxyType(capabilities),
        resource_limits=limits,
        migration_policy=migration,
        canonical_bytes=canonical,
        hash=hashlib.sha256(canonical).digest(),
    )


EMPTY_MANIFEST: Manifest = parse_manifest(b"")
