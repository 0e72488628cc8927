"""G7: a burst of 100 gossip messages reaches every subscriber over a 5-host line; big ones
are refused by us instead of silently dropped by py-libp2p."""

import itertools

import pytest
import trio
from conftest import HostSpawner
from libp2p.abc import IHost

from igor_p2p.net.errors import GossipMessageTooLarge
from igor_p2p.net.gossip import (
    MAX_GOSSIP_PAYLOAD,
    GossipConfig,
    GossipService,
    gossip_service,
    publish_message,
    subscribe_messages,
)
from igor_p2p.net.host import dial, full_addrs

TOPIC = "igor/test/burst"
BURST = 100


async def _serve_gossip(
    host: IHost, config: GossipConfig, *, task_status: trio.TaskStatus[GossipService]
) -> None:
    async with gossip_service(host, config) as service:
        task_status.started(service)
        await trio.sleep_forever()


async def _line(spawn_hosts: HostSpawner, nursery: trio.Nursery, n: int) -> list[GossipService]:
    hosts = await spawn_hosts(n)
    config = GossipConfig()
    services = [await nursery.start(_serve_gossip, h, config) for h in hosts]
    for left, right in itertools.pairwise(hosts):
        await dial(left, full_addrs(right)[0], timeout_s=3)
    return services


async def test_burst_of_100_reaches_every_subscriber_on_a_line(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    services = await _line(spawn_hosts, nursery, 5)
    subs = [await subscribe_messages(s, TOPIC) for s in services]
    with trio.fail_after(5):
        for left, right in itertools.pairwise(services):
            await left.router.wait_for_mesh(right.pubsub.host.get_id(), TOPIC)
            await right.router.wait_for_mesh(left.pubsub.host.get_id(), TOPIC)

    origin = services[0]
    for i in range(BURST):
        await publish_message(origin, TOPIC, {"type": "tick", "i": i})
        await trio.sleep(0)

    sender = origin.pubsub.host.get_id().to_base58()
    with trio.fail_after(8):
        for sub in subs[1:]:
            got = [await sub.receive() for _ in range(BURST)]
            assert sorted(m.message["i"] for m in got) == list(range(BURST))
            assert {m.sender for m in got} == {sender}
            assert sub.malformed == 0


async def test_oversized_gossip_is_refused_with_a_typed_error(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    (service,) = await _line(spawn_hosts, nursery, 1)
    with pytest.raises(GossipMessageTooLarge):
        await publish_message(service, TOPIC, {"type": "big", "blob": b"x" * MAX_GOSSIP_PAYLOAD})
    # Just under the limit is accepted.
    await publish_message(service, TOPIC, {"type": "big", "blob": b"x" * (MAX_GOSSIP_PAYLOAD - 64)})


def test_gossip_config_is_explicit_and_lossless_by_default() -> None:
    config = GossipConfig()
    assert config.heartbeat_interval_s == 1
    assert config.spam_protection is False
    assert config.subscription_channel_size >= 1024
    with pytest.raises(ValueError):
        GossipConfig(degree=5, degree_high=4)


async def test_queue_limits_are_raised_in_the_pubsub_module(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """Pins G7's two 32-slot queues and our single patch of them."""
    import libp2p.pubsub.pubsub as pubsub_module
    from libp2p.pubsub.rpc_queue import OutBoundQueueSize, RpcQueue

    assert OutBoundQueueSize == 32  # the library default we work around
    assert RpcQueue()._queue.max_size == 32
    (service,) = await _line(spawn_hosts, nursery, 1)
    assert service.config.subscription_channel_size <= pubsub_module.SUBSCRIPTION_CHANNEL_SIZE
    assert pubsub_module.RpcQueue()._queue.max_size >= service.config.outbound_queue_size
