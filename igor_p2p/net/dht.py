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

A location record under ``/igor-loc/<did>`` is msgpack
``{"agent": did, "epoch": int, "owner": peer id, "wall_ns": int, "sig": 64 bytes}``; ``sig`` is the
owner's Ed25519 signature (its node key = its peer key) over :data:`LOCATION_DOMAIN` followed by
the canonical msgpack of the other four fields.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgpack
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
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


@dataclass
class LocationValidator(Validator):
    """``/igor-loc/`` validator: signed records only; ``select`` picks the highest epoch.

    Equal epochs from different owners are a conflict (two owners claim one epoch): the first
    of them in the list is kept and the conflict is appended to :attr:`conflicts`. Equal epochs
    from the same owner are a refresh: the newer ``wall_ns`` wins.
    """

    conflicts: list[tuple[str, int]] = field(default_factory=list)

    def validate(self, key: str, value: bytes) -> None:
        did = key.removeprefix(f"/{LOCATION_NAMESPACE}/")
        try:
            decode_location(value, expected_agent=did)
        except InvalidLocationRecord as exc:
            raise ValueError(str(exc)) from exc  # KadDHT expects ValueError-like failures

    def select(self, key: str, values: list[bytes]) -> int:
        best_index, best = -1, None
        for index, value in enumerate(values):
            try:
                record = decode_location(value)
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


async def _feed_routing_table(dht: KadDHT, receive: trio.MemoryReceiveChannel[ID]) -> None:
    async for peer_id in receive:
        try:
            await dht.add_peer(peer_id)
        except Exception:
            LOG.debug("add_peer(%s) failed", peer_id, exc_info=True)


@asynccontextmanager
async def dht_service(
    host: IHost,
    bootstrap: Sequence[str | PeerInfo] = (),
    *,
    dial_timeout_s: float = 5.0,
) -> AsyncIterator[DhtService]:
    """Run a server-mode Kademlia DHT on ``host`` (already running) for the block."""
    dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
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
            for entry in bootstrap:
                peer_id = await dial(host, entry, timeout_s=dial_timeout_s)
                await dht.add_peer(peer_id)
            if bootstrap:
                await dht.refresh_routing_table()
            yield DhtService(dht=dht, locations=locations)
            nursery.cancel_scope.cancel()
    finally:
        network.remove_notifee(feeder)
        send.close()


async def put_location(service: DhtService, record: LocationRecord) -> None:
    """Store ``record``; refuse an older epoch or a conflicting record of the same epoch."""
    key = location_key(record.agent)
    value = record.encode()
    decode_location(value, expected_agent=record.agent)
    existing = service.dht.value_store.get(key.encode())
    if existing is not None:
        try:
            current = decode_location(existing.value)
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
    """The best location record the DHT gives us (a hint: may be stale, G5)."""
    value = await service.dht.get_value(location_key(did))
    if value is None:
        return None
    return decode_location(value, expected_agent=did)


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
