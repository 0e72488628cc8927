"""Bounded connectivity (G17): the AutoConnector is off, and the connection manager keeps
every host between its watermarks without cutting the graph apart."""

import random

import trio
from conftest import HostSpawner
from libp2p.abc import IHost

from igor_p2p.net.connmgr import (
    Backoff,
    ConnectionManager,
    ConnView,
    DialCandidate,
    Watermarks,
    pick_dials,
    plan_trim,
)
from igor_p2p.net.host import dial, full_addrs

MARKS = Watermarks(low=3, high=5, grace_s=1.0)


def _views(n: int, **kwargs: object) -> list[ConnView]:
    return [ConnView(peer=f"p{i}", age_s=60.0, **kwargs) for i in range(n)]  # type: ignore[arg-type]


def test_nothing_is_trimmed_up_to_the_high_watermark() -> None:
    assert plan_trim(_views(5), MARKS, random.Random(1)) == []


def test_above_high_connections_are_trimmed_down_to_low() -> None:
    victims = plan_trim(_views(9), MARKS, random.Random(1))
    assert len(victims) == 6 and len(set(victims)) == 6


def test_protected_busy_and_young_connections_are_never_trimmed() -> None:
    conns = [
        *(ConnView(f"mesh{i}", 60.0, protected=True) for i in range(3)),
        *(ConnView(f"busy{i}", 60.0, busy=True) for i in range(2)),
        ConnView("young", 0.5),
        ConnView("idle", 60.0),
    ]
    for seed in range(20):
        assert plan_trim(conns, MARKS, random.Random(seed)) == ["idle"]


def test_the_trim_choice_is_random_not_the_same_peers_every_time() -> None:
    chosen = {tuple(plan_trim(_views(12), MARKS, random.Random(seed))) for seed in range(10)}
    assert len(chosen) > 1


def test_backoff_grows_after_failures_and_is_forgotten_on_success() -> None:
    backoff, rng = Backoff(base_s=1.0, cap_s=8.0), random.Random(3)
    delays = []
    for _ in range(6):
        backoff.failed("p", 100.0, rng)
        delays.append(backoff.next_at["p"] - 100.0)
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert delays[-1] > delays[0]
    assert not backoff.ready("p", 100.0)
    backoff.succeeded("p")
    assert backoff.ready("p", 100.0)


def test_backoff_table_is_bounded() -> None:
    backoff, rng = Backoff(max_entries=10), random.Random(1)
    for i in range(100):
        backoff.failed(f"p{i}", float(i), rng)
    assert len(backoff.failures) <= 10 and len(backoff.next_at) <= 10


def test_dials_skip_connected_dialing_backed_off_and_addressless_peers() -> None:
    backoff, rng = Backoff(), random.Random(1)
    backoff.failed("late", 0.0, rng)
    candidates = [
        DialCandidate("conn", ("/a",)),
        DialCandidate("busy", ("/a",)),
        DialCandidate("late", ("/a",)),
        DialCandidate("noaddr", ()),
        DialCandidate("ok1", ("/a",)),
        DialCandidate("ok1", ("/b",)),
        DialCandidate("ok2", ("/a",)),
    ]
    got = pick_dials(candidates, {"conn"}, {"busy"}, backoff, 0.0, 10, rng)
    assert sorted(c.peer for c in got) == ["ok1", "ok2"]
    assert len(pick_dials(candidates, set(), set(), backoff, 0.0, 1, rng)) == 1


async def test_auto_connector_is_off_and_would_dial_every_known_peer(
    spawn_hosts: HostSpawner,
) -> None:
    """Pins G17: py-libp2p's AutoConnector dials every peer in the peerstore; on our hosts it
    is a no-op."""
    a, *others = await spawn_hosts(4)
    for other in others:
        a.get_peerstore().add_addrs(other.get_id(), other.get_transport_addrs(), 600)
    auto = a.get_network().auto_connector  # type: ignore[attr-defined]
    await auto.maybe_connect()
    assert a.get_network().connections == {}
    await type(auto).maybe_connect(auto)  # py-libp2p's own method
    with trio.fail_after(5):
        while len(a.get_network().connections) < 3:
            await trio.sleep(0.01)


def _degrees(hosts: list[IHost]) -> list[int]:
    return [len([p for p, c in h.get_network().connections.items() if c]) for h in hosts]


def _graph_connected(hosts: list[IHost]) -> bool:
    ids = {h.get_id(): h for h in hosts}
    seen, todo = {hosts[0].get_id()}, [hosts[0]]
    while todo:
        for peer in todo.pop().get_network().connections:
            if peer in ids and peer not in seen:
                seen.add(peer)
                todo.append(ids[peer])
    return len(seen) == len(hosts)


async def test_twelve_hosts_from_a_star_settle_between_the_watermarks_and_stay_connected(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    """Everyone dials host 0 (11 connections, above high 5): host 0 trims, the others dial
    each other until each has 3–5 connections, and no host is ever left alone for good."""
    hosts = await spawn_hosts(12)
    marks = Watermarks(low=3, high=5, grace_s=0.5, period_s=0.2, explore_s=60.0)

    def candidates_for(me: IHost):  # type: ignore[no-untyped-def]
        def candidates() -> list[DialCandidate]:
            return [
                DialCandidate(str(h.get_id()), tuple(str(a) for a in h.get_transport_addrs()))
                for h in hosts
                if h is not me
            ]

        return candidates

    for host in hosts[1:]:
        await dial(host, full_addrs(hosts[0])[0], timeout_s=3)
    managers = [
        ConnectionManager(h, marks, candidates_for(h), rng=random.Random(i))
        for i, h in enumerate(hosts)
    ]
    for manager in managers:
        await nursery.start(manager.run)

    def settled() -> bool:
        degrees = _degrees(hosts)
        return min(degrees) >= marks.low and max(degrees) <= marks.high and _graph_connected(hosts)

    with trio.fail_after(30):
        while not settled():
            await trio.sleep(0.05)
    assert managers[0].stats.trimmed >= 1  # it did trim, not only wait for the others
