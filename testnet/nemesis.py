"""Nemesis steps, partition shapes and seeded random fault schedules (pure: no I/O).

A partition is described by *connectivity groups*: two nodes can talk iff some group holds
both. Disjoint groups give clean splits; overlapping groups give bridges and rings.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from igor_p2p.errors import InvalidInput


class NemesisError(InvalidInput):
    """A nemesis step or partition shape is malformed."""


SHAPES = ("halves", "isolate", "bridge", "ring", "majority-ring")

ACTION_ARGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # action: (required args, optional args)
    "partition": (frozenset(), frozenset({"shape", "groups"})),
    "heal": (frozenset(), frozenset()),
    "kill": (frozenset({"node"}), frozenset()),
    "restart": (frozenset({"node"}), frozenset()),
    "pause": (frozenset({"node"}), frozenset()),
    "unpause": (frozenset({"node"}), frozenset()),
    "faults": (frozenset(), frozenset({"drop", "dup", "delay_ms", "reorder", "nodes"})),
    "clear_faults": (frozenset(), frozenset({"nodes"})),
    "skew": (frozenset({"node", "seconds"}), frozenset()),
    "migrate": (frozenset({"agent", "to"}), frozenset()),
}
ACTIONS = tuple(ACTION_ARGS)
FAULT_KINDS = ("partition", "kill", "pause", "faults", "skew", "migrate")
"""Kinds :func:`generate_schedule` can mix (``migrate`` needs agent labels)."""


@dataclass(frozen=True)
class NemesisStep:
    """One action at ``at_s`` seconds after the scenario starts."""

    at_s: float
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_step(self)

    def to_toml_table(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "action": self.action, **self.args}


def _probability(step: NemesisStep, key: str) -> None:
    v = step.args.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise NemesisError(f"{step.action}: {key} must be a probability in [0, 1], got {v!r}")


def validate_step(step: NemesisStep, nodes: Sequence[str] | None = None) -> None:
    """Check the action, its argument names and types; with ``nodes``, also node names."""
    if isinstance(step.at_s, bool) or not isinstance(step.at_s, int | float) or step.at_s < 0:
        raise NemesisError(f"at_s must be a number ≥ 0, got {step.at_s!r}")
    spec = ACTION_ARGS.get(step.action)
    if spec is None:
        raise NemesisError(f"unknown action {step.action!r} (known: {', '.join(ACTIONS)})")
    required, optional = spec
    keys = set(step.args)
    if missing := required - keys:
        raise NemesisError(f"{step.action}: missing {', '.join(sorted(missing))}")
    if extra := keys - required - optional:
        raise NemesisError(f"{step.action}: unknown argument(s) {', '.join(sorted(extra))}")
    a = step.args
    for key in ("node", "agent", "to"):
        if key in a and (not isinstance(a[key], str) or not a[key]):
            raise NemesisError(f"{step.action}: {key} must be a non-empty string")
    if step.action == "partition":
        if ("shape" in a) == ("groups" in a):
            raise NemesisError("partition: give exactly one of shape or groups")
        if nodes is not None:
            partition_groups(a.get("shape") or "", nodes, groups=a.get("groups"))
    elif step.action == "faults":
        for key in ("drop", "dup", "reorder"):
            _probability(step, key)
        d = a.get("delay_ms", 0)
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise NemesisError(f"faults: delay_ms must be an integer ≥ 0, got {d!r}")
    elif step.action == "skew":
        s = a["seconds"]
        if isinstance(s, bool) or not isinstance(s, int | float):
            raise NemesisError(f"skew: seconds must be a number, got {s!r}")
    if "nodes" in a:
        parse_node_list(a["nodes"])
    if nodes is not None:
        named = [a[k] for k in ("node", "to") if k in a]
        named += parse_node_list(a["nodes"]) if "nodes" in a else []
        for n in named:
            if n not in nodes:
                raise NemesisError(f"{step.action}: unknown node {n!r}")


def parse_node_list(value: object) -> list[str]:
    """``"n1,n2"`` or ``["n1", "n2"]`` → ``["n1", "n2"]``."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise NemesisError(f"a node list must be 'n1,n2' or a list of names, got {value!r}")
    if not all(items):
        raise NemesisError(f"empty node name in {value!r}")
    return items


# ---------------------------------------------------------------------------------------------
# partition shapes


def partition_groups(
    shape: str, nodes: Sequence[str], *, groups: str | None = None
) -> list[frozenset[str]]:
    """Connectivity groups for a partition; two nodes can talk iff some group holds both.

    * ``halves``: the first ⌊n/2⌋ nodes | the rest (Jepsen's majority split).
    * ``isolate:NODE``: NODE alone | everyone else.
    * ``bridge``: halves, plus the first node of the second half in both (it alone talks to
      both sides); needs ≥ 3 nodes.
    * ``ring``: nodes in the given order form a ring; each sees only its two neighbours.
    * ``majority-ring``: the ring again, but each node sees every node within distance k,
      k = ⌈(m−1)/2⌉ with m the majority ⌊n/2⌋+1: each sees a majority and no two see the same
      set (for n = 5 this equals ``ring``); needs ≥ 4 nodes.
    * ``groups="n1,n2/n3,n4,n5"``: explicit disjoint groups; unlisted nodes are isolated.
    """
    ns = list(nodes)
    if len(set(ns)) != len(ns) or not ns:
        raise NemesisError("nodes must be distinct and non-empty")
    if groups is not None:
        if not isinstance(groups, str):
            raise NemesisError(f"groups must be a string like 'n1,n2/n3', got {groups!r}")
        parts = [frozenset(parse_node_list(g)) for g in groups.split("/")]
        seen: set[str] = set()
        for p in parts:
            if unknown := p - set(ns):
                raise NemesisError(f"groups: unknown node(s) {', '.join(sorted(unknown))}")
            if p & seen:
                raise NemesisError(f"groups: {', '.join(sorted(p & seen))} in several groups")
            seen |= p
        return parts + [frozenset({n}) for n in ns if n not in seen]
    if not isinstance(shape, str):
        raise NemesisError(f"shape must be a string, got {shape!r}")
    n = len(ns)
    if shape == "halves":
        if n < 2:
            raise NemesisError("halves needs ≥ 2 nodes")
        return [frozenset(ns[: n // 2]), frozenset(ns[n // 2 :])]
    if shape.startswith("isolate:"):
        target = shape.removeprefix("isolate:")
        if target not in ns:
            raise NemesisError(f"isolate: unknown node {target!r}")
        return [frozenset({target}), frozenset(x for x in ns if x != target)]
    if shape == "bridge":
        if n < 3:
            raise NemesisError("bridge needs ≥ 3 nodes")
        left, right = ns[: n // 2], ns[n // 2 :]
        return [frozenset([*left, right[0]]), frozenset(right)]
    if shape == "ring":
        if n < 3:
            raise NemesisError("ring needs ≥ 3 nodes")
        return _ring(ns, 1)
    if shape == "majority-ring":
        if n < 4:
            raise NemesisError("majority-ring needs ≥ 4 nodes")
        majority = n // 2 + 1
        return _ring(ns, -(-(majority - 1) // 2))
    raise NemesisError(f"unknown partition shape {shape!r} (known: {', '.join(SHAPES)})")


def _ring(ns: list[str], k: int) -> list[frozenset[str]]:
    n = len(ns)
    pairs = {frozenset({ns[i], ns[(i + d) % n]}) for i in range(n) for d in range(1, k + 1)}
    return sorted(pairs, key=lambda p: sorted(ns.index(x) for x in p))


def reachable(groups: Sequence[frozenset[str]], nodes: Sequence[str]) -> dict[str, frozenset[str]]:
    """For each node, the nodes it can talk to (itself included)."""
    view: dict[str, set[str]] = {n: {n} for n in nodes}
    for g in groups:
        for x in g:
            view[x] |= g
    return {n: frozenset(v) for n, v in view.items()}


def cut_pairs(groups: Sequence[frozenset[str]], nodes: Sequence[str]) -> frozenset[tuple[str, str]]:
    """The node pairs (in ``nodes`` order) that cannot talk under ``groups``."""
    view = reachable(groups, nodes)
    return frozenset((a, b) for a, b in combinations(nodes, 2) if b not in view[a])


# ---------------------------------------------------------------------------------------------
# random schedules


@dataclass(frozen=True)
class RandomMix:
    """Parameters of a seeded random fault schedule."""

    kinds: tuple[str, ...] = ("partition", "kill", "pause", "faults", "skew")
    """Fault kinds to mix (from :data:`FAULT_KINDS`); each appears at least once if time allows."""
    interval_s: float = 2.0
    """Mean time between the starts of two faults."""
    fault_s: float = 1.5
    """Mean duration of a fault before its own stop step."""
    stop_probability: float = 0.7
    """Chance a fault gets its own stop step; the others last until the final heal."""
    agents: tuple[str, ...] = ()
    """Agent labels for ``migrate`` steps."""
    max_delay_ms: int = 200
    max_skew_s: float = 30.0

    def __post_init__(self) -> None:
        if unknown := set(self.kinds) - set(FAULT_KINDS):
            raise NemesisError(f"unknown fault kind(s): {', '.join(sorted(unknown))}")
        if not self.kinds:
            raise NemesisError("a random mix needs at least one fault kind")
        if "migrate" in self.kinds and not self.agents:
            raise NemesisError("migrate needs agent labels")
        if self.interval_s <= 0 or self.fault_s <= 0:
            raise NemesisError("interval_s and fault_s must be > 0")
        if not 0 <= self.stop_probability <= 1:
            raise NemesisError("stop_probability must be in [0, 1]")


def _r(x: float) -> float:
    return round(x, 2)


def generate_schedule(
    seed: int, nodes: Sequence[str], duration_s: float, mix: RandomMix
) -> list[NemesisStep]:
    """A seeded random schedule over ``[0, duration_s)`` mixing ``mix.kinds`` (each kind at
    least once while time allows), never taking down (kill ∪ pause) more than a minority at
    once, and always ending at ``duration_s`` with: heal, clear_faults, unpause of every
    paused node, restart of every killed node, and skew 0 for every skewed node. The same
    arguments always give the same list."""
    ns = list(nodes)
    if len(ns) < 2:
        raise NemesisError("a random schedule needs ≥ 2 nodes")
    rng = random.Random(seed)
    steps: list[NemesisStep] = []
    killed: set[str] = set()
    paused: set[str] = set()
    skewed: set[str] = set()
    pending: list[NemesisStep] = []  # stop steps not yet due
    order = list(mix.kinds)
    rng.shuffle(order)
    minority = (len(ns) - 1) // 2
    final_at = _r(duration_s)
    t = _r(rng.uniform(0.3, 1.0) * mix.interval_s)

    def stop_at(start: float) -> float | None:
        if rng.random() >= mix.stop_probability:
            return None
        end = _r(start + rng.uniform(0.5, 1.5) * mix.fault_s)
        return end if end < final_at else None

    while t < final_at:
        # release the stop steps that are due, so node states stay accurate
        for s in sorted((p for p in pending if p.at_s <= t), key=lambda p: p.at_s):
            pending.remove(s)
            steps.append(s)
            if s.action == "restart":
                killed.discard(s.args["node"])
            elif s.action == "unpause":
                paused.discard(s.args["node"])
        kind = order.pop() if order else rng.choice(mix.kinds)
        up = [n for n in ns if n not in killed | paused]
        if kind in ("kill", "pause") and len(killed | paused) >= minority:
            kind = "partition"
        if kind == "partition":
            shape = rng.choice(["halves", "isolate", "bridge", "ring", "majority-ring"])
            if shape == "isolate":
                shape = f"isolate:{rng.choice(ns)}"
            if (shape == "majority-ring" and len(ns) < 4) or (
                shape in ("bridge", "ring") and len(ns) < 3
            ):
                shape = "halves"
            steps.append(NemesisStep(t, "partition", {"shape": shape}))
            if (end := stop_at(t)) is not None:
                pending.append(NemesisStep(end, "heal"))
        elif kind in ("kill", "pause"):
            node = rng.choice(up)
            (killed if kind == "kill" else paused).add(node)
            steps.append(NemesisStep(t, kind, {"node": node}))
            if (end := stop_at(t)) is not None:
                pending.append(
                    NemesisStep(end, "restart" if kind == "kill" else "unpause", {"node": node})
                )
        elif kind == "faults":
            chosen = sorted(rng.sample(ns, rng.randint(1, len(ns))), key=ns.index)
            args = {
                "drop": _r(rng.uniform(0, 0.3)),
                "dup": _r(rng.uniform(0, 0.3)),
                "delay_ms": rng.randint(0, mix.max_delay_ms),
                "reorder": _r(rng.uniform(0, 0.3)),
                "nodes": ",".join(chosen),
            }
            steps.append(NemesisStep(t, "faults", args))
            if (end := stop_at(t)) is not None:
                pending.append(NemesisStep(end, "clear_faults", {"nodes": args["nodes"]}))
        elif kind == "skew":
            node = rng.choice(ns)
            skewed.add(node)
            seconds = _r(rng.uniform(-mix.max_skew_s, mix.max_skew_s))
            steps.append(NemesisStep(t, "skew", {"node": node, "seconds": seconds}))
        elif kind == "migrate":
            steps.append(
                NemesisStep(t, "migrate", {"agent": rng.choice(mix.agents), "to": rng.choice(ns)})
            )
        t = _r(t + rng.uniform(0.5, 1.5) * mix.interval_s)
    for s in sorted(pending, key=lambda p: p.at_s):
        steps.append(s)
        if s.action == "restart":
            killed.discard(s.args["node"])
        elif s.action == "unpause":
            paused.discard(s.args["node"])
    end = final_at
    steps.append(NemesisStep(end, "heal"))
    steps.append(NemesisStep(end, "clear_faults"))
    steps += [NemesisStep(end, "unpause", {"node": n}) for n in ns if n in paused]
    steps += [NemesisStep(end, "restart", {"node": n}) for n in ns if n in killed]
    steps += [NemesisStep(end, "skew", {"node": n, "seconds": 0}) for n in ns if n in skewed]
    return sorted(steps, key=lambda s: s.at_s)  # stable: final steps keep their order


__all__ = [
    "ACTIONS",
    "FAULT_KINDS",
    "SHAPES",
    "NemesisError",
    "NemesisStep",
    "RandomMix",
    "cut_pairs",
    "generate_schedule",
    "parse_node_list",
    "partition_groups",
    "reachable",
    "validate_step",
]
