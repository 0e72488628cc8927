"""Go Igor's agents through the real CLI: a TinyGo-shaped module prints, runs, resumes and exits;
the Go-written v0x04 history is imported, resumed and continues; the agent goes back to Go Igor
with a durable export record; imports of modules that cannot run write nothing."""

from __future__ import annotations

import hashlib
import shutil
import signal
import struct
from pathlib import Path

import pytest

from igor_p2p.agent.examples import example_manifest_path
from igor_p2p.agent.source import load_agent_source
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4, parse_go_checkpoint

from .local_cli import authority_row, counter_state, igor, inspect, spawn, typed_error, verify
from .node_procs import node_processes, scratch_dir, wait_until

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "lineage" / "fixtures" / "igor-go"
GO_WRITTEN = FIXTURES / "v4-go-written"
GO_DID = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"


def _tinygo_files(directory: Path) -> Path:
    """``tinygo.wasm`` with its sidecar manifest, as Go Igor lays an agent out."""
    directory.mkdir(parents=True, exist_ok=True)
    wasm = directory / "tinygo.wasm"
    wasm.write_bytes(load_agent_source("tinygo"))
    shutil.copy(example_manifest_path("tinygo"), directory / "tinygo.manifest.json")
    return wasm


def test_agent_run_prints_the_agents_output_apart_from_its_own_lines(tmp_path: Path) -> None:
    shown = igor("agent", "run", "tinygo", "-d", tmp_path / "a", "--ticks", "5", "--interval", "0")
    assert shown.rc == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "  │ stdout  tick 1" in lines
    assert "  │ log     tinygo: 5 ticks" in lines
    # each tick's output comes before the runtime's line for that tick's commit
    assert lines.index("  │ stdout  tick 2") < next(
        i for i, line in enumerate(lines) if line.startswith("tick      2")
    )

    as_json = igor(
        "agent", "run", "tinygo", "-d", tmp_path / "b", "--ticks", "3", "--interval", "0", "--json"
    )
    assert as_json.rc == 0, as_json.stderr
    logs = [(e["stream"], e["text"]) for e in as_json.events if e["event"] == "log"]
    assert logs == [("stdout", "tick 1"), ("stdout", "tick 2"), ("stdout", "tick 3")]
    did = as_json.event("started")["agent"]

    resumed = igor(
        "agent", "resume", did, "-d", tmp_path / "b", "--ticks", "2", "--interval", "0", "--json"
    )
    assert resumed.rc == 0, resumed.stderr
    logs = [(e["stream"], e["text"]) for e in resumed.events if e["event"] == "log"]
    assert logs == [
        ("stderr", "resumed at tick 3"),
        ("stdout", "tick 4"),
        ("stdout", "tick 5"),
        ("log", "tinygo: 5 ticks"),
    ]
    assert inspect(did, tmp_path / "b")["state_head"] == counter_state(5).hex()


def test_agent_output_cannot_drive_the_terminal(tmp_path: Path) -> None:
    wat = tmp_path / "ansi.wat"
    wat.write_text(
        """(module
  (import "igor" "log_emit" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\1b[2J\\1b]0;pwned\\07[red]x")
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32) (call $log (i32.const 16) (i32.const 20)) (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32)))"""
    )
    (tmp_path / "ansi.manifest.json").write_text('{"capabilities": {"log": {"version": 1}}}')
    shown = igor("agent", "run", wat, "-d", tmp_path / "d", "--ticks", "1", "--interval", "0")
    assert shown.rc == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "  │ log     \\x1b[2J\\x1b]0;pwned\\x07[red]x" in shown.stdout.splitlines()


def test_proc_exit_halts_the_run_with_the_exit_code(tmp_path: Path) -> None:
    wat = tmp_path / "quits.wat"
    wat.write_text(
        """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32) (call $exit (i32.const 42)) (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32)))"""
    )
    run = igor("agent", "run", wat, "-d", tmp_path / "d", "--ticks", "3", "--interval", "0")
    assert run.rc == 3
    assert "state HALTED" in run.stdout and "exited with code 42" in run.stdout


@pytest.mark.parametrize("manifest", ["research_example", "sentinel", "x402buyer", "deployer"])
def test_go_igor_manifests_run_the_tinygo_agent(tmp_path: Path, manifest: str) -> None:
    result = igor(
        "agent", "run", "tinygo", "-d", tmp_path / "d", "--ticks", "2", "--interval", "0",
        "--manifest", FIXTURES / "manifests" / f"{manifest}.manifest.json",
    )  # fmt: skip
    assert result.rc == 0, result.stderr
    assert "  │ stdout  tick 2" in result.stdout.splitlines()


def test_a_go_manifest_without_a_capability_the_module_imports_is_refused(tmp_path: Path) -> None:
    # pricewatcher's manifest grants http but not rand, which the TinyGo agent imports.
    result = igor(
        "agent", "run", "tinygo", "-d", tmp_path / "d", "--ticks", "2", "--interval", "0",
        "--manifest", FIXTURES / "manifests" / "pricewatcher.manifest.json",
    )  # fmt: skip
    assert typed_error(result) == "UndeclaredCapability"
    assert "'rand'" in result.stderr


def _import_go_history(tmp_path: Path, data: Path) -> None:
    wasm = _tinygo_files(tmp_path / "agent")
    imported = igor(
        "checkpoint", "import", GO_WRITTEN / "history" / "agent", "-d", data,
        "--wasm", wasm, "--identity", GO_WRITTEN / "agent.identity", "--module-upgrade",
    )  # fmt: skip
    assert imported.rc == 0, imported.stderr
    assert f"imported {GO_DID}: ACTIVE_OWNER at epoch 1" in imported.stdout


def test_the_go_written_history_is_imported_resumed_and_goes_back_to_go(tmp_path: Path) -> None:
    data = tmp_path / "node"
    _import_go_history(tmp_path, data)

    resumed = igor(
        "agent", "resume", GO_DID, "-d", data, "--ticks", "3", "--interval", "0", "--json"
    )
    assert resumed.rc == 0, resumed.stderr
    assert resumed.event("started")["tick"] == 15
    logs = [e["text"] for e in resumed.events if e["event"] == "log"]
    assert logs == ["resumed at tick 15", "tick 16", "tick 17", "tick 18"]  # Go's state: 15
    assert [e["tick"] for e in resumed.committed()] == [16, 17, 18]
    assert inspect(GO_DID, data)["state_head"] == counter_state(18).hex()

    go_dir = tmp_path / "back-to-go"
    exported = igor("checkpoint", "export", GO_DID, "-d", data, "--go", go_dir)
    assert exported.rc == 0, exported.stderr
    blob = (go_dir / "agent.checkpoint").read_bytes()
    ck = parse_go_checkpoint(blob)
    go_tip = (GO_WRITTEN / "history" / "agent" / "0000000015.ckpt").read_bytes()
    assert (ck.version, ck.tick, ck.state, ck.did) == (4, 18, counter_state(18), GO_DID)
    assert ck.prev_hash == hashlib.sha256(go_tip).digest()  # continues the Go chain
    assert ck.wasm_hash == hashlib.sha256(load_agent_source("tinygo")).digest()
    assert (go_dir / "history" / "agent" / "0000000018.ckpt").read_bytes() == blob
    assert (go_dir / "agent.identity").read_bytes() == (GO_WRITTEN / "agent.identity").read_bytes()
    assert (go_dir / "agent.identity").stat().st_mode & 0o777 == 0o600
    assert (go_dir / "agent.wasm").read_bytes() == load_agent_source("tinygo")

    # Go's history of the agent plus the exported checkpoint: one valid chain.
    merged = tmp_path / "merged"
    shutil.copytree(GO_WRITTEN / "history" / "agent", merged)
    shutil.copy(go_dir / "history" / "agent" / "0000000018.ckpt", merged)
    rc, report = verify(merged)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["agent"], report["first_tick"], report["last_tick"]) == (GO_DID, 5, 18)

    # The lineage here ends in the signed export record; the agent never runs here again.
    rc, report = verify(GO_DID, data)
    assert rc == 0 and report["valid"], report["problems"]
    (export,) = report["exports"]
    assert export["tick"] == 18 and export["go_checkpoint"] == hashlib.sha256(blob).hexdigest()
    assert authority_row(data, GO_DID)[:2] == ("HALTED", "exported to Go Igor")
    again = igor("agent", "resume", GO_DID, "-d", data, "--ticks", "1")
    assert typed_error(again) == "NotOwner"
    assert "exported to Go Igor" in again.stderr

    # Its bundle, imported by a node with the same key, does not bring it back to life.
    bundle = tmp_path / "after-export.igor"
    assert igor("checkpoint", "export", GO_DID, "-d", data, "-o", bundle).rc == 0
    twin = tmp_path / "twin"
    twin.mkdir(mode=0o700)
    shutil.copy(data / "node.key", twin / "node.key")
    imported = igor("checkpoint", "import", bundle, "-d", twin)
    assert imported.rc == 0, imported.stderr
    assert "HALTED" in imported.stdout and "exported to Go Igor" in imported.stdout
    assert typed_error(igor("agent", "resume", GO_DID, "-d", twin, "--ticks", "1")) == "NotOwner"


def test_export_to_go_needs_the_agent_key_and_an_owner(tmp_path: Path) -> None:
    data = tmp_path / "node"
    run = igor("agent", "run", "counter", "-d", data, "--ticks", "2", "--interval", "0", "--json")
    assert run.rc == 0, run.stderr
    did = run.event("started")["agent"]
    key_file = data / "agent-keys" / f"{did.removeprefix('did:key:')}.key"
    key_file.rename(tmp_path / "elsewhere.key")
    refused = igor("checkpoint", "export", did, "-d", data, "--go", tmp_path / "go")
    assert typed_error(refused) == "ExportRefused"
    assert "key" in refused.stderr
    assert not (tmp_path / "go" / "agent.checkpoint").exists()
    assert authority_row(data, did)[0] == "ACTIVE_OWNER"  # nothing was recorded

    (tmp_path / "elsewhere.key").rename(key_file)
    done = igor("checkpoint", "export", did, "-d", data, "--go", tmp_path / "go")
    assert done.rc == 0, done.stderr
    ck = parse_go_checkpoint((tmp_path / "go" / "agent.checkpoint").read_bytes())
    assert ck.prev_hash == bytes(32)  # born here: a new Go chain starts at this checkpoint
    rc, report = verify(tmp_path / "go" / "history" / "agent")
    assert rc == 0 and report["valid"], report["problems"]
    twice = igor("checkpoint", "export", did, "-d", data, "--go", tmp_path / "other")
    assert twice.rc == 0  # the record exists: the same files are written again
    assert (tmp_path / "other" / "agent.checkpoint").read_bytes() == (
        tmp_path / "go" / "agent.checkpoint"
    ).read_bytes()


NO_MALLOC = """(module
  (memory (export "memory") 1)
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32) (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 8))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32)))"""


def _go_checkpoint_for(wasm: bytes, path: Path, key: Keypair) -> Path:
    fields = GoCheckpointFields(
        budget=10**6, price=1, tick=7, wasm_hash=hashlib.sha256(wasm).digest(), state=bytes(8)
    )
    path.write_bytes(encode_go_v4(fields, key))
    return path


def _identity(path: Path, key: Keypair) -> Path:
    path.write_bytes(struct.pack("<I", 64) + key.seed + key.public_key)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("case", ["no-malloc", "undeclared-capability"])
def test_an_import_whose_module_cannot_run_is_refused_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    from wasmtime import wat2wasm

    key = Keypair.from_seed(bytes([0x33]) * 32)
    if case == "no-malloc":
        wasm_path = tmp_path / "nomalloc.wasm"
        wasm_path.write_bytes(bytes(wat2wasm(NO_MALLOC)))
        reason = "malloc"
    else:  # the TinyGo module without its sidecar manifest: no capability declared
        wasm_path = tmp_path / "bare" / "tinygo.wasm"
        wasm_path.parent.mkdir()
        wasm_path.write_bytes(load_agent_source("tinygo"))
        reason = "capability"
    checkpoint = _go_checkpoint_for(wasm_path.read_bytes(), tmp_path / "agent.ckpt", key)
    data = tmp_path / "node"
    refused = igor(
        "checkpoint", "import", checkpoint, "-d", data,
        "--wasm", wasm_path, "--identity", _identity(tmp_path / "agent.identity", key),
    )  # fmt: skip
    assert typed_error(refused) == "ModuleCannotRun"
    assert reason in refused.stderr
    assert list((data / "agent-keys").iterdir()) == []
    listed = igor("checkpoint", "verify", key.did, "-d", data)
    assert listed.rc != 0 and "no agent matches" in listed.stderr


def test_verify_reads_a_directory_of_ckpt_files_as_a_go_history(tmp_path: Path) -> None:
    history = tmp_path / "history"
    shutil.copytree(GO_WRITTEN / "history" / "agent", history)
    (history / "README.txt").write_text("not a checkpoint")
    rc, report = verify(history)
    assert rc == 0 and report["valid"], report["problems"]
    assert report["agent"] == GO_DID

    damaged = history / "0000000010.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:150])
    rc, report = verify(history)
    assert rc == 1
    assert [p["code"] for p in report["problems"]] == ["CORRUPT_ENTRY"]
    assert report["problems"][0]["message"].startswith("0000000010.ckpt")


def test_verify_warns_about_an_epoch_reset_and_stays_valid(tmp_path: Path) -> None:
    key = Keypair.from_seed(bytes(range(32)))
    history = tmp_path / "history"
    history.mkdir()
    prev = bytes(32)
    for tick, major in ((5, 3), (10, 0)):
        blob = encode_go_v4(
            GoCheckpointFields(
                budget=100 - tick, price=1, tick=tick, wasm_hash=bytes(32), major=major,
                generation=7 if major else 0, prev_hash=prev, state=counter_state(tick),
            ),
            key,
        )  # fmt: skip
        (history / f"{tick:010d}.ckpt").write_bytes(blob)
        prev = hashlib.sha256(blob).digest()
    shown = igor("checkpoint", "verify", history)
    assert shown.rc == 0, shown.stdout
    assert "VALID" in shown.stdout and "warning" in shown.stdout and "reset" in shown.stdout


def test_agent_logs_shows_and_follows_an_agent_on_a_running_node() -> None:
    with scratch_dir() as root, node_processes(root, ["n1"]) as (node,):
        node.start()
        node.wait_ready()
        launched = igor("agent", "launch", "tinygo", "-d", node.data, "--budget", "1000")
        assert launched.rc == 0, launched.stderr
        did = launched.stdout.strip()

        def ticked_three() -> list[dict] | None:
            shown = igor("agent", "logs", did, "-d", node.data, "--json")
            texts = [e["text"] for e in shown.events]
            return shown.events if "tick 3" in texts else None

        lines = wait_until(ticked_three, 30, "three ticks logged")
        assert [e["text"] for e in lines[:3]] == ["tick 1", "tick 2", "tick 3"]
        assert {e["stream"] for e in lines} <= {"stdout", "log"}
        plain = igor("agent", "logs", did[-10:], "-d", node.data)
        assert "  │ stdout  tick 1" in plain.stdout.splitlines()

        follower = spawn("agent", "logs", did, "-d", node.data, "--follow", "--json")
        last = int(lines[-1]["text"].split()[-1]) if lines[-1]["text"].startswith("tick") else 3
        want = f"tick {last + 3}"
        while True:
            event = follower.next_event(30)
            assert event is not None, follower.stderr_text()
            if event.get("text") == want:
                break
        follower.proc.send_signal(signal.SIGINT)
        assert follower.proc.wait(timeout=30) == 0

        unknown = igor("agent", "logs", "did:key:z6MkNoSuchAgent", "-d", node.data)
        assert unknown.rc != 0 and "NoSuchAgent" in unknown.stderr
