"""The node: the composition root. One root nursery holds the libp2p host, DHT, gossip,
discovery, the tick scheduler, the node core (authority gate, witness, handoff, claims), the
admin socket and the optional metrics endpoint. Every part gets the narrow dependencies it needs
when it is built; none gets the node.

Stopping the node (SIGINT/SIGTERM, or the ``stop`` admin call) drains the scheduler — every
agent finishes its tick and commits — then cancels the root scope; the host is closed under a
shield (G2) and the process exits 0.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import BudgetExhausted, IntegrityFailure, TickFailed
from igor_p2p.core.config import CoreConfig
from igor_p2p.core.handoff import AgentBusy
from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.errors import IgorError
from igor_p2p.logs import bind, get_logger
from igor_p2p.net.dht import DhtService, dht_service, put_location, sign_location
from igor_p2p.net.errors import NetError
from igor_p2p.net.faults import FaultGate
from igor_p2p.net.gossip import GossipConfig, GossipService, PubsubGossip, gossip_service
from igor_p2p.net.host import HostConfig, build_host, full_addrs, running_host
from igor_p2p.net.logs import route_libp2p_logs
from igor_p2p.net.peerid import public_key_from_peer_id_text
from igor_p2p.net.ratelimit import HopLimiter, PeerRateLimiter
from igor_p2p.net.transport import Libp2pTransport
from igor_p2p.node.admin import AdminConfig, AdminServer
from igor_p2p.node.admin_methods import register_methods
from igor_p2p.node.api import NodeApi
from igor_p2p.node.claims import ClaimGossip
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.connectivity import run_connectivity
from igor_p2p.node.crashpoints import CrashPoints, with_crash_points
from igor_p2p.node.discovery import Discovery
from igor_p2p.node.log_methods import register_log_methods
from igor_p2p.node.peers import PROTOCOL_VERSION, Announcement, PeerEntry, PeerTable
from igor_p2p.node.placement import choose_target
from igor_p2p.node.request_limits import LimitedTransport, RequestLimits
from igor_p2p.runtime.capacity import NodeBudget
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.env import NodeEnv
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.runner import SchedulerRunner
from igor_p2p.runtime.scheduler import SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.adapter import SqliteAuthorityStore

log = get_logger(__name__)

AdminMethod = Callable[[dict[str, Any]], Awaitable[Any]]


def node_budget(config: NodeConfig) -> NodeBudget:
    """The node-wide resource budget its configuration sets."""
    mib = 1024 * 1024
    return NodeBudget(
        max_agents=config.capacity,
        memory_bytes=config.memory_budget_mb * mib,
        disk_bytes=config.disk_budget_mb * mib,
    )


def core_config(config: NodeConfig) -> CoreConfig:
    """The node core's timeouts, from the node's settings."""
    return CoreConfig(
        request_timeout_s=config.handoff_timeout_s,
        offer_timeout_s=4 * config.handoff_timeout_s,
        handoff_deadline_s=6 * config.handoff_timeout_s,
        settle_after_s=3 * config.handoff_timeout_s,
        claim_round_s=config.handoff_timeout_s,
        witness_max_agents=config.witness_capacity,
        witness_max_bytes=config.witness_budget_mb * 1024 * 1024,
        backoff_min_s=max(0.05, config.recover_interval_s / 5),
        test_unsafe_resume=config.test_disable_fencing,
    )


class NodeNotReady(IgorError):
    """The node is still starting (or already stopping)."""


class PeerMembership:
    """The nodes believed up (for witness choice): this node and every peer announcing."""

    def __init__(self, me: bytes, peers: PeerTable) -> None:
        self.me = me
        self.peers = peers

    def up_nodes(self) -> list[bytes]:
        return [self.me, *self._keys(e for e in self.peers.peers.values() if e.up)]

    def down_nodes(self) -> list[bytes]:
        return self._keys(e for e in self.peers.peers.values() if not e.up)

    @staticmethod
    def _keys(entries: Iterable[PeerEntry]) -> list[bytes]:
        keys = []
        for entry in entries:
            try:
                keys.append(public_key_from_peer_id_text(entry.announcement.peer_id))
            except (IgorError, ValueError):
                continue
        return keys


@dataclass
class Running:
    """What a started node holds (every part present; nothing optional)."""

    api: NodeApi
    core: NodeCore
    faults: FaultGate
    nursery: trio.Nursery


class Node:
    """An Igor-P2P node. ``await Node(config).run()`` until cancelled or stopped."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.ready = trio.Event()
        self._stop = trio.Event()
        self.running: Running | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def api(self) -> NodeApi:
        if self.running is None:
            raise NodeNotReady("the node is not running")
        return self.running.api

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        route_libp2p_logs(logging.getLogger("igor_p2p.libp2p"))
        data = DataDir(config.data_dir)
        runtime = RuntimeConfig(
            price=config.price,
            node_name=config.name,
            resources=node_budget(config),
            retention=config.retention,
            replay_on_arrival=config.replay_on_arrival,
        )
        async with open_services(data, runtime) as services:
            bind(node=config.name or services.peer_id[-8:])
            host = build_host(HostConfig(key_seed=services.key.seed, announce=config.announce))
            faults = FaultGate(clock=services.clock, on_fault=_fault_recorder(services))
            # Gossip first: its protocol must be registered before any connection exists,
            # or peers that connect (the DHT's bootstrap dials) never open a mesh to us.
            async with (
                faults.running(host),
                running_host(host, config.listen),
                gossip_service(host, GossipConfig()) as gossip,
                dht_service(host, config.bootstrap) as dht,
                trio.open_nursery() as nursery,
            ):
                await self._run_parts(services, host, dht, gossip, faults, nursery, task_status)

    async def _run_parts(
        self,
        services: NodeServices,
        host: IHost,
        dht: DhtService,
        gossip: GossipService,
        faults: FaultGate,
        nursery: trio.Nursery,
        task_status: trio.TaskStatus[Node],
    ) -> None:
        config = self.config
        store = SqliteAuthorityStore(services.store, services.committer)
        peers = PeerTable(self_id=services.peer_id, down_after_s=config.peer_down_after_s)
        hooks = SchedulerHooks()
        scheduler = TickScheduler(
            services,
            services.tick_sink(),
            config.scheduler,
            hooks,
        )
        runner = SchedulerRunner(services, store, scheduler)
        limits = RequestLimits(
            services.key.public_key,
            now=trio.current_time,
            offers=PeerRateLimiter(config.offers_per_s, 5 * config.offers_per_s),
            arrivals=HopLimiter(config.arrivals_per_min, 60.0),
        )
        transport = LimitedTransport(
            Libp2pTransport(host, services.key.public_key, gate=faults), limits
        )
        env = NodeEnv(services.clock, services.history)
        membership = PeerMembership(services.key.public_key, peers)
        publisher = _Publisher()
        core_store, core_transport = with_crash_points(store, transport, CrashPoints.from_env())
        core = NodeCore(
            services.key,
            CorePorts(
                store=core_store,
                transport=core_transport,
                runner=runner,
                env=env,
                membership=membership,
                publish=publisher.publish,
            ),
            core_config(config),
        )
        api = NodeApi(
            config=config,
            services=services,
            store=store,
            core=core,
            scheduler=scheduler,
            peers=peers,
            host=host,
            dht=dht,
            limits=limits,
        )
        discovery = Discovery(
            host,
            gossip,
            peers,
            lambda: _announcement(api),
            config.announce_interval_s,
            on_peer_up=lambda _peer: core.network_changed(),
        )
        faults.on_fault = _also_on_heal(faults.on_fault, core.network_changed)
        claims = ClaimGossip(
            core=core,
            store=store,
            transport=transport,
            gossip=PubsubGossip(gossip),
            interval_s=lambda: config.announce_interval_s,
            counts=api.claim_counts,
        )
        locations = _Locations(services, dht)
        publisher.targets = [claims.publish, locations.publish]
        hooks.on_terminal = lambda agent, event: _report(core, agent, event)
        runner.resources = api.resource_check
        runner.on_hosted = locations.provide_module_soon
        wanderer = _Wanderer(api, config.wander, scheduler)
        services.on_migration_request = wanderer.requested
        self.running = Running(api=api, core=core, faults=faults, nursery=nursery)

        methods: dict[str, AdminMethod] = {}
        register_methods(methods, api, faults, stop=self.stop)
        register_log_methods(methods, services)
        admin = AdminServer(
            AdminConfig(
                socket_path=services.data.admin_socket,
                method_timeouts={
                    "migrate": 120.0,
                    "recover": 120.0,
                    "resume": 120.0,
                    "stop": 60.0,
                },
            ),
            methods,
        )
        await nursery.start(scheduler.run)
        await nursery.start(discovery.run)
        await nursery.start(run_connectivity, host, gossip, peers, config, config.data_dir)
        await nursery.start(admin.serve)
        if config.metrics:
            from igor_p2p.node.metrics import serve_metrics

            nursery.start_soon(serve_metrics, api, config.metrics)
        locations.nursery = nursery
        wanderer.nursery = nursery
        wanderer.token = trio.lowlevel.current_trio_token()
        await nursery.start(claims.run)
        await nursery.start(core.run)
        for problem in services.store.problems_at_open:
            if problem.agent:
                await _feed_integrity(core, problem.agent, problem.reason)
        nursery.start_soon(locations.refresh_loop, config.location_refresh_s, runner)
        services.history.emit("node", event="start", detail=",".join(full_addrs(host)))
        log.info("node ready", peer=services.peer_id, step=",".join(full_addrs(host)))
        self.ready.set()
        task_status.started(self)
        await self._stop.wait()
        log.info("node stopping")
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await scheduler.drain()
        services.history.emit("node", event="stop", detail="clean")
        nursery.cancel_scope.cancel()


def _fault_recorder(services: NodeServices) -> Callable[[str, dict[str, Any]], None]:
    def record(kind: str, detail: dict[str, Any]) -> None:
        services.history.emit("fault", fault=kind, detail=detail)

    return record


NETWORK_CHANGES = frozenset({"unblock", "messages_cleared"})
"""Fault gate events after which the node's waiting retries try again at once."""


def _also_on_heal(
    record: Callable[[str, dict[str, Any]], None] | None, changed: Callable[[], None]
) -> Callable[[str, dict[str, Any]], None]:
    """The fault gate's callback, plus: a lifted block (``heal``) or lifted message faults (a
    request sent while they held may have been dropped) is a network change."""

    def on_fault(kind: str, detail: dict[str, Any]) -> None:
        if record is not None:
            record(kind, detail)
        if kind in NETWORK_CHANGES:
            changed()

    return on_fault


def _announcement(api: NodeApi) -> Announcement:
    return Announcement(
        peer_id=api.services.peer_id,
        name=api.config.name,
        addrs=tuple(full_addrs(api.host)),
        capacity=api.config.capacity,
        price=api.config.price,
        load=len(api.scheduler.agents),
        version=PROTOCOL_VERSION,
    )


def _report(core: NodeCore, agent: HostedAgent, event: BudgetExhausted | TickFailed) -> None:
    core.report(agent.did, event)


async def _feed_integrity(core: NodeCore, agent: str, reason: str) -> None:
    try:
        await core.gate.feed(agent, IntegrityFailure(f"integrity check at start: {reason}"))
    except IgorError as exc:
        log.warning("cannot record damage", agent=agent, step=str(exc))


class _Publisher:
    """The gate's PublishClaim fans out to claims gossip and the DHT location record."""

    def __init__(self) -> None:
        self.targets: Sequence[Callable[[str, EpochStart | None, int], None]] = ()

    def publish(self, agent: str, start: EpochStart | None, epoch: int) -> None:
        for target in self.targets:
            target(agent, start, epoch)


class _Locations:
    """DHT location records and module provider records (hints for finding agents)."""

    def __init__(self, services: NodeServices, dht: DhtService) -> None:
        self.services = services
        self.dht = dht
        self.nursery: trio.Nursery | None = None

    def publish(self, agent: str, start: EpochStart | None, epoch: int) -> None:
        if self.nursery is not None:
            self.nursery.start_soon(self._put, agent, epoch)

    async def _put(self, agent: str, epoch: int) -> None:
        record = sign_location(
            self.services.key.seed, agent=agent, epoch=epoch, wall_ns=self.services.clock.wall_ns()
        )
        try:
            with trio.move_on_after(10):
                await put_location(self.dht, record)
        except (NetError, IgorError) as exc:
            log.debug("location publish failed: %s", exc, agent=agent, epoch=epoch)

    def provide_module_soon(self, agent: HostedAgent) -> None:
        if self.nursery is not None:
            self.nursery.start_soon(self._provide, agent.head.wasm_hash)

    async def _provide(self, wasm_hash: bytes) -> None:
        from igor_p2p.net.dht import provide_module

        try:
            with trio.move_on_after(10):
                await provide_module(self.dht, wasm_hash)
        except Exception as exc:  # a provider record is a hint
            log.debug("provide failed: %s", exc)

    async def refresh_loop(self, interval_s: float, runner: SchedulerRunner) -> None:
        while True:
            await trio.sleep(interval_s)
            for agent, hosted in list(runner.scheduler.agents.items()):
                await self._put(agent, hosted.epoch)


class _Wanderer:
    """With ``--wander``: an agent's ``migrate_request`` moves it to a peer the policy picks."""

    def __init__(self, api: NodeApi, policy: str | None, scheduler: TickScheduler) -> None:
        self.api = api
        self.policy = policy
        self.scheduler = scheduler
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None

    def requested(self, did: str, hint: bytes) -> None:
        """Called from the tick's worker thread: hand the work to the trio thread."""
        self.api.services.history.emit(
            "handoff",
            agent=did,
            epoch=0,
            migration_id="",
            step="migrate_requested",
            peer="",
            detail=hint[:64].decode("utf-8", "replace"),
        )
        if self.policy is None or self.nursery is None or self.token is None:
            return
        self.token.run_sync_soon(self.nursery.start_soon, self._wander, did)

    async def _wander(self, did: str) -> None:
        agent = self.scheduler.agents.get(did)
        if agent is None:
            return
        target = choose_target(
            self.policy or "random",
            self.api.peers.up_peers(),
            agent.manifest.migration_policy,
            history=self.api.hops,
        )
        if target is None:
            log.info("no placement target", agent=did)
            return
        try:
            await self.api.migrate(did, target)
        except AgentBusy:
            return
        except IgorError as exc:
            self.api.hops.record(target, completed=False)
            log.info("wander failed: %s", exc, agent=did, peer=target)
        except Exception as exc:  # a bug must not end the node: the gate already halted the agent
            self.api.hops.record(target, completed=False)
            log.error(
                "wander failed unexpectedly",
                agent=did,
                peer=target,
                step=f"{type(exc).__name__}: {exc}",
                exc_info=(type(exc), exc, exc.__traceback__),
            )
