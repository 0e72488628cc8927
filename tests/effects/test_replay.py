"""Replay: recorded ticks of an agent that reads the clock and random bytes and makes http
requests re-execute offline to the very states its checkpoints hold; a recorded input that was
changed — even by an owner that re-signed its whole lineage, which ``verify`` cannot tell — is
found at the interval it belongs to."""

from __future__ import annotations

import dataclasses
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.effects.observations import Obs, decode_log, encode_log
from igor_p2p.effects.replay import ReplayOverBudget, Verdict, replay_lineage
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.inputs import TickInputs, UnsignedTickInputs
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.services import RuntimeConfig
from igor_p2p.store.retention import parse_retention

from .agents import lineage, manifest, observer, run_agent
from .lineage_rewrite import resigned_from
from .server import FeedServer, Route, http_server


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


async def recorded(
    tmp_path: Path, server: FeedServer, ticks: int, retain: str = "all"
) -> tuple[bytes, bytes, str]:
    """An agent run ``ticks`` ticks; the full archive is kept (replaying every tick needs every
    interval's inputs: that is what ``--retain all`` is for)."""
    server.routes["/p"] = Route(200, b"31415")
    wasm = observer(f"{server.base}/p", every=10)
    manifest_bytes = manifest(http={"allowed_hosts": ["127.0.0.1"]}, clock={}, rand={})
    runtime = RuntimeConfig(retention=parse_retention(retain))
    run = await run_agent(
        tmp_path, wasm, manifest_bytes, ticks=ticks, checkpoint_every=5, runtime=runtime
    )
    assert run.last_tick == ticks
    return wasm, manifest_bytes, run.did


def replay(entries: list[LineageEntry], wasm: bytes, manifest_bytes: bytes, **kw: int):  # type: ignore[no-untyped-def]
    with Sandbox() as sandbox:
        return replay_lineage(
            entries, sandbox.compile(wasm), parse_manifest(manifest_bytes), sandbox, **kw
        )


async def _replays_and_catches_a_tampered_clock(tmp_path: Path, server: FeedServer, n: int) -> None:
    wasm, manifest_bytes, did = await recorded(tmp_path, server, n)
    entries = lineage(tmp_path, did)
    report = replay(entries, wasm, manifest_bytes)
    assert report.ok and report.unverifiable == []
    assert report.ticks_verified == n
    assert len(server.requests("/p")) == n // 10  # replay sent nothing

    # The owner changes one clock reading it recorded and re-signs everything after it.
    index, inputs = [(i, e) for i, e in enumerate(entries) if isinstance(e, TickInputs)][n // 10]
    log = decode_log(inputs.log)
    tick = min(log)
    log[tick] = [
        (kind, struct.pack("<q", 42) if kind is Obs.CLOCK else payload)
        for kind, payload in log[tick]
    ]
    key = DataDir(tmp_path).node_keypair()
    forged = UnsignedTickInputs(
        **{
            f.name: getattr(inputs, f.name)
            for f in dataclasses.fields(inputs)
            if f.name not in ("signature", "prev", "log")
        },
        prev=inputs.prev,
        log=encode_log(sorted(log.items())),
    ).sign(key)
    tampered = resigned_from([*entries[:index], forged, *entries[index + 1 :]], index, key)
    assert verify_lineage([e.encode() for e in tampered], ordered=True).valid  # signatures hold
    report = replay(tampered, wasm, manifest_bytes)
    [bad] = report.mismatches
    assert bad.first_tick <= tick <= bad.last_tick and bad.verdict is Verdict.MISMATCH
    assert report.ticks_verified == n - (bad.last_tick - bad.first_tick + 1)


async def test_a_replay_stops_at_its_fuel_budget_with_a_typed_error(
    tmp_path: Path, server: FeedServer
) -> None:
    # A node replaying another node's agent bounds the CPU it spends (replay on arrival).
    wasm, manifest_bytes, did = await recorded(tmp_path, server, 20)
    entries = lineage(tmp_path, did)
    full = replay(entries, wasm, manifest_bytes)
    assert full.ok and full.fuel_used > 0
    assert replay(entries, wasm, manifest_bytes, fuel_budget=full.fuel_used).ok
    with pytest.raises(ReplayOverBudget):
        replay(entries, wasm, manifest_bytes, fuel_budget=full.fuel_used // 2)


async def test_a_thousand_recorded_ticks_replay_to_identical_states_and_tampering_is_found(
    tmp_path: Path, server: FeedServer
) -> None:
    await _replays_and_catches_a_tampered_clock(tmp_path, server, 1000)


async def test_under_the_default_retention_compacted_intervals_are_unverifiable_not_failed(
    tmp_path: Path, server: FeedServer
) -> None:
    wasm, manifest_bytes, did = await recorded(tmp_path, server, 1000, retain="16")
    report = replay(lineage(tmp_path, did), wasm, manifest_bytes)
    assert report.mismatches == [] and report.unverifiable  # the compacted prefix
    assert 0 < report.ticks_verified < 1000  # what retention kept still replays


async def test_replay_can_start_from_a_later_checkpoint(tmp_path: Path, server: FeedServer) -> None:
    wasm, manifest_bytes, did = await recorded(tmp_path, server, 40)
    report = replay(lineage(tmp_path, did), wasm, manifest_bytes, from_tick=22)
    assert report.start_tick == 20 and report.ticks_verified == 20 and report.ok


async def test_the_cli_names_the_tampered_interval_and_verify_replay_reports_it(
    tmp_path: Path, server: FeedServer
) -> None:
    from typer.testing import CliRunner

    from igor_p2p.cli.main import app

    _wasm, _manifest, did = await recorded(tmp_path, server, 40)
    entries = lineage(tmp_path, did)
    index, inputs = [(i, e) for i, e in enumerate(entries) if isinstance(e, TickInputs)][3]
    log = decode_log(inputs.log)
    tick = min(log)
    log[tick] = [(k, bytes(len(p)) if k is Obs.RAND else p) for k, p in log[tick]]
    key = DataDir(tmp_path).node_keypair()
    fields = {f.name: getattr(inputs, f.name) for f in dataclasses.fields(inputs)}
    fields.pop("signature")
    fields["log"] = encode_log(sorted(log.items()))
    forged = UnsignedTickInputs(**fields).sign(key)
    tampered = resigned_from([*entries[:index], forged, *entries[index + 1 :]], index, key)
    conn = sqlite3.connect(DataDir(tmp_path).database)
    with conn:
        for seq in range(index, len(tampered)):
            e = tampered[seq]
            conn.execute(
                "UPDATE lineage SET blob = ?, digest = ?, prev = ? WHERE agent = ? AND seq = ?",
                (e.encode(), e.digest(), e.prev, did, seq),
            )
        conn.execute("UPDATE authority SET head = ? WHERE agent = ?", (tampered[-1].digest(), did))
    conn.close()
    runner = CliRunner()
    replayed = runner.invoke(app, ["checkpoint", "replay", did, "-d", str(tmp_path)])
    assert replayed.exit_code == 1 and "mismatch" in replayed.output
    assert "unverifiable" not in replayed.output
    plain = runner.invoke(app, ["checkpoint", "verify", did, "-d", str(tmp_path)])
    assert plain.exit_code == 0, plain.output  # the owner re-signed: verify alone cannot tell
    deep = runner.invoke(app, ["checkpoint", "verify", did, "-d", str(tmp_path), "--replay"])
    assert deep.exit_code == 1 and "REPLAY_MISMATCH" in deep.output
