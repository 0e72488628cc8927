"""The known-peers file: bounded, atomic, private, and never a reason not to start."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from igor_p2p.net.peerid import peer_id_from_public_key
from igor_p2p.node.known_peers import (
    MAX_ADDRS_PER_PEER,
    MAX_FILE_BYTES,
    KnownPeers,
    usable_addrs,
)


def pid(n: int) -> str:
    return peer_id_from_public_key(n.to_bytes(32, "big"))


def addr(n: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{4000 + n}/p2p/{pid(n)}"


def test_peers_round_trip_through_the_file_most_recent_first(tmp_path: Path) -> None:
    known = KnownPeers.in_data_dir(tmp_path, pid(0))
    known.note(pid(1), [addr(1)], 100.0)
    known.note(pid(2), [addr(2)], 200.0)
    known.save()
    again = KnownPeers.in_data_dir(tmp_path, pid(0)).load()
    assert [p.peer_id for p in again.most_recent()] == [pid(2), pid(1)]
    assert again.peers[pid(1)].addrs == (addr(1),)
    assert stat.S_IMODE((tmp_path / "known-peers.json").stat().st_mode) == 0o600


def test_the_set_is_bounded_by_forgetting_the_longest_silent(tmp_path: Path) -> None:
    known = KnownPeers(tmp_path / "k.json", max_peers=10)
    for n in range(1, 31):
        known.note(pid(n), [addr(n)], float(n))
    assert len(known.peers) == 10
    assert set(known.peers) == {pid(n) for n in range(21, 31)}


def test_wildcards_duplicates_junk_and_excess_addresses_are_dropped() -> None:
    many = [f"/ip4/10.0.0.{i}/tcp/1" for i in range(20)]
    assert len(usable_addrs(many)) == MAX_ADDRS_PER_PEER
    assert usable_addrs(["/ip4/0.0.0.0/tcp/1", "/ip6/::/tcp/1", 5, "x", "/a", "/a"]) == ("/a",)


def test_ourselves_and_malformed_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "known-peers.json"
    entries = [
        {"peer_id": pid(0), "addrs": [addr(0)], "last_seen": 1},  # ourselves
        {"peer_id": "not-a-peer-id", "addrs": [addr(1)], "last_seen": 1},
        {"peer_id": pid(2), "addrs": "nope", "last_seen": 1},
        {"peer_id": pid(3), "addrs": [addr(3)], "last_seen": True},
        {"peer_id": pid(4), "addrs": [addr(4)], "last_seen": float("inf")},
        "junk",
        {"peer_id": pid(5), "addrs": [addr(5)], "last_seen": 5},
    ]
    path.write_text(json.dumps({"version": 1, "peers": entries}))
    assert list(KnownPeers(path, pid(0)).load().peers) == [pid(5)]


def test_a_corrupt_oversized_or_missing_file_means_no_known_peers(tmp_path: Path) -> None:
    path = tmp_path / "known-peers.json"
    assert KnownPeers(path).load().peers == {}
    path.write_bytes(b"\x00garbage{")
    assert KnownPeers(path).load().peers == {}
    path.write_text(json.dumps([1, 2, 3]))
    assert KnownPeers(path).load().peers == {}
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    assert KnownPeers(path).load().peers == {}
    (tmp_path / "dir.json").mkdir()
    assert KnownPeers(tmp_path / "dir.json").load().peers == {}
