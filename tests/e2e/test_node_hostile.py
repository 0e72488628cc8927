"""Attacks from issue 10 replayed against real node processes (loopback only): after each the
node keeps answering and its honest agent keeps ticking; resource attacks are paid for or hit a
cap."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import msgpack
import pytest
import trio
from wasmtime import wat2wasm

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.net.gossip import GossipConfig, gossip_service, subscribe_messages
from igor_p2p.net.host import HostConfig, build_host, dial, running_host
from igor_p2p.node.claims import CLAIMS_TOPIC
from igor_p2p.runtime.hosted import MAX_AGENT_LOG_BYTES_PER_TICK
from igor_p2p.runtime.metering import log_cost

from .node_procs import NodeProc, igor, node_processes, scratch_dir, wait_until

pytestmark = pytest.mark.e2e

LOG_FLOOD = bytes(
    wat2wasm(
        """(module (import "igor" "log_emit" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "agent_init"))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
  (func (export "agent_tick") (result i32) (local $i i32)
    (loop $l (call $log (i32.const 0) (i32.const 4096))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))
    (i32.const 1)))"""
    )
)
"""8 MiB of log output per tick, as fast as it may tick."""


def _launch(proc: NodeProc, name: str, budget: int = 10**12) -> str:
    launched = proc.admin(
        "launch",
        wasm=load_agent_source(name).hex(),
        manifest=load_agent_manifest(name).canonical_bytes.hex(),
        budget=budget,
    )
    return str(launched["agent"])


def _agent(proc: NodeProc, did: str) -> dict[str, object]:
    return next(a for a in proc.admin("agents") if a["agent"] == did)


def _ticks_past(proc: NodeProc, did: str, tick: int, deadline_s: float = 20.0) -> None:
    wait_until(
        lambda: _agent(proc, did).get("tick", 0) > tick,  # type: ignore[operator]
        deadline_s,
        "the honest agent ticking",
        proc.log_tail,
    )


def test_a_claim_with_an_epoch_beyond_int64_is_dropped_at_the_decoder() -> None:
    with scratch_dir() as root, node_processes(root, ["n1"], ["--log-level", "DEBUG"]) as (n1,):
        n1.start()
        n1.wait_ready()
        did = _launch(n1, "counter")
        _ticks_past(n1, did, 0)

        async def attack() -> None:
            host = build_host(HostConfig(key_seed=os.urandom(32)))
            async with (
                running_host(host, ["/ip4/127.0.0.1/tcp/0"]),
                gossip_service(host, GossipConfig()) as gossip,
            ):
                await subscribe_messages(gossip, CLAIMS_TOPIC)
                await dial(host, n1.addr, timeout_s=5)
                claim = {"agent": did, "epoch": 2**64 - 1, "record": b"r" * 64, "cert": b"c" * 64}
                evil = {"type": "claims", "claims": [claim]}
                payload = msgpack.packb(evil, use_bin_type=True)
                with trio.move_on_after(20):
                    while f"malformed gossip on {CLAIMS_TOPIC}" not in n1.log_path.read_text():
                        await gossip.pubsub.publish(CLAIMS_TOPIC, payload)
                        await trio.sleep(0.3)

        trio.run(attack)
        assert f"malformed gossip on {CLAIMS_TOPIC}" in n1.log_path.read_text(), n1.log_tail()
        assert n1.alive()
        tick = _agent(n1, did)["tick"]
        _ticks_past(n1, did, tick)  # type: ignore[arg-type]
        assert _agent(n1, did)["state"] == "ACTIVE_OWNER"


def test_a_log_flooding_agent_pays_for_its_log_and_hits_the_caps() -> None:
    with scratch_dir() as root, node_processes(root, ["n1"]) as (n1,):
        n1.start()
        n1.wait_ready()
        honest = _launch(n1, "counter")
        manifest = b'{"capabilities": {"log": {"version": 1}}}'
        flood = n1.admin("launch", wasm=LOG_FLOOD.hex(), manifest=manifest.hex(), budget=10**12)
        started = time.monotonic()
        wait_until(
            lambda: _agent(n1, flood["agent"]).get("tick", 0) >= 20,  # type: ignore[operator]
            30,
            "the flooder ticking",
            n1.log_tail,
        )
        elapsed = time.monotonic() - started
        flooder = _agent(n1, flood["agent"])
        text = n1.log_path.read_text(errors="replace")
        logged = sum(len(line) for line in text.splitlines() if "agent log: " in line)
        ticks = int(flooder["tick"])  # type: ignore[call-overload]
        # 8 MiB per tick asked; at most 64 KiB per tick and 256 KiB/s (+1 MiB burst) written.
        assert logged <= ticks * (MAX_AGENT_LOG_BYTES_PER_TICK + 4096) * 1.1 + 200_000
        assert logged <= (256 * 1024 * (elapsed + 5) + 1024 * 1024) * 1.1
        assert "over its caps dropped" in text
        spent = 10**12 - int(flooder["budget"])  # type: ignore[call-overload]
        assert spent >= log_cost(logged // 2)  # log lines carry a prefix; charge ≥ half of them
        _ticks_past(n1, honest, int(_agent(n1, honest)["tick"]))  # type: ignore[call-overload]


def test_a_node_at_its_disk_budget_suspends_ticking_and_keeps_answering() -> None:
    with scratch_dir() as root:
        config = root / "node.toml"
        config.write_text("[node]\ndisk_budget_mb = 8\n")
        with node_processes(root, ["n1"], ["--config", str(config)]) as (n1,):
            n1.start()
            n1.wait_ready()
            did = _launch(n1, "bigstate_1m")
            status = wait_until(
                lambda: (s := n1.status())["ticking_suspended"] and s,
                60,
                "ticking suspended",
                n1.log_tail,
            )
            assert "disk budget" in status["ticking_suspended"]
            db = sum(
                os.stat(p).st_size
                for p in (n1.data / "igor.db", n1.data / "igor.db-wal", n1.data / "history.jsonl")
                if p.exists()
            )
            assert db <= 8 * 1024 * 1024 + 2 * 1024 * 1024
            assert _agent(n1, did)["state"] == "ACTIVE_OWNER"
            assert n1.admin("ping") == "pong"


@pytest.mark.timing
def test_admin_answers_within_a_second_while_a_long_tick_runs() -> None:
    with scratch_dir() as root, node_processes(root, ["n1"]) as (n1,):
        n1.start()
        n1.wait_ready()
        did = _launch(n1, "spin", budget=10**15)  # one tick of 10^10 fuel: several seconds
        worst = 0.0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            for method, params in (
                ("status", {}),
                ("agents", {}),
                ("agent_status", {"agent": did}),
            ):
                t = time.monotonic()
                n1.admin(method, timeout_s=30, **params)
                worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        assert _agent(n1, did)["state"] == "ACTIVE_OWNER"  # the long tick was still running
        assert worst < 1.0


def test_a_bad_config_file_stops_the_node_with_words(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[node]\nannounce_interval_s = nan\nlog_levl = 'INFO'\n")
    result = igor("node", "run", "-d", tmp_path / "d", "--config", config, timeout=30)
    assert result.rc != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "did you mean 'log_level'" in result.stderr or "announce_interval_s" in result.stderr


def test_a_foreign_non_empty_data_dir_is_refused_and_its_mode_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("not igor's")
    os.chmod(shared, 0o755)
    result = igor("node", "run", "-d", shared, "--listen", "/ip4/127.0.0.1/tcp/0", timeout=30)
    assert result.rc != 0 and "not empty" in result.stderr
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755
