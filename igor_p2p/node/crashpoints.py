"""Test-only crash injection: ``IGOR_CRASH_AT`` names points where the node kills itself.

The composition root wraps the node core's store and transport ports (only when one of the two
variables below is set) so that every durable authority write and every request and reply of
the authority protocols passes a named point:

- ``<role>:before_persist:<STATE>`` / ``<role>:after_persist:<STATE>`` around
  ``commit_authority`` (the state the record moves to); role ``target`` while the node holds a
  pending copy (HANDOFF_PENDING, or leaving it), ``source`` when it retires, else ``owner``;
  ``witness:before_persist:VOTE`` / ``witness:after_persist:VOTE`` around ``commit_witness``;
- ``<role>:before_send:<TYPE>`` before a request leaves and ``<role>:after_send:<TYPE>`` once
  its reply is back (the peer handled it; this node has not acted on the answer yet); role
  ``source`` for OFFER, COMMIT and ABORT, ``target`` for GET_MODULE, ``claimant`` for PREPARE,
  ACCEPT, LEARN and STATUS;
- ``<role>:before_send:<TYPE>`` before a reply is handed back for sending: ``target`` for the
  replies to OFFER, COMMIT and ABORT, ``source`` for MODULE, ``witness`` for the others.

When ``IGOR_CRASH_AT`` (a comma-separated list, read when the node starts) names the point the
process sends itself SIGKILL on the spot — exactly what ``kill -9`` at that moment would do.
``IGOR_FAIL_AT`` names points (same form) where instead the code raises :class:`InjectedFailure`,
an error no port promises: the bug-shaped failure the core must survive without ticking where
it may not. ``NAME@N`` fires the N-th time the point is reached instead of the first.
``IGOR_CRASH_TRACE=FILE`` appends every point reached to FILE, one name a line, so a test can
enumerate the points a run passes. All are test switches: read only with
``IGOR_ALLOW_TEST_SWITCHES=1`` (which only the test harness sets); otherwise, or unset, the
ports are not wrapped at all.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.core.ports import AuthorityStore, Handler, Transport
from igor_p2p.node.config import TEST_SWITCHES_ENV
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import HANDOFF_REQUESTS, GetModule

_SOURCE_REQUESTS = {t.TYPE for t in HANDOFF_REQUESTS}
_REQUESTER = {**dict.fromkeys(_SOURCE_REQUESTS, "source"), GetModule.TYPE: "target"}
_REPLIER = {**dict.fromkeys(_SOURCE_REQUESTS, "target"), GetModule.TYPE: "source"}


class InjectedFailure(RuntimeError):
    """A test-only failure at a named point (``IGOR_FAIL_AT``); deliberately no ``IgorError``."""


def _points(raw: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in (p.strip() for p in raw.split(",")):
        if item:
            name, _, nth = item.partition("@")
            armed[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return armed


class CrashPoints:
    """The armed points (``IGOR_CRASH_AT``, ``IGOR_FAIL_AT``) and the trace file
    (``IGOR_CRASH_TRACE``)."""

    def __init__(
        self, armed: Mapping[str, int], trace: str | None, failing: Mapping[str, int] | None = None
    ) -> None:
        self.armed = dict(armed)
        self.failing = dict(failing or {})
        self.trace = trace
        self._reached: dict[str, int] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CrashPoints | None:
        raw = environ.get("IGOR_CRASH_AT", "")
        failing = environ.get("IGOR_FAIL_AT", "")
        trace = environ.get("IGOR_CRASH_TRACE") or None
        if environ.get(TEST_SWITCHES_ENV) != "1" or (
            not raw.strip() and not failing.strip() and trace is None
        ):
            return None
        return cls(_points(raw), trace, _points(failing))

    def point(self, name: str) -> None:
        if self.trace is not None:
            with open(self.trace, "a") as trace:
                trace.write(name + "\n")
        if name not in self.armed and name not in self.failing:
            return
        self._reached[name] = self._reached.get(name, 0) + 1
        if self._reached[name] == self.armed.get(name):
            os.kill(os.getpid(), signal.SIGKILL)
        if self._reached[name] == self.failing.get(name):
            raise InjectedFailure(f"injected failure at {name}")


def _persist_role(before: AuthorityState | None, after: AuthorityState) -> str:
    pending = AuthorityState.HANDOFF_PENDING
    if pending in (before, after):
        return "target"
    if after is AuthorityState.RETIRED:
        return "source"
    return "owner"


class CrashingStore:
    """The store port with a crash point before and after every durable authority write."""

    def __init__(self, inner: AuthorityStore, points: CrashPoints) -> None:
        self._inner = inner
        self._points = points

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit_authority(
        self,
        agent: str,
        record: AuthorityRecord,
        append: Sequence[bytes] = (),
        *,
        discard_copy: bool = False,
    ) -> list[bytes]:
        previous = await self._inner.record(agent)
        before = previous.state if previous is not None else None
        state = record.state
        role = _persist_role(
            before if isinstance(before, AuthorityState) else None,
            state,  # type: ignore[arg-type]
        )
        self._points.point(f"{role}:before_persist:{state}")
        appended = await self._inner.commit_authority(
            agent, record, append, discard_copy=discard_copy
        )
        self._points.point(f"{role}:after_persist:{state}")
        return appended

    async def commit_witness(
        self, agent: str, record: WitnessRecord | None, learned: Sequence[EpochStart]
    ) -> None:
        self._points.point("witness:before_persist:VOTE")
        await self._inner.commit_witness(agent, record, learned)
        self._points.point("witness:after_persist:VOTE")


class CrashingTransport:
    """The transport port with a crash point around every request and before every reply."""

    def __init__(self, inner: Transport, points: CrashPoints) -> None:
        self._inner = inner
        self._points = points
        self.me = inner.me

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        role = _REQUESTER.get(message.TYPE, "claimant")
        self._points.point(f"{role}:before_send:{message.TYPE}")
        reply = await self._inner.request(peer, message, timeout)
        self._points.point(f"{role}:after_send:{message.TYPE}")
        return reply

    def serve(self, handler: Handler) -> None:
        points = self._points

        async def answered(sender: bytes, message: Message) -> Message:
            reply = await handler(sender, message)
            role = _REPLIER.get(message.TYPE, "witness")
            points.point(f"{role}:before_send:{reply.TYPE}")
            return reply

        self._inner.serve(answered)


def with_crash_points(
    store: AuthorityStore, transport: Transport, points: CrashPoints | None
) -> tuple[AuthorityStore, Transport]:
    """The ports as given, or wrapped when crash points are armed or traced."""
    if points is None:
        return store, transport
    return CrashingStore(store, points), CrashingTransport(transport, points)
