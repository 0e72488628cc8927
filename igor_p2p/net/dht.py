"""Kademlia (server mode) with signed agent-location records and module providers.

G5 workarounds, each in one place here:

* ``KadDHT`` does not add connected peers to its routing table: :class:`_RoutingTableFeeder`
  (a network notifee) adds every newly connected peer, and :func:`dht_service` ``add_peer``\\ s
  each bootstrap peer right after dialing it.
* Without a namespace validator remote nodes keep the first value written: the ``igor-loc``
  namespace gets :class:`LocationValidator` (signed records, highest epoch wins).
* ``find_providers`` returns duplicates: :func:`find_module_providers` deduplicates. It also
  returns only the local provider records when there are any, so the list is a hint, not
  complete.
* ``get_value`` returns the local copy first: readers treat a location as a hint and follow
  newer epochs when a node redirects them.

Latency (G18, G19; ``docs/net.md``): a stock ``get_value`` runs an iterative FIND_NODE pass,
then asks *every* peer found (no early exit), then writes the record back to the peers that
lacked it — about 25 RPCs, each on a new stream, and one silent peer stalls it for 2 × 10 s.

* :func:`lookup_value` asks the ``alpha`` routing-table peers closest to the key (connected
  ones first among the nearest) in parallel, each with a short ``per_query_s`` deadline,
  follows the closer peers they return, and stops at the first answer that passes
  ``check``. :func:`get_location` uses it with :func:`check_location`, then falls back to
  the local copy.
* :func:`_shorten_query_timeouts` is the one place that lowers py-libp2p's ``QUERY_TIMEOUT``
  (imported by name into three modules) for what still runs the stock code paths (``put_value``,
  providers, refresh).
* The DHT's maintenance loop (refresh, republish, cleanup) runs at start and then every 600 s on
  every node at once; :func:`_maintenance_loop` replaces it with a jittered interval that grows
  with the routing table.

A location record under ``/igor-loc/<did>`` is msgpack
``{"agent": did, "epoch": int, "owner": peer id, "wall_ns": int, "sig": 64 bytes}``; ``sig`` is the
owner's Ed25519 signature (its node key = its peer key) over :data:`LOCATION_DOMAIN` followed by
the canonical msgpack of the other four fields.
"""

import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libp2p.kad_dht.kad_dht as libp2p_kad_dht
import libp2p.kad_dht.peer_routing as libp2p_peer_routing
import libp2p.kad_dht.provider_store as libp2p_provider_store
import msgpack
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.kad_dht.common import BUCKET_SIZE
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import Validator
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from nacl.signing import SigningKey

from igor_p2p.net.errors import InvalidLocationRecord, NetError
from igor_p2p.net.host import dial
from igor_p2p.net.keys import peer_id_from_seed, verify_peer_signature

LOG = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 1.0
"""G19: py-libp2p waits 10 s per DHT query; one RPC takes ~10 ms on loopback or a LAN."""
LOOKUP_ALPHA = 3
"""Queries in flight at once in :func:`lookup_value`."""
LOOKUP_PER_QUERY_S = 0.5
LOOKUP_HEDGE_S = 0.02
"""Start another query when the ones in flight have not answered within this."""
LOOKUP_DEADLINE_S = 3.0
FIRST_REFRESH_S = (2.0, 20.0)
FEED_RETRY_S = (0.0, 0.5, 1.0, 2.0, 4.0)
"""Delays between attempts to add a newly connected peer to the routing table."""
MAINTENANCE_BASE_S = 600.0
"""py-libp2p's refresh interval; ours grows with the routing table and is jittered ±25 %."""
T = TypeVar("T")

LOCATION_NAMESPACE = "igor-loc"
LOCATION_DOMAIN = b"igor-p2p/location/v1\x00"
MODULE_KEY_PREFIX = "/igor-mod/"
MAX_LOCATION_RECORD_SIZE = 1024
MAX_EPOCH = 2**63 - 1
"""Epochs (and ``wall_ns``) are signed 64-bit wherever they are stored."""
MAX_ID_CHARS = 128
_LOCATION_FIELDS = frozenset({"agent", "epoch", "owner", "wall_ns", "sig"})


class LocationConflict(NetError):
    """Two different validly signed location records claim the same agent and epoch."""


def location_key(did: str) -> str:
    return f"/{LOCATION_NAMESPACE}/{did}"


@dataclass(frozen=True)
class LocationRecord:
    """Where an agent lives at ``epoch``, signed by that epoch's owner node."""

    agent: str
    epoch: int
    owner: str
    wall_ns: int
    sig: bytes = b""

    def signed_bytes(self) -> bytes:
        body = {
            "agent": self.agent,
            "epoch": self.epoch,
            "owner": self.owner,
            "wall_ns": self.wall_ns,
        }
        return LOCATION_DOMAIN + msgpack.packb(body, use_bin_type=True)

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "agent": self.agent,
                "epoch": self.epoch,
                "owner": self.owner,
                "wall_ns": self.wall_ns,
                "sig": self.sig,
            },
            use_bin_type=True,
        )


def sign_location(node_seed: bytes, *, agent: str, epoch: int, wall_ns: int) -> LocationRecord:
    """A location record for ``agent`` owned by the node of ``node_seed``, signed by it."""
    unsigned = LocationRecord(agent, epoch, peer_id_from_seed(node_seed), wall_ns)
    sig = SigningKey(node_seed).sign(unsigned.signed_bytes()).signature
    return LocationRecord(agent, epoch, unsigned.owner, wall_ns, sig)


def decode_location(value: bytes, *, expected_agent: str | None = None) -> LocationRecord:
    """Parse and verify a location record; raise :class:`InvalidLocationRecord` otherwise."""
    if not isinstance(value, bytes | bytearray) or len(value) > MAX_LOCATION_RECORD_SIZE:
        raise InvalidLocationRecord("location record missing or too large")
    try:
        raw = msgpack.unpackb(bytes(value), raw=False, strict_map_key=True)
    except Exception as exc:
        raise InvalidLocationRecord("location record is not msgpack") from exc
    if not isinstance(raw, dict) or set(raw) != _LOCATION_FIELDS:
        raise InvalidLocationRecord("location record has the wrong fields")
    agent, epoch, owner, wall_ns, sig = (
        raw[k] for k in ("agent", "epoch", "owner", "wall_ns", "sig")
    )
    if not (
        isinstance(agent, str)
        and isinstance(owner, str)
        and isinstance(sig, bytes)
        and type(epoch) is int
        and type(wall_ns) is int
    ):
        raise InvalidLocationRecord("location record has fields of the wrong type")
    if not (1 <= epoch <= MAX_EPOCH and 0 <= wall_ns <= MAX_EPOCH):
        raise InvalidLocationRecord("location record epoch or time out of range")
    if not (0 < len(agent) <= MAX_ID_CHARS and 0 < len(owner) <= MAX_ID_CHARS and len(sig) == 64):
        raise InvalidLocationRecord("location record has fields of the wrong size")
    record = LocationRecord(agent, epoch, owner, wall_ns, sig)
    if expected_agent is not None and agent != expected_agent:
        raise InvalidLocationRecord("location record names another agent than its key")
    if not verify_peer_signature(owner, record.signed_bytes(), sig):
        raise InvalidLocationRecord("location record signature does not verify")
    return record


def check_location(key: str, value: bytes) -> LocationRecord:
    """THE validation hook for location records: every path (the DHT validator, lookups,
    ``put_location``) checks a record through this one function, so it can be swapped for
    one that also checks authority proofs. Raises :class:`InvalidLocationRecord`."""
    return decode_location(value, expected_agent=key.removeprefix(f"/{LOCATION_NAMESPACE}/"))


@dataclass
class LocationValidator(Validator):
    """``/igor-loc/`` validator: signed records only; ``select`` picks the highest epoch.

    Equal epochs from different owners are a conflict (two owners claim one epoch): the first
    of them in the list is kept and the conflict is appended to :attr:`conflicts`. Equal epochs
    from the same owner are a refresh: the newer ``wall_ns`` wins.
    """

    conflicts: list[tuple[str, int]] = field(default_factory=list)

    def validate(self, key: str, value: bytes) -> None:
        try:
            check_location(key, value)
        except InvalidLocationRecord as exc:
            raise ValueError(str(exc)) from exc  # KadDHT expects ValueError-like failures

    def select(self, key: str, values: list[bytes]) -> int:
        best_index, best = -1, None
        for index, value in enumerate(values):
            try:
                record = check_location(key, value)
            except InvalidLocationRecord:
                continue
            if best is None or record.epoch > best.epoch:
                best_index, best = index, record
            elif record.epoch == best.epoch and record.owner != best.owner:
                self.conflicts.append((key, record.epoch))
            elif record.epoch == best.epoch and record.wall_ns > best.wall_ns:
                best_index, best = index, record  # the same owner refreshing its record
        if best_index < 0:
            raise ValueError("no valid location record to select")
        return best_index


def location_conflict(values: Sequence[bytes]) -> bool:
    """True when two different valid records among ``values`` share the highest epoch."""
    records = []
    for value in values:
        try:
            records.append(decode_location(value))
        except InvalidLocationRecord:
            continue
    if not records:
        return False
    top = max(r.epoch for r in records)
    return len({r.owner for r in records if r.epoch == top}) > 1


class _RoutingTableFeeder(INotifee):
    """G5: hands every newly connected peer to the DHT's routing table (via a channel)."""

    def __init__(self, send: trio.MemorySendChannel[ID]) -> None:
        self.send = send

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self.send.send_nowait(conn.muxed_conn.peer_id)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        except Exception:
            LOG.debug("routing-table feeder could not queue a peer", exc_info=True)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        return None

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None


@dataclass
class DhtService:
    dht: KadDHT
    locations: LocationValidator


async def _add_peer_soon(dht: KadDHT, peer_id: ID) -> None:
    """``add_peer`` needs the peer's listen addresses, which an inbound connection only
    brings with identify, a moment later: retry a few times."""
    for delay in FEED_RETRY_S:
        await trio.sleep(delay)
        try:
            if await dht.add_peer(peer_id):
                return
        except Exception:
            LOG.debug("add_peer(%s) failed", peer_id, exc_info=True)


async def _feed_routing_table(dht: KadDHT, receive: trio.MemoryReceiveChannel[ID]) -> None:
    async with trio.open_nursery() as nursery:
        async for peer_id in receive:
            nursery.start_soon(_add_peer_soon, dht, peer_id)


def _shorten_query_timeouts(seconds: float = QUERY_TIMEOUT_S) -> None:
    """G19: the ONE place that patches py-libp2p's per-query DHT timeout (process-wide); the
    constant is imported by name into these three modules."""
    for module in (libp2p_kad_dht, libp2p_peer_routing, libp2p_provider_store):
        module.QUERY_TIMEOUT = seconds  # type: ignore[attr-defined]


def maintenance_interval_s(routing_table_size: int, rng: random.Random) -> float:
    """600 s up to 16 routing-table peers, then proportionally longer, ±25 % jitter."""
    return MAINTENANCE_BASE_S * max(1.0, routing_table_size / 16) * rng.uniform(0.75, 1.25)


async def _maintenance_loop(dht: KadDHT) -> None:
    """What ``KadDHT._run_main_loop`` does (refresh, republish, cleanup), but first after an
    interval rather than at start (:func:`dht_service` refreshes after bootstrap), and at a
    jittered interval that grows with the network, so N nodes don't refresh in lock-step."""
    rng = random.Random()
    while True:
        await trio.sleep(maintenance_interval_s(dht.routing_table.size(), rng))
        try:
            await dht.refresh_routing_table()
            await dht.provider_store._republish_provider_records()
            await dht.value_store._republish_records(dht.peer_routing)
            dht.value_store.cleanup_expired()
            dht.provider_store.cleanup_expired()
        except Exception as exc:  # maintenance is best-effort
            LOG.debug("DHT maintenance failed: %s", exc)


async def _bootstrap(
    dht: KadDHT, host: IHost, bootstrap: Sequence[str | PeerInfo], dial_timeout_s: float
) -> int:
    """Dial every bootstrap peer at once; add those reached to the routing table. Failures
    are logged, not raised (the connection manager keeps redialing with backoff)."""
    reached: list[ID] = []

    async def one(entry: str | PeerInfo) -> None:
        try:
            reached.append(await dial(host, entry, timeout_s=dial_timeout_s))
        except NetError as exc:
            LOG.info("bootstrap dial failed: %s", exc)

    async with trio.open_nursery() as nursery:
        for entry in bootstrap:
            nursery.start_soon(one, entry)
    for peer_id in reached:
        try:
            await dht.add_peer(peer_id)
        except Exception:
            LOG.debug("add_peer(%s) failed", peer_id, exc_info=True)
    return len(reached)


async def _refresh_soon(dht: KadDHT, after_s: tuple[float, float]) -> None:
    """The first routing-table refresh, a random few seconds after start: a refresh dials the
    closest peers of a key per bucket, and N nodes starting together would all do it at
    once (the routing table already holds every peer we connect to, G5)."""
    await trio.sleep(random.uniform(*after_s))
    try:
        with trio.move_on_after(30):
            await dht.refresh_routing_table()
    except Exception as exc:
        LOG.debug("routing-table refresh failed: %s", exc)


@asynccontextmanager
async def dht_service(
    host: IHost,
    bootstrap: Sequence[str | PeerInfo] = (),
    *,
    dial_timeout_s: float = 5.0,
    first_refresh_s: tuple[float, float] | None = None,
) -> AsyncIterator[DhtService]:
    """Run a server-mode Kademlia DHT on ``host`` (already running) for the block.

    Bootstrap peers are dialed at once; a failed dial is logged, not raised. By default there
    is no refresh at start: the routing table fills from the connections (the feeder), lookups
    follow the closer peers they are given, and the maintenance loop refreshes later. A refresh
    dials the closest peers of a key per bucket: 64 nodes starting together spent most of
    their start-up on it. ``first_refresh_s``: refresh once, after a random delay in that
    range.
    """
    _shorten_query_timeouts()
    dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
    dht._run_main_loop = lambda: _maintenance_loop(dht)  # type: ignore[method-assign]
    locations = LocationValidator()
    dht.register_validator(LOCATION_NAMESPACE, locations)
    send, receive = trio.open_memory_channel[ID](1024)
    feeder = _RoutingTableFeeder(send)
    network = host.get_network()
    network.register_notifee(feeder)
    try:
        async with background_trio_service(dht), trio.open_nursery() as nursery:
            nursery.start_soon(_feed_routing_table, dht, receive)
            for peer in host.get_network().connections:
                send.send_nowait(peer)
            reached = await _bootstrap(dht, host, bootstrap, dial_timeout_s) if bootstrap else 0
            if reached and first_refresh_s is not None:
                nursery.start_soon(_refresh_soon, dht, first_refresh_s)
            yield DhtService(dht=dht, locations=locations)
            nursery.cancel_scope.cancel()
    finally:
        network.remove_notifee(feeder)
        send.close()


def _lookup_order(dht: KadDHT, key: bytes, peers: Sequence[ID]) -> list[ID]:
    """``peers`` by XOR distance to ``key``, the connected ones among the ``BUCKET_SIZE``
    nearest first (a query to them needs no dial; while the network has at most k nodes
    every one of them holds every record)."""
    ordered = sort_peer_ids_by_distance(key, list(peers))
    near, far = ordered[:BUCKET_SIZE], ordered[BUCKET_SIZE:]
    connected = dht.host.get_network().connections
    near.sort(key=lambda p: p not in connected)  # stable: keeps distance order within each
    return near + far


async def lookup_value(
    dht: KadDHT,
    key: str,
    check: Callable[[str, bytes], T],
    *,
    alpha: int = LOOKUP_ALPHA,
    per_query_s: float = LOOKUP_PER_QUERY_S,
    deadline_s: float = LOOKUP_DEADLINE_S,
    hedge_s: float = LOOKUP_HEDGE_S,
) -> tuple[T, bytes] | None:
    """The first value for ``key`` that passes ``check`` (which returns the parsed value or
    raises), asking up to ``alpha`` peers at once from the routing table and the closer peers
    they name; None when nobody has one within ``deadline_s``. Does not read the local store.

    Queries are hedged: the next one starts when one ends without a valid value, or when
    ``hedge_s`` passes without an answer, so a quick first answer costs one RPC and a slow or
    silent peer costs ``hedge_s``, not ``per_query_s``.
    """
    kb = key.encode()
    own = dht.host.get_id()
    start = [p for p in dht.routing_table.find_local_closest_peers(kb, BUCKET_SIZE) if p != own]
    queue = _lookup_order(dht, kb, start)
    asked: set[ID] = set(queue)
    found: list[tuple[T, bytes]] = []
    send, receive = trio.open_memory_channel[tuple[ID, Any, list[ID]]](64)

    async def ask(peer: ID) -> None:
        result: Any = None
        closer: list[ID] = []
        with trio.move_on_after(per_query_s):
            try:
                result, closer = await dht.value_store._get_from_peer(
                    peer, kb, return_record=True, return_closer_peers=True
                )
            except Exception as exc:  # a dead or hostile peer: skip it
                LOG.debug("GET_VALUE to %s failed: %s", peer, type(exc).__name__)
        await send.send((peer, result, closer))

    with trio.move_on_after(deadline_s):
        async with trio.open_nursery() as nursery:
            in_flight = 0
            while queue or in_flight:
                if queue and in_flight < alpha:
                    nursery.start_soon(ask, queue.pop(0))
                    in_flight += 1
                can_hedge = bool(queue) and in_flight < alpha
                answer = None
                with trio.move_on_after(hedge_s if can_hedge else deadline_s):
                    answer = await receive.receive()
                if answer is None:  # no answer within the hedge delay: one more query
                    continue
                _peer, record, closer = answer
                in_flight -= 1
                value = getattr(record, "value", None)
                if value:
                    try:
                        found.append((check(key, bytes(value)), bytes(value)))
                    except Exception as exc:
                        LOG.debug("invalid value for %s: %s", key, exc)
                    else:
                        nursery.cancel_scope.cancel()
                        break
                fresh = [p for p in closer if p not in asked and p != own]
                asked.update(fresh)
                queue = _lookup_order(dht, kb, queue + fresh)
    return found[0] if found else None


async def put_location(service: DhtService, record: LocationRecord) -> None:
    """Store ``record``; refuse an older epoch or a conflicting record of the same epoch."""
    key = location_key(record.agent)
    value = record.encode()
    check_location(key, value)
    existing = service.dht.value_store.get(key.encode())
    if existing is not None:
        try:
            current = check_location(key, existing.value)
        except InvalidLocationRecord:
            current = None
        if current is not None and current.epoch == record.epoch and current.owner != record.owner:
            raise LocationConflict(f"{record.agent}: another owner holds epoch {record.epoch}")
        if current is not None and current.epoch > record.epoch:
            raise LocationConflict(f"{record.agent}: epoch {current.epoch} already stored")
    try:
        await service.dht.put_value(key, value)
    except ValueError as exc:
        raise LocationConflict(f"{record.agent}: the DHT refused the record: {exc}") from exc


async def get_location(service: DhtService, did: str) -> LocationRecord | None:
    """Where ``did`` lives, as far as the DHT knows (a hint: may be stale, G5).

    The first valid record the network returns (:func:`lookup_value`), or the local copy if
    that is newer or the network has none; the better one is kept locally.
    """
    key = location_key(did)
    kb = key.encode()
    local_entry = service.dht.value_store.get(kb)
    local: LocationRecord | None = None
    if local_entry is not None:
        try:
            local = check_location(key, local_entry.value)
        except InvalidLocationRecord:
            local = None
    found = await lookup_value(service.dht, key, check_location)
    if found is None:
        return local
    remote, value = found
    if local is not None and local.epoch >= remote.epoch:
        return local
    service.dht.value_store.put(kb, value)
    return remote


def module_key(wasm_hash: bytes | str) -> str:
    digest = wasm_hash.hex() if isinstance(wasm_hash, bytes | bytearray) else wasm_hash.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("a module hash is 32 bytes (64 hex digits)")
    return MODULE_KEY_PREFIX + digest


async def provide_module(service: DhtService, wasm_hash: bytes | str) -> bool:
    """Announce that this node can serve the module with ``wasm_hash``."""
    return bool(await service.dht.provide(module_key(wasm_hash)))


async def find_module_providers(service: DhtService, wasm_hash: bytes | str) -> list[PeerInfo]:
    """Providers of the module, one entry per peer (G5: py-libp2p returns duplicates)."""
    found = await service.dht.find_providers(module_key(wasm_hash))
    unique: dict[ID, PeerInfo] = {}
    for info in found:
        unique.setdefault(info.peer_id, info)
    return list(unique.values())
