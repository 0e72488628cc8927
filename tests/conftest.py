"""Session-wide test set-up.

``IGOR_ALLOW_TEST_SWITCHES=1`` lets test-only switches (``test_disable_fencing``) be turned on;
nodes refuse them without it. Only the test harness sets it: here, for this process and every
node process the tests start (they inherit the environment).

Ctrl-C reaches every process the tests start, as it would from a terminal: a shell runs a
background job (``make test &``, ``nohup``, some CI runners) with SIGINT ignored, children
inherit that, and the tests that press Ctrl-C on ``igor`` would then wait for an exit that never
comes. A handled signal is reset to the default in a child, so handling it here is enough.
"""

import os
import signal
from pathlib import Path

import pytest

os.environ["IGOR_ALLOW_TEST_SWITCHES"] = "1"
signal.signal(signal.SIGINT, signal.default_int_handler)


TESTS = Path(__file__).parent
SOCKETS = (
    "net",
    "cli",
    "node/test_node_inprocess.py",
    "node/test_aged_agent_handoff.py",
    "node/test_offer_backoff.py",
)
"""Tests that open real sockets (libp2p hosts in this process) or run ``igor`` as a subprocess:
``make test`` runs them, ``make test-fast`` (units and the simulation) does not."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    marked = [TESTS / part for part in SOCKETS]
    for item in items:
        path = Path(str(item.path))
        if any(path == m or m in path.parents for m in marked):
            item.add_marker(pytest.mark.sockets)
