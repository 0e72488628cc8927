"""Crash safety of ``igor agent run/resume`` with real processes: ``kill -9`` at random moments
never loses a checkpoint the process reported as committed, and a resume always continues from
the last committed checkpoint with the same identity and the counter state intact (each resume
is a claim of the next epoch: one self-transfer and its certificate in the lineage)."""

from __future__ import annotations

import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .local_cli import (
    checkpoints_of,
    committed_events,
    counter_state,
    export_entries,
    igor,
    inspect,
    spawn,
    verify,
)

pytestmark = pytest.mark.e2e

KILL_SEEDS = (0x1607, 0x2A5)
"""One independent agent (its own data directory) per seed, killed in parallel."""
KILLS_PER_AGENT = 10
"""Each agent: one killed ``run``, then killed ``resume``s."""
KILL_DELAY_S = (0.05, 0.6)


@dataclass
class KillChain:
    data: Path
    did: str = ""
    printed: dict[str, int] = field(default_factory=dict)
    """digest → tick of every checkpoint a process printed as committed before it died."""
    last_committed: int = 0
    runs_with_commits: int = 0
    epoch: int = 0
    """The epoch the last process ticked (a resume claims the next one)."""


def _kill_repeatedly(data: Path, seed: int) -> KillChain:
    """Run, then resume, the counter; ``kill -9`` each process at a random moment."""
    rng = random.Random(seed)
    chain = KillChain(data)
    for _ in range(KILLS_PER_AGENT):
        if not chain.did:
            live = spawn(
                "agent",
                "run",
                "counter",
                "-d",
                data,
                "--interval",
                "0",
                "--json",
                "--retain",
                "all",
            )
        else:
            live = spawn(
                "agent", "resume", chain.did, "-d", data, "--interval", "0", "--json",
                "--retain", "all",
            )  # fmt: skip
        started = live.wait_for("started")
        if not chain.did:
            chain.did = started["agent"]
            assert started["tick"] == 0
        else:
            assert started["agent"] == chain.did
            # The durable head: what was printed, or at most the one tick whose commit was
            # durable when the kill landed before its line was printed.
            assert chain.last_committed <= started["tick"] <= chain.last_committed + 1
        assert started["epoch"] == chain.epoch + 1
        chain.epoch = started["epoch"]
        time.sleep(rng.uniform(*KILL_DELAY_S))  # the kill moment itself is the randomness
        live.proc.send_signal(signal.SIGKILL)  # never a reaped, reused pid
        events = live.finish()
        assert live.proc.returncode == -signal.SIGKILL
        assert not [e for e in events if e["event"] == "stopped"]
        commits = committed_events(events)
        ticks = [e["tick"] for e in commits]
        first = started["tick"] + 1
        assert ticks == list(range(first, first + len(ticks))), "ticks skipped or repeated"
        for event in commits:
            assert (event["agent"], event["kind"], event["epoch"]) == (
                chain.did,
                "TICK",
                chain.epoch,
            )
            chain.printed[event["digest"]] = event["tick"]
        chain.runs_with_commits += bool(commits)
        chain.last_committed = ticks[-1] if ticks else started["tick"]
    return chain


def _check_nothing_committed_was_lost(chain: KillChain, bundle_path: Path) -> None:
    did, data = chain.did, chain.data
    assert chain.runs_with_commits >= KILLS_PER_AGENT // 2, "most kills must follow commits"

    # A clean resume continues from the last committed checkpoint.
    final = igor(
        "agent", "resume", did, "-d", data, "--ticks", "5", "--interval", "0", "--json",
        "--retain", "all",
    )  # fmt: skip
    assert final.rc == 0, final.stderr
    started = final.event("started")
    assert started["agent"] == did and started["epoch"] == chain.epoch + 1
    assert chain.last_committed <= started["tick"] <= chain.last_committed + 1
    end_tick = started["tick"] + 5
    assert [e["tick"] for e in final.committed()] == list(range(started["tick"] + 1, end_tick + 1))
    assert final.event("stopped")["tick"] == end_tick

    rc, report = verify(did, data)
    assert rc == 0 and report["valid"], report["problems"]
    assert report["agent"] == did
    assert (report["first_tick"], report["last_tick"]) == (0, end_tick)
    assert report["checkpoints"] == end_tick + 1, "one checkpoint per tick, none lost or repeated"
    resumes = started["epoch"] - 1
    assert (report["last_epoch"], report["transfers"], report["certs"]) == (
        started["epoch"],
        resumes,
        resumes,
    ), "one certified self-transfer per resume"
    assert report["entries"] == report["checkpoints"] + 2 * resumes

    bundle = export_entries(did, data, bundle_path)
    checkpoints = checkpoints_of(bundle)
    by_digest = {c.digest().hex(): c for c in checkpoints}
    missing = set(chain.printed) - set(by_digest)
    assert not missing, f"{len(missing)} printed commits are not in the lineage"
    for digest, tick in chain.printed.items():
        assert by_digest[digest].tick == tick
    assert sorted(c.tick for c in checkpoints) == list(range(end_tick + 1))
    for checkpoint in checkpoints:
        expected = b"" if checkpoint.tick == 0 else counter_state(checkpoint.tick)
        assert checkpoint.state == expected, f"counter state broken at tick {checkpoint.tick}"

    head = inspect(did, data)
    assert (head["agent"], head["tick"], head["kind"]) == (did, end_tick, "TICK")
    assert head["state_head"] == counter_state(end_tick).hex()
    assert head["authority_state"] == "ACTIVE_OWNER"


def test_kill_9_at_random_moments_never_loses_a_committed_checkpoint(tmp_path: Path) -> None:
    with ThreadPoolExecutor(len(KILL_SEEDS)) as pool:
        chains = list(
            pool.map(
                lambda i: _kill_repeatedly(tmp_path / f"node{i}", KILL_SEEDS[i]),
                range(len(KILL_SEEDS)),
            )
        )
        assert len({c.did for c in chains}) == len(chains)
        list(
            pool.map(
                lambda c: _check_nothing_committed_was_lost(c, tmp_path / f"{c.data.name}.igor"),
                chains,
            )
        )


def test_sigterm_stops_cleanly_and_commits_the_last_tick(tmp_path: Path) -> None:
    data = tmp_path / "node"
    # Checkpoints only every 10,000 ticks: the last tick reaches the store only through the
    # clean-stop path.
    live = spawn(
        "agent", "run", "counter", "-d", data, "--interval", "0", "--json",
        "--checkpoint-every", "10000",
    )  # fmt: skip
    started = live.wait_for("started")
    did = started["agent"]
    time.sleep(0.3)  # let it tick a while; the stop moment is arbitrary
    live.proc.send_signal(signal.SIGTERM)
    events = live.finish()
    assert live.proc.returncode == 0, live.stderr_text()
    assert "Traceback" not in live.stderr_text()
    stopped = [e for e in events if e["event"] == "stopped"]
    assert len(stopped) == 1
    ran = stopped[0]["ticks"]
    assert ran > 0
    assert stopped[0]["tick"] == ran
    assert stopped[0]["state"] == "ACTIVE_OWNER"
    commits = committed_events(events)
    assert [e["tick"] for e in commits] == [ran], "the drain commits exactly the last tick"

    head = inspect(did, data)
    assert head["tick"] == ran
    assert head["state_head"] == counter_state(ran).hex()
    assert head["digest"] == commits[-1]["digest"]

    again = igor("agent", "resume", did, "-d", data, "--ticks", "2", "--interval", "0", "--json")
    assert again.rc == 0, again.stderr
    assert again.event("started")["tick"] == ran
    assert [e["tick"] for e in again.committed()] == [ran + 1, ran + 2]
