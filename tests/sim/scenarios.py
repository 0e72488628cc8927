"""Hand-written simulation schedules: the cases issue reports reproduced on real nodes."""

from __future__ import annotations

from typing import Any

from igor_p2p.sim.plan import Plan

Event = tuple[float, str, dict[str, Any]]


def scenario(
    seed: int,
    events: list[Event],
    *,
    n_nodes: int = 4,
    n_agents: int = 1,
    launch_on: list[int] | None = None,
    liars: dict[str, str] | None = None,
    capacity: dict[str, int] | None = None,
    replay: dict[str, int] | None = None,
    drop: float = 0.0,
) -> Plan:
    notes: dict[str, Any] = {"launch_on": launch_on or [0] * n_agents}
    if liars:
        notes["liars"] = liars
    if capacity:
        notes["capacity"] = capacity
    if replay:
        notes["replay"] = replay
    return Plan(
        seed=seed,
        n_nodes=n_nodes,
        n_agents=n_agents,
        drop=drop,
        dup=0.0,
        mean_delay=0.002,
        fsync_min=0.0005,
        fsync_max=0.003,
        buggify=False,
        events=tuple(sorted(events, key=lambda e: e[0])),
        tick_time=0.5,
        notes=notes,
    )


def restored_pending_target(seed: int = 1) -> Plan:
    """Issue 9, case 1: the target's disk is backed up while it is HANDOFF_PENDING, the agent
    moves on to a third node (epoch 3), the backup is restored while the target is cut off from
    the new owner."""
    return scenario(
        seed,
        [
            (0.9, "backup", {"node": 1, "agent": 0, "when": "HANDOFF_PENDING", "name": "pending"}),
            (1.0, "migrate", {"agent": 0, "target": 1}),
            (5.0, "migrate", {"agent": 0, "target": 2}),
            (8.0, "partition", {"shape": "pair", "node": 1, "other": 2, "duration": 12.0}),
            (8.5, "restore", {"node": 1, "backup": "pending", "down": 0.5}),
        ],
    )


def restored_owner_while_new_owner_offline(seed: int = 1) -> Plan:
    """Issue 9, case 2: a → b → c; c goes offline and b restarts, so no live node holds c's
    location; a's disk is restored from a backup taken while it owned epoch 1."""
    return scenario(
        seed,
        [
            (0.5, "backup", {"node": 0, "agent": 0, "when": "ACTIVE_OWNER", "name": "owner"}),
            (1.0, "migrate", {"agent": 0, "target": 1}),
            (4.0, "migrate", {"agent": 0, "target": 2}),
            (6.0, "crash", {"node": 2, "down": 14.0}),
            (6.5, "crash", {"node": 1, "down": 0.5}),
            (7.5, "restore", {"node": 0, "backup": "owner", "down": 0.5}),
        ],
    )


def lying_target(seed: int = 1) -> Plan:
    """Issue 9, case 3: a target acks with a wrong prepared digest, again and again."""
    return scenario(
        seed,
        [(1.0 + 2.0 * i, "migrate", {"agent": 0, "target": 1}) for i in range(8)],
        liars={"1": "wrong_ack_digest"},
    )


def forged_higher_epochs(seed: int = 1) -> Plan:
    """Issue 9, case 6 (and 10.1–10.3): one node answers every witness and status request
    with an epoch of 2**63-1 and a custody it cannot prove, while agents wander."""
    events: list[Event] = []
    for i in range(10):
        events.append((1.0 + 1.7 * i, "migrate", {"agent": i % 2, "target": (i * 3) % 5}))
    events.append((9.0, "crash", {"node": 3, "down": 1.0}))
    return scenario(
        seed,
        events,
        n_nodes=5,
        n_agents=2,
        launch_on=[0, 2],
        liars={"1": "forged_higher"},
    )


def lie_matrix(kind: str, field: str, variant: int = 0, seed: int = 1) -> Plan:
    """A liar (n2, room for one agent) tells one lie — ``field`` of every ``kind`` message it
    sends is wrong — while it is a handoff target that fetches a module and refuses an offer, a
    handoff source that serves a module and aborts, a witness of claims and handoffs, and a
    restored pending target that settles; honest nodes settle through it too. The liar and n3
    replay arrivals (2 ticks), so the liar asks for windows (REJECT replay_ticks) and sends one
    (OFFER replay)."""
    return scenario(
        seed,
        [
            (0.5, "backup", {"node": 1, "agent": 0, "when": "HANDOFF_PENDING", "name": "liar"}),
            (1.0, "migrate", {"agent": 0, "target": 1}),
            (2.0, "migrate", {"agent": 1, "target": 1}),
            (2.5, "backup", {"node": 2, "agent": 0, "when": "HANDOFF_PENDING", "name": "n3"}),
            (3.0, "migrate", {"agent": 0, "target": 2}),
            (5.0, "migrate", {"agent": 0, "target": 1}),
            (6.9, "clog", {"node": 3, "duration": 4.5}),  # past the handoff deadline: ABORT
            (7.0, "migrate", {"agent": 0, "target": 3}),
            (10.5, "halt_resume", {"agent": 1, "pause": 0.5}),
            (12.0, "restore", {"node": 2, "backup": "n3", "down": 0.5}),
            (13.0, "restore", {"node": 1, "backup": "liar", "down": 0.5}),
            (15.0, "crash", {"node": 3, "down": 0.5}),
            (16.0, "migrate", {"agent": 0, "target": 2}),
            (17.0, "force", {"agent": 1, "node": 0}),
        ],
        n_agents=2,
        launch_on=[0, 3],
        liars={"1": f"one:{kind}.{field}.{variant}"},
        capacity={"1": 1},
        replay={"1": 2, "2": 2},  # the liar asks for replay windows, and must send one to n3
    )


def forged_gossip_claims(seed: int = 1) -> Plan:
    """Issue 9, case 6 on gossip: one node forges authority claims from every real one it
    hears (a bare far epoch, the real proof replayed for a far epoch, a damaged proof for the
    next epoch, the largest epoch, junk) while two agents wander among five nodes, their owners
    halt and resume (a self-claim of the next epoch while forgeries arrive) and one restarts."""
    events: list[Event] = []
    for i in range(10):
        events.append((1.0 + 1.7 * i, "migrate", {"agent": i % 2, "target": (i * 3 + 1) % 5}))
    events += [
        (6.2, "halt_resume", {"agent": 0, "pause": 0.3}),
        (9.5, "crash", {"node": 2, "down": 0.8}),
        (12.1, "halt_resume", {"agent": 1, "pause": 0.2}),
        (16.4, "halt_resume", {"agent": 0, "pause": 0.1}),
    ]
    return scenario(
        seed, events, n_nodes=5, n_agents=2, launch_on=[0, 2], liars={"1": "forge_claims"}
    )


def source_restarts_after_its_handoff_was_accepted(seed: int = 1) -> Plan:
    """CI, random testnet schedule 8: a quorum of witnesses accepted the source's transfer, then
    the source died before it learned so; back up, its resume claim can only complete that
    transfer. The target still waits in HANDOFF_PENDING for a COMMIT nobody else will send."""
    return scenario(
        seed,
        [
            (1.0, "migrate", {"agent": 0, "target": 1}),
            (1.0, "crash", {"node": 0, "agent": 0, "after_accepts": 2, "down": 0.3}),
        ],
    )


def owner_cut_off_through_a_long_partition(seed: int = 1) -> Plan:
    """CI, random testnet schedules 8, 1006, 1008: an owner restarts into a partition that cuts
    it off for the rest of the fault phase, so its resume claim's retries grow to waits of many
    seconds. The heal opens node by node; the owner's opens first, so its first retry meets
    links still cut, and the next one must not wait out the partition's long backoff."""
    return scenario(
        seed,
        [
            (2.0, "crash", {"node": 0, "down": 0.3}),
            (1.5, "partition", {"shape": "isolate", "node": 0, "duration": 60.0}),
        ],
    )


def source_restarts_after_it_retired(seed: int = 1) -> Plan:
    """The source made its retirement durable and died before its COMMIT left: back up, it
    must send the COMMIT again (its target would otherwise wait for its own settlement)."""
    return scenario(
        seed,
        [
            (1.0, "migrate", {"agent": 0, "target": 1}),
            (1.0, "crash", {"node": 0, "at_persist": "RETIRED", "down": 0.3}),
        ],
    )
