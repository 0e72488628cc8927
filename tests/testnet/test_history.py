import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testnet_events import fault, tick

from igor_p2p.errors import InvalidInput
from testnet.history import (
    CommitEvent,
    FaultEvent,
    HistoryError,
    TickEvent,
    merge,
    parse_history_lines,
    read_histories,
    read_history,
)

BASE = {"node": "n1", "peer_id": "p1", "mono_ns": 5, "wall_ns": 7}
TICK = {
    **BASE,
    "type": "tick",
    "agent": "a1",
    "epoch": 1,
    "tick": 1,
    "start_ns": 1,
    "end_ns": 4,
    "fuel": 9,
    "cost": 3,
}
COMMIT = {
    **BASE,
    "type": "commit",
    "agent": "a1",
    "epoch": 1,
    "tick": 1,
    "kind": "TICK",
    "digest": "AB" * 32,
    "prev": "00" * 32,
    "budget": 10,
}


def write(path: Path, lines: list[str], *, trailing: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + trailing)
    return path


def test_events_parse_into_typed_frozen_dataclasses(tmp_path):
    h = read_history(
        write(tmp_path / "n1" / "history.jsonl", [json.dumps(TICK), json.dumps(COMMIT)])
    )
    assert h.node == "n1" and not h.torn_tail
    t, c = h.events
    assert isinstance(t, TickEvent) and (t.start_ns, t.end_ns, t.cost) == (1, 4, 3)
    assert isinstance(c, CommitEvent) and c.digest == "ab" * 32  # hex normalised to lowercase
    with pytest.raises(AttributeError):
        t.cost = 5  # type: ignore[misc]


def test_torn_last_line_is_ignored(tmp_path):
    path = write(
        tmp_path / "history.jsonl", [json.dumps(TICK), json.dumps(COMMIT)[:30]], trailing=""
    )
    h = read_history(path)
    assert h.torn_tail and len(h.events) == 1


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "history.jsonl", [json.dumps(TICK), "{not json", json.dumps(COMMIT)])
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert info.value.line == 2 and info.value.file == str(path)
    assert isinstance(info.value, InvalidInput)


def test_ill_typed_field_in_middle_is_a_history_error(tmp_path):
    bad = {**TICK, "cost": "3"}
    path = write(tmp_path / "history.jsonl", [json.dumps(bad), json.dumps(COMMIT)])
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert info.value.line == 1 and "cost" in info.value.problem


def test_unknown_event_types_are_skipped_and_counted():
    lines = [json.dumps({**BASE, "type": "claim"}).encode(), json.dumps(TICK).encode()]
    h = parse_history_lines(lines, file="<memory>")
    assert h.unknown_events == 1 and len(h.events) == 1


def test_read_histories_finds_every_node_dir(tmp_path):
    for n in ("n1", "n2"):
        write(tmp_path / n / "history.jsonl", [json.dumps({**TICK, "node": n})])
    assert [h.node for h in read_histories(tmp_path)] == ["n1", "n2"]


def test_merge_orders_by_monotonic_time():
    h = merge([[tick("n1", 0, 30)], [tick("n2", 0, 10), tick("n2", 40, 50)]])
    assert [e.mono_ns for e in h.events] == [10, 30, 50]
    assert h.nodes == ("n1", "n2") and h.agents == ("a1",)


def test_fault_windows_close_and_final_heal_is_last_close():
    h = merge(
        [
            [
                fault("n1", 10, "partition", "halves"),
                fault("n1", 50, "heal"),
                fault("n1", 20, "drop"),
                fault("n1", 60, "clear_faults"),
            ]
        ]
    )
    windows = {(w.fault, w.start_ns, w.end_ns) for w in h.fault_windows}
    assert windows == {("partition", 10, 50), ("drop", 20, 60)}
    assert h.final_heal_ns == 60
    assert merge([[fault("n1", 10, "pause")]]).final_heal_ns is None
    assert all(isinstance(e, FaultEvent) for e in h.events)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_arbitrary_bytes_end_in_history_error_or_events(blobs):
    lines = [json.dumps(TICK).encode(), *blobs]
    try:
        h = parse_history_lines(lines, file="<memory>")
    except HistoryError:
        return
    assert all(isinstance(e, TickEvent) for e in h.events)
