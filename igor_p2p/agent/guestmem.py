"""Bounds-checked access to the calling agent's linear memory from inside a hostcall.

Pointers and lengths arrive as wasm i32 and are read as unsigned 32-bit (:func:`u32`). Every
read and write checks ``ptr + len`` against the memory's current size; a bad range gives
``None``/``False``, never a host exception.
"""

from __future__ import annotations

import ctypes

from wasmtime import Caller, Memory


def u32(value: int) -> int:
    return value & 0xFFFFFFFF


def memory(caller: Caller) -> Memory | None:
    try:
        mem = caller.get("memory")
    except Exception:
        return None
    return mem if isinstance(mem, Memory) else None


def in_bounds(caller: Caller, ptr: int, length: int) -> bool:
    mem = memory(caller)
    return mem is not None and ptr + length <= mem.data_len(caller)


def read_bytes(caller: Caller, ptr: int, length: int) -> bytes | None:
    """Copy ``[ptr, ptr+length)`` out of guest memory; ``None`` on a bad range."""
    mem = memory(caller)
    if mem is None:
        return None
    if length == 0:
        return b""
    if ptr + length > mem.data_len(caller):
        return None
    return bytes(mem.get_buffer_ptr(caller, length, ptr))


def write_bytes(caller: Caller, ptr: int, data: bytes) -> bool:
    """Copy ``data`` into guest memory at ``ptr``; ``False`` (nothing written) on a bad range."""
    mem = memory(caller)
    if mem is None or ptr + len(data) > mem.data_len(caller):
        return False
    if data:
        buf = mem.get_buffer_ptr(caller, len(data), ptr)
        ctypes.memmove(ctypes.addressof(buf), data, len(data))
    return True
