"""What agents print is kept (bounded) for ``igor agent logs`` and reported as it happens; an
agent that calls ``proc_exit`` halts on its last committed checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path

import trio
from wasmtime import wat2wasm

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime.agent_logs import MAX_LINE_BYTES, AgentLogBook, AgentLogLine
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.local import LaunchHere, LocalRunOptions, run_local
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import RuntimeConfig

# ---------------------------------------------------------------- the log book


def test_lines_are_read_back_in_order_after_a_sequence_number() -> None:
    book = AgentLogBook()
    for n in range(5):
        book.append("a", "stdout", f"line {n}".encode())
    book.append("b", "log", b"other agent")
    page = book.read("a")
    assert [line.text for line in page.lines] == [f"line {n}" for n in range(5)]
    assert not page.dropped
    later = book.read("a", after=page.lines[2].seq)
    assert [line.text for line in later.lines] == ["line 3", "line 4"]
    assert book.read("a", after=page.next_after).lines == []


def test_each_agent_keeps_only_its_most_recent_lines_and_says_when_some_were_dropped() -> None:
    book = AgentLogBook(lines_per_agent=3)
    for n in range(10):
        book.append("a", "stdout", str(n).encode())
    page = book.read("a")
    assert [line.text for line in page.lines] == ["7", "8", "9"]
    assert page.dropped
    assert not book.read("a", after=page.lines[0].seq).dropped


def test_a_ring_is_bounded_in_characters_too() -> None:
    book = AgentLogBook(lines_per_agent=1000, chars_per_agent=10_000)
    for _ in range(100):
        book.append("a", "stdout", b"x" * 1000)
    assert sum(len(line.text) for line in book.read("a").lines) <= 10_000


def test_long_lines_are_cut_and_bad_utf8_is_replaced() -> None:
    book = AgentLogBook()
    line = book.append("a", "log", b"y" * (MAX_LINE_BYTES * 3))
    assert len(line.text) == MAX_LINE_BYTES
    assert book.append("a", "log", b"\xff\xfeok").text == "\ufffd\ufffdok"


def test_the_book_keeps_at_most_max_agents_rings_dropping_the_stalest() -> None:
    book = AgentLogBook(max_agents=2)
    book.append("a", "log", b"1")
    book.append("b", "log", b"2")
    book.append("a", "log", b"3")
    book.append("c", "log", b"4")
    assert sorted(book.agents()) == ["a", "c"]
    assert book.read("b").lines == []


def test_sequence_numbers_never_go_back_even_for_a_dropped_and_returning_agent() -> None:
    book = AgentLogBook(max_agents=1)
    first = book.append("a", "log", b"1")
    book.append("b", "log", b"2")
    again = book.append("a", "log", b"3")
    assert again.seq > first.seq
    assert [line.text for line in book.read("a", after=first.seq).lines] == ["3"]


def test_appends_from_many_threads_are_all_seen_by_subscribers() -> None:
    book = AgentLogBook(lines_per_agent=10_000, chars_per_agent=10**6)
    seen: list[AgentLogLine] = []
    lock = threading.Lock()

    def collect(line: AgentLogLine) -> None:
        with lock:
            seen.append(line)

    unsubscribe = book.subscribe(collect)
    threads = [
        threading.Thread(target=lambda t=t: [book.append(f"a{t}", "log", b"x") for _ in range(200)])
        for t in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    unsubscribe()
    book.append("a0", "log", b"after")
    assert len(seen) == 800
    assert len({line.seq for line in seen}) == 800


# ---------------------------------------------------------------- local runs


def _run(tmp_path: Path, wasm: bytes, manifest: bytes, ticks: int) -> tuple[list, object]:
    events: list[tuple[str, dict]] = []
    options = LocalRunOptions(
        data=DataDir(tmp_path / "data"),
        runtime=RuntimeConfig(),
        scheduler=SchedulerConfig(idle_interval_s=0, busy_interval_s=0),
        ticks=ticks,
    )
    request = LaunchRequest(wasm=wasm, manifest=manifest, budget=10**9)
    result = trio.run(run_local, options, LaunchHere(request), lambda e, f: events.append((e, f)))
    return events, result


def test_a_local_run_reports_each_line_before_the_commit_of_its_tick(tmp_path: Path) -> None:
    events, _ = _run(
        tmp_path,
        load_agent_source("tinygo"),
        load_agent_manifest("tinygo").canonical_bytes,
        ticks=5,
    )
    names = [name for name, _ in events]
    assert names[0] == "started" and names[-1] == "stopped"
    logs = [(f["stream"], f["text"]) for name, f in events if name == "log"]
    assert logs == [
        ("stdout", "tick 1"),
        ("stdout", "tick 2"),
        ("stdout", "tick 3"),
        ("stdout", "tick 4"),
        ("stdout", "tick 5"),
        ("log", "tinygo: 5 ticks"),
    ]
    for n in range(1, 6):
        line_at = next(
            i for i, (e, f) in enumerate(events) if e == "log" and f["text"] == f"tick {n}"
        )
        commit_at = next(
            i for i, (e, f) in enumerate(events) if e == "committed" and f["tick"] == n
        )
        assert line_at < commit_at


EXITS_ON_TICK_3 = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $n (mut i64) (i64.const 0))
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32)
    (global.set $n (i64.add (global.get $n) (i64.const 1)))
    (if (i64.eq (global.get $n) (i64.const 3)) (then (call $exit (i32.const 42))))
    (i32.const 0))
  (func (export "agent_checkpoint") (result i32)
    (i64.store (i32.const 0) (global.get $n)) (i32.const 8))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32) (global.set $n (i64.load (local.get 0))))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024)))
"""


def test_proc_exit_halts_the_agent_with_its_code_on_the_last_committed_checkpoint(
    tmp_path: Path,
) -> None:
    events, result = _run(tmp_path, bytes(wat2wasm(EXITS_ON_TICK_3)), b"{}", ticks=10)
    assert result.state is AuthorityState.HALTED  # type: ignore[attr-defined]
    assert "42" in result.reason  # type: ignore[attr-defined]
    committed = [(f["tick"], f["kind"]) for name, f in events if name == "committed"]
    # ticks 1 and 2 committed; tick 3 exited: the FINAL checkpoint carries tick 2's state
    assert committed == [(1, "TICK"), (2, "TICK"), (2, "FINAL")]
