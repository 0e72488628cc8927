"""Gossip in one or two heartbeats: the heartbeat stays 1 s (G20), pruning backs off and is
random so the mesh never splits one way (G21), and our own small messages are flooded."""

import itertools
import random
from typing import Any

import trio
from conftest import HostSpawner
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub

from igor_p2p.net.gossip import (
    GossipConfig,
    GossipService,
    gossip_service,
    publish_message,
    subscribe_messages,
)
from igor_p2p.net.host import dial, full_addrs

TOPIC = "igor/test/mesh"


async def _serve_gossip(
    host: IHost, config: GossipConfig, *, task_status: trio.TaskStatus[GossipService]
) -> None:
    async with gossip_service(host, config) as service:
        task_status.started(service)
        await trio.sleep_forever()


async def _full_mesh(
    spawn_hosts: HostSpawner, nursery: trio.Nursery, n: int, config: GossipConfig
) -> list[GossipService]:
    hosts = await spawn_hosts(n)
    services = [await nursery.start(_serve_gossip, h, config) for h in hosts]
    for a, b in itertools.combinations(hosts, 2):
        await dial(a, full_addrs(b)[0], timeout_s=3)
    return services


def _count_heartbeats(router: Any) -> list[int]:
    count = [0]
    heartbeat = router.mesh_heartbeat

    def counting() -> Any:
        count[0] += 1
        return heartbeat()

    router.mesh_heartbeat = counting
    return count


async def _wait_heartbeats(count: list[int], n: int) -> None:
    target = count[0] + n
    with trio.fail_after(10):
        while count[0] < target:
            await trio.sleep(0.05)


async def test_the_heartbeat_stays_one_second_when_adaptive_gossip_would_stretch_it(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """G20: py-libp2p's adaptive gossip rates a quiet, healthy network below 0.7 and moves a
    1 s heartbeat to 30 or 60 s; ours keeps 1 s."""
    ours = await _full_mesh(spawn_hosts, nursery, 3, GossipConfig())
    theirs = await _full_mesh(spawn_hosts, nursery, 3, GossipConfig(adaptive=True))
    for service in ours + theirs:
        await subscribe_messages(service, TOPIC)
        service.router.last_health_update = 0  # skip the 30 s wait before the first rating
    with trio.fail_after(10):
        while any(s.router.heartbeat_interval < 30 for s in theirs):
            await trio.sleep(0.05)
    await _wait_heartbeats(_count_heartbeats(ours[0].router), 3)
    assert all(s.router.heartbeat_interval == 1 for s in ours)


async def test_a_heartbeat_prune_backs_off_from_the_pruned_peers(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """G21: the peers the heartbeat prunes are in back-off locally (py-libp2p sets none), so
    we don't re-graft them and get PRUNEd for a "GRAFT flood"."""
    services = await _full_mesh(spawn_hosts, nursery, 6, GossipConfig(2, 1, 3))
    for service in services:
        await subscribe_messages(service, TOPIC)
    router = services[0].router
    others = [s.pubsub.host.get_id() for s in services[1:]]
    with trio.fail_after(5):  # every peer's subscription has arrived
        while len(services[0].pubsub.peer_topics.get(TOPIC, ())) < len(others):
            await trio.sleep(0.01)
    router.mesh[TOPIC] = set(others)
    _graft, prune = router.mesh_heartbeat()
    pruned = [p for p, topics in prune.items() if TOPIC in topics]
    assert len(pruned) == 3
    for peer in others:
        assert router._check_back_off(peer, TOPIC) == (peer in pruned)


def _one_way_links(services: list[GossipService]) -> list[tuple[ID, ID]]:
    """Mesh links A → B (A forwards to B) without B → A: the mesh split one way."""
    ids = [s.pubsub.host.get_id() for s in services]
    mesh = {i: set(s.router.mesh.get(TOPIC, ())) for i, s in zip(ids, services, strict=True)}
    return [(a, b) for a in ids for b in mesh[a] if b in mesh and a not in mesh[b]]


async def _until_symmetric(services: list[GossipService], deadline_s: float) -> None:
    with trio.move_on_after(deadline_s):
        while _one_way_links(services):
            await trio.sleep(0.01)
    names = {s.pubsub.host.get_id(): i for i, s in enumerate(services)}
    assert [(names[a], names[b]) for a, b in _one_way_links(services)] == []


async def test_the_mesh_never_splits_one_way_at_degree_3_2_4(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """12 hosts, every pair connected, all subscribing at once (the "GRAFT flood" start, where
    py-libp2p left nodes forwarding to peers that no longer forwarded to them: stray PRUNEs
    from its control-message batching, and GRAFTs refused without leaving the mesh): once the
    joins are through, every mesh link is two-way again within half a second of each
    heartbeat, and 20 messages each reach all 12 nodes."""
    config = GossipConfig(3, 2, 4, flood_publish_max_bytes=0)
    services = await _full_mesh(spawn_hosts, nursery, 12, config)
    subs = [await subscribe_messages(s, TOPIC) for s in services]
    beats = _count_heartbeats(services[0].router)
    await _wait_heartbeats(beats, 3)
    for _ in range(6):
        await _wait_heartbeats(beats, 1)
        await _until_symmetric(services, 0.5)

    rng = random.Random(4)
    for n in range(20):
        await publish_message(rng.choice(services), TOPIC, {"type": "t", "n": n})
        with trio.fail_after(3):
            for sub in subs:
                while (await sub.receive()).message["n"] != n:
                    pass


async def test_own_small_messages_go_to_every_topic_peer_and_relays_follow_the_mesh(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    services = await _full_mesh(spawn_hosts, nursery, 6, GossipConfig(2, 1, 3))
    for service in services:
        await subscribe_messages(service, TOPIC)
    beats = _count_heartbeats(services[0].router)
    await _wait_heartbeats(beats, 1)
    publisher = services[0]
    sent: list[ID] = []
    send_rpc = publisher.router.send_rpc

    def recording(peer_id: ID, rpc: Any) -> None:
        if rpc.publish:
            sent.append(peer_id)
        send_rpc(peer_id, rpc)

    publisher.router.send_rpc = recording  # type: ignore[method-assign]
    await publish_message(publisher, TOPIC, {"type": "small"})
    assert sorted(map(str, sent)) == sorted(str(s.pubsub.host.get_id()) for s in services[1:])

    sent.clear()
    mesh_peer = services[1].pubsub.host.get_id()
    publisher.router.mesh[TOPIC] = {mesh_peer}
    big = {"type": "big", "pad": "x" * (publisher.config.flood_publish_max_bytes + 1)}
    await publish_message(publisher, TOPIC, big)
    assert set(sent) == {mesh_peer}


async def test_each_peer_gets_only_its_own_control_messages(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """py-libp2p's ``_emit_control_msgs`` accumulates GRAFT/PRUNE lists across peers, so a
    peer grafted after one that was pruned from another topic gets that PRUNE too."""
    (service,) = [
        await nursery.start(_serve_gossip, h, GossipConfig()) for h in await spawn_hosts(1)
    ]
    router = service.router
    p1, p2 = ID(b"\x00" * 34), ID(b"\x01" * 34)
    got: dict[ID, list[Any]] = {}

    async def record(control: Any, peer: ID) -> None:
        got.setdefault(peer, []).append(control)

    router.emit_control_message = record  # type: ignore[method-assign]

    def summary(peer: ID) -> tuple[list[str], list[str]]:
        (control,) = got[peer]
        return [g.topicID for g in control.graft], [p.topicID for p in control.prune]

    await router._emit_control_msgs({p1: ["a"], p2: ["a"]}, {p1: ["b"]}, {})
    assert summary(p1) == (["a"], ["b"]) and summary(p2) == (["a"], [])

    got.clear()
    await GossipSub._emit_control_msgs(router, {p1: ["a"], p2: ["a"]}, {p1: ["b"]}, {})
    assert summary(p2)[1] == ["b"]  # the stray PRUNE py-libp2p sends


async def _graft_prune_count(services: list[GossipService], heartbeats: int) -> int:
    sent = [0]
    for service in services:
        emit = service.router.emit_control_message

        async def counting(control: Any, peer: ID, emit: Any = emit) -> None:
            sent[0] += len(control.graft) + len(control.prune)
            await emit(control, peer)

        service.router.emit_control_message = counting  # type: ignore[method-assign]
    await _wait_heartbeats(_count_heartbeats(services[0].router), heartbeats)
    return sent[0]


async def test_a_settled_mesh_does_not_churn(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """Once settled, heartbeats send (almost) no GRAFT or PRUNE. py-libp2p's opportunistic
    grafting adds "better-scoring" peers at every heartbeat when every score is 0, so the
    mesh overshoots D_high and is pruned back, over and over."""
    services = await _full_mesh(spawn_hosts, nursery, 8, GossipConfig(3, 2, 4))
    for service in services:
        await subscribe_messages(service, TOPIC)
    await _wait_heartbeats(_count_heartbeats(services[0].router), 5)
    assert await _graft_prune_count(services, 3) <= 4

    for service in services:  # py-libp2p's own method back on every router
        router = service.router
        router._perform_opportunistic_grafting = (  # type: ignore[method-assign]
            lambda topic, grafts, router=router: GossipSub._perform_opportunistic_grafting(
                router, topic, grafts
            )
        )
    assert await _graft_prune_count(services, 3) >= 6
