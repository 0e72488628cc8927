"""Go Igor interop through the real CLI: a v0x04 Go checkpoint of the counter agent is imported
under the Go identity's DID and continues counting; ``verify`` accepts Go fixtures and a v0x04
history directory and names damage in one."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from igor_p2p.agent.examples import example_manifest_path
from igor_p2p.agent.source import load_agent_source
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4

from .local_cli import (
    checkpoints_of,
    counter_state,
    export_entries,
    igor,
    inspect,
    problem_codes,
    verify,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "lineage" / "fixtures" / "igor-go"
GO_AGENT = Keypair.from_seed(bytes(range(32)))


def _go_identity_file(path: Path, key: Keypair) -> Path:
    path.write_bytes(struct.pack("<I", 64) + key.seed + key.public_key)
    path.chmod(0o600)
    return path


def test_go_v4_counter_checkpoint_is_imported_and_continues(tmp_path: Path) -> None:
    wasm = load_agent_source("counter")
    (tmp_path / "counter.wasm").write_bytes(wasm)
    shutil.copy(example_manifest_path("counter"), tmp_path / "counter.manifest.json")
    fields = GoCheckpointFields(
        budget=1_000_000,
        price=1000,
        tick=5,
        wasm_hash=hashlib.sha256(wasm).digest(),
        state=counter_state(5),
    )
    (tmp_path / "agent.ckpt").write_bytes(encode_go_v4(fields, GO_AGENT))
    _go_identity_file(tmp_path / "agent.identity", GO_AGENT)
    data = tmp_path / "node"

    seen = igor("checkpoint", "inspect", tmp_path / "agent.ckpt", "--json")
    assert seen.rc == 0, seen.stderr
    assert (seen.json()["version"], seen.json()["agent"], seen.json()["tick"]) == (
        4,
        GO_AGENT.did,
        5,
    )

    imported = igor(
        "checkpoint", "import", tmp_path / "agent.ckpt", "-d", data,
        "--wasm", tmp_path / "counter.wasm", "--identity", tmp_path / "agent.identity",
        "--manifest", tmp_path / "counter.manifest.json",
    )  # fmt: skip
    assert imported.rc == 0, imported.stderr
    assert f"imported {GO_AGENT.did}: ACTIVE_OWNER at epoch 1" in imported.stdout

    resumed = igor(
        "agent", "resume", GO_AGENT.did, "-d", data, "--ticks", "3", "--interval", "0", "--json"
    )
    assert resumed.rc == 0, resumed.stderr
    started = resumed.event("started")
    assert (started["agent"], started["tick"], started["budget"]) == (GO_AGENT.did, 5, 1_000_000)
    assert [e["tick"] for e in resumed.committed()] == [6, 7, 8]
    assert inspect(GO_AGENT.did, data)["state_head"] == counter_state(8).hex()

    rc, report = verify(GO_AGENT.did, data)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["agent"], report["first_tick"], report["last_tick"]) == (GO_AGENT.did, 5, 8)
    checkpoints = checkpoints_of(export_entries(GO_AGENT.did, data, tmp_path / "b.igor"))
    assert [(c.kind.name, c.tick, c.state) for c in checkpoints] == [
        ("IMPORT", 5, counter_state(5)),
        ("TICK", 6, counter_state(6)),
        ("TICK", 7, counter_state(7)),
        ("TICK", 8, counter_state(8)),
    ]
    assert checkpoints[0].prev == hashlib.sha256((tmp_path / "agent.ckpt").read_bytes()).digest()


def test_go_import_with_the_wrong_module_is_refused(tmp_path: Path) -> None:
    wasm = load_agent_source("counter")
    (tmp_path / "other.wasm").write_bytes(load_agent_source("gapwatch"))
    fields = GoCheckpointFields(
        budget=10, price=1, tick=1, wasm_hash=hashlib.sha256(wasm).digest(), state=b""
    )
    (tmp_path / "agent.ckpt").write_bytes(encode_go_v4(fields, GO_AGENT))
    _go_identity_file(tmp_path / "agent.identity", GO_AGENT)
    result = igor(
        "checkpoint", "import", tmp_path / "agent.ckpt", "-d", tmp_path / "node",
        "--wasm", tmp_path / "other.wasm", "--identity", tmp_path / "agent.identity",
    )  # fmt: skip
    assert result.rc == 2
    assert "ImportRefused" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "tick"),
    [("checkpoint.bin", 5), ("checkpoint_empty_state.bin", 0), ("checkpoint_v3.bin", 10)],
)
def test_verify_accepts_go_fixtures(name: str, tick: int) -> None:
    rc, report = verify(FIXTURES / name)
    assert rc == 0 and report["valid"], report["problems"]
    assert report["last_tick"] == tick


def _v4_history(directory: Path) -> list[Path]:
    directory.mkdir()
    prev = bytes(32)
    paths = []
    for tick in (1, 2, 3):
        blob = encode_go_v4(
            GoCheckpointFields(
                budget=1000 - tick,
                price=1,
                tick=tick,
                wasm_hash=bytes(32),
                prev_hash=prev,
                state=counter_state(tick),
            ),
            GO_AGENT,
        )
        path = directory / f"{tick:010d}.ckpt"
        path.write_bytes(blob)
        paths.append(path)
        prev = hashlib.sha256(blob).digest()
    return paths


def test_verify_accepts_a_go_v4_history_and_names_damage_in_it(tmp_path: Path) -> None:
    history = tmp_path / "history"
    paths = _v4_history(history)
    rc, report = verify(history)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["agent"], report["entries"], report["last_tick"]) == (GO_AGENT.did, 3, 3)

    damaged = bytearray(paths[1].read_bytes())
    damaged[-1] ^= 0x01  # the state: signed, and hashed by the next file's prevHash
    paths[1].write_bytes(bytes(damaged))
    rc, report = verify(history)
    assert rc == 1
    assert {"BAD_SIGNATURE", "ORPHAN"} <= problem_codes(report)
