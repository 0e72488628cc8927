"""The fuzz harness: every decoder of outside bytes gets the same contract and two runs.

Contract: a decoder given anything either returns a value or raises a typed error
(:class:`~igor_p2p.errors.InvalidInput`); any other exception fails the test. Each property runs
under the ``igor-fuzz`` hypothesis profile in ``make test`` (:data:`FAST_EXAMPLES` cases, or
``IGOR_FUZZ_EXAMPLES``) and under ``igor-fuzz-soak`` in ``make soak`` (:data:`SOAK_EXAMPLES`
cases, marked ``soak``). :func:`fuzz` builds both tests from one check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput

FAST_EXAMPLES = int(os.environ.get("IGOR_FUZZ_EXAMPLES", "500"))
SOAK_EXAMPLES = 10_000

_COMMON = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("igor-fuzz", max_examples=FAST_EXAMPLES, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("igor-fuzz-soak", max_examples=SOAK_EXAMPLES, **_COMMON)  # type: ignore[arg-type]

T = TypeVar("T")


def typed_only(decode: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call a decoder; a typed error is an answer (None), anything else propagates."""
    try:
        return decode(*args, **kwargs)
    except InvalidInput:
        return None


def fuzz(
    strategy: st.SearchStrategy[Any],
) -> Callable[[Callable[[Any], None]], tuple[Callable[..., None], Callable[..., None]]]:
    """``test_x, test_x_soak = fuzz(strategy)(check)``: the make-test and the soak variant."""

    def build(check: Callable[[Any], None]) -> tuple[Callable[..., None], Callable[..., None]]:
        def fast(value: Any) -> None:
            check(value)

        def soak(value: Any) -> None:
            check(value)

        fast.__doc__ = soak.__doc__ = check.__doc__
        fast_test = settings(settings.get_profile("igor-fuzz"))(given(strategy)(fast))
        soak_test = settings(settings.get_profile("igor-fuzz-soak"))(given(strategy)(soak))
        return fast_test, pytest.mark.soak(soak_test)

    return build


# ------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([0, 1, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=80)
)
msgpack_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=12) | st.integers(-(2**63), 2**63 - 1), children, max_size=5
        )
    ),
    max_leaves=12,
)


def packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few byte-level edits: flips, cuts, insertions, duplications."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate", "extend"]))
        if op in ("flip", "set", "cut") and not data:
            continue
        if op == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCF, 0xD3, 0xDC, 0xFF]))
        elif op == "cut":
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@st.composite
def replaced_field(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid wire map with one field replaced by any value, removed, or one field added."""
    wire = dict(draw(valid))
    keys = sorted(wire)
    op = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if op == "replace" and keys:
        wire[draw(st.sampled_from(keys))] = draw(msgpack_values)
    elif op == "remove" and keys:
        del wire[draw(st.sampled_from(keys))]
    else:
        wire[draw(st.text(max_size=10))] = draw(msgpack_values)
    return wire


@st.composite
def replaced_item(draw: st.DrawFn, valid: st.SearchStrategy[list[Any]]) -> list[Any]:
    """A valid wire array with one item replaced by any value, dropped, or one appended."""
    items = list(draw(valid))
    op = draw(st.sampled_from(["replace", "replace", "drop", "append"]))
    if op == "replace" and items:
        items[draw(st.integers(0, len(items) - 1))] = draw(msgpack_values)
    elif op == "drop" and items:
        del items[draw(st.integers(0, len(items) - 1))]
    else:
        items.append(draw(msgpack_values))
    return items


def hostile_bytes(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Garbage, packed random values, and mutations of valid encodings, in one strategy."""
    return st.one_of(
        st.binary(max_size=300),
        msgpack_values.map(packb),
        mutated(valid),
        valid,
    )
