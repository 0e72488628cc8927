"""Execution receipts in Go Igor's byte layout, derived from a signed lineage."""

from __future__ import annotations

import struct

import pytest

from igor_p2p.lineage.identity import BadSignature, Keypair, verify_signature
from igor_p2p.runtime import receipts as receipts_module
from igor_p2p.runtime.receipts import (
    MAX_RECEIPTS,
    BadReceipt,
    GoReceipt,
    decode_go_receipt,
    receipts_from_lineage,
)

from .builders import NODE_B, LineageBuilder, happy_lineage

HOST = Keypair.from_seed(bytes([0x42]) * 32)
HOST_PEER = "12D3KooWHostPeerIdForReceipts"


def test_receipt_bytes_are_gos_marshal_binary_layout() -> None:
    receipt = GoReceipt("did:key:zAgent", "12D3KooWNode", 6, 10, 5000, 995_000, 1_700_000_000)
    signed = receipt.signed(HOST)
    expected_sign_data = (
        struct.pack("<I", 14)
        + b"did:key:zAgent"
        + struct.pack("<I", 12)
        + b"12D3KooWNode"
        + struct.pack("<QQqqq", 6, 10, 5000, 995_000, 1_700_000_000)
    )
    assert signed.sign_data() == expected_sign_data
    assert signed.encode() == expected_sign_data + struct.pack("<I", 64) + signed.signature
    verify_signature(HOST.public_key, expected_sign_data, signed.signature)  # Go's Verify
    assert decode_go_receipt(signed.encode()) == signed


@pytest.mark.parametrize("cut", [0, 3, 10, 40, 60])
def test_truncated_receipts_are_refused(cut: int) -> None:
    data = GoReceipt("a", "n", 1, 2, 3, 4, 5).signed(HOST).encode()
    with pytest.raises(BadReceipt):
        decode_go_receipt(data[:cut])
    with pytest.raises(BadReceipt):
        decode_go_receipt(data + b"x")


def test_one_receipt_per_custody_epoch_in_which_ticks_ran() -> None:
    lineage = happy_lineage()  # epoch 1 ticks 0→10 on A; epoch 2 10→15 on B; epoch 4 15→20 on C
    receipts = [
        decode_go_receipt(r)
        for r in receipts_from_lineage(lineage.entries, lineage.agent, HOST, HOST_PEER)
    ]
    assert [(r.epoch_start, r.epoch_end, r.cost, r.budget_after) for r in receipts] == [
        (1, 10, 2_000, 998_000),
        (11, 15, 1_000, 997_000),
        (16, 20, 1_000, 996_000),
    ]
    for receipt in receipts:
        assert (receipt.agent_id, receipt.node_id) == (lineage.agent, HOST_PEER)
        verify_signature(HOST.public_key, receipt.sign_data(), receipt.signature)
        with pytest.raises(BadSignature):
            verify_signature(NODE_B.public_key, receipt.sign_data(), receipt.signature)


def test_the_timestamp_is_the_wall_time_of_the_epochs_last_checkpoint() -> None:
    lineage = LineageBuilder()
    lineage.genesis()
    lineage.tick_checkpoint()
    last = lineage.tick_checkpoint()
    (receipt,) = receipts_from_lineage(lineage.entries, lineage.agent, HOST, HOST_PEER)
    assert decode_go_receipt(receipt).timestamp == last.wall_ns


def test_a_fresh_agent_has_no_receipts() -> None:
    lineage = LineageBuilder()
    lineage.genesis()
    assert receipts_from_lineage(lineage.entries, lineage.agent, HOST, HOST_PEER) == ()


def test_receipts_are_bounded_to_the_most_recent_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_RECEIPTS == 256
    monkeypatch.setattr(receipts_module, "MAX_RECEIPTS", 3)
    lineage = LineageBuilder()
    lineage.genesis()
    nodes = [HOST, NODE_B]
    for n in range(6):
        lineage.tick_checkpoint()
        lineage.migrate(nodes[n % 2])
    lineage.tick_checkpoint()
    receipts = receipts_from_lineage(lineage.entries, lineage.agent, HOST, HOST_PEER)
    assert len(receipts) == 3
    assert decode_go_receipt(receipts[-1]).epoch_end == lineage.tick
