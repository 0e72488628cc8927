"""A lying peer, one lie at a time: every field of every message it sends, wrong.

The liar (a real node core whose transport rewrites what it sends, ``igor_p2p/sim/lies.py``)
is a handoff target that fetches a module and refuses an offer, a handoff source that serves a
module and aborts, a witness of claims and handoffs, and a restored pending target that
settles. For every ``(message type, field)`` the schedule runs with that one lie in every such
message; the honest nodes must stay safe and running: every check of the testnet checker holds,
including (g) no agent halted by an unexpected error.
"""

from __future__ import annotations

import multiprocessing

from igor_p2p.sim.lies import every_lie
from igor_p2p.sim.run import run_schedule
from tests.sim import scenarios

NEVER_SENT_BY_A_CORE = {"REFUSED"}
"""REFUSED is written by the transport for requests that never reach the core (malformed,
unsupported, wrong sender); the transport conformance and fuzz suites cover it."""


def _judge(lie: tuple[str, str]) -> tuple[str, str, bool, str | None, int]:
    kind, field = lie
    out = run_schedule(scenarios.lie_matrix(kind, field))
    return kind, field, out.ok, out.first_violation(), out.coverage.get(f"lie:{kind}.{field}", 0)


def test_no_single_lie_in_any_field_breaks_safety_or_ends_an_honest_node() -> None:
    lies = every_lie()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_judge, lies, chunksize=4)
    failures = [(k, f, v) for k, f, ok, v, _ in results if not ok]
    assert failures == []
    untold = {f"{k}.{f}" for k, f, _, _, told in results if not told}
    expected_untold = {f"{k}.{f}" for k, f in lies if k in NEVER_SENT_BY_A_CORE}
    assert untold == expected_untold, "the schedule no longer reaches these lies"


def test_a_target_lying_about_the_prepared_digest_makes_the_source_abort() -> None:
    # Non-vacuity: with the ACK digest lie the source must abort; the schedule shows it.
    out = run_schedule(scenarios.lie_matrix("ACK", "prepared_digest"), keep_world=True)
    assert out.ok, out.result.to_text()
    assert out.coverage["lie:ACK.prepared_digest"] >= 1
    assert out.coverage["migrate:ABORTED"] >= 1
