"""Test-only crash injection: ``IGOR_CRASH_AT`` names points where the process kills itself.

The handoff driver calls :func:`crash_point` before and after every durable write and every
send, with names like ``source:after_persist:RETIRED`` or ``target:before_send:ACK``. When the
environment variable ``IGOR_CRASH_AT`` (a comma-separated list of names, read once at import)
contains the name, the process sends itself SIGKILL on the spot — exactly what ``kill -9`` at
that moment would do. ``NAME@N`` fires the N-th time the point is reached instead of the first
(the source persists ``RETIRED`` twice in one migration: the decision, then the confirmation).
``IGOR_CRASH_TRACE=FILE`` appends every point reached to FILE, one name a line, so a test can
enumerate the points a run actually passes. Unset, a call costs two lookups.
"""

from __future__ import annotations

import os
import signal


def _parse(raw: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, _, nth = item.partition("@")
        points[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return points


_POINTS = _parse(os.environ.get("IGOR_CRASH_AT", ""))
_TRACE = os.environ.get("IGOR_CRASH_TRACE") or None
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    if _TRACE is not None:
        with open(_TRACE, "a") as trace:
            trace.write(name + "\n")
    nth = _POINTS.get(name)
    if nth is not None:
        _reached[name] = _reached.get(name, 0) + 1
        if _reached[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)


def armed() -> frozenset[str]:
    return frozenset(_POINTS)
