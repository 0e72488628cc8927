"""Node configuration: a TOML file, then ``IGOR_*`` environment variables, then flags.

Later sources override earlier ones. Every field has a default, so ``igor node run`` with no
configuration at all starts a node on ``/ip4/127.0.0.1/tcp/4747`` (:data:`DEFAULT_PORT`; not
IPFS's 4001) with data in ``./igor-data``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from igor_p2p.errors import IgorError
from igor_p2p.runtime.metering import DEFAULT_PRICE
from igor_p2p.runtime.scheduler import SchedulerConfig


class ConfigError(IgorError):
    """A configuration file, variable or flag has a value the node cannot use."""


WANDER_POLICIES = ("random", "cheapest", "least-loaded")
DEFAULT_PORT = 4747
"""The default TCP listen port (IPFS uses 4001)."""


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path = Path("igor-data")
    name: str = ""
    """Short name for logs and histories (e.g. ``n1``); the peer ID when empty."""
    listen: tuple[str, ...] = (f"/ip4/127.0.0.1/tcp/{DEFAULT_PORT}",)
    announce: tuple[str, ...] = ()
    """Addresses to advertise instead of the listen addresses (public IPs, NAT)."""
    bootstrap: tuple[str, ...] = ()
    price: int = DEFAULT_PRICE
    capacity: int = 1000
    """Most agents this node will host."""
    log_format: str = "console"
    log_level: str = "INFO"
    metrics: str | None = None
    """``HOST:PORT`` for a Prometheus endpoint; off when None."""
    wander: str | None = None
    """Placement policy for agents that ask to migrate (random, cheapest, least-loaded)."""
    announce_interval_s: float = 1.0
    peer_down_after_s: float = 4.0
    location_refresh_s: float = 10.0
    idle_interval_s: float = 1.0
    busy_interval_s: float = 0.01
    checkpoint_every: int = 1
    handoff_timeout_s: float = 5.0
    """Before the decision, a handoff step that takes longer aborts (FS-1)."""
    recover_interval_s: float = 1.0
    """How often unresolved handoffs retry the recover exchange."""
    test_disable_fencing: bool = False
    """TEST ONLY: ignore fencing so the testnet checker can be shown to catch a violation."""
    connections_low: int = 8
    """The connection manager dials peers while it holds fewer connections than this."""
    connections_high: int = 24
    """Above this many connections, it closes idle ones (never gossip-mesh peers) down to low."""

    def __post_init__(self) -> None:
        if self.wander is not None and self.wander not in WANDER_POLICIES:
            raise ConfigError(f"wander policy must be one of {', '.join(WANDER_POLICIES)}")
        if self.log_format not in ("console", "json"):
            raise ConfigError("log format must be json or console")
        if self.price < 0 or self.capacity < 0:
            raise ConfigError("price and capacity must not be negative")
        if self.checkpoint_every < 1:
            raise ConfigError("checkpoint_every must be at least 1")
        if not 0 < self.connections_low <= self.connections_high:
            raise ConfigError("need 0 < connections_low <= connections_high")

    @property
    def scheduler(self) -> SchedulerConfig:
        return SchedulerConfig(
            idle_interval_s=self.idle_interval_s,
            busy_interval_s=self.busy_interval_s,
            checkpoint_every=self.checkpoint_every,
        )


_TUPLES = {"listen", "announce", "bootstrap"}


def _coerce(name: str, value: Any) -> Any:
    types = {f.name: f.type for f in fields(NodeConfig)}
    kind = str(types[name])
    try:
        if name in _TUPLES:
            if isinstance(value, str):
                return tuple(v for v in (p.strip() for p in value.split(",")) if v)
            return tuple(str(v) for v in value)
        if name == "data_dir":
            return Path(value)
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if value is None or kind.startswith("str"):
            return None if value in (None, "") and "None" in kind else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {value!r} is not a valid value") from exc
    return value


def _known(name: str, source: str) -> str:
    valid = {f.name for f in fields(NodeConfig)}
    key = name.replace("-", "_")
    if key not in valid:
        raise ConfigError(f"unknown setting {name!r} in {source}")
    return key


def load_node_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Merge file < environment < flags (``None`` flag values mean "not given")."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
        section = raw.get("node", raw)
        if not isinstance(section, dict):
            raise ConfigError(f"{config_file}: [node] must be a table")
        for key, value in section.items():
            name = _known(key, str(config_file))
            values[name] = _coerce(name, value)
    environ = os.environ if env is None else env
    for key, value in environ.items():
        if key.startswith("IGOR_") and key not in ("IGOR_DATA_DIR_LOCK",):
            name = key[len("IGOR_") :].lower()
            if name in {f.name for f in fields(NodeConfig)}:
                values[name] = _coerce(name, value)
    for key, value in (flags or {}).items():
        if value is None or value == ():
            continue
        name = _known(key, "flags")
        values[name] = _coerce(name, value)
    return replace(NodeConfig(), **values)


@dataclass(frozen=True)
class NodeIdentity:
    """What a node tells the world about itself."""

    peer_id: str
    name: str
    addrs: tuple[str, ...] = field(default_factory=tuple)
