"""``kill -9`` between an effect's INTENT and its OUTCOME, with real processes: on resume the
agent is told the outcome is unknown, the request is not sent again, and the lineage verifies."""

from __future__ import annotations

import signal
import struct
import threading
from pathlib import Path

import pytest

from igor_p2p.agent.examples import example_manifest_path, example_path
from igor_p2p.lineage.effect import EffectPhase, EffectRecord
from tests.e2e.local_cli import igor, spawn, verify

from .agents import lineage
from .server import Route, http_server

pytestmark = pytest.mark.e2e

FEED = "http://127.0.0.1:8787/price"


def pricewatcher(tmp_path: Path, url: str) -> Path:
    wat = tmp_path / "watcher.wat"
    wat.write_text(example_path("pricewatcher").read_text().replace(FEED, url))
    (tmp_path / "watcher.manifest.json").write_bytes(
        example_manifest_path("pricewatcher").read_bytes()
    )
    return wat


def test_a_request_cut_by_kill_9_is_reported_unknown_and_never_sent_again(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with http_server() as server:
        release = threading.Event()
        server.routes["/price"] = Route(200, b"50000\n", hold=release)
        run = spawn("agent", "run", pricewatcher(tmp_path, f"{server.base}/price"), "-d", data,
                    "--interval", "0", "--json")  # fmt: skip
        did = run.wait_for("started")["agent"]
        # The request arrives: its INTENT is durable (appended before it was sent).
        first = server.wait_for("/price", timeout=120)
        run.proc.send_signal(signal.SIGKILL)  # never a reaped, reused pid
        run.proc.wait(timeout=30)
        server.routes["/price"] = Route(200, b"50100\n")
        release.set()
        resumed = igor(
            "agent", "resume", did, "-d", data, "--ticks", "2", "--interval", "0", timeout=180
        )
        assert resumed.rc == 0, resumed.stderr
        keys = [s.headers["idempotency-key"] for s in server.requests("/price")]
    # Tick 1 ran again after the resume and asked for the same price: not sent (only tick 2's
    # request followed the one cut by the kill).
    assert len(keys) == 2 and keys[0] == first.headers["idempotency-key"] and keys[1] != keys[0]
    entries = lineage(data, did)
    state = [e for e in entries if hasattr(e, "state")][-1].state  # type: ignore[attr-defined]
    ticks, price, ok, failed, _clock, _nonce, unresolved, last = struct.unpack("<8q", state)
    assert (ticks, unresolved) == (2, 1)  # told: one effect with an unknown outcome
    assert (ok, failed, price, last) == (1, 1, 50100, 200)
    cut = [e for e in entries if isinstance(e, EffectRecord) and e.key.hex() == keys[0]]
    assert [e.phase for e in cut] == [EffectPhase.INTENT]  # no OUTCOME, ever
    rc, report = verify(did, data)
    assert rc == 0, report["problems"]
    assert report["effects"]["unknown"] == [keys[0]]
