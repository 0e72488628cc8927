"""Issue 9, cases 3 and 6 on real processes: a lying peer can neither crash a node nor halt an
agent. The liar is the real ``igor node run`` whose transport rewrites what it sends
(``liar_node.py``, the simulation's lies)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from .checking import check_nodes
from .handoff_procs import (
    FAST_ARGS,
    FAST_ENV,
    handoff_steps,
    launch,
    migrate,
    named,
    now_ns,
    row,
    wait_ticks,
)
from .node_procs import (
    NodeProc,
    scratch_dir,
    start_cluster,
    store_rows,
    wait_full_tables,
    wait_until,
)

pytestmark = pytest.mark.e2e

LIAR = str(Path(__file__).with_name("liar_node.py"))


@contextmanager
def with_liar(
    root: Path, honest: Sequence[str], lie: str, extra_args: Sequence[str] = ()
) -> Iterator[tuple[list[NodeProc], NodeProc]]:
    """Honest nodes and one liar (started last), full peer tables; all killed on exit."""
    args = (*FAST_ARGS, *extra_args)
    nodes = [NodeProc(n, root / n, extra_args=args, env=dict(FAST_ENV)) for n in honest]
    liar = NodeProc(
        "liar",
        root / "liar",
        extra_args=args,
        env=dict(FAST_ENV),
        launcher=(sys.executable, LIAR, lie, "--"),
    )
    everyone = [*nodes, liar]
    try:
        start_cluster(everyone)
        wait_full_tables(everyone, 20)
        yield nodes, liar
    finally:
        for node in everyone:
            node.kill()


def lies_told(liar: NodeProc) -> int:
    try:
        return liar.log_path.read_text(errors="replace").count("LIE ")
    except OSError:
        return 0


def test_a_target_acking_a_wrong_digest_aborts_the_handoff_and_the_source_ticks_on() -> None:
    with (
        scratch_dir() as root,
        with_liar(root, ["n1", "n2"], "ACK.prepared_digest") as (
            (n1, n2),
            liar,
        ),
    ):
        did = launch(n1)
        wait_ticks(n1, did, 3, 0)
        for _ in range(3):
            assert migrate(n1, did, liar.peer_id) != "TRANSFERRED"
        assert lies_told(liar) >= 3
        since = now_ns()
        wait_ticks(n1, did, 5, since)
        assert n1.alive() and n2.alive()
        r = row(n1, did)
        assert r is not None and r["state"] == "ACTIVE_OWNER"
        assert migrate(n1, did, n2.peer_id) == "TRANSFERRED"  # honest peers still move it
        result = check_nodes(named([n1, n2, liar]))
        assert result.ok, result.to_text()


def test_a_wandering_agent_survives_a_lying_target_and_its_node_never_exits() -> None:
    with (
        scratch_dir() as root,
        with_liar(root, ["n1"], "ACK.prepared_digest", ("--wander", "random")) as ((n1,), liar),
    ):
        did = launch(n1, "wanderer")
        wait_until(
            lambda: sum(s["step"] == "aborted" for s in handoff_steps(n1, did)) >= 3,
            60,
            "three wander attempts aborted",
            n1.log_tail,
        )
        wait_ticks(n1, did, 3, now_ns())
        assert n1.alive()
        r = row(n1, did)
        assert r is not None and r["state"] == "ACTIVE_OWNER"
        result = check_nodes(named([n1, liar]))
        assert result.ok, result.to_text()


def test_every_field_of_every_message_wrong_never_ends_an_honest_node_or_breaks_safety() -> None:
    with (
        scratch_dir() as root,
        with_liar(root, ["n1", "n2"], "every_field", ("--wander", "random")) as ((n1, n2), liar),
    ):
        agents = [launch(n1, "wanderer"), launch(n2, "wanderer"), launch(liar, "wanderer")]
        wait_until(lambda: lies_told(liar) >= 40, 90, "forty lies told", liar.log_tail)
        for node in (n1, n2):
            assert node.alive(), node.log_tail()
            assert node.status()["peers_up"] >= 1
        result = check_nodes(named([n1, n2, liar]))
        assert result.ok, result.to_text()  # (g): no agent halted by an unexpected error
        assert result.counts["robustness"].checked >= len(agents)


def test_forged_gossip_claims_never_halt_an_agent_or_raise_its_fence() -> None:
    with scratch_dir() as root, with_liar(root, ["n1", "n2"], "forge_claims") as ((n1, n2), liar):
        did = launch(n1)
        assert migrate(n1, did, n2.peer_id) == "TRANSFERRED"  # epoch 2: its owner gossips claims
        wait_ticks(n2, did, 3, 0)
        epoch = row(n2, did)["epoch"]  # type: ignore[index]
        wait_until(
            lambda: n2.status()["claims"]["ignored"] >= 6 and lies_told(liar) >= 2,
            60,
            "forged claims heard and ignored by the owner",
            liar.log_tail,
        )
        wait_ticks(n2, did, 5, now_ns())
        r = row(n2, did)
        assert r is not None and (r["state"], r["epoch"]) == ("ACTIVE_OWNER", epoch)
        ((stored_epoch, fence),) = store_rows(
            n2.data, "SELECT epoch, fence FROM authority WHERE agent = ?", did
        )
        assert (stored_epoch, fence) == (epoch, epoch)
        assert n2.status()["claims"]["proven"] == 0
        assert n1.alive() and n2.alive()
