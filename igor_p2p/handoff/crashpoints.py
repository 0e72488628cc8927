"""Test-only crash injection: ``IGOR_CRASH_AT`` names points where the process kills itself.

The handoff driver calls :func:`crash_point` before and after every durable write and every
send, with names like ``source:after_persist:RETIRED`` or ``target:before_send:ACK``. When the
environment variable ``IGOR_CRASH_AT`` (a comma-separated list of names, read once at import)
contains the name, the process sends itself SIGKILL on the spot — exactly what ``kill -9`` at
that moment would do. Unset, a call costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_POINTS = frozenset(p.strip() for p in os.environ.get("IGOR_CRASH_AT", "").split(",") if p.strip())


def crash_point(name: str) -> None:
    if name in _POINTS:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> frozenset[str]:
    return _POINTS
