"""Handoff under faults on real node processes: partitions after the decision (FS-2),
concurrent and duplicated migrations (FS-3), message faults on every protocol message,
replayed requests and the sender rule (FS-4), and a restart from a stale copy (FS-4/OA-7)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from igor_p2p.errors import IgorError
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.identity import Keypair
from igor_p2p.net.peerid import public_key_from_peer_id_text
from igor_p2p.node.admin_client import AdminCallFailed
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.wire.messages import Commit, Offer, Refused, RefusedCode, Reject

from .handoff_procs import (
    FAST_ARGS,
    FAST_ENV,
    checker_passes,
    handoff_cluster,
    handoff_steps,
    launch,
    migrate,
    row,
    state,
    ticks,
    wait_state,
    wait_ticks,
)
from .node_procs import NodeProc, node_processes, scratch_dir, store_rows, wait_until

QUIET_S = 2.0
"""How long both sides are watched to stay idle while the outcome is undecided."""


def _ticking(node: NodeProc, did: str) -> bool:
    r = row(node, did)
    return r is not None and r["state"] == "ACTIVE_OWNER" and bool(r.get("ticking"))


def _owners(nodes: list[NodeProc], did: str) -> list[str]:
    return [n.name for n in nodes if _ticking(n, did)]


def _settled(nodes: list[NodeProc], did: str) -> str | None:
    """The single ticking owner once no node holds a pending copy or claims; else None."""
    rows = {n.name: row(n, did) for n in nodes}
    if any(r is not None and r["state"] == "HANDOFF_PENDING" for r in rows.values()):
        return None
    owners = [name for name, r in rows.items() if r is not None and r["state"] == "ACTIVE_OWNER"]
    if len(owners) != 1 or not rows[owners[0]].get("ticking"):  # type: ignore[union-attr]
        return None
    return owners[0]


def _stop_all(nodes: list[NodeProc]) -> None:
    for n in nodes:
        if n.alive():
            n.admin("stop")
            n.wait_exit()


# ---------------------------------------------------------------- FS-2


def test_partition_after_the_decision_idles_both_sides_until_heal_settles_it() -> None:
    with scratch_dir() as root, node_processes(root, ["a", "b"], FAST_ARGS, **FAST_ENV) as nodes:
        a, b = nodes
        a.env["IGOR_CRASH_AT"] = "source:after_persist:RETIRED"
        a.start()
        a.wait_ready()
        b.start(bootstrap=[a.addr])
        b.wait_ready()
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        threading.Thread(target=_quiet_migrate, args=(a, did, b.peer_id), daemon=True).start()
        assert a.wait_exit(20) == -signal.SIGKILL  # the decision is durable, COMMIT never sent
        b.admin("partition", peers=[a.peer_id])
        a.env.pop("IGOR_CRASH_AT")
        a.start(bootstrap=[b.addr])
        a.wait_ready()
        a.admin("partition", peers=[b.peer_id])
        # Undecided for B: A retired (its certificate is durable), B pending and unable to
        # reach a witness quorum to learn it. Nobody ticks.
        wait_state(b, did, "HANDOFF_PENDING")
        retired = row(a, did)
        assert retired is not None and retired["state"] == "RETIRED"
        assert retired["owner_peer"] == b.peer_id
        quiet_from = time.monotonic_ns()
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            assert state(b, did) == "HANDOFF_PENDING" and state(a, did) == "RETIRED"
            time.sleep(0.2)
        assert not ticks(a, did, quiet_from) and not ticks(b, did, quiet_from)
        assert not [t for t in ticks(b, did)], "a pending target ticked"

        a.admin("heal")
        b.admin("heal")
        assert wait_until(lambda: _settled(nodes, did), 20, "settled after heal") == "b"
        r = wait_state(b, did, "ACTIVE_OWNER")
        assert r["epoch"] == 2
        # Idempotent: running the exchange again by hand changes nothing.
        for n in nodes:
            n.admin("recover", timeout_s=30, agent=did)
        assert _settled(nodes, did) == "b" and state(b, did) == "ACTIVE_OWNER"
        since = time.monotonic_ns()
        wait_ticks(b, did, 3, since)
        _stop_all(nodes)
        assert not ticks(a, did, quiet_from)
        checker_passes(nodes)


def _quiet_migrate(source: NodeProc, did: str, to: str) -> None:
    with contextlib.suppress(IgorError):  # the source dies mid-call
        migrate(source, did, to)


# ---------------------------------------------------------------- FS-3


def test_second_migration_in_flight_is_refused_and_duplicates_never_make_two_owners() -> None:
    with (
        scratch_dir() as root,
        handoff_cluster(root, ["a", "b", "c"], IGOR_HANDOFF_TIMEOUT_S="5") as nodes,
    ):
        a, b, c = nodes
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        # Slow the target's ACK so the first migration is surely in flight.
        b.admin("message_faults", delay_ms=1500)
        results: list[str] = []
        first = threading.Thread(target=lambda: results.append(migrate(a, did, b.peer_id)))
        first.start()
        wait_until(
            lambda: any(e["step"] == "begin" for e in handoff_steps(a, did)), 10, "in flight"
        )
        with pytest.raises(AdminCallFailed) as refused:
            migrate(a, did, c.peer_id)
        assert refused.value.error_type == "AgentBusy", refused.value
        first.join(30)
        assert results == ["TRANSFERRED"], results
        b.admin("message_faults", clear=True)

        # Every frame sent twice (requests and replies, handoff and witness protocols), both
        # directions, several hops.
        wait_until(lambda: _settled(nodes, did) == "b", 20, "b ticks")
        for n in nodes:
            n.admin("message_faults", duplicate=1.0)
        hops = [(b, c), (c, a), (a, b)]
        for source, target in hops:
            assert migrate(source, did, target.peer_id) == "TRANSFERRED"
            assert len(_owners(nodes, did)) <= 1
            wait_until(lambda t=target: _settled(nodes, did) == t.name, 20, f"{target.name} ticks")
        duplicated = {n.name: n.admin("faults")["stats"]["duplicate"] for n in nodes}
        assert all(duplicated.values()), duplicated  # the faults really applied
        for n in nodes:
            n.admin("message_faults", clear=True)
        owner = wait_until(lambda: _settled(nodes, did), 20, "settled")
        assert owner == "b"
        for n in nodes:
            owned = [
                e
                for e in _history(n)
                if e["type"] == "authority"
                and e["agent"] == did
                and e["to_state"] == "ACTIVE_OWNER"
            ]
            # One durable ACTIVE_OWNER transition per epoch however many COMMITs arrived.
            epochs = [e["epoch"] for e in owned]
            assert len(epochs) == len(set(epochs)), (n.name, epochs)
        _stop_all(nodes)
        checker_passes(nodes)


def test_an_offer_whose_ack_is_lost_on_the_targets_side_is_sent_again() -> None:
    # Soak seed 1028: the target's reply was lost to message faults on the target's side, then
    # those faults were lifted. The source sees no network change, so only its own timer can
    # tell it the ACK is late; waiting out the OFFER's timeout broke liveness after heal.
    with (
        scratch_dir() as root,
        # An OFFER waits 4 × 60 s for its ACK here: only a resend can finish in time.
        handoff_cluster(root, ["a", "b", "c", "d"], IGOR_HANDOFF_TIMEOUT_S="60") as nodes,
    ):
        a, b, *_ = nodes  # c and d: a witness quorum without b
        launch(b)  # b holds the module already: it need not ask a for it while cut off
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        b.admin("message_faults", drop=1.0, peers=[a.peer_id])  # every frame b sends a: lost
        results: list[str] = []
        moving = threading.Thread(target=lambda: results.append(migrate(a, did, b.peer_id)))
        moving.start()
        wait_state(b, did, "HANDOFF_PENDING")  # b took the OFFER and acked; a never hears it
        assert b.admin("faults")["stats"]["drop"] >= 1
        b.admin("message_faults", clear=True)  # healed on b's side only
        moving.join(60)
        assert results == ["TRANSFERRED"], results
        offers = [e for e in handoff_steps(a, did) if e["step"] == "begin"]
        assert len(offers) == 1  # one migration, its OFFER sent again: not a second attempt
        assert wait_until(lambda: _settled(nodes, did), 20, "settled") == "b"
        _stop_all(nodes)
        checker_passes(nodes)


def _history(node: NodeProc) -> list[dict]:
    from .node_procs import history

    return history(node.data)


# ---------------------------------------------------------------- message faults

FAULTS = {
    "drop": {"drop": 1.0},
    "duplicate": {"duplicate": 1.0},
    "reorder": {"reorder": True, "seed": 7},
    "delay": {"delay_ms": 400},
}


def test_message_faults_on_every_protocol_message_never_make_two_owners() -> None:
    with scratch_dir() as root, handoff_cluster(root, ["a", "b"]) as nodes:
        did = launch(nodes[0])
        wait_ticks(nodes[0], did, 2, 0)
        outcomes: list[tuple[str, str, str]] = []
        owner = nodes[0]
        for fault, spec in FAULTS.items():
            # Source side: OFFER, COMMIT, ABORT, its PREPARE/ACCEPT to the target as a witness;
            # target side: ACK, CONFIRM, its PROMISE/ACCEPTED, its module fetch.
            for side in ("source", "target"):
                other = nodes[1] if owner is nodes[0] else nodes[0]
                faulty = owner if side == "source" else other
                faulty.admin(
                    "message_faults", peers=[(other if faulty is owner else owner).peer_id], **spec
                )
                try:
                    outcome = migrate(owner, did, other.peer_id)
                finally:
                    faulty.admin("message_faults", clear=True)
                name = wait_until(lambda: _settled(nodes, did), 25, f"{fault}/{side} settled")
                outcomes.append((fault, side, f"{outcome}->{name}"))
                assert len(_owners(nodes, did)) == 1
                owner = nodes[0] if name == nodes[0].name else nodes[1]
                since = time.monotonic_ns()
                wait_ticks(owner, did, 2, since)
                idle = nodes[1] if owner is nodes[0] else nodes[0]
                assert not ticks(idle, did, since), (fault, side)
        print("\n", outcomes)
        # A dropped OFFER/ACK never transfers; the others may.
        assert all(o.startswith("ABORTED") for f, s, o in outcomes if f == "drop"), outcomes
        _stop_all(nodes)
        checker_passes(nodes)


# ---------------------------------------------------------------- replay and sender rule


def test_replayed_commit_and_offer_are_rejected_and_a_forged_sender_is_refused() -> None:
    with scratch_dir() as root, handoff_cluster(root, ["a", "b"]) as nodes:
        a, b = nodes
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        assert migrate(a, did, b.peer_id) == "TRANSFERRED"  # epoch 1 → 2
        wait_until(lambda: _settled(nodes, did) == "b", 20, "b ticks")
        assert migrate(b, did, a.peer_id) == "TRANSFERRED"  # epoch 2 → 3
        wait_until(lambda: _settled(nodes, did) == "a", 20, "a ticks")
        old_commit, old_offer = _old_requests(b.data, did, a.peer_id)

        # 1. From a host with its own key, naming A as the sender: refused before any handling.
        for request in (old_commit, old_offer):
            (answer,) = trio.run(_send_requests, b, [request], None)
            assert isinstance(answer, Refused) and answer.code is RefusedCode.MALFORMED, answer
        # 2. From A's own key (A stopped first, so one process holds that peer ID): stale.
        a.admin("stop")
        a.wait_exit()
        a_key = DataDir(a.data).node_keypair()
        answers = trio.run(_send_requests, b, [old_commit, old_offer], a_key)
        # The old COMMIT names a migration B no longer waits for; the old OFFER hands over an
        # epoch B knows is long gone. Both are refused, in words.
        assert all(isinstance(x, Reject) and x.reason for x in answers), answers
        a.start(bootstrap=[b.addr])
        a.wait_ready()
        # A restarted: it claims a new epoch from the witnesses and ticks again; B stays retired.
        wait_until(lambda: _settled(nodes, did) == "a", 30, "a ticks again")
        assert state(b, did) == "RETIRED"
        since = time.monotonic_ns()
        wait_ticks(a, did, 3, since)
        assert not ticks(b, did, since)
        _stop_all(nodes)
        checker_passes(nodes)


def _old_requests(data: Path, did: str, a_peer: str) -> tuple[Commit, Offer]:
    """The COMMIT and OFFER of the first migration (A → B at epoch 1), rebuilt from B's store."""
    rows = store_rows(data, "SELECT kind, blob FROM lineage WHERE agent = ? ORDER BY seq", did)
    blobs = [(kind, bytes(blob)) for kind, blob in rows]
    transfer_index = next(i for i, (kind, _) in enumerate(blobs) if kind == "TRANSFER")
    transfer_blob = blobs[transfer_index][1]
    cert_blob = blobs[transfer_index + 1][1]
    transfer = decode_entry(transfer_blob)
    assert transfer.to_epoch == 2  # type: ignore[union-attr]
    handoff_index = next(i for i, (kind, _) in enumerate(blobs) if kind == "HANDOFF")
    (wasm_hash, manifest_hash) = store_rows(
        data, "SELECT wasm_hash, manifest_hash FROM authority WHERE agent = ?", did
    )[0]
    manifest = store_rows(data, "SELECT data FROM manifest WHERE hash = ?", manifest_hash)[0][0]
    a_key = public_key_from_peer_id_text(a_peer)
    mid = transfer.migration_id  # type: ignore[union-attr]
    commit = Commit(a_key, did, mid, transfer_blob, cert_blob)
    genesis = blobs[0][1]
    offer = Offer(
        sender=a_key,
        agent=did,
        migration_id=mid,
        epoch=1,
        chain_after=0,
        chain=(genesis,),
        checkpoint=blobs[handoff_index][1],
        wasm_hash=bytes(wasm_hash),
        manifest=bytes(manifest),
        wasm=None,
    )
    return commit, offer


async def _send_requests(
    target: NodeProc, requests: list[Any], keypair: Keypair | None
) -> list[Any]:
    """Send each request to ``target`` over the authority transport from a host with
    ``keypair``'s identity (a fresh one if None); return the replies."""
    from igor_p2p.net.host import HostConfig, build_host, dial, running_host
    from igor_p2p.net.transport import Libp2pTransport

    key = keypair if keypair is not None else Keypair.generate()
    host = build_host(HostConfig(key_seed=key.seed))
    answers: list[Any] = []
    async with running_host(host, ("/ip4/127.0.0.1/tcp/0",)):
        await dial(host, target.addr, timeout_s=5)
        transport = Libp2pTransport(host, key.public_key)
        peer = public_key_from_peer_id_text(target.peer_id)
        for request in requests:
            answers.append(await transport.request(peer, request, 10.0))
    return answers


# ---------------------------------------------------------------- FS-4: stale restart


def test_node_restored_from_a_stale_copy_never_ticks_the_agent_again() -> None:
    with scratch_dir() as root, handoff_cluster(root, ["a", "b", "c"]) as nodes:
        a, b, c = nodes
        did = launch(a)
        wait_ticks(a, did, 2, 0)
        a.admin("stop")
        a.wait_exit()
        stale = root / "a-stale"
        shutil.copytree(a.data, stale, ignore=shutil.ignore_patterns("admin.sock", "*.log"))
        a.start(bootstrap=[b.addr])
        a.wait_ready()
        wait_ticks(a, did, 1, time.monotonic_ns())
        assert migrate(a, did, b.peer_id) == "TRANSFERRED"
        wait_until(lambda: _settled(nodes, did) == "b", 20, "b ticks")
        assert migrate(b, did, c.peer_id) == "TRANSFERRED"
        wait_until(lambda: _settled(nodes, did) == "c", 20, "c ticks")
        wait_ticks(c, did, 2, time.monotonic_ns())
        a.admin("stop")
        a.wait_exit()
        history_keep = (a.data / "history.jsonl").read_bytes()
        shutil.rmtree(a.data)
        shutil.copytree(stale, a.data)
        # Keep A's full history (the checker judges the whole run); the store is the stale one.
        (a.data / "history.jsonl").write_bytes(history_keep)
        restarted = time.monotonic_ns()
        a.start(bootstrap=[b.addr, c.addr])
        a.wait_ready()
        # The restored copy claims its next epoch, meets the later epochs in the witnesses'
        # answers and retires, naming the real owner; it never ticks.
        r = wait_state(a, did, "RETIRED")
        assert r["owner_peer"] == c.peer_id, r
        quiet = time.monotonic() + QUIET_S
        while time.monotonic() < quiet:
            assert state(a, did) == "RETIRED"
            time.sleep(0.2)
        assert not ticks(a, did, restarted), "the stale copy ticked"
        assert _settled(nodes, did) == "c"
        _stop_all(nodes)
        checker_passes(nodes)
