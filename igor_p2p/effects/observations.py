"""What a tick observed: the nondeterministic answers hostcalls gave it, recorded for replay.

Every answer the host environment gives an agent that the agent's code could not compute itself
is an *observation*: a clock reading (``clock_now``, WASI clocks), random bytes (``rand_bytes``,
``random_get``), the budget, resume information, the node price, execution receipts, the
unresolved-effects list, and the results of ``http_request`` and ``wallet_pay``. With the same
observations in the same order, a deterministic agent computes the same state, so a recorded
tick can be re-executed offline (:mod:`igor_p2p.effects.replay`).

Byte layout of a log (the ``log`` of a :class:`~igor_p2p.lineage.inputs.TickInputs`), all
little-endian: for each tick that observed anything, ``[tick u64][count u32]`` then ``count``
times ``[kind u8][len u32][payload]``. Payloads per :class:`Obs`:

* ``CLOCK``, ``BUDGET``, ``RESUME_GAP``, ``PRICE``: i64; ``RESUME_REASON``, ``RECEIPT_COUNT``:
  i32; ``RAND``: the bytes; ``RECEIPT``: ``[found u8][receipt]``; ``UNRESOLVED``: the bytes;
* ``HTTP``, ``PAY``: ``[code i32][size hint u32][effect key, 0 or 16 bytes]`` — a response body
  or a receipt is not copied: it is the result of the effect's OUTCOME record with that key.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.inputs import MAX_LOG_BYTES


class Obs(enum.IntEnum):
    CLOCK = 1
    RAND = 2
    BUDGET = 3
    RESUME_REASON = 4
    RESUME_GAP = 5
    PRICE = 6
    RECEIPT_COUNT = 7
    RECEIPT = 8
    HTTP = 9
    PAY = 10
    UNRESOLVED = 11


class BadObservations(InvalidInput):
    """A tick-input log that does not decode."""


Observation = tuple[Obs, bytes]
_TICK = struct.Struct("<QI")
_ITEM = struct.Struct("<BI")


def encode_log(ticks: Sequence[tuple[int, Sequence[Observation]]]) -> bytes:
    parts: list[bytes] = []
    for tick, observations in ticks:
        parts.append(_TICK.pack(tick, len(observations)))
        for kind, payload in observations:
            parts.append(_ITEM.pack(int(kind), len(payload)))
            parts.append(payload)
    return b"".join(parts)


def decode_log(data: bytes) -> dict[int, list[Observation]]:
    """Tick → its observations, in order; raises :class:`BadObservations`."""
    out: dict[int, list[Observation]] = {}
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if pos + _TICK.size > len(data):
            raise BadObservations("truncated tick header")
        tick, count = _TICK.unpack_from(view, pos)
        pos += _TICK.size
        if tick in out:
            raise BadObservations(f"tick {tick} listed twice")
        items: list[Observation] = []
        for _ in range(count):
            if pos + _ITEM.size > len(data):
                raise BadObservations("truncated observation")
            kind, length = _ITEM.unpack_from(view, pos)
            pos += _ITEM.size
            if pos + length > len(data):
                raise BadObservations("truncated observation payload")
            try:
                items.append((Obs(kind), bytes(view[pos : pos + length])))
            except ValueError:
                raise BadObservations(f"unknown observation kind {kind}") from None
            pos += length
        out[tick] = items
    return out


def pack_i64(value: int) -> bytes:
    return struct.pack("<q", value)


def pack_i32(value: int) -> bytes:
    return struct.pack("<i", value)


def pack_effect(code: int, size_hint: int, key: bytes) -> bytes:
    return struct.pack("<iI", code, min(size_hint, 0xFFFFFFFF)) + key


def unpack_effect(payload: bytes) -> tuple[int, int, bytes]:
    if len(payload) not in (8, 24):
        raise BadObservations("an effect observation is 8 or 24 bytes")
    code, hint = struct.unpack_from("<iI", payload)
    return code, hint, payload[8:]


@dataclass
class InputRecorder:
    """The observations of one hosted agent's ticks since its last committed checkpoint.

    :meth:`begin` starts a tick (the runtime calls it around ``agent_tick`` only: what
    ``agent_init``/``agent_resume`` observe is not recorded, see docs/effects.md). Thread use:
    the worker thread that runs the tick, then the one that builds the checkpoint."""

    ticks: dict[int, list[Observation]] = field(default_factory=dict)
    size: int = 0
    complete: bool = True
    _current: int | None = None

    def begin(self, tick: int) -> None:
        self._current = tick
        self.ticks.pop(tick, None)

    def end(self) -> None:
        self._current = None

    def record(self, kind: Obs, payload: bytes) -> None:
        tick = self._current
        if tick is None:
            return
        self.size += _ITEM.size + len(payload)
        if self.size > MAX_LOG_BYTES:
            self.complete = False
            return
        self.ticks.setdefault(tick, []).append((kind, payload))

    def take(self, after: int, upto: int) -> tuple[bytes, bool] | None:
        """The log of ticks ``after+1 … upto`` (None when they observed nothing); clears all."""
        ticks = sorted((t, obs) for t, obs in self.ticks.items() if after < t <= upto)
        complete = self.complete
        self.discard()
        if not ticks and complete:
            return None
        return encode_log(ticks), complete

    def pending(self, after: int) -> bool:
        return any(t > after for t in self.ticks) or not self.complete

    def discard(self) -> None:
        self.ticks.clear()
        self.size = 0
        self.complete = True


Recorder = Callable[[Obs, bytes], None]
