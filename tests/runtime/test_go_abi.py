"""Go Igor's wallet and pricing hostcalls on a hosted agent: balance = budget, price in Go's
µ¢ per second, receipts for the epochs of its own lineage."""

from __future__ import annotations

import struct
from pathlib import Path

import trio
from wasmtime import wat2wasm

from igor_p2p.lineage.identity import verify_signature
from igor_p2p.net.peerid import public_key_from_peer_id_text
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.go_units import go_price_per_second, price_from_go
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.local import LaunchHere, LocalRunOptions, ResumeHere, run_local
from igor_p2p.runtime.receipts import decode_go_receipt
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import RuntimeConfig

WALLET_AGENT = """
(module
  (import "igor" "wallet_balance" (func $balance (result i64)))
  (import "igor" "wallet_receipt_count" (func $count (result i32)))
  (import "igor" "wallet_receipt" (func $receipt (param i32 i32 i32) (result i32)))
  (import "igor" "node_price" (func $price (result i64)))
  (memory (export "memory") 1)
  (func (export "agent_init"))
  ;; state: [count i64][price i64][balance i64][receipt len i64][receipt 0 bytes ...]
  (func (export "agent_tick") (result i32)
    (i64.store (i32.const 0) (i64.extend_i32_s (call $count)))
    (i64.store (i32.const 8) (call $price))
    (i64.store (i32.const 16) (call $balance))
    (i64.store (i32.const 24)
      (i64.extend_i32_s (call $receipt (i32.const 0) (i32.const 32) (i32.const 1024))))
    (i32.const 0))
  (func (export "agent_checkpoint") (result i32) (i32.const 1056))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
  (func (export "malloc") (param i32) (result i32) (i32.const 2048)))
"""
MANIFEST = b'{"capabilities": {"wallet": {"version": 1}, "pricing": {"version": 1}}}'


def test_price_conversion_to_go_units_and_back() -> None:
    assert go_price_per_second(1) == 1_000_000  # Go's default price
    assert go_price_per_second(1000) == 10**9
    assert price_from_go(1_000_000) == 1
    assert price_from_go(10_000) == 1  # rounded up
    assert price_from_go(go_price_per_second(1234)) == 1234
    assert go_price_per_second(2**62) == 2**63 - 1


def _run(data: Path, start: LaunchHere | ResumeHere, ticks: int) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    options = LocalRunOptions(
        data=DataDir(data),
        runtime=RuntimeConfig(price=7),
        scheduler=SchedulerConfig(idle_interval_s=0, busy_interval_s=0),
        ticks=ticks,
    )
    trio.run(run_local, options, start, lambda e, f: events.append((e, f)))
    return events


def _state(data: Path, did: str) -> tuple[int, int, int, bytes]:
    from igor_p2p.store.sqlite import Store

    store = Store.open(DataDir(data).database)
    try:
        last = store.last_checkpoint(did)
    finally:
        store.close()
    assert last is not None
    state = last.state
    count, price, balance, length = struct.unpack_from("<qqqq", state)
    return count, price, balance, state[32 : 32 + length] if length > 0 else b""


def test_a_resumed_wallet_agent_reads_its_balance_price_and_signed_receipts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "node"
    request = LaunchRequest(wasm=bytes(wat2wasm(WALLET_AGENT)), manifest=MANIFEST, budget=10**9)
    first = _run(data, LaunchHere(request), ticks=3)
    did = str(first[0][1]["agent"])
    peer = str(first[0][1]["peer_id"])
    count, price, balance, _ = _state(data, did)
    assert count == 0  # a fresh agent: no epoch with ticks yet when it was loaded
    assert price == go_price_per_second(7)
    committed = [f for e, f in first if e == "committed"]
    assert balance == committed[-2]["budget"]  # read during tick 3: the budget after tick 2

    _run(data, ResumeHere(did), ticks=1)
    count, _, _, raw = _state(data, did)
    assert count == 1
    receipt = decode_go_receipt(raw)
    assert (receipt.agent_id, receipt.node_id) == (did, peer)
    assert (receipt.epoch_start, receipt.epoch_end) == (1, 3)
    assert receipt.cost == 10**9 - committed[-1]["budget"]
    verify_signature(public_key_from_peer_id_text(peer), receipt.sign_data(), receipt.signature)
