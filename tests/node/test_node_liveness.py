"""Peer-table liveness with stated announce intervals and stall credit (pure, no network)."""

from __future__ import annotations

import pytest

from igor_p2p.node.peers import (
    DOWN_AFTER_INTERVALS,
    Announcement,
    MalformedAnnouncement,
    PeerTable,
)


def _announcement(every_ms: int = 0) -> Announcement:
    return Announcement(
        peer_id="peer-b", name="b", addrs=(), capacity=1, price=1, load=0, every_ms=every_ms
    )


def test_peer_announcing_as_often_as_it_stated_is_not_marked_down() -> None:
    table = PeerTable(self_id="peer-a", down_after_s=4.0)
    table.observe(_announcement(every_ms=3750), now=0.0)
    assert table.sweep(now=3.75 * DOWN_AFTER_INTERVALS - 0.1) == []
    assert table.sweep(now=3.75 * DOWN_AFTER_INTERVALS + 0.1) == ["peer-b"]


def test_down_after_s_is_the_floor_for_fast_announcers() -> None:
    table = PeerTable(self_id="peer-a", down_after_s=4.0)
    table.observe(_announcement(every_ms=500), now=0.0)
    assert table.sweep(now=3.9) == []
    assert table.sweep(now=4.1) == ["peer-b"]


def test_a_local_stall_is_not_counted_as_the_peers_silence() -> None:
    table = PeerTable(self_id="peer-a", down_after_s=4.0)
    table.observe(_announcement(), now=0.0)
    table.credit(6.0)  # our own loop was stalled for 6 s
    assert table.sweep(now=9.0) == []
    assert table.sweep(now=10.1) == ["peer-b"]


def test_announcement_interval_round_trips_and_old_senders_default_to_unstated() -> None:
    wire = _announcement(every_ms=1234).to_wire()
    assert Announcement.from_wire(wire).every_ms == 1234
    del wire["every_ms"]
    assert Announcement.from_wire(wire).every_ms == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1000", 10**12])
def test_bad_announce_interval_is_rejected(bad: object) -> None:
    wire = _announcement().to_wire()
    wire["every_ms"] = bad
    with pytest.raises(MalformedAnnouncement):
        Announcement.from_wire(wire)


def test_the_announce_interval_grows_with_the_network_so_the_network_rate_falls() -> None:
    from igor_p2p.node.discovery import announce_interval_s

    assert announce_interval_s(1.0, 0) == announce_interval_s(1.0, 4) == 1.0
    assert announce_interval_s(1.0, 15) == 3.75
    # Announcements per second in the whole network of n nodes (each sees n - 1 peers up).
    rates = [n / announce_interval_s(1.0, n - 1) for n in (5, 16, 32, 64)]
    assert rates == sorted(rates, reverse=True)
    assert rates[1] <= 4.3 and rates[-1] <= 1.1  # about one per second at 64 nodes
