"""``igor.wallet_pay``: Go Igor's checks in Go's order, the budget charged once, and a receipt
signed by the owner node naming the custody of its epoch — also across a crash between the
payment's INTENT and its OUTCOME, and across a handoff."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import ClassVar

import pytest
import trio

from igor_p2p.agent.effects import PayCode
from igor_p2p.authority.custody import EpochStart
from igor_p2p.effects import fees
from igor_p2p.effects.receipt import BadReceipt, receipt_size, verify_receipt
from igor_p2p.effects.settlement import SettlementRequest, SettlementResult
from igor_p2p.lineage.effect import EffectPhase, EffectRecord
from igor_p2p.lineage.entries import Checkpoint
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.runtime import services as runtime_services
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.store.sqlite import Store

from .agents import PayerState, lineage, local_node, manifest, payer, run_agent
from .test_conservation import checked

SHOP = "shop"
X402 = {"allowed_recipients": [SHOP, "refuse:shop"], "max_payment_microcents": 50_000}


def custody(data: Path, did: str) -> list[EpochStart]:
    store = Store.open(DataDir(data).database, check_on_open=False)
    try:
        return store.custody(did)
    finally:
        store.close()


async def pay_once(tmp_path: Path, wasm: bytes, budget: int = 10**9) -> tuple[PayerState, list]:  # type: ignore[type-arg]
    result = await run_agent(tmp_path, wasm, manifest(x402=X402), ticks=1, budget=budget)
    entries = lineage(tmp_path, result.did)
    last = [e for e in entries if isinstance(e, Checkpoint)][-1]
    return PayerState.of(last.state), entries


LOW = 30_000
"""A budget that pays for a tick but not for a 40,000 µ payment."""


@pytest.mark.parametrize(
    ("case", "wasm", "budget", "code"),
    [
        # each case also fails every later check, so the first check wins
        ("recipient too long", lambda: payer(0, "r" * 257), LOW, PayCode.TOO_LONG),
        ("memo too long", lambda: payer(0, SHOP, b"m" * 513), LOW, PayCode.TOO_LONG),
        ("amount not positive", lambda: payer(0, "stranger", cap=1), LOW, PayCode.BAD_INPUT),
        ("over the maximum", lambda: payer(60_000, "stranger", cap=1), LOW, PayCode.OVER_MAX),
        ("not allowed", lambda: payer(40_000, "stranger", cap=1), LOW, PayCode.NOT_ALLOWED),
        ("buffer too small", lambda: payer(40_000, SHOP, cap=64), LOW, PayCode.BUFFER_TOO_SMALL),
        ("budget too low", lambda: payer(40_000, SHOP), LOW, PayCode.INSUFFICIENT),
        ("refused", lambda: payer(1_000, "refuse:shop"), 10**9, PayCode.SETTLEMENT_FAILED),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_go_checks_come_in_go_order(
    tmp_path: Path, case: str, wasm: object, budget: int, code: PayCode
) -> None:
    state, entries = await pay_once(tmp_path, wasm(), budget)  # type: ignore[operator]
    assert state.result == code, case
    paid = [e for e in entries if isinstance(e, EffectRecord)]
    if code is PayCode.SETTLEMENT_FAILED:
        assert [e.status for e in paid if e.phase is EffectPhase.OUTCOME] == [code]
    else:
        assert paid == []  # refused before anything was recorded or charged


async def test_a_buffer_too_small_gets_the_receipt_size_as_a_hint(tmp_path: Path) -> None:
    result = await run_agent(
        tmp_path, payer(1_000, SHOP, b"hi", cap=64), manifest(x402=X402), ticks=1
    )
    last = [e for e in lineage(tmp_path, result.did) if isinstance(e, Checkpoint)][-1]
    assert PayerState.of(last.state).result == PayCode.BUFFER_TOO_SMALL
    (hint,) = struct.unpack_from("<I", last.state, 16)  # where the receipt would be
    assert hint == 4 + receipt_size(SHOP, b"hi")


async def test_a_payment_is_charged_once_and_its_receipt_verifies(tmp_path: Path) -> None:
    result = await run_agent(
        tmp_path, payer(25_000, SHOP, b"coffee"), manifest(x402=X402), ticks=1, budget=10**7
    )
    entries = lineage(tmp_path, result.did)
    genesis, tick = entries[0], entries[-1]
    assert isinstance(genesis, Checkpoint) and isinstance(tick, Checkpoint)
    state = PayerState.of(tick.state)
    assert state.result == 4 + len(state.receipt) == 4 + receipt_size(SHOP, b"coffee")
    receipt = verify_receipt(state.receipt, result.did, custody(tmp_path, result.did))
    assert (receipt.amount, receipt.recipient, receipt.memo) == (25_000, SHOP, b"coffee")
    intent, outcome = [e for e in entries if isinstance(e, EffectRecord)]
    assert receipt.key == intent.key and outcome.result == state.receipt
    charge = 25_000 + fees.payment_fee(receipt_size(SHOP, b"coffee"))
    assert outcome.charge == charge
    report = verify_lineage([e.encode() for e in entries], ordered=True)
    assert report.valid, report.problems
    assert (report.effects.payments, report.effects.paid) == (1, charge)
    assert genesis.budget - tick.budget > charge  # the tick's own costs on top
    tampered = state.receipt[:8] + struct.pack("<q", 999) + state.receipt[16:]
    with pytest.raises(BadReceipt):
        verify_receipt(tampered, result.did, custody(tmp_path, result.did))


class HangingSettlement:
    """Never answers: the process is 'killed' (cancelled) between INTENT and OUTCOME."""

    calls: ClassVar[list[SettlementRequest]] = []

    def __init__(self, ledger: object = None) -> None:
        pass

    async def pay(self, request: SettlementRequest) -> SettlementResult:
        HangingSettlement.calls.append(request)
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_payment_cut_by_a_crash_is_charged_once_and_never_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_services, "MockSettlement", HangingSettlement)
    HangingSettlement.calls = []
    wasm = payer(25_000, SHOP, b"once")
    did = ""
    with trio.move_on_after(30) as give_up:
        async with local_node(tmp_path) as node:
            did = await node.launch(wasm, manifest(x402=X402), budget=10**7)
            while not HangingSettlement.calls:
                await trio.sleep(0.01)
            give_up.cancel()  # the INTENT is durable; the node stops here without an OUTCOME
    assert did and len(HangingSettlement.calls) == 1
    monkeypatch.undo()
    resumed = await run_agent(tmp_path, wasm, b"", ticks=1, did=did)
    entries = lineage(tmp_path, did)
    state = PayerState.of([e for e in entries if isinstance(e, Checkpoint)][-1].state)
    assert state.result == PayCode.OUTCOME_UNKNOWN  # told, not paid again
    assert len(HangingSettlement.calls) == 1
    payments = [e for e in entries if isinstance(e, EffectRecord)]
    assert [e.phase for e in payments] == [EffectPhase.INTENT]
    report = verify_lineage([e.encode() for e in entries], ordered=True)
    assert report.valid, report.problems
    assert report.effects.unknown == [payments[0].key]
    assert resumed.budget <= 10**7 - payments[0].charge  # the reserve stays charged, once
    _count, charged, problems = checked(tmp_path)  # the testnet checker agrees
    assert problems == [] and charged == payments[0].charge


async def test_a_handoff_snapshot_carries_the_payment(tmp_path: Path) -> None:
    async with local_node(tmp_path) as node:
        did = await node.launch(payer(25_000, SHOP), manifest(x402=X402), budget=10**7)
        while node.hosted[0].head.tick < 1:
            await trio.sleep(0.01)
        await node.runner.stop(did)
        handoff = await node.runner.handoff_checkpoint(did)
        entries = lineage(tmp_path, did)
    assert handoff.kind is CheckpointKind.HANDOFF and handoff.prev == entries[-1].digest()
    outcomes = [
        e for e in entries if isinstance(e, EffectRecord) and e.phase is EffectPhase.OUTCOME
    ]
    paid = sum(e.charge for e in outcomes)
    ticks = handoff.tick
    assert ticks >= 1 and paid >= 25_000 * ticks
    assert handoff.budget <= 10**7 - paid
