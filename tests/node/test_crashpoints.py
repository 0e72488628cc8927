"""Test-only crash points (``IGOR_CRASH_AT``): parsed once, named by role and step, traced on
request, and fatal exactly at the N-th time a point is reached; without the variables the
node's ports are not wrapped at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from igor_p2p.authority.record import ABSENT, AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.lineage.cert import Ballot
from igor_p2p.node import crashpoints
from igor_p2p.node.crashpoints import CrashPoints, with_crash_points
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Ack, Commit, GetModule, Module, Offer, Prepare, Promise

ME = b"\x01" * 32
MID = b"\x02" * 16
BALLOT = Ballot(1, ME, b"nonce-01")
S = AuthorityState


class _Killed(Exception):
    pass


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``os.kill`` as the crash points call it, recorded (and stopping the caller) instead."""
    sent: list[int] = []

    def kill(pid: int, sig: int) -> None:
        sent.append(sig)
        raise _Killed

    monkeypatch.setattr(crashpoints.os, "kill", kill)
    return sent


ALLOWED = {"IGOR_ALLOW_TEST_SWITCHES": "1"}


def test_nothing_is_wrapped_without_the_variables() -> None:
    assert CrashPoints.from_env({}) is None
    assert CrashPoints.from_env(ALLOWED) is None
    store, transport = object(), object()
    assert with_crash_points(store, transport, None) == (store, transport)  # type: ignore[arg-type]


def test_crash_points_are_test_switches() -> None:
    """Outside the test harness a node never kills itself, whatever the environment says."""
    assert CrashPoints.from_env({"IGOR_CRASH_AT": "a:b:C", "IGOR_CRASH_TRACE": "/tmp/x"}) is None


def test_the_list_is_parsed_with_an_optional_count() -> None:
    points = CrashPoints.from_env({**ALLOWED, "IGOR_CRASH_AT": "a:b:C, d:e:F@3 ,, g@0"})
    assert points is not None
    assert points.armed == {"a:b:C": 1, "d:e:F": 3, "g": 1}
    assert points.trace is None


def test_a_point_kills_the_process_the_nth_time_it_is_reached(kills: list[int]) -> None:
    points = CrashPoints({"x": 2}, None)
    points.point("y")
    points.point("x")
    assert kills == []
    with pytest.raises(_Killed):
        points.point("x")
    assert kills == [crashpoints.signal.SIGKILL]


def test_a_failure_point_raises_an_unexpected_error_the_nth_time_instead(
    kills: list[int],
) -> None:
    assert CrashPoints.from_env({"IGOR_FAIL_AT": "a:b:C"}) is None  # a test switch too
    points = CrashPoints.from_env({**ALLOWED, "IGOR_FAIL_AT": "x@2"})
    assert points is not None and points.failing == {"x": 2} and points.armed == {}
    points.point("x")
    with pytest.raises(crashpoints.InjectedFailure):
        points.point("x")
    points.point("x")  # once only
    assert kills == []
    assert not issubclass(crashpoints.InjectedFailure, IgorError)


def test_the_trace_names_every_point_in_order(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    points = CrashPoints.from_env({**ALLOWED, "IGOR_CRASH_TRACE": str(trace)})
    assert points is not None
    for name in ("a", "b", "a"):
        points.point(name)
    assert trace.read_text().split() == ["a", "b", "a"]


class _Store:
    def __init__(self, record: AuthorityRecord | None) -> None:
        self.stored = record
        self.writes: list[AuthorityRecord] = []

    async def record(self, agent: str) -> AuthorityRecord | None:
        return self.stored

    async def commit_authority(self, agent: str, record: AuthorityRecord, *a: Any, **k: Any):  # type: ignore[no-untyped-def]
        self.writes.append(record)
        self.stored = record
        return []

    async def head(self, agent: str) -> bytes | None:
        return b"head"


@pytest.mark.parametrize(
    ("before", "after", "role"),
    [
        (None, S.ACTIVE_OWNER, "owner"),
        (S.ACTIVE_OWNER, S.HANDOFF_PENDING, "target"),
        (S.HANDOFF_PENDING, S.ACTIVE_OWNER, "target"),
        (S.HANDOFF_PENDING, S.RETIRED, "target"),
        (S.ACTIVE_OWNER, S.RETIRED, "source"),
        (S.ACTIVE_OWNER, S.HALTED, "owner"),
    ],
)
async def test_a_persist_is_named_by_the_role_of_the_node_and_the_state_it_reaches(
    tmp_path: Path, before: AuthorityState | None, after: AuthorityState, role: str
) -> None:
    trace = tmp_path / "trace"
    inner = _Store(AuthorityRecord(before) if before is not None else None)
    store, _ = with_crash_points(inner, _Transport(), CrashPoints({}, str(trace)))  # type: ignore[arg-type]
    await store.commit_authority("a", AuthorityRecord(after, epoch=2))
    assert inner.writes == [AuthorityRecord(after, epoch=2)]
    assert trace.read_text().split() == [
        f"{role}:before_persist:{after}",
        f"{role}:after_persist:{after}",
    ]
    assert await store.head("a") == b"head"  # everything else passes through


async def test_a_crash_before_a_persist_leaves_nothing_written(kills: list[int]) -> None:
    inner = _Store(AuthorityRecord(ABSENT))
    store, _ = with_crash_points(
        inner, _Transport(), CrashPoints({"target:before_persist:HANDOFF_PENDING": 1}, None)
    )  # type: ignore[arg-type]
    with pytest.raises(_Killed):
        await store.commit_authority("a", AuthorityRecord(S.HANDOFF_PENDING, epoch=1))
    assert inner.writes == []


class _Transport:
    me = ME

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.handler: Any = None

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        self.sent.append(message)
        return Ack(ME, "a", MID, 1, b"\x00" * 32)

    def serve(self, handler: Any) -> None:
        self.handler = handler


@pytest.mark.parametrize(
    ("message", "role"),
    [
        (Offer(ME, "a", MID, 1, 0, (), b"c", b"\x00" * 32, b"{}", None), "source"),
        (Commit(ME, "a", MID, b"r", b"c"), "source"),
        (GetModule(ME, b"\x00" * 32), "target"),
        (Prepare(ME, "a", 2, BALLOT, 0, ()), "claimant"),
    ],
)
async def test_a_request_passes_a_point_before_it_leaves_and_once_its_reply_is_back(
    tmp_path: Path, message: Message, role: str
) -> None:
    trace = tmp_path / "trace"
    inner = _Transport()
    _, transport = with_crash_points(_Store(None), inner, CrashPoints({}, str(trace)))  # type: ignore[arg-type]
    await transport.request(ME, message, 1.0)
    assert inner.sent == [message]
    assert trace.read_text().split() == [
        f"{role}:before_send:{message.TYPE}",
        f"{role}:after_send:{message.TYPE}",
    ]


async def test_a_crash_before_a_request_sends_nothing(kills: list[int]) -> None:
    inner = _Transport()
    _, transport = with_crash_points(
        _Store(None), inner, CrashPoints({"source:before_send:COMMIT": 1}, None)
    )  # type: ignore[arg-type]
    with pytest.raises(_Killed):
        await transport.request(ME, Commit(ME, "a", MID, b"r", b"c"), 1.0)
    assert inner.sent == []


@pytest.mark.parametrize(
    ("request_", "reply", "point"),
    [
        (Offer(ME, "a", MID, 1, 0, (), b"c", b"\x00" * 32, b"{}", None),
         Ack(ME, "a", MID, 1, b"\x00" * 32), "target:before_send:ACK"),
        (GetModule(ME, b"\x00" * 32), Module(ME, None), "source:before_send:MODULE"),
        (Prepare(ME, "a", 2, BALLOT, 0, ()),
         Promise(ME, "a", 2, BALLOT, None, None), "witness:before_send:PROMISE"),
    ],
)  # fmt: skip
async def test_a_reply_passes_a_point_before_it_is_handed_back(
    kills: list[int], request_: Message, reply: Message, point: str
) -> None:
    inner = _Transport()
    _, transport = with_crash_points(_Store(None), inner, CrashPoints({point: 1}, None))  # type: ignore[arg-type]

    async def handler(sender: bytes, message: Message) -> Message:
        return reply

    transport.serve(handler)
    with pytest.raises(_Killed):
        await inner.handler(ME, request_)
