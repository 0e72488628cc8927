"""``gapwatch`` through the real CLI: after a stop and a resume its resume-info hostcalls report
a restart and the real gap since its last checkpoint."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from .local_cli import igor, inspect, run_counter

pytestmark = pytest.mark.e2e


def _gapwatch_state(head: dict[str, object]) -> tuple[int, int, int, int]:
    """(ticks, resumes, largest gap ns, last clock_now) from the head's 32-byte state."""
    assert head["state_bytes"] == 32
    return struct.unpack("<QQQQ", bytes.fromhex(str(head["state_head"])))


def test_gapwatch_sees_a_restart_and_the_gap_after_a_resume(tmp_path: Path) -> None:
    data = tmp_path / "node"
    did, _ = run_counter(data, 3, agent="gapwatch")
    first = inspect(did, data)
    ticks, resumes, gap, _ = _gapwatch_state(first)
    assert (ticks, resumes, gap) == (3, 0, 0), "a fresh launch is not a resume"

    before_ns = time.time_ns()
    resumed = igor("agent", "resume", did, "-d", data, "--ticks", "2", "--interval", "0", "--json")
    after_ns = time.time_ns()
    assert resumed.rc == 0, resumed.stderr
    assert resumed.event("started")["tick"] == 3
    ticks, resumes, gap, last_clock = _gapwatch_state(inspect(did, data))
    assert ticks == 5, "state continued from the checkpoint"
    assert resumes == 1, "resume_reason reported RESTARTED (non-zero) once"
    # The gap is measured from the last checkpoint's wall clock to the moment of the resume.
    assert before_ns - first["wall_ns"] <= gap <= after_ns - first["wall_ns"]
    assert before_ns <= last_clock <= after_ns
