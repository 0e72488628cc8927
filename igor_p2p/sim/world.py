"""One simulated run: N real node cores over in-memory ports, in one ``trio.run``.

The world owns what survives a crash (each node's :class:`~igor_p2p.sim.disk.SimDisk`), the
network, the virtual clock (``MockClock(autojump_threshold=0)``), one seeded random stream per
component, and the history every node writes (the same event types a real node writes to
``history.jsonl``, so the testnet checker judges both). Phases, as Jepsen's final generator and
VOPR's liveness mode: faults and workload until ``heal_at``; then everything heals, crashed nodes
restart, and the run must settle by ``end_at``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Any

import trio
import trio.testing

from igor_p2p.authority.custody import decode_record
from igor_p2p.authority.events import BudgetExhausted, TickFailed
from igor_p2p.authority.record import ABSENT, AuthorityRecord, RecoveryReason
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.core.config import CoreConfig
from igor_p2p.core.handoff import AgentBusy, BadTarget, NotOwnerHere
from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.errors import IgorError
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.custody import TransferRecord
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.node.claims import ClaimCounts, ClaimGossip
from igor_p2p.sim.disk import NodeCrashed, SimDisk, SimStore
from igor_p2p.sim.gossip import SimGossipNet
from igor_p2p.sim.lies import ClaimForger, FieldLiar, OneLie
from igor_p2p.sim.net import NetFaults, SimNet
from igor_p2p.sim.plan import Plan
from igor_p2p.sim.runner import FakeRunner
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Accepted, Ack, Nack, NackCode, Promise, StatusReply

FAKE_WASM = b"\x00asm\x01\x00\x00\x00igor-sim"
FAKE_MANIFEST = b'{"capabilities":{"clock":{"version":1}}}'
CLAIM_INTERVAL_S = 1.0
"""How often an owner gossips its claims: the node's default ``announce_interval_s``."""


def _key(seed: int, name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"{seed}/{name}".encode()).digest())


class SimHistory:
    def __init__(self, world: World, node: str, peer_id: str) -> None:
        self.world = world
        self.node = node
        self.peer_id = peer_id

    def emit(self, type_: str, **fields: Any) -> None:
        self.world.record(self.node, self.peer_id, type_, fields)


class SimEnv:
    def __init__(self, world: World, node: SimNode) -> None:
        self.rng = random.Random(f"{world.plan.seed}/node/{node.index}/{node.incarnation}")
        self._origin = self.rng.uniform(1e4, 2e5)
        self.node = node
        self.world = world
        self.history = SimHistory(world, node.name, node.key.public_key.hex())

    def now(self) -> float:
        return trio.current_time() + self._origin

    def wall_ns(self) -> int:
        return int((1.7e9 + trio.current_time() + self.node.skew) * 1e9)

    def token(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def buggify(self, site: str) -> bool:
        return self.world.buggify(site)


class StaticMembership:
    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys

    def up_nodes(self) -> list[bytes]:
        return list(self.keys)

    def down_nodes(self) -> list[bytes]:
        return []


@dataclass
class SimNode:
    index: int
    name: str
    key: Keypair
    disk: SimDisk = field(default_factory=SimDisk)
    up: bool = False
    incarnation: int = 0
    skew: float = 0.0
    scope: trio.CancelScope | None = None
    nursery: trio.Nursery | None = None
    core: NodeCore | None = None
    store: SimStore | None = None
    restored: bool = False
    claim_counts: ClaimCounts = field(default_factory=ClaimCounts)
    """What became of the claims this node heard, over all its incarnations."""


HEAL_STEP_S = 2.0
"""Most time between two nodes' fault gates opening when a partition heals."""


class World:
    def __init__(self, plan: Plan, config: CoreConfig | None = None) -> None:
        self.plan = plan
        self.config = config or CoreConfig(
            request_timeout_s=1.0,
            offer_timeout_s=2.0,
            offer_resend_s=0.5,
            handoff_deadline_s=4.0,
            settle_after_s=3.0,
            claim_round_s=1.5,
            backoff_min_s=0.1,
            backoff_max_s=30.0,  # as a node's: a partition grows the waits to many seconds
        )
        self.events: list[dict[str, Any]] = []
        self.faults = NetFaults(drop=plan.drop, dup=plan.dup, mean_delay=plan.mean_delay)
        self.net = SimNet(random.Random(f"{plan.seed}/net"), self.faults)
        self.gossip = SimGossipNet(random.Random(f"{plan.seed}/gossip"), self.faults)
        self.nodes = [
            SimNode(i, f"n{i + 1}", _key(plan.seed, f"node{i}")) for i in range(plan.n_nodes)
        ]
        self.membership = StaticMembership([n.key.public_key for n in self.nodes])
        self.field_liars: list[FieldLiar] = []
        self.one_lies: list[OneLie] = []
        self.claim_forgers: list[ClaimForger] = []
        for index, behaviour in plan.notes.get("liars", {}).items():
            liar = self.nodes[int(index)]
            if behaviour.startswith("one:"):  # one:TYPE.field.variant (the lie matrix)
                kind, name, variant = behaviour[4:].split(".")
                one = OneLie(
                    liar.key.public_key,
                    kind,
                    name,
                    int(variant),
                    [n.key.public_key for n in self.nodes],
                )
                self.one_lies.append(one)
                self.net.liars[liar.key.public_key] = one
            elif behaviour == "every_field":
                told = FieldLiar(
                    liar.key.public_key,
                    random.Random(f"{plan.seed}/lies"),
                    [n.key.public_key for n in self.nodes],
                    rate=0.5,
                )
                self.field_liars.append(told)
                self.net.liars[liar.key.public_key] = told
            elif behaviour == "forge_claims":  # honest on the wire, lies on gossip
                forger = ClaimForger(random.Random(f"{plan.seed}/forger"))
                self.claim_forgers.append(forger)
                self.gossip.forgers[liar.key.public_key] = forger
            else:
                self.net.liars[liar.key.public_key] = LIES[behaviour](liar.key.public_key)
        self.agents: list[str] = []
        self.agent_keys: list[Keypair] = []
        self.rng = random.Random(f"{plan.seed}/world")
        self._buggify_rng = random.Random(f"{plan.seed}/buggify")
        self._sites: dict[str, bool] = {}
        self.coverage: dict[str, int] = {}
        self.root: trio.Nursery | None = None
        self.restored_nodes: set[str] = set()
        self.heal_ns = 0
        self.backups: dict[str, int] = {}
        """Named durable versions of a node's disk (``backup`` events), for ``restore``."""

    # ---------------------------------------------------------------- bookkeeping

    def record(self, node: str, peer_id: str, kind: str, fields: dict[str, Any]) -> None:
        event = {
            "type": kind,
            "node": node,
            "peer_id": peer_id,
            "mono_ns": int(trio.current_time() * 1e9),
            "wall_ns": int(trio.current_time() * 1e9),
        }
        for key, value in fields.items():
            event[key] = value.hex() if isinstance(value, bytes) else value
        self.events.append(event)
        if kind == "handoff":
            self.cover(f"handoff:{fields.get('step')}")
        elif kind == "authority":
            self.cover(f"authority:{fields.get('from_state')}->{fields.get('to_state')}")

    def cover(self, name: str) -> None:
        self.coverage[name] = self.coverage.get(name, 0) + 1

    def buggify(self, site: str) -> bool:
        if not self.plan.buggify:
            return False
        if site not in self._sites:
            self._sites[site] = self._buggify_rng.random() < 0.25
        return self._sites[site] and self._buggify_rng.random() < 0.25

    def fault(self, node: str, fault: str, detail: Any) -> None:
        self.record(node, "", "fault", {"fault": fault, "detail": detail})
        self.cover(f"fault:{fault}")

    # ---------------------------------------------------------------- nodes

    async def start_node(self, node: SimNode) -> None:
        assert self.root is not None
        await self.root.start(self._node_main, node)

    async def _node_main(self, node: SimNode, *, task_status: trio.TaskStatus[None]) -> None:
        node.incarnation += 1
        try:
            await self._node_life(node, task_status)
        except* NodeCrashed:
            pass

    async def _node_life(self, node: SimNode, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as scope:
            node.scope = scope
            async with trio.open_nursery() as nursery:
                node.nursery = nursery
                node.up = True
                env = SimEnv(self, node)
                store = SimStore(
                    node.disk, (self.plan.fsync_min, self.plan.fsync_max), env.rng.uniform
                )
                node.store = store
                transport = self.net.endpoint(node.key.public_key, lambda: _live(node))
                runner = FakeRunner(
                    key=node.key,
                    store=store,
                    record=env.history.emit,
                    now_ns=lambda: int(trio.current_time() * 1e9),
                    wall_ns=env.wall_ns,
                    tick_time=self.plan.tick_time,
                    report=lambda agent, event: _report(node, agent, event),
                    capacity=self.plan.notes.get("capacity", {}).get(str(node.index)),
                    replay_on_arrival=self.plan.notes.get("replay", {}).get(str(node.index), 0),
                    cover=self.cover,
                )
                runner.nursery = nursery
                incarnation = node.incarnation
                gossip = self.gossip.endpoint(
                    node.key.public_key, lambda: node.up and node.incarnation == incarnation
                )
                ports = CorePorts(
                    store=store,
                    transport=transport,
                    runner=runner,
                    env=env,
                    membership=self.membership,
                )
                core = NodeCore(node.key, ports, self.config)
                claims = ClaimGossip(
                    core=core,
                    store=store,
                    transport=transport,
                    gossip=gossip,
                    interval_s=lambda: CLAIM_INTERVAL_S,
                    counts=node.claim_counts,
                )
                ports.publish = claims.publish  # the gate's PublishClaim, as node.py wires it
                node.core = core
                env.history.emit("node", event="start", detail="")
                await nursery.start(claims.run)
                await nursery.start(core.run)
                task_status.started()
                await trio.sleep_forever()

    def crash(self, node: SimNode) -> None:
        if not node.up:
            return
        node.up = False
        node.nursery = None
        node.core = None
        if node.store is not None:
            node.store.alive = False
        if node.scope is not None:
            node.scope.cancel()
        self.fault(node.name, "kill", "")

    async def restart(self, node: SimNode) -> None:
        if node.up:
            return
        self.fault(node.name, "restart", "")
        await self.start_node(node)
        self.network_changed()  # the others' discovery sees it come back

    def network_changed(self) -> None:
        """What a node's discovery (a peer up) and fault gate (a heal) tell its core: retries
        waiting out a backoff try again now."""
        for node in self.nodes:
            if node.up and node.core is not None:
                node.core.network_changed()

    async def on(self, node: SimNode, fn, *args) -> bool:  # type: ignore[no-untyped-def]
        """Run an operator call inside ``node`` (a crash cancels it, as it would kill the
        admin call with the process). False when the node is down or crashed meanwhile."""
        nursery = node.nursery if node.up else None
        if nursery is None:
            return False
        done = trio.Event()
        ok = [False]

        async def call() -> None:
            try:
                await fn(*args)
                ok[0] = True
            except IgorError as exc:
                self.cover(f"operator:{type(exc).__name__}")
            finally:
                done.set()

        try:
            nursery.start_soon(call)
        except RuntimeError:
            return False
        while not done.is_set():
            if not node.up:
                return False
            with trio.move_on_after(0.5):
                await done.wait()
        return ok[0]

    # ---------------------------------------------------------------- workload

    async def launch(self, index: int) -> None:
        placed = self.plan.notes.get("launch_on")
        node = self.nodes[placed[index] if placed else self.rng.randrange(len(self.nodes))]
        assert node.core is not None
        agent_key = _key(self.plan.seed, f"agent{index}")
        witnesses = node.core.witnesses_for_launch()
        genesis = UnsignedCheckpoint(
            agent=agent_key.did,
            epoch=1,
            tick=0,
            prev=ZERO_HASH,
            kind=CheckpointKind.GENESIS,
            wasm_hash=hashlib.sha256(FAKE_WASM).digest(),
            manifest_hash=hashlib.sha256(FAKE_MANIFEST).digest(),
            budget=self.plan.budget,
            price=1,
            wall_ns=0,
            state=b"",
            owner=node.key.public_key,
            witnesses=witnesses,
        ).sign(agent_key)
        self.agents.append(agent_key.did)
        self.agent_keys.append(agent_key)
        await self.on(
            node,
            node.core.launched,
            agent_key.did,
            genesis.encode(),
            witnesses,
            FAKE_WASM,
            FAKE_MANIFEST,
        )

    def owner_of(self, agent: str) -> SimNode | None:
        for node in self.nodes:
            if node.up and node.core is not None:
                machine = node.core.gate.peek(agent)
                if machine is not None and machine.may_tick:
                    return node
        return None

    async def migrate(self, agent_index: int, target_index: int) -> None:
        if agent_index >= len(self.agents):
            return
        agent = self.agents[agent_index]
        source = self.owner_of(agent)
        target = self.nodes[target_index]
        if source is None or source is target or source.core is None:
            return
        core = source.core

        async def go() -> None:
            try:
                outcome = await core.migrate(agent, target.key.public_key)
            except (AgentBusy, BadTarget, NotOwnerHere):
                return
            self.cover(f"migrate:{outcome.result.value}")

        await self.on(source, go)

    async def halt_resume(self, agent_index: int, pause: float) -> None:
        if agent_index >= len(self.agents):
            return
        agent = self.agents[agent_index]
        node = self.owner_of(agent)
        if node is None or node.core is None:
            return
        if not await self.on(node, node.core.halt, agent, "sim operator halt"):
            return
        self.cover("operator:halt")
        await trio.sleep(pause)
        if node.up and node.core is not None and await self.on(node, node.core.resume, agent):
            self.cover("operator:resume")

    async def force(self, agent_index: int, node_index: int) -> None:
        """An operator forces recovery on a node that holds the agent in RECOVERY_REQUIRED."""
        if agent_index >= len(self.agents):
            return
        agent = self.agents[agent_index]
        node = self.nodes[node_index]
        if not node.up or node.core is None:
            return
        machine = node.core.gate.peek(agent)
        if machine is None or machine.record.state is not AuthorityState.RECOVERY_REQUIRED:
            return
        if machine.record.reason is RecoveryReason.RESTORED_COPY:
            return
        if await self.on(node, node.core.force_recover, agent, "sim operator"):
            self.cover("operator:force")

    # ---------------------------------------------------------------- faults

    def partition(self, params: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        keys = [n.key.public_key for n in self.nodes]
        n = len(keys)
        me = params["node"] % n
        shape = params["shape"]
        side: set[int]
        if shape == "isolate":
            side = {me}
        elif shape == "halves":
            side = set(range(n // 2))
        elif shape == "minority":
            side = set(self.rng.sample(range(n), max(1, (n - 1) // 2)))
        elif shape == "owner":
            owners = [self.owner_of(a) for a in self.agents]
            picked = [o.index for o in owners if o is not None]
            side = {picked[int(params["pick"] * len(picked))]} if picked else {me}
        elif shape == "pair":
            other = params["other"] % n
            cuts = [(keys[me], keys[other]), (keys[other], keys[me])]
            self.faults.blocked.update(cuts)
            return cuts
        elif shape == "bridge":
            half = set(range(n // 2))
            cuts = [
                (keys[a], keys[b])
                for a in range(n)
                for b in range(n)
                if a != b and a != me and b != me and (a in half) != (b in half)
            ]
            self.faults.blocked.update(cuts)
            return cuts
        else:  # one_way
            cuts = [(keys[me], keys[b]) for b in range(n) if b != me]
            self.faults.blocked.update(cuts)
            return cuts
        cuts = [
            (keys[a], keys[b])
            for a in range(n)
            for b in range(n)
            if a != b and ((a in side) != (b in side))
        ]
        self.faults.blocked.update(cuts)
        return cuts

    async def apply(self, kind: str, params: dict[str, Any]) -> None:
        nodes = self.nodes
        if kind == "migrate":
            await self.migrate(params["agent"], params["target"] % len(nodes))
        elif kind == "partition":
            cuts = self.partition(params)
            self.fault(nodes[params["node"] % len(nodes)].name, "partition", params["shape"])
            await trio.sleep(params["duration"])
            await self._open_node_by_node(cuts)
            self.fault(nodes[params["node"] % len(nodes)].name, "heal", "")
        elif kind == "clog":
            node = nodes[params["node"] % len(nodes)]
            until = trio.current_time() + params["duration"]
            for other in nodes:
                if other is not node:
                    self.faults.clogged_until[(node.key.public_key, other.key.public_key)] = until
            self.cover("fault:clog")
        elif kind == "crash":
            node = nodes[params["node"] % len(nodes)]
            if "after_accepts" in params:
                await self._accepted_from(node, params["agent"], params["after_accepts"])
            if "when" in params:
                await self._durably(node, params["agent"], params["when"])
            if "at_persist" in params:
                await self._persisted(node, params["at_persist"])
            self.crash(node)
            await trio.sleep(params["down"])
            await self.restart(node)
        elif kind == "backup":
            node = nodes[params["node"] % len(nodes)]
            await self._backup(node, params)
        elif kind == "restore":
            node = nodes[params["node"] % len(nodes)]
            if "backup" in params and params["backup"] not in self.backups:
                self.fault(node.name, "restore_skipped", params["backup"])  # never taken
                return
            self.crash(node)
            versions = len(node.disk.versions)
            if "backup" in params:
                index = self.backups[params["backup"]]
            else:
                index = int(params["back"] * max(0, versions - 1))
            node.disk.restore(index)
            node.restored = True
            self.restored_nodes.add(node.name)
            self.fault(node.name, "restore", index)
            await trio.sleep(params["down"])
            await self.restart(node)
        elif kind == "skew":
            node = nodes[params["node"] % len(nodes)]
            node.skew = params["seconds"]
            self.fault(node.name, "skew", params["seconds"])
        elif kind == "halt_resume":
            await self.halt_resume(params["agent"], params["pause"])
        elif kind == "force":
            await self.force(params["agent"], params["node"] % len(nodes))

    async def _accepted_from(self, node: SimNode, agent_index: int, count: int) -> None:
        """Wait until ``count`` witnesses durably accepted a handoff record ``node`` signed for
        the agent (a crash then hits the source between the accepts and what it learns)."""
        agent = self.agents[agent_index]
        me = node.key.public_key

        def from_node(record: WitnessRecord | None) -> bool:
            if record is None or record.accepted_record is None:
                return False
            entry = decode_record(record.accepted_record)
            return isinstance(entry, TransferRecord) and entry.from_node == me != entry.to_node

        while sum(from_node(n.disk.state.witnesses.get(agent)) for n in self.nodes) < count:
            await trio.sleep(0.0001)

    async def _persisted(self, node: SimNode, state: str) -> None:
        """Arm a crash point in the node's store: the process dies right after it makes a
        record in ``state`` durable (as ``IGOR_CRASH_AT=<role>:after_persist:<STATE>`` does on a
        real node); returns once it did."""
        store = node.store
        assert store is not None
        hit = trio.Event()

        def crash_after(record: AuthorityRecord) -> bool:
            if str(record.state) != state or hit.is_set():
                return False
            hit.set()
            return True

        store.crash_after = crash_after
        await hit.wait()

    async def _durably(self, node: SimNode, agent_index: int, state: str) -> None:
        """Wait until the agent's durable record on ``node`` is in ``state``."""
        agent = self.agents[agent_index]
        while True:
            record = node.disk.state.records.get(agent)
            if record is not None and str(record.state) == state:
                return
            await trio.sleep(0.001)

    async def _backup(self, node: SimNode, params: dict[str, Any]) -> None:
        """Copy the node's disk now, or once ``agent`` is in ``state`` there (``when``)."""
        if params.get("when") is not None:
            await self._durably(node, params["agent"], params["when"])
        self.backups[params["name"]] = len(node.disk.versions) - 1
        self.fault(node.name, "backup", params["name"])

    async def _open_node_by_node(self, cuts: Iterable[tuple[bytes, bytes]]) -> None:
        """Heal ``cuts`` as a real network heals: node by node, in a random order, within
        ``HEAL_STEP_S`` of each other (each node's fault gate opens on its own; a link works
        once both its ends are open). Only the node that opened hears of it (its network
        changed); the others' retries learn it by trying."""
        cuts = set(cuts)
        ends = sorted({key for cut in cuts for key in cut})
        by_key = {n.key.public_key: n for n in self.nodes}
        opened: set[bytes] = set()
        for i, key in enumerate(self.rng.sample(ends, len(ends))):
            if i:
                await trio.sleep(self.rng.uniform(0.0, HEAL_STEP_S))
            opened.add(key)
            self.faults.blocked.difference_update(
                c for c in cuts if c[0] in opened and c[1] in opened
            )
            node = by_key[key]
            self.fault(node.name, "open", "")
            if node.up and node.core is not None:
                node.core.network_changed()

    async def heal(self) -> None:
        self.faults.clogged_until.clear()
        self.faults.drop = 0.0
        self.faults.dup = 0.0
        for node in self.nodes:
            if node.skew:
                node.skew = 0.0
                self.fault(node.name, "unskew", "")
            await self.restart(node)
        await self._open_node_by_node(set(self.faults.blocked))
        self.heal_ns = int(trio.current_time() * 1e9)
        self.fault(self.nodes[0].name, "heal", "final")


def _wrong_ack_digest(me: bytes):  # type: ignore[no-untyped-def]
    def lie(reply: Message) -> Message:
        if isinstance(reply, Ack):
            return dc_replace(reply, prepared_digest=hashlib.sha256(b"a lie").digest())
        return reply

    return lie


def _forged_higher(me: bytes):  # type: ignore[no-untyped-def]
    """Answer every witness request with a later epoch it cannot prove (forged custody)."""
    junk = (hashlib.sha256(b"forged record").digest() * 4, hashlib.sha256(b"forged").digest())

    def lie(reply: Message) -> Message:
        if isinstance(reply, Promise | Accepted | Nack):
            return Nack(me, reply.agent, reply.slot, NackCode.HIGHER, 2**63 - 1, None, 5, junk)
        if isinstance(reply, StatusReply):
            return dc_replace(reply, chosen=2**63 - 1, chain_after=5, chain=junk)
        return reply

    return lie


LIES = {"wrong_ack_digest": _wrong_ack_digest, "forged_higher": _forged_higher}
"""Byzantine behaviours a plan can give a node (``plan.notes["liars"] = {index: name}``)."""


def _live(node: SimNode) -> trio.Nursery | None:
    return node.nursery if node.up else None


def _report(node: SimNode, agent: str, event: BudgetExhausted | TickFailed) -> None:
    if node.core is not None:
        node.core.report(agent, event)


async def run_world(world: World) -> None:
    plan = world.plan
    async with trio.open_nursery() as root:
        world.root = root
        for node in world.nodes:
            await world.start_node(node)
        await trio.sleep(0.2)
        for index in range(plan.n_agents):
            await world.launch(index)
        async with trio.open_nursery() as events:
            for at, kind, params in plan.events:
                events.start_soon(_at, at, world.apply, kind, params)
            with trio.move_on_at(plan.heal_at):
                await trio.sleep_forever()
            events.cancel_scope.cancel()
        await world.heal()  # node by node: it may take a few seconds
        await trio.sleep(plan.end_at - plan.heal_at)  # the settle window, from the heal's end
        root.cancel_scope.cancel()


async def _at(at: float, fn, *args) -> None:  # type: ignore[no-untyped-def]
    await trio.sleep_until(at)
    await fn(*args)


def final_states(world: World) -> dict[str, dict[str, str]]:
    """agent → node → final durable state."""
    out: dict[str, dict[str, str]] = {}
    for node in world.nodes:
        for agent, record in node.disk.state.records.items():
            if record.state is not ABSENT:
                out.setdefault(agent, {})[node.name] = str(record.state)
    return out
