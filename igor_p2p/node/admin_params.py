"""Typed, range-checked readers for admin request parameters.

An admin client is local but its bytes are still untrusted: JSON ``true`` is not the number 1,
``1e300`` is not a delay, ``"abc"`` is not a probability. Every reader here checks the exact
JSON type (``bool`` is never taken for a number), finiteness and an inclusive range, and raises
:class:`BadParams` naming the parameter, so a bad request is an answered typed error, never an
``InternalError``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from igor_p2p.errors import InvalidInput

MAX_TEXT_CHARS = 1024
MAX_ID_CHARS = 128
"""A DID, a peer ID or a multiaddr-free name."""
MAX_LIST_ITEMS = 1024
INT64_MAX = 2**63 - 1

_MISSING = object()


class BadParams(InvalidInput):
    """An admin call's parameters are missing, of the wrong type or out of range."""


def expect_only(params: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse parameters the method does not take (a typo must not be silently ignored)."""
    allowed = list(allowed)
    for name in params:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BadParams(f"unknown parameter {str(name)[:64]!r}{hint}")


def text(
    params: dict[str, Any],
    name: str,
    *,
    max_chars: int = MAX_ID_CHARS,
    default: str | None = None,
) -> str:
    """A non-empty string of at most ``max_chars`` characters."""
    value = params.get(name, _MISSING)
    if (value is _MISSING or value is None) and default is not None:
        return default
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise BadParams(f"{name} must be a non-empty string of at most {max_chars} characters")
    if "\x00" in value:
        raise BadParams(f"{name} must not contain NUL characters")
    return value


def hex_bytes(
    params: dict[str, Any], name: str, *, max_bytes: int, default: bytes | None = None
) -> bytes:
    """Bytes given as a hex string, at most ``max_bytes`` of them."""
    value = params.get(name, _MISSING)
    if (value is _MISSING or value is None) and default is not None:
        return default
    if not isinstance(value, str):
        raise BadParams(f"{name} must be a hex string")
    if len(value) > 2 * max_bytes:
        raise BadParams(f"{name} must be at most {max_bytes} bytes")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadParams(f"{name} is not valid hex") from None


def integer(
    params: dict[str, Any], name: str, *, lo: int, hi: int, default: int | None = None
) -> int:
    """A JSON integer (never a bool or a float) in ``[lo, hi]``."""
    value = params.get(name, _MISSING)
    if value is _MISSING and default is not None:
        return default
    if type(value) is not int or not lo <= value <= hi:
        raise BadParams(f"{name} must be a whole number in [{lo}, {hi}]")
    return value


def number(
    params: dict[str, Any], name: str, *, lo: float, hi: float, default: float | None = None
) -> float:
    """A finite JSON number (int or float, never a bool) in ``[lo, hi]``."""
    value = params.get(name, _MISSING)
    if value is _MISSING and default is not None:
        return default
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise BadParams(f"{name} must be a number in [{lo:g}, {hi:g}]")
    return float(value)


def flag(params: dict[str, Any], name: str, *, default: bool = False) -> bool:
    """A JSON boolean (absent = ``default``)."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if type(value) is not bool:
        raise BadParams(f"{name} must be true or false")
    return value


def text_list(
    params: dict[str, Any],
    name: str,
    *,
    max_items: int = MAX_LIST_ITEMS,
    max_chars: int = MAX_ID_CHARS,
    default: list[str] | None = None,
) -> list[str]:
    """A list of at most ``max_items`` non-empty strings of at most ``max_chars`` each."""
    value = params.get(name, _MISSING)
    if (value is _MISSING or value is None) and default is not None:
        return default
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(v, str) and 0 < len(v) <= max_chars for v in value)
    ):
        raise BadParams(
            f"{name} must be a list of at most {max_items} strings of 1..{max_chars} characters"
        )
    return value
