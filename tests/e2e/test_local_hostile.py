"""Hostile agents through the real CLI: each ends with a clear typed message, no traceback,
the documented exit code (0 when the budget ran out, 3 when halted, 2 when refused before
launch), and the lineage they leave behind still verifies; an exhausted agent never ticks
again, a halted one only when an operator resumes it (and halts again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .local_cli import (
    assert_no_traceback,
    authority_row,
    db,
    igor,
    inspect,
    typed_error,
    verify,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("agent", "exit_code", "state", "reason"),
    [
        ("spin", 0, "BUDGET_EXHAUSTED", "budget exhausted"),
        ("membomb", 3, "HALTED", "AgentTrapped: "),
        ("trap", 3, "HALTED", "AgentTrapped: "),
    ],
)
def test_hostile_agent_stops_with_a_typed_reason_and_a_valid_lineage(
    tmp_path: Path, agent: str, exit_code: int, state: str, reason: str
) -> None:
    data = tmp_path / "node"
    run = igor("agent", "run", agent, "-d", data, "--ticks", "3", "--interval", "0", "--json")
    assert_no_traceback(run)
    assert run.rc == exit_code, run.stderr
    did = run.event("started")["agent"]
    stopped = run.event("stopped")
    assert stopped["state"] == state
    assert stopped["reason"].startswith(reason)
    assert stopped["ticks"] == 0, "the hostile tick never completes"
    final = run.committed()
    assert [(e["kind"], e["tick"]) for e in final] == [("FINAL", 0)]

    rc, report = verify(did, data)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["entries"], report["last_tick"]) == (2, 0)
    head = inspect(did, data)
    assert (head["kind"], head["authority_state"]) == ("FINAL", state)
    assert head["authority_reason"].startswith(reason)
    assert authority_row(data, did)[:2] == (state, stopped["reason"])

    again = igor("agent", "resume", did, "-d", data, "--ticks", "1", "--interval", "0", "--json")
    assert_no_traceback(again)
    if state == "BUDGET_EXHAUSTED":
        # Terminal: an exhausted agent is never ticked again.
        assert typed_error(again) == "NotOwner"
        assert state in again.stderr
        return
    # A halted agent is the operator's to resume: it claims the next epoch, and the hostile
    # tick halts it again at once with the same reason; no tick of it ever completes.
    assert again.rc == exit_code, again.stderr
    assert again.event("started")["epoch"] == 2
    assert again.event("stopped")["state"] == state
    assert again.event("stopped")["reason"].startswith(reason)
    assert [(e["kind"], e["tick"], e["epoch"]) for e in again.committed()] == [("FINAL", 0, 2)]
    rc, report = verify(did, data)
    assert rc == 0 and report["valid"], report["problems"]
    assert (report["last_tick"], report["last_epoch"], report["transfers"]) == (0, 2, 1)


def test_trap_prints_its_reason_in_text_mode(tmp_path: Path) -> None:
    run = igor("agent", "run", "trap", "-d", tmp_path / "node", "--ticks", "1", "--interval", "0")
    assert run.rc == 3
    assert_no_traceback(run)
    lines = [line for line in run.stdout.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1
    assert "state HALTED (AgentTrapped: agent trapped: wasm trap:" in lines[0]


def test_badimport_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "node"
    run = igor("agent", "run", "badimport", "-d", data, "--ticks", "1", "--json")
    assert typed_error(run) == "UndeclaredCapability"
    assert run.rc == 2
    assert "clock" in run.stderr
    assert [e["error"]["exit_code"] for e in run.events] == [2], "only the error object"
    assert list((data / "agent-keys").iterdir()) == [], "no agent key is minted"
    conn = db(data)
    try:
        assert conn.execute("SELECT count(*) FROM authority").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM lineage").fetchone()[0] == 0
    finally:
        conn.close()
