"""Scenarios: a TOML file per test run (nodes, agents, timing, nemesis steps or a random mix,
and what the run must show). See docs/testnet.md for the format."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from igor_p2p.errors import InvalidInput
from testnet.checker import CheckConfig, CheckResult
from testnet.history import Histories
from testnet.nemesis import (
    NemesisError,
    NemesisStep,
    RandomMix,
    generate_schedule,
    validate_step,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(InvalidInput):
    """A scenario file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Expect:
    """What a run of the scenario must show besides the checker's verdict."""

    verdict: str = "PASS"
    """The checker's verdict the run must reach (``PASS`` or ``FAIL``)."""
    sometimes: tuple[str, ...] = ()
    """Handoff steps or authority states that must appear at least once (proof that the
    faults actually hit what the scenario targets), e.g. ``"aborted"``, ``"RECOVERY_REQUIRED"``."""
    min_handoffs: int = 0
    """Completed handoffs (``committed`` handoff steps) the run must contain."""


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    """The fault phase: steps run in ``[0, duration_s]``; the final heal is at its end."""
    seed: int = 0
    nodes: int = 5
    agents: int = 3
    heal_wait_s: float = 5.0
    """How long the run continues after ``duration_s`` before the checker runs."""
    liveness_bound_s: float = 3.0
    """B of check (f); must not exceed ``heal_wait_s``."""
    steps: list[NemesisStep] | None = None
    random: RandomMix | None = None
    expect: Expect = field(default_factory=Expect)
    description: str = ""
    start_nodes: tuple[str, ...] | None = None
    """Node each agent is launched on (``a1`` on the first, …); default round-robin."""
    wander_interval_s: float | None = None
    """Agents hop to a random node this often; ``None``: they move only on ``migrate`` steps."""

    @property
    def node_names(self) -> list[str]:
        return [f"n{i + 1}" for i in range(self.nodes)]

    @property
    def agent_labels(self) -> list[str]:
        return [f"a{i + 1}" for i in range(self.agents)]

    def agent_start_nodes(self) -> dict[str, str]:
        names = self.node_names
        starts = self.start_nodes or tuple(names[i % len(names)] for i in range(self.agents))
        return dict(zip(self.agent_labels, starts, strict=True))

    def schedule(self) -> list[NemesisStep]:
        """The explicit steps merged with the random mix's schedule, ordered by ``at_s``."""
        out = list(self.steps or [])
        if self.random is not None:
            out += generate_schedule(self.seed, self.node_names, self.duration_s, self.random)
        return sorted(out, key=lambda s: s.at_s)

    def check_config(self, *, heal_ns: int | None = None) -> CheckConfig:
        return CheckConfig(liveness_bound_s=self.liveness_bound_s, heal_ns=heal_ns)


def _kw(table: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    if unknown := set(table) - known:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return dict(table)


def _number(v: Any, key: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kinds) or v < minimum:
        kind = "an integer" if integer else "a number"
        raise ScenarioError(f"{key} must be {kind} ≥ {minimum:g}, got {v!r}")
    return v


def parse_scenario(data: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Build and validate a :class:`Scenario` from a decoded TOML document."""
    kw = _kw(data, Scenario, source)
    if not isinstance(kw.get("name"), str) or not kw["name"]:
        raise ScenarioError(f"{source}: name must be a non-empty string")
    if "duration_s" not in kw:
        raise ScenarioError(f"{source}: duration_s is required")
    kw["duration_s"] = _number(kw["duration_s"], "duration_s", minimum=0.001)
    for key in ("heal_wait_s", "liveness_bound_s"):
        if key in kw:
            kw[key] = _number(kw[key], key)
    for key, minimum in (("nodes", 1), ("agents", 0), ("seed", 0)):
        if key in kw:
            kw[key] = _number(kw[key], key, minimum=minimum, integer=True)
    if kw.get("wander_interval_s") is not None:
        kw["wander_interval_s"] = _number(
            kw["wander_interval_s"], "wander_interval_s", minimum=0.01
        )
    if not isinstance(kw.get("description", ""), str):
        raise ScenarioError(f"{source}: description must be a string")
    try:
        if "steps" in kw:
            raw = kw["steps"]
            if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
                raise ScenarioError(f"{source}: steps must be an array of tables")
            steps = []
            for i, s in enumerate(raw):
                s = dict(s)
                if "at_s" not in s or "action" not in s:
                    raise ScenarioError(f"{source}: step {i + 1} needs at_s and action")
                steps.append(NemesisStep(s.pop("at_s"), s.pop("action"), s))
            kw["steps"] = steps
        if "random" in kw:
            r = _kw(kw["random"], RandomMix, f"{source} [random]")
            for key in ("kinds", "agents"):
                if key in r:
                    r[key] = tuple(r[key])
            kw["random"] = RandomMix(**r)
    except (NemesisError, TypeError) as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    if "expect" in kw:
        e = _kw(kw["expect"], Expect, f"{source} [expect]")
        if "sometimes" in e:
            e["sometimes"] = tuple(e["sometimes"])
        if e.get("verdict", "PASS") not in ("PASS", "FAIL"):
            raise ScenarioError(f"{source}: expect.verdict must be PASS or FAIL")
        kw["expect"] = Expect(**e)
    if "start_nodes" in kw:
        kw["start_nodes"] = tuple(kw["start_nodes"])
    scenario = Scenario(**kw)
    _validate(scenario, source)
    return scenario


def _validate(s: Scenario, source: str) -> None:
    names = s.node_names
    if s.liveness_bound_s > s.heal_wait_s:
        raise ScenarioError(f"{source}: liveness_bound_s exceeds heal_wait_s")
    if s.start_nodes is not None:
        if len(s.start_nodes) != s.agents:
            raise ScenarioError(f"{source}: start_nodes needs one node per agent")
        if bad := [n for n in s.start_nodes if n not in names]:
            raise ScenarioError(f"{source}: start_nodes names unknown node(s) {bad}")
    if s.random is not None and (bad := set(s.random.agents) - set(s.agent_labels)):
        raise ScenarioError(f"{source}: random.agents names unknown agent(s) {sorted(bad)}")
    if s.steps is None and s.random is None:
        raise ScenarioError(f"{source}: give steps, a [random] table, or both")
    for step in s.steps or []:
        try:
            validate_step(step, names)
        except NemesisError as exc:
            raise ScenarioError(f"{source}: step at {step.at_s} s: {exc}") from None
        if step.at_s > s.duration_s:
            raise ScenarioError(f"{source}: step at {step.at_s} s is after duration_s")
        if step.action == "migrate" and step.args["agent"] not in s.agent_labels:
            raise ScenarioError(f"{source}: migrate names unknown agent {step.args['agent']!r}")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load ``testnet/scenarios/<name>.toml`` for a bare name, else the given path."""
    text = str(name_or_path)
    bare = isinstance(name_or_path, str) and "/" not in text and not text.endswith(".toml")
    path = SCENARIO_DIR / f"{text}.toml" if bare else Path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"no scenario {text!r} (looked at {path})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: bad TOML: {exc}") from None
    return parse_scenario(data, source=str(path))


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def unmet_expectations(scenario: Scenario, history: Histories, result: CheckResult) -> list[str]:
    """What the run failed to show of ``scenario.expect`` (empty: everything was met)."""
    e = scenario.expect
    problems = []
    if result.verdict != e.verdict:
        problems.append(f"verdict {result.verdict}, expected {e.verdict}")
    seen = {h.step for h in history.handoffs} | {a.to_state for a in history.authority}
    problems += [f"never saw {s!r}" for s in e.sometimes if s not in seen]
    done = sum(1 for h in history.handoffs if h.step == "transferred")
    if done < e.min_handoffs:
        problems.append(f"{done} completed handoffs, expected ≥ {e.min_handoffs}")
    return problems


__all__ = [
    "SCENARIO_DIR",
    "Expect",
    "Scenario",
    "ScenarioError",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "unmet_expectations",
]
