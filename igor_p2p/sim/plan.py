"""Schedules: explicit, JSON-round-tripping plans drawn from a seed (swarm-style).

A :class:`Plan` is everything one simulated run needs; every fault parameter is drawn when the
plan is made and baked into its event, so removing an event (shrinking) never shifts another.
Per seed about half of the fault kinds are switched off and the rates are drawn (swarm testing,
TigerBeetle's ``options_swarm``).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SIM_VERSION = 7
"""3: every node runs the authority-claim gossip (``ClaimGossip``); claim forgers. 6: heals
open node by node (``World._open_node_by_node``) and retries back off up to 30 s, as a node's.
7: an OFFER whose ACK is late is sent again beside the first (``offer_resend_s``); a COMMIT the
target's transport refused is sent again."""

LIAR_SHARE = 0.15
"""Share of random plans in which one node lies (sim/lies.py): in every message it sends, or
(:data:`CLAIM_FORGER_SHARE` of them) in the authority claims it gossips."""

CLAIM_FORGER_SHARE = 0.5

FAULT_KINDS = (
    "partition",
    "clog",
    "crash",
    "restore",
    "skew",
    "migrate",
    "halt_resume",
    "force",
)
"""``migrate`` is the workload (agents wandering); the others are faults and operator acts."""

PARTITION_SHAPES = ("isolate", "halves", "minority", "one_way", "bridge", "owner")


@dataclass(frozen=True)
class Plan:
    seed: int
    n_nodes: int
    n_agents: int
    drop: float
    dup: float
    mean_delay: float
    fsync_min: float
    fsync_max: float
    buggify: bool
    events: tuple[tuple[float, str, dict[str, Any]], ...]
    heal_at: float = 22.0
    end_at: float = 38.0
    budget: int = 100_000
    tick_time: float = 0.25
    sim_version: int = SIM_VERSION
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def restores(self) -> int:
        return sum(1 for _, kind, _ in self.events if kind == "restore")

    def to_json(self) -> str:
        body = asdict(self)
        body["events"] = [list(e) for e in self.events]
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        body = json.loads(text)
        body["events"] = tuple((float(a), str(k), dict(p)) for a, k, p in body["events"])
        return cls(**body)

    def without(self, events: list[tuple[float, str, dict[str, Any]]]) -> Plan:
        return replace(self, events=tuple(events))


def _params(rng: random.Random, kind: str, n: int, agents: int) -> dict[str, Any]:
    node = rng.randrange(n)
    if kind == "partition":
        return {
            "shape": rng.choice(PARTITION_SHAPES),
            "node": node,
            "duration": round(rng.uniform(0.5, 8.0), 3),
            "pick": rng.random(),
        }
    if kind == "clog":
        return {"node": node, "duration": round(rng.uniform(0.2, 4.0), 3)}
    if kind == "crash":
        return {"node": node, "down": round(rng.uniform(0.05, 6.0), 3)}
    if kind == "restore":
        return {"node": node, "down": round(rng.uniform(0.05, 4.0), 3), "back": rng.random()}
    if kind == "skew":
        return {"node": node, "seconds": round(rng.uniform(-3600, 3600), 3)}
    if kind == "migrate":
        return {"agent": rng.randrange(agents), "target": node}
    if kind == "halt_resume":
        return {"agent": rng.randrange(agents), "pause": round(rng.uniform(0.1, 3.0), 3)}
    if kind == "force":
        return {"agent": rng.randrange(agents), "node": node}
    raise ValueError(kind)


REPLAY_SHARE = 0.2
"""Plans in which some nodes replay the last ticks of arriving agents (replay on arrival), so
handoffs to them go through REPLAY_REQUIRED and a second OFFER with the window."""


def make_plan(seed: int, *, restores: bool = True) -> Plan:
    rng = random.Random(f"{seed}/plan")
    n = rng.randint(3, 7)
    agents = rng.randint(1, 3)
    kinds = [k for k in FAULT_KINDS if k == "migrate" or rng.random() < 0.5]
    if not restores:
        kinds = [k for k in kinds if k != "restore"]
    events: list[tuple[float, str, dict[str, Any]]] = []
    for _ in range(rng.randint(4, 14)):
        kind = rng.choice(kinds)
        if kind == "restore" and any(k == "restore" for _, k, _ in events):
            kind = "migrate"  # at most one node is rolled back per run (the tolerated class)
        at = round(rng.uniform(1.0, 20.0), 3)
        events.append((at, kind, _params(rng, kind, n, agents)))
    for _ in range(rng.randint(2, 8)):
        at = round(rng.uniform(1.0, 20.0), 3)
        events.append((at, "migrate", _params(rng, "migrate", n, agents)))
    events.sort(key=lambda e: (e[0], e[1]))
    restore_nodes = {p["node"] for _, k, p in events if k == "restore"}
    if len(restore_nodes) > 1:  # pragma: no cover - prevented above
        raise AssertionError("one restored node per run")
    notes: dict[str, Any] = {}
    if rng.random() < LIAR_SHARE:  # one node lies in what it sends
        # (its own stream, so that the draws below stay what they were before forgers)
        forges = random.Random(f"{seed}/liar").random() < CLAIM_FORGER_SHARE
        notes["liars"] = {str(rng.randrange(1, n)): "forge_claims" if forges else "every_field"}
    replays = random.Random(f"{seed}/replay")  # its own stream too: the draws above stay
    if replays.random() < REPLAY_SHARE:  # some nodes replay arrivals: REPLAY_REQUIRED, re-offer
        notes["replay"] = {
            str(i): replays.randint(1, 4) for i in range(n) if replays.random() < 0.5
        }
    return Plan(
        seed=seed,
        n_nodes=n,
        n_agents=agents,
        drop=rng.choice([0.0, 0.0, 0.01, 0.05, 0.15]),
        dup=rng.choice([0.0, 0.0, 0.02, 0.1]),
        mean_delay=rng.choice([0.001, 0.005, 0.02]),
        fsync_min=0.0005,
        fsync_max=rng.choice([0.002, 0.005, 0.02]),
        buggify=rng.random() < 0.5,
        events=tuple(events),
        tick_time=rng.choice([0.5, 1.0]),
        notes=notes,
    )
