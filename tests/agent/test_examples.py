"""Shipped example agents: all load, and the well-behaved ones do what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.agent import (
    AgentSourceNotFound,
    InvalidModule,
    LocalEnvironment,
    ResumeReason,
    Sandbox,
    SandboxConfig,
    example_manifest_path,
    example_path,
    list_examples,
    load_agent_manifest,
    load_agent_source,
)

from .helpers import FUEL, load_example

EXPECTED = {
    "counter", "wanderer", "gapwatch", "spin", "membomb", "trap", "badimport",
    "bigstate_64k", "bigstate_1m", "bigstate_16m",
}  # fmt: skip


def test_every_expected_example_ships_with_a_manifest() -> None:
    assert set(list_examples()) >= EXPECTED
    for name in list_examples():
        assert example_path(name).is_file()
        assert example_manifest_path(name).is_file()
        load_agent_manifest(name)  # parses


def test_every_example_compiles(sandbox: Sandbox) -> None:
    for name in list_examples():
        sandbox.compile(load_agent_source(name))


def test_load_agent_source_reads_wat_and_wasm_files(tmp_path: Path, sandbox: Sandbox) -> None:
    wat = tmp_path / "mine.wat"
    wat.write_text(example_path("counter").read_text())
    wasm_bytes = load_agent_source(wat)
    assert wasm_bytes.startswith(b"\x00asm")
    wasm = tmp_path / "mine.wasm"
    wasm.write_bytes(wasm_bytes)
    assert load_agent_source(str(wasm)) == wasm_bytes
    (tmp_path / "mine.manifest.json").write_text('{"capabilities": {"log": {"version": 1}}}')
    assert load_agent_manifest(wasm).declares("log")
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func")
    with pytest.raises(InvalidModule):
        load_agent_source(bad)
    with pytest.raises(AgentSourceNotFound):
        load_agent_source("no-such-agent")


def test_wanderer_asks_to_migrate_every_fifth_tick(sandbox: Sandbox) -> None:
    env = LocalEnvironment()
    inst = load_example(sandbox, "wanderer", env)
    for _ in range(12):
        inst.tick(FUEL)
    assert env.migration_requests == [b"wander", b"wander"]


def test_gapwatch_counts_resumes_and_largest_gap(sandbox: Sandbox) -> None:
    fresh = load_example(sandbox, "gapwatch", LocalEnvironment())
    fresh.tick(FUEL)
    state = fresh.snapshot()
    ticks, resumes, gap, clock = (
        int.from_bytes(state[i : i + 8], "little") for i in range(0, 32, 8)
    )
    assert (ticks, resumes, gap) == (1, 0, 0) and clock > 0
    env = LocalEnvironment(reason=ResumeReason.MIGRATED, gap_ns=7_000)
    moved = load_example(sandbox, "gapwatch", env)
    moved.resume(state)
    moved.tick(FUEL)
    moved.tick(FUEL)
    state = moved.snapshot()
    ticks, resumes, gap = (int.from_bytes(state[i : i + 8], "little") for i in range(0, 24, 8))
    assert (ticks, resumes, gap) == (3, 1, 7_000)


@pytest.mark.parametrize(("name", "size"), [("bigstate_64k", 65536), ("bigstate_1m", 1 << 20)])
def test_bigstate_checkpoint_size_and_round_trip(sandbox: Sandbox, name: str, size: int) -> None:
    inst = load_example(sandbox, name)
    inst.tick(FUEL)
    state = inst.snapshot()
    assert len(state) == size
    again = load_example(sandbox, name)
    again.resume(state)
    assert again.snapshot() == state


def test_bigstate_16m_fits_the_default_cap() -> None:
    with Sandbox(SandboxConfig()) as sb:
        inst = load_example(sb, "bigstate_16m")
        inst.tick(FUEL)
        state = inst.snapshot()
        assert len(state) == 16 << 20
        again = load_example(sb, "bigstate_16m")
        again.resume(state)
        assert again.snapshot()[:8] == (1).to_bytes(8, "little")
