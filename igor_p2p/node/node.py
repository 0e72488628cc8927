"""The node: one root nursery holding the libp2p host, DHT, gossip, discovery, the tick
scheduler, the admin socket and the agent protocols.

Stopping the node (SIGINT/SIGTERM, or the ``stop`` admin call) drains the scheduler — every
agent finishes its tick and commits — then cancels the root scope; the host is closed under a
shield (G2) and the process exits 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost

from igor_p2p.agent.environment import ResumeReason
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.handoff.driver import HandoffDriver
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.logs import bind, get_logger
from igor_p2p.net.dht import DhtService, dht_service, get_location, put_location, sign_location
from igor_p2p.net.errors import NetError
from igor_p2p.net.faults import FaultGate
from igor_p2p.net.gossip import GossipConfig, GossipService, gossip_service
from igor_p2p.net.handlers import set_guarded_handler
from igor_p2p.net.host import HostConfig, build_host, full_addrs, running_host
from igor_p2p.net.logs import route_libp2p_logs
from igor_p2p.node.admin import AdminConfig, AdminServer
from igor_p2p.node.claims import ClaimBook
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.connectivity import run_connectivity
from igor_p2p.node.discovery import Discovery
from igor_p2p.node.info import INFO_PROTOCOL, info_handler, query_agent
from igor_p2p.node.peers import PROTOCOL_VERSION, Announcement, PeerTable
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import LaunchRequest, NotOwner, launch, resume
from igor_p2p.runtime.scheduler import SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.records import AuthorityRecord

log = get_logger(__name__)

AdminMethod = Callable[[dict[str, Any]], Awaitable[Any]]


class NodeNotReady(IgorError):
    """The node is still starting (or already stopping)."""


class UnknownAgent(IgorError):
    """No node we can reach knows this agent."""


@dataclass
class NodeParts:
    """What the running node holds; filled in as it starts."""

    services: NodeServices
    host: IHost
    dht: DhtService
    gossip: GossipService
    scheduler: TickScheduler
    peers: PeerTable
    discovery: Discovery
    nursery: trio.Nursery
    started_ns: int = field(default_factory=time.time_ns)


class Node:
    """An Igor-P2P node. ``await Node(config).run()`` until cancelled or stopped."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.parts: NodeParts | None = None
        self.ready = trio.Event()
        self._stop = trio.Event()
        self.admin_methods: dict[str, AdminMethod] = {}
        self.extensions: list[Callable[[Node], Awaitable[None]]] = []
        """Coroutines started in the root nursery once the node is up."""
        self.faults: FaultGate | None = None
        self.handoff: HandoffDriver | None = None
        self.claims: ClaimBook | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> NodeParts:
        if self.parts is None:
            raise NodeNotReady("the node is not running")
        return self.parts

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        self._trio_token = trio.lowlevel.current_trio_token()
        route_libp2p_logs(logging.getLogger("igor_p2p.libp2p"))
        data = DataDir(config.data_dir)
        runtime = RuntimeConfig(price=config.price, node_name=config.name)
        async with open_services(data, runtime) as services:
            bind(node=config.name or services.peer_id[-8:])
            host = build_host(HostConfig(key_seed=services.key.seed, announce=config.announce))
            # Gossip first: its protocol must be registered before any connection exists,
            # or peers that connect (the DHT's bootstrap dials) never open a mesh to us.
            self.faults = FaultGate(clock=services.clock, on_fault=self._on_fault)
            async with (
                self.faults.running(host),
                running_host(host, config.listen),
                gossip_service(host, GossipConfig()) as gossip,
                dht_service(host, config.bootstrap) as dht,
            ):
                await self._run_parts(services, host, dht, gossip, task_status)

    async def _run_parts(
        self,
        services: NodeServices,
        host: IHost,
        dht: DhtService,
        gossip: GossipService,
        task_status: trio.TaskStatus[Node],
    ) -> None:
        config = self.config
        peers = PeerTable(self_id=services.peer_id, down_after_s=config.peer_down_after_s)
        scheduler = TickScheduler(
            services,
            config.scheduler,
            SchedulerHooks(on_committed=self._on_committed, on_terminal=self._on_terminal),
        )
        async with trio.open_nursery() as nursery:
            discovery = Discovery(
                host, gossip, peers, self._announcement, config.announce_interval_s
            )
            self.parts = NodeParts(
                services=services,
                host=host,
                dht=dht,
                gossip=gossip,
                scheduler=scheduler,
                peers=peers,
                discovery=discovery,
                nursery=nursery,
            )
            set_guarded_handler(
                host,
                INFO_PROTOCOL,
                info_handler(self._local_agent_status),
                log=logging.getLogger("igor_p2p.node.info"),
            )
            await nursery.start(scheduler.run)
            await nursery.start(discovery.run)
            await nursery.start(run_connectivity, host, gossip, peers, config, config.data_dir)
            self.handoff = HandoffDriver(self)
            self.claims = ClaimBook(self)
            services.on_migration_request = self._on_migration_request
            self._register_admin_methods()
            admin = AdminServer(
                AdminConfig(
                    socket_path=services.data.admin_socket,
                    method_timeouts={"migrate": 120.0, "recover": 120.0, "stop": 60.0},
                ),
                self.admin_methods,
            )
            await nursery.start(admin.serve)
            if config.metrics:
                from igor_p2p.node.metrics import serve_metrics

                nursery.start_soon(serve_metrics, self, config.metrics)
            await self.handoff._abort_interrupted_handoffs()
            nursery.start_soon(self.handoff.run, self)
            await nursery.start(self.claims.run)
            for extension in self.extensions:
                nursery.start_soon(extension, self)
            services.history.emit("node", event="start", detail=",".join(full_addrs(host)))
            await self._resume_owned_agents()
            nursery.start_soon(self._location_loop)
            log.info("node ready", peer=services.peer_id, step=",".join(full_addrs(host)))
            self.ready.set()
            task_status.started(self)
            await self._stop.wait()
            log.info("node stopping")
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await scheduler.drain()
            services.history.emit("node", event="stop", detail="clean")
            nursery.cancel_scope.cancel()

    # ------------------------------------------------------------ agents

    def _announcement(self) -> Announcement:
        parts = self.running
        return Announcement(
            peer_id=parts.services.peer_id,
            name=self.config.name,
            addrs=tuple(full_addrs(parts.host)),
            capacity=self.config.capacity,
            price=self.config.price,
            load=len(parts.scheduler.agents),
            version=PROTOCOL_VERSION,
        )

    async def _resume_owned_agents(self) -> None:
        parts = self.running
        records = await parts.services.committer.read(lambda s: s.authorities())
        for record in records:
            if record.state is not AuthorityState.ACTIVE_OWNER:
                continue
            if record.agent in parts.scheduler.agents:
                continue
            if not self.config.test_disable_fencing and await self._stale_by_location(record):
                continue
            try:
                agent = await resume(parts.services, record.agent, ResumeReason.RESTARTED)
            except IgorError as exc:
                log.error("cannot resume", agent=record.agent, epoch=record.epoch, step=str(exc))
                continue
            self.host_agent(agent)

    async def _stale_by_location(self, record: AuthorityRecord) -> bool:
        """FS-4: a node restarted from a stale copy must not tick. If the DHT already knows
        a higher epoch for the agent, record RECOVERY_REQUIRED instead of resuming."""
        parts = self.running
        try:
            with trio.move_on_after(2.0):
                location = await get_location(parts.dht, record.agent)
                if location is not None and location.epoch > record.epoch:
                    from igor_p2p.store.ops import MarkRecoveryRequired, RaiseFence

                    reason = (
                        f"stale restart: owns epoch {record.epoch} but {location.owner} "
                        f"holds epoch {location.epoch}"
                    )
                    await parts.services.committer.commit(
                        [
                            RaiseFence(record.agent, location.epoch, "dht location record"),
                            MarkRecoveryRequired(record.agent, reason),
                        ]
                    )
                    log.warning("recovery required", agent=record.agent, step=reason)
                    return True
        except (NetError, IgorError) as exc:
            log.debug("location lookup failed: %s", exc, agent=record.agent)
        return False

    def host_agent(self, agent: HostedAgent) -> None:
        """Start ticking an agent this node durably owns, publish where it lives, and offer its
        module to peers that will need it (DHT provider record)."""
        parts = self.running
        parts.scheduler.add(agent)
        parts.nursery.start_soon(self.publish_location, agent.did, agent.epoch)
        parts.nursery.start_soon(self._provide_module, agent.head.wasm_hash)

    async def _provide_module(self, wasm_hash: bytes) -> None:
        from igor_p2p.net.dht import provide_module

        try:
            with trio.move_on_after(10):
                await provide_module(self.running.dht, wasm_hash)
        except Exception as exc:  # a provider record is a hint
            log.debug("provide failed: %s", exc)

    async def publish_location(self, did: str, epoch: int) -> None:
        parts = self.running
        record = sign_location(
            parts.services.key.seed, agent=did, epoch=epoch, wall_ns=time.time_ns()
        )
        try:
            with trio.move_on_after(10):
                await put_location(parts.dht, record)
        except (NetError, IgorError) as exc:
            log.debug("location publish failed: %s", exc, agent=did, epoch=epoch)

    async def _location_loop(self) -> None:
        while True:
            await trio.sleep(self.config.location_refresh_s)
            for did, agent in list(self.running.scheduler.agents.items()):
                await self.publish_location(did, agent.epoch)

    def _on_committed(self, agent: HostedAgent, checkpoint: Checkpoint) -> None:
        if self.claims is not None:
            self.claims.note_head(agent.did, agent.epoch, checkpoint.digest())

    def _on_fault(self, kind: str, detail: dict[str, Any]) -> None:
        if self.parts is not None:
            self.parts.services.history.emit("fault", fault=kind, detail=detail)

    def _on_migration_request(self, did: str, hint: bytes) -> None:
        """An agent called migrate_request: with --wander, move it (in the background)."""
        parts = self.parts
        if parts is None:
            return
        parts.services.history.emit(
            "handoff",
            agent=did,
            epoch=0,
            migration_id="",
            step="migrate_requested",
            peer="",
            detail=hint[:64].decode("utf-8", "replace"),
        )
        if self.config.wander is None or self.handoff is None or self._trio_token is None:
            return
        # Called from the tick's worker thread (the sandbox runs in trio.to_thread), where
        # nursery.start_soon is not allowed: hand the start to the trio thread.
        self._trio_token.run_sync_soon(parts.nursery.start_soon, self._wander, did)

    async def _wander(self, did: str) -> None:
        from igor_p2p.node.placement import choose_target

        parts = self.running
        agent = parts.scheduler.agents.get(did)
        if agent is None or self.handoff is None or self.handoff.lock(did).locked():
            return
        target = choose_target(
            self.config.wander or "random",
            parts.peers.up_peers(),
            agent.manifest.migration_policy,
        )
        if target is None:
            log.info("no placement target", agent=did)
            return
        try:
            await self.handoff.migrate(did, target)
        except IgorError as exc:
            log.info("wander failed: %s", exc, agent=did, peer=target)

    def _on_terminal(self, agent: HostedAgent, state: AuthorityState, reason: str) -> None:
        log.info("agent left the schedule", agent=agent.did, epoch=agent.epoch, step=state.value)

    async def launch(self, request: LaunchRequest) -> HostedAgent:
        parts = self.running
        if len(parts.scheduler.agents) >= self.config.capacity:
            raise NodeNotReady("node is at capacity")
        agent = await launch(parts.services, request)
        self.host_agent(agent)
        return agent

    async def halt(self, did: str, reason: str) -> dict[str, Any]:
        parts = self.running
        scheduler = parts.scheduler
        if did not in scheduler.agents:
            raise NotOwner(did, AuthorityState.RETIRED, "not ticking on this node")
        agent = await scheduler.quiesce(did)
        from igor_p2p.lineage.envelope import CheckpointKind
        from igor_p2p.runtime.ledger import append_ops

        final = await scheduler.checkpoint_now(did, CheckpointKind.FINAL)
        ops, record = append_ops(
            agent.record,
            [final],
            previous_tick=agent.head.tick,
            state=AuthorityState.HALTED,
            reason=reason,
        )
        await parts.services.committer.commit(ops)
        agent.committed(record, final)
        scheduler.remove(did)
        agent.close()
        parts.services.history.emit(
            "authority",
            agent=did,
            epoch=record.epoch,
            from_state="ACTIVE_OWNER",
            to_state="HALTED",
            reason=reason,
        )
        return {"agent": did, "state": "HALTED", "tick": final.tick}

    # ------------------------------------------------------------ status

    async def status(self) -> dict[str, Any]:
        parts = self.running
        records = await parts.services.committer.read(lambda s: s.authorities())
        by_state: dict[str, int] = {}
        for r in records:
            by_state[r.state.value] = by_state.get(r.state.value, 0) + 1
        now = trio.current_time()
        return {
            "peer_id": parts.services.peer_id,
            "name": self.config.name,
            "addrs": full_addrs(parts.host),
            "data_dir": str(self.config.data_dir),
            "price": self.config.price,
            "capacity": self.config.capacity,
            "agents_ticking": len(parts.scheduler.agents),
            "agents_by_state": by_state,
            "ticks_total": parts.scheduler.ticks_total,
            "peers_known": len(parts.peers.peers),
            "peers_up": len(parts.peers.up_peers()),
            "connections": len(parts.host.get_network().connections),
            "uptime_s": round((time.time_ns() - parts.started_ns) / 1e9, 3),
            "version": PROTOCOL_VERSION,
            "peers": parts.peers.to_json(now),
        }

    async def agents(self) -> list[dict[str, Any]]:
        parts = self.running
        records = await parts.services.committer.read(lambda s: s.authorities())
        return [await self._describe(r) for r in records]

    async def _describe(self, record: AuthorityRecord) -> dict[str, Any]:
        parts = self.running
        hosted = parts.scheduler.agents.get(record.agent)
        out: dict[str, Any] = {
            "agent": record.agent,
            "state": record.state.value,
            "epoch": record.epoch,
            "reason": record.reason,
            "owner_peer": parts.services.peer_id
            if record.state is AuthorityState.ACTIVE_OWNER
            else record.peer,
            "node": self.config.name,
        }
        if hosted is not None:
            out.update(tick=hosted.tick, budget=hosted.budget, committed_tick=hosted.head.tick)
        else:
            blob = await parts.services.committer.read(lambda s: s.head_blob(record.agent))
            if blob is not None:
                entry = decode_entry(blob)
                if isinstance(entry, Checkpoint):
                    out.update(tick=entry.tick, budget=entry.budget, committed_tick=entry.tick)
        return out

    async def _local_agent_status(self, did: str) -> dict[str, Any]:
        record = await self.running.services.committer.read(lambda s: s.authority(did))
        if record is None:
            return {"agent": did, "found": False}
        return {"found": True, **await self._describe(record)}

    async def agent_status(self, did: str) -> dict[str, Any]:
        """What this node knows; if it does not own the agent, ask the DHT where it lives, and
        when the DHT has nothing newer, follow the forwarding tombstones hop by hop."""
        local = await self._local_agent_status(did)
        if local.get("found") and local["state"] == AuthorityState.ACTIVE_OWNER.value:
            return {**local, "source": "local"}
        parts = self.running
        location = None
        with trio.move_on_after(5):
            location = await get_location(parts.dht, did)
        tombstone = await parts.services.committer.read(lambda s: s.tombstone(did))
        if tombstone is not None and (location is None or tombstone.epoch > location.epoch):
            return await self._follow_tombstones(did, tombstone.peer)
        if location is None:
            if local.get("found"):
                return {**local, "source": "local"}
            raise UnknownAgent(f"no record of {did} here or in the DHT")
        if location.owner == parts.services.peer_id:
            return {**local, "source": "local", "location_epoch": location.epoch}
        try:
            with trio.fail_after(5):
                remote = await query_agent(parts.host, location.owner, did)
        except Exception as exc:  # the owner may be down: report the location alone
            return {
                "agent": did,
                "found": True,
                "source": "dht",
                "owner_peer": location.owner,
                "epoch": location.epoch,
                "state": "UNKNOWN",
                "reason": f"owner unreachable: {type(exc).__name__}",
            }
        return {**remote, "source": "dht", "owner_peer": location.owner}

    async def _follow_tombstones(self, did: str, peer: str, max_hops: int = 8) -> dict[str, Any]:
        """Ask the node the agent left for, then the node it left that one for, and so on."""
        parts = self.running
        reply: dict[str, Any] = {}
        for hop in range(max_hops):
            try:
                with trio.fail_after(5):
                    reply = await query_agent(parts.host, peer, did)
            except Exception as exc:
                return {
                    "agent": did,
                    "found": True,
                    "source": "tombstone",
                    "owner_peer": peer,
                    "state": "UNKNOWN",
                    "reason": f"forwarded node unreachable: {type(exc).__name__}",
                    "hops": hop + 1,
                }
            nxt = reply.get("owner_peer")
            if reply.get("state") == AuthorityState.ACTIVE_OWNER.value or not isinstance(nxt, str):
                break
            if nxt == peer or nxt == parts.services.peer_id:
                break
            peer = nxt
        return {**reply, "source": "tombstone", "hops": hop + 1}

    # ------------------------------------------------------------ admin

    def _register_admin_methods(self) -> None:
        from igor_p2p.node.admin_methods import register_core_methods, register_handoff_methods

        register_core_methods(self)
        register_handoff_methods(self)
