"""Running schedules: one plan, one ``trio.run``, judged by the testnet checker.

:func:`run_schedule` makes trio's scheduler deterministic for the run (trio's own private
switch, reseeded every run; a canary test pins it), runs the world under
``MockClock(autojump_threshold=0)``, and checks the recorded history and every node's final
store with :func:`testnet.checker.check` — the same checker that judges real testnets.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
import trio._core._run as _trio_run  # PRIVATE (pinned trio==0.35.0): see simulation-notes §2.2
import trio.testing

from igor_p2p.sim.plan import SIM_VERSION, Plan
from igor_p2p.sim.world import World, run_world
from testnet.checker import AgentStore, CheckConfig, CheckResult, StoreSnapshot, check
from testnet.history import merge, parse_event


@dataclass
class Outcome:
    plan: Plan
    result: CheckResult
    digest: str
    coverage: Counter[str] = field(default_factory=Counter)
    events: int = 0
    world: World | None = None

    @property
    def ok(self) -> bool:
        return self.result.ok

    def first_violation(self) -> str | None:
        return self.result.violations[0].summary() if self.result.violations else None

    def replay_hint(self) -> str:
        return (
            f"SIM FAIL seed={self.plan.seed} sim_version={SIM_VERSION}: "
            f"{self.first_violation()}\n"
            f"  replay: python -m igor_p2p.sim run --seed {self.plan.seed}"
        )


def _deterministic(seed: int) -> None:
    _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _trio_run._r.seed(f"{seed}/trio")


def _snapshots(world: World) -> dict[str, StoreSnapshot]:
    out: dict[str, StoreSnapshot] = {}
    for node in world.nodes:
        state = node.disk.state
        agents: dict[str, AgentStore] = {}
        for agent, record in state.records.items():
            data = state.agents.get(agent)
            rows = tuple(
                (r.digest.hex(), r.prev.hex(), r.epoch, r.tick, r.kind, r.budget)
                for r in (data.entries if data else ())
            )
            reason = record.detail or (record.reason.value if record.reason else "")
            agents[agent] = AgentStore(rows, str(record.state), reason)
        out[node.name] = StoreSnapshot(node.name, agents)
    return out


def _lost_to_rollback(world: World, events: list[dict[str, Any]]) -> set[str]:
    """Digests only a rolled-back node ever committed and no final store holds: a restore
    destroyed them (the seed's "restart with partial loss"), they are not a safety failure."""
    stored: set[str] = set()
    parent: dict[str, str] = {}
    for node in world.nodes:
        for data in node.disk.state.agents.values():
            for r in data.entries:
                stored.add(r.digest.hex())
                parent[r.digest.hex()] = r.prev.hex()
    restores: dict[str, int] = {}
    for e in events:
        if e["type"] == "fault" and e["fault"] == "restore":
            restores[e["node"]] = max(restores.get(e["node"], 0), e["mono_ns"])
    if not restores:
        return set()
    lost: set[str] = set()
    committers: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == "commit":
            committers.setdefault(e["digest"], set()).add(e["node"])
            parent.setdefault(e["digest"], e["prev"])
    for digest in list(stored):  # ancestors of what survives were compacted, not lost
        d = parent.get(digest)
        while d is not None and d not in stored:
            stored.add(d)
            d = parent.get(d)
    for e in events:
        if e["type"] != "commit" or e["digest"] in stored:
            continue
        nodes = committers[e["digest"]]
        if all(n in restores for n in nodes) and e["mono_ns"] <= restores.get(e["node"], -1):
            lost.add(e["digest"])
    return lost


def judge(world: World) -> CheckResult:
    lost = _lost_to_rollback(world, world.events)
    typed = []
    for raw in world.events:
        if raw["type"] == "commit" and raw["digest"] in lost:
            continue
        event = parse_event(raw)
        if event is not None:
            typed.append(event)
    history = merge([typed])
    config = CheckConfig(
        liveness_bound_s=10.0,
        heal_ns=world.heal_ns,
        # Liveness is promised when nothing was rolled back and no node lies (a Byzantine node
        # may refuse to cooperate: THREAT_MODEL A2); safety and robustness are checked always.
        check_liveness=not world.restored_nodes and not world.net.liars,
    )
    return check(history, stores=_snapshots(world), config=config)


def _coverage(world: World) -> Counter[str]:
    coverage = Counter(world.coverage)
    for liar in world.field_liars:
        coverage.update({f"lie:{name}": count for name, count in liar.told.items()})
    for one in world.one_lies:
        coverage[f"lie:{one.kind}.{one.field}"] += one.told
    for forger in world.claim_forgers:
        coverage["lie:forge_claims"] += forger.told
    for node in world.nodes:
        coverage.update({f"claims:{k}": v for k, v in node.claim_counts.to_json().items()})
    return coverage


def run_schedule(plan: Plan, *, keep_world: bool = False) -> Outcome:
    _deterministic(plan.seed)
    world = World(plan)
    # The world's history is the record; node logs would cost ~20× the run (measured).
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        trio.run(run_world, world, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logging.disable(previous)
    result = judge(world)
    digest = hashlib.sha256(
        json.dumps(world.events, sort_keys=True, default=str).encode()
    ).hexdigest()
    return Outcome(
        plan=plan,
        result=result,
        digest=digest,
        coverage=_coverage(world),
        events=len(world.events),
        world=world if keep_world else None,
    )
