"""Node configuration: a TOML file, then ``IGOR_*`` environment variables, then flags.

Later sources override earlier ones. Every field has a default, so ``igor node run`` with no
configuration at all starts a node on ``/ip4/127.0.0.1/tcp/4747``
(:data:`DEFAULT_PORT`; not IPFS's 4001) with data in ``./igor-data``.

Every value is checked when the config is built, whatever its source: exact types (a TOML
``true`` is not a number, a string is not a list), finite numbers inside the ranges of
:data:`RANGES`, known log levels and formats. A bad value is a :class:`ConfigError` naming the
setting; an unknown setting names the closest known one ("did you mean"). Test-only switches
(``test_*``) are refused unless the process runs under the test harness, which says so by
setting ``IGOR_ALLOW_TEST_SWITCHES=1`` in the environment (see :func:`test_switches_allowed`).
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from igor_p2p.errors import InvalidInput
from igor_p2p.files import BadInputFile, read_regular_text
from igor_p2p.runtime.metering import DEFAULT_PRICE, MAX_PRICE
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.store.retention import (
    DEFAULT_KEEP_LAST,
    InvalidRetention,
    Retention,
    parse_retention,
)
from igor_p2p.wire.messages import MAX_REPLAY_TICKS


class ConfigError(InvalidInput):
    """A configuration file, variable or flag has a value the node cannot use."""


WANDER_POLICIES = ("random", "cheapest", "least-loaded")
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEST_SWITCHES_ENV = "IGOR_ALLOW_TEST_SWITCHES"
"""Set to ``1`` by the test harness (``tests/conftest.py``) and nowhere else."""
MAX_CONFIG_FILE_BYTES = 1 << 20
MAX_ADDRESSES = 64
MAX_ADDRESS_CHARS = 512
MAX_NAME_CHARS = 64
MIB = 1024 * 1024


def test_switches_allowed() -> bool:
    """Whether test-only switches may be turned on in this process."""
    return os.environ.get(TEST_SWITCHES_ENV) == "1"


RANGES: dict[str, tuple[float, float]] = {
    "price": (0, MAX_PRICE),
    "capacity": (0, 100_000),
    "announce_interval_s": (0.05, 3600.0),
    "peer_down_after_s": (0.1, 86_400.0),
    "location_refresh_s": (0.1, 86_400.0),
    "idle_interval_s": (0.001, 3600.0),
    "busy_interval_s": (0.001, 3600.0),
    "checkpoint_every": (1, 1_000_000),
    "handoff_timeout_s": (0.1, 3600.0),
    "recover_interval_s": (0.05, 3600.0),
    "memory_budget_mb": (0, 1 << 30),
    "disk_budget_mb": (0, 1 << 30),
    "connections_low": (1, 10_000),
    "offers_per_s": (0.1, 10_000.0),
    "arrivals_per_min": (1, 1_000_000),
    "connections_high": (1, 10_000),
    "replay_on_arrival": (0, MAX_REPLAY_TICKS),
    "witness_capacity": (0, 10_000_000),
    "witness_budget_mb": (0, 1 << 30),
}
"""Inclusive ranges of the numeric settings. Intervals have a floor so that no setting can
make a loop spin (an interval of 0 busy-loops)."""


def _default_memory_budget_mb() -> int:
    """Three quarters of the machine's memory."""
    try:
        import psutil

        return max(64, int(psutil.virtual_memory().total * 3 // 4 // MIB))
    except Exception:  # no psutil figure: a modest default
        return 4096


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
    memory_budget_mb: int = field(default_factory=_default_memory_budget_mb)
    """Node-wide memory budget: the memory caps of all hosted agents must fit in it (MiB)."""
    disk_budget_mb: int = 16 * 1024
    """Node-wide disk budget for the store and history (MiB); full = no launches, no arrivals,
    no more checkpoints."""
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
    retain: str = str(DEFAULT_KEEP_LAST)
    """Checkpoints kept per agent: the last N (plus every custody record, each epoch's last
    checkpoint and every effect record), or ``all`` for the full archive."""
    handoff_timeout_s: float = 5.0
    """*h*, the base of the authority timeouts: one peer request and one witness ballot take
    at most *h*, an OFFER 4*h*; a handoff not decided after 6*h* aborts (before any ACCEPT
    left) or goes on in the background; a pending target asks the witnesses after 3*h*."""
    recover_interval_s: float = 1.0
    """Claims that got no quorum retry after a jittered backoff starting at a fifth of this
    (at least 0.05 s) and doubling up to 30 s."""
    test_disable_fencing: bool = False
    """TEST ONLY: ignore fencing so the testnet checker can be shown to catch a violation.
    Refused unless ``IGOR_ALLOW_TEST_SWITCHES=1`` (set by the test harness only)."""
    offers_per_s: float = 10.0
    """OFFERs one peer may send per second (burst 5×); more are refused RATE_LIMITED."""
    arrivals_per_min: int = 120
    """Times one agent may arrive here per minute; more OFFERs of it are REJECTed
    POLICY_DENIED (no peer can bounce an agent between nodes without end)."""
    connections_low: int = 8
    """The connection manager dials peers while it holds fewer connections than this."""
    connections_high: int = 24
    """Above this many connections, it closes idle ones (never gossip-mesh peers) down to low."""
    replay_on_arrival: int = 0
    """Re-execute the last K ticks of every incoming agent (from the tick inputs its lineage
    recorded) before taking it, and refuse it when a state comes out different; 0: off. At
    most 64."""
    witness_capacity: int = 10_000
    """Most agents this node witnesses (keeps custody for and votes on); requests about one
    more are refused BUSY, so no peer can fill its disk with made-up agents."""
    witness_budget_mb: int = 1024
    """Most custody this node keeps as a witness (MiB, geneses included); a new agent that
    would not fit is refused BUSY."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_field(f.name, str(f.type), getattr(self, f.name))
        if self.wander is not None and self.wander not in WANDER_POLICIES:
            raise ConfigError(f"wander policy must be one of {', '.join(WANDER_POLICIES)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("log format must be json or console")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        if self.metrics is not None:
            _check_endpoint(self.metrics)
        if self.test_disable_fencing and not test_switches_allowed():
            raise ConfigError(
                "test_disable_fencing is a test-only switch; it is refused outside the test "
                f"harness ({TEST_SWITCHES_ENV}=1)"
            )
        if not 0 < self.connections_low <= self.connections_high:
            raise ConfigError("need 0 < connections_low <= connections_high")
        try:
            parse_retention(self.retain)
        except InvalidRetention as exc:
            raise ConfigError(str(exc)) from None

    @property
    def retention(self) -> Retention:
        return parse_retention(self.retain)

    @property
    def scheduler(self) -> SchedulerConfig:
        return SchedulerConfig(
            idle_interval_s=self.idle_interval_s,
            busy_interval_s=self.busy_interval_s,
            checkpoint_every=self.checkpoint_every,
        )


def _check_field(name: str, kind: str, value: Any) -> None:
    """Exact type and range of one field (whatever built the config)."""
    if kind == "bool":
        ok = type(value) is bool
    elif kind == "int":
        ok = type(value) is int
    elif kind == "float":
        ok = type(value) in (int, float) and math.isfinite(value)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "str | None":
        ok = value is None or isinstance(value, str)
    elif kind == "tuple[str, ...]":
        ok = (
            isinstance(value, tuple)
            and len(value) <= MAX_ADDRESSES
            and all(isinstance(v, str) and 0 < len(v) <= MAX_ADDRESS_CHARS for v in value)
        )
        if not ok:
            raise ConfigError(
                f"{name}: want at most {MAX_ADDRESSES} addresses of 1..{MAX_ADDRESS_CHARS} "
                "characters"
            )
    else:  # Path
        ok = isinstance(value, Path)
    if not ok:
        raise ConfigError(f"{name}: {_show(value)} is not a valid {_kind_words(kind)}")
    if name in RANGES:
        lo, hi = RANGES[name]
        if not lo <= value <= hi:
            raise ConfigError(f"{name}: {_show(value)} is outside [{_num(lo)}, {_num(hi)}]")
    if name == "name" and (len(value) > MAX_NAME_CHARS or not value.isprintable()):
        raise ConfigError(f"name: want at most {MAX_NAME_CHARS} printable characters")
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"{name}: contains a NUL character")


def _check_endpoint(text: str) -> None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or len(text) > 256:
        raise ConfigError(f"metrics: want HOST:PORT with a port in 1..65535, got {_show(text)}")
    del host


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _kind_words(kind: str) -> str:
    return {
        "bool": "true/false value",
        "int": "whole number",
        "float": "finite number",
        "str": "string",
        "str | None": "string",
        "tuple[str, ...]": "list of strings",
    }.get(kind, "path")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _coerce(name: str, value: Any, *, from_text: bool) -> Any:
    """Turn a source value into the field's type. Text (environment variables) is parsed;
    structured values (TOML, flags) must already have the right type."""
    kind = str({f.name: f.type for f in fields(NodeConfig)}[name])
    if kind == "tuple[str, ...]":
        if isinstance(value, str):
            return tuple(v for v in (p.strip() for p in value.split(",")) if v)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{name}: {_show(value)} is not a list of strings")
    if kind == "Path":
        if isinstance(value, str | os.PathLike):
            return Path(value)
        raise ConfigError(f"{name}: {_show(value)} is not a path")
    if not from_text:
        if kind == "float" and type(value) is int:
            return float(value)
        if name == "retain" and type(value) is int:  # TOML: retain = 64 (or "all")
            return str(value)
        if kind == "str | None" and value == "":
            return None
        return value  # NodeConfig checks the exact type and range
    text = str(value).strip()
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"{name}: {_show(value)} is not a valid {_kind_words(kind)}") from None
    return None if kind == "str | None" and text == "" else text


def _known(name: str, source: str) -> str:
    valid = [f.name for f in fields(NodeConfig)]
    key = name.replace("-", "_") if isinstance(name, str) else ""
    if key not in valid:
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown setting {_show(name)} in {source}{hint}")
    return key


def _read_config_file(config_file: Path) -> dict[str, Any]:
    try:
        text = read_regular_text(config_file, max_bytes=MAX_CONFIG_FILE_BYTES, what="config file")
        raw = tomllib.loads(text)
    except BadInputFile as exc:
        raise ConfigError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None
    section = raw.get("node", raw)
    if not isinstance(section, dict):
        raise ConfigError(f"{config_file}: [node] must be a table")
    return section


def load_node_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Merge file < environment < flags (``None`` flag values mean "not given")."""
    values: dict[str, Any] = {}
    if config_file is not None:
        for key, value in _read_config_file(config_file).items():
            name = _known(key, str(config_file))
            values[name] = _coerce(name, value, from_text=False)
    environ = os.environ if env is None else env
    names = {f.name for f in fields(NodeConfig)}
    for key, value in environ.items():
        if key.startswith("IGOR_") and key not in ("IGOR_DATA_DIR_LOCK",):
            name = key[len("IGOR_") :].lower()
            if name in names:
                values[name] = _coerce(name, value, from_text=True)
    for key, value in (flags or {}).items():
        if value is None or value == ():
            continue
        name = _known(key, "flags")
        values[name] = _coerce(name, value, from_text=False)
    try:
        return replace(NodeConfig(), **values)
    except TypeError as exc:  # a value of a type no field takes
        raise ConfigError(f"invalid configuration: {exc}") from None


@dataclass(frozen=True)
class NodeIdentity:
    """What a node tells the world about itself."""

    peer_id: str
    name: str
    addrs: tuple[str, ...] = field(default_factory=tuple)
