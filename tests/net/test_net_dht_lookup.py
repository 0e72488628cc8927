"""DHT lookups in milliseconds (G18, G19): a location lookup asks α peers in parallel, stops
at the first valid answer, and one silent peer cannot stall it."""

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import libp2p.kad_dht.kad_dht as kad_dht_module
import libp2p.kad_dht.peer_routing as peer_routing_module
import libp2p.kad_dht.provider_store as provider_store_module
import pytest
import trio
from conftest import _serve, fresh_seed
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.peer_routing import PeerRouting
from libp2p.kad_dht.value_store import ValueStore

from igor_p2p.net.dht import (
    LOOKUP_ALPHA,
    QUERY_TIMEOUT_S,
    DhtService,
    dht_service,
    get_location,
    location_key,
    maintenance_interval_s,
    put_location,
    sign_location,
)
from igor_p2p.net.host import HostConfig, build_host, full_addrs

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
KAD = TProtocol("/ipfs/kad/1.0.0")


async def _serve_dht(
    host: IHost, bootstrap: list[str], *, task_status: trio.TaskStatus[DhtService]
) -> None:
    async with dht_service(host, bootstrap) as service:
        task_status.started(service)
        await trio.sleep_forever()


async def _network(nursery: trio.Nursery, n: int) -> tuple[list[bytes], list[DhtService]]:
    seeds = [fresh_seed() for _ in range(n)]
    hosts = [await nursery.start(_serve, build_host(HostConfig(key_seed=s))) for s in seeds]
    services = [await nursery.start(_serve_dht, hosts[0], [])]
    for host in hosts[1:]:
        services.append(await nursery.start(_serve_dht, host, full_addrs(hosts[0])))
    for service in services:  # everyone knows everyone (as after the bootstrap refresh)
        await service.dht.refresh_routing_table()
    with trio.fail_after(10):
        while min(s.dht.get_routing_table_size() for s in services) < n - 1:
            await trio.sleep(0.01)
    return seeds, services


@pytest.fixture
def rpc_counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts FIND_NODE and GET_VALUE RPCs made by every host in the test."""
    counts: Counter[str] = Counter()
    find_node = PeerRouting._query_peer_for_closest
    get_value = ValueStore._get_from_peer

    async def counted_find_node(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["find_node"] += 1
        return await find_node(self, *args, **kwargs)

    async def counted_get_value(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["get_value"] += 1
        return await get_value(self, *args, **kwargs)

    monkeypatch.setattr(PeerRouting, "_query_peer_for_closest", counted_find_node)
    monkeypatch.setattr(ValueStore, "_get_from_peer", counted_get_value)
    yield counts


async def test_a_location_lookup_is_at_most_alpha_get_values_and_no_find_node(
    nursery: trio.Nursery, rpc_counts: Counter[str]
) -> None:
    """G18: py-libp2p's get_value runs a FIND_NODE pass and then asks every peer found; ours
    asks the α closest at once and stops at the first valid answer."""
    seeds, services = await _network(nursery, 6)
    record = sign_location(seeds[0], agent=DID, epoch=1, wall_ns=1)
    await put_location(services[0], record)
    key = location_key(DID)
    reader = services[5].dht

    reader.value_store.remove(key.encode())
    rpc_counts.clear()
    assert await get_location(services[5], DID) == record
    assert rpc_counts["find_node"] == 0
    assert 1 <= rpc_counts["get_value"] <= LOOKUP_ALPHA

    reader.value_store.remove(key.encode())
    rpc_counts.clear()
    assert await reader.get_value(key) == record.encode()  # the stock path, for comparison
    assert rpc_counts["find_node"] >= 3 and rpc_counts["get_value"] >= 4


async def test_a_forged_answer_is_skipped_and_the_next_valid_one_returned(
    nursery: trio.Nursery,
) -> None:
    seeds, services = await _network(nursery, 5)
    record = sign_location(seeds[0], agent=DID, epoch=3, wall_ns=1)
    await put_location(services[0], record)
    kb = location_key(DID).encode()
    # Every peer but one serves a record signed by the wrong key (stored past the validator).
    forged = sign_location(seeds[1], agent=DID, epoch=9, wall_ns=1)
    forged_bytes = forged.encode().replace(forged.owner.encode(), record.owner.encode())
    for service in services[1:4]:
        service.dht.value_store.put(kb, forged_bytes)
    services[4].dht.value_store.remove(kb)
    assert await get_location(services[4], DID) == record


async def test_one_silent_peer_does_not_stall_a_lookup(nursery: trio.Nursery) -> None:
    """G19: a peer that accepts the query stream and never answers costs at most the
    per-query deadline, not py-libp2p's 2 × 10 s."""
    seeds, services = await _network(nursery, 5)
    record = sign_location(seeds[0], agent=DID, epoch=1, wall_ns=1)
    await put_location(services[0], record)

    async def hang(stream: INetStream) -> None:
        await trio.sleep_forever()

    for service in services[1:4]:  # three of the four others hang on every query
        service.dht.host.set_stream_handler(KAD, hang)
    reader = services[4]
    reader.dht.value_store.remove(location_key(DID).encode())
    start = trio.current_time()
    assert await get_location(reader, DID) == record
    assert trio.current_time() - start < 2.0


def test_query_timeout_is_shortened_in_every_module_that_imports_it() -> None:
    """G19: QUERY_TIMEOUT is imported by name into three modules; all three are patched."""
    for module in (kad_dht_module, peer_routing_module, provider_store_module):
        assert module.QUERY_TIMEOUT == QUERY_TIMEOUT_S  # type: ignore[attr-defined]


def test_dht_maintenance_interval_grows_with_the_network_and_is_jittered() -> None:
    rng = random.Random(5)
    small = [maintenance_interval_s(8, rng) for _ in range(50)]
    large = [maintenance_interval_s(64, rng) for _ in range(50)]
    assert min(small) >= 450 and max(small) <= 750
    assert min(large) >= 4 * 450 and max(large) <= 4 * 750
    assert len(set(small)) == 50
