"""What an operator can ask a running node (the admin socket's methods call these).

:class:`NodeApi` holds narrow references to the parts it needs; every change of authority goes
through the node core (and so through the authority gate), never around it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from libp2p.abc import IHost

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.authority.record import ABSENT
from igor_p2p.authority.states import AuthorityState
from igor_p2p.core.handoff import MigrationResult
from igor_p2p.core.node_core import NodeCore
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.net.dht import DhtService, get_location
from igor_p2p.net.host import full_addrs
from igor_p2p.net.peerid import peer_id_from_public_key, public_key_from_peer_id_text
from igor_p2p.node.claims import ClaimCounts
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.lookup import describe_found, locate
from igor_p2p.node.peers import PROTOCOL_VERSION, PeerTable
from igor_p2p.node.placement import HopHistory
from igor_p2p.node.request_limits import RequestLimits
from igor_p2p.runtime.capacity import Demand, NodeUsage, ResourceCheck, admit
from igor_p2p.runtime.loader import LaunchRequest, prepare_launch
from igor_p2p.runtime.scheduler import ENVELOPE_ALLOWANCE_BYTES, TickScheduler, node_disk_usage
from igor_p2p.runtime.services import NodeServices
from igor_p2p.store.adapter import SqliteAuthorityStore


class UnknownAgent(IgorError):
    """No node we can reach knows this agent."""


class BadTargetName(InvalidInput):
    """The migration target is neither a peer ID nor a multiaddr with one."""


@dataclass
class NodeApi:
    config: NodeConfig
    services: NodeServices
    store: SqliteAuthorityStore
    core: NodeCore
    scheduler: TickScheduler
    peers: PeerTable
    host: IHost
    dht: DhtService
    hops: HopHistory = field(default_factory=HopHistory)
    claim_counts: ClaimCounts = field(default_factory=ClaimCounts)
    limits: RequestLimits | None = None
    """The per-peer request limits (None in tests that build an API without a network)."""
    started_ns: int = field(default_factory=time.time_ns)

    # ---------------------------------------------------------------- agents

    async def launch(self, request: LaunchRequest) -> dict[str, Any]:
        memory = self.services.sandbox.memory_cap(parse_manifest(request.manifest))
        size = len(request.wasm) + len(request.manifest) + ENVELOPE_ALLOWANCE_BYTES
        demand = Demand(memory_bytes=memory, disk_bytes=size, lineage_bytes=size)
        admit(
            demand, await self.resource_usage(), self.services.config.resources
        ).raise_if_refused()
        launch = await prepare_launch(self.services, request, self.core.witnesses_for_launch())
        await self.core.launched(
            launch.did, launch.genesis.encode(), launch.witnesses, launch.wasm, launch.manifest
        )
        return {
            "agent": launch.did,
            "epoch": 1,
            "peer_id": self.services.peer_id,
            "witnesses": [peer_id_from_public_key(w) for w in launch.witnesses],
        }

    def target_key(self, to: str) -> bytes:
        try:
            return public_key_from_peer_id_text(to)
        except (IgorError, ValueError) as exc:
            raise BadTargetName(f"{to!r} is not a peer ID") from exc

    async def migrate(self, did: str, to: str) -> dict[str, Any]:
        if to.startswith("/"):
            from igor_p2p.net.host import dial

            to = str(await dial(self.host, to, timeout_s=5.0))
        target = self.target_key(to)
        outcome = await self.core.migrate(did, target)
        self.hops.record(to, completed=outcome.result is MigrationResult.TRANSFERRED)
        return {"agent": did, "to": to, "outcome": outcome.result.value, **outcome.to_json()}

    async def halt(self, did: str, reason: str) -> dict[str, Any]:
        await self.core.halt(did, reason)
        return await self.local_status(did)

    async def resume(self, did: str) -> dict[str, Any]:
        await self.core.resume(did)
        return await self.local_status(did)

    async def force_recover(self, did: str, operator: str) -> dict[str, Any]:
        await self.core.force_recover(did, operator)
        return await self.local_status(did)

    # ---------------------------------------------------------------- resources

    async def resource_usage(self) -> NodeUsage:
        disk = await trio.to_thread.run_sync(node_disk_usage, self.services)
        agents = self.scheduler.agents
        reserved = sum(self.services.sandbox.memory_cap(a.manifest) for a in agents.values())
        return replace(disk, agents=len(agents), memory_reserved=reserved)

    async def resource_check(self) -> ResourceCheck:
        return ResourceCheck(
            usage=await self.resource_usage(),
            budget=self.services.config.resources,
            default_memory_cap=self.services.sandbox.config.memory_limit_bytes,
        )

    # ---------------------------------------------------------------- status

    async def status(self) -> dict[str, Any]:
        records = await self.store.records()
        by_state: dict[str, int] = {}
        for _agent, record in records:
            by_state[str(record.state)] = by_state.get(str(record.state), 0) + 1
        now = trio.current_time()
        return {
            "peer_id": self.services.peer_id,
            "name": self.config.name,
            "addrs": full_addrs(self.host),
            "data_dir": str(self.config.data_dir),
            "price": self.config.price,
            "capacity": self.config.capacity,
            "agents_ticking": len(self.scheduler.agents),
            "ticking_suspended": self.scheduler.suspended,
            "agents_by_state": by_state,
            "ticks_total": self.scheduler.ticks_total,
            "peers_known": len(self.peers.peers),
            "peers_up": len(self.peers.up_peers()),
            "connections": len(self.host.get_network().connections),
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 3),
            "version": PROTOCOL_VERSION,
            "peers": self.peers.to_json(now),
            "claims": self.claim_counts.to_json(),
            "limits": self.limits.to_json() if self.limits is not None else {},
        }

    async def agents(self) -> list[dict[str, Any]]:
        return [await self.local_status(agent) for agent, _ in await self.store.records()]

    async def local_status(self, did: str) -> dict[str, Any]:
        view = self.core.describe(did)
        if view is None:
            record = await self.store.record(did)
            if record is None or record.state is ABSENT:
                return {"agent": did, "found": False}
            view = {"agent": did, "state": str(record.state), "epoch": record.epoch}
        out: dict[str, Any] = {
            **view,
            "found": True,
            "node": self.config.name,
            "owner_peer": self.services.peer_id
            if view["state"] == AuthorityState.ACTIVE_OWNER.value
            else _successor_peer(view),
        }
        hosted = self.scheduler.held(did)
        if hosted is not None:
            out.update(tick=hosted.tick, budget=hosted.budget, committed_tick=hosted.head.tick)
        else:
            try:
                last = await self.store.last_checkpoint(did)
            except IgorError:
                out["damaged"] = True
                return out
            if isinstance(last, Checkpoint):
                out.update(tick=last.tick, budget=last.budget, committed_tick=last.tick)
        return out

    async def agent_status(self, did: str) -> dict[str, Any]:
        """What this node knows; for an agent owned elsewhere, the verified remote answer."""
        local = await self.local_status(did)
        if local.get("found") and local.get("holding") == "OWNER":
            return {**local, "source": "local", "verified": True}
        hints: list[bytes] = []
        successor = local.get("successor")
        if isinstance(successor, dict):
            hints.append(bytes.fromhex(successor["owner"]))
        with trio.move_on_after(5):
            location = await get_location(self.dht, did)
            if location is not None:
                with contextlib.suppress(IgorError, ValueError):
                    hints.append(public_key_from_peer_id_text(location.owner))
        if not hints and local.get("found"):
            return {**local, "source": "local"}
        found, hops = await locate(self.core.ports.transport, did, hints)
        remote = describe_found(did, found, hops)
        if not remote["found"] and not local.get("found"):
            raise UnknownAgent(f"no node that could be reached knows {did}")
        if not remote["found"]:
            return {**local, "source": "local"}
        return {**remote, "source": "network"}


def _successor_peer(view: dict[str, Any]) -> str | None:
    successor = view.get("successor")
    if isinstance(successor, dict):
        return peer_id_from_public_key(bytes.fromhex(successor["owner"]))
    return None


def head_checkpoint(blob: bytes | None) -> Checkpoint | None:
    if blob is None:
        return None
    entry = decode_entry(blob)
    return entry if isinstance(entry, Checkpoint) else None
