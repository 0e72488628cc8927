"""A sandboxed WASI preview1 (``wasi_snapshot_preview1``) for agents built with
``tinygo build -target=wasi``.

Nothing here reaches the host's files, environment, network or processes:

* fd 1 and fd 2 are write-only character devices whose lines go to the agent log
  (:class:`~igor_p2p.agent.environment.LogStream` ``STDOUT``/``STDERR``); fd 0 is an empty,
  read-only character device. No other fd exists and nothing is preopened.
* ``args`` and ``environ`` are empty.
* ``clock_time_get`` reads the node clock through the environment (``now_ns``, the source of
  ``igor.clock_now``); the monotonic clock is the same reading, never going backwards within
  one instance.
* ``random_get`` reads the node's entropy through the environment (``random_bytes``, the
  source of ``igor.rand_bytes``).
* ``proc_exit`` ends the current guest call; the sandbox raises ``AgentExited`` with the code.
* Every other preview1 function exists with its exact signature and returns an errno, so
  modules that import it load: ``EBADF`` for an fd that does not exist, ``ENOTCAPABLE`` for an
  operation stdio does not allow, ``ENOTDIR`` for path operations on stdio, ``ENOSYS`` for
  ``poll_oneoff`` and ``proc_raise``.

Every function is metered like an ``igor`` hostcall (:mod:`igor_p2p.agent.hostfuel`).
docs/agent-abi.md lists what each function does.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import Caller, FuncType, Linker, ValType

from igor_p2p.agent.guestmem import in_bounds, read_bytes, u32, write_bytes
from igor_p2p.agent.hostfuel import metered, stop_guest
from igor_p2p.agent.hoststate import HostcallState

WASI_MODULE = "wasi_snapshot_preview1"

MAX_IOVS = 1024
"""At most this many iovecs per ``fd_write``/``fd_read`` (POSIX IOV_MAX); more → ``EINVAL``."""
MAX_WRITE_BYTES = 1024 * 1024
"""One ``fd_write`` takes at most this many bytes (a short write reports how many)."""
RANDOM_MAX_BYTES = 64 * 1024 * 1024

STDIN, STDOUT, STDERR = 0, 1, 2
_STDIO = (STDIN, STDOUT, STDERR)

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME = 0, 1, 2, 3
FILETYPE_CHARACTER_DEVICE = 2
RIGHT_FD_READ = 1 << 1
RIGHT_FD_WRITE = 1 << 6
_U64_MAX = 2**64 - 1


class Errno(enum.IntEnum):
    """The preview1 errno values this module returns."""

    SUCCESS = 0
    BADF = 8
    FAULT = 21
    INVAL = 28
    IO = 29
    NOSYS = 52
    NOTDIR = 54
    NOTSUP = 58
    NOTCAPABLE = 76


@dataclass(frozen=True)
class WasiFunction:
    """One preview1 function: name and wasm signature."""

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...] = ("i32",)

    def func_type(self) -> FuncType:
        def vt(name: str) -> ValType:
            return ValType.i32() if name == "i32" else ValType.i64()

        return FuncType([vt(p) for p in self.params], [vt(r) for r in self.results])

    def neutral(self) -> int | None:
        return int(Errno.NOTCAPABLE) if self.results else None


def _f(name: str, params: str, results: str = "i32") -> WasiFunction:
    return WasiFunction(name, tuple(params.split()), tuple(results.split()))


WASI_FUNCTIONS: dict[str, WasiFunction] = {
    f.name: f
    for f in (
        _f("args_get", "i32 i32"),
        _f("args_sizes_get", "i32 i32"),
        _f("environ_get", "i32 i32"),
        _f("environ_sizes_get", "i32 i32"),
        _f("clock_res_get", "i32 i32"),
        _f("clock_time_get", "i32 i64 i32"),
        _f("fd_advise", "i32 i64 i64 i32"),
        _f("fd_allocate", "i32 i64 i64"),
        _f("fd_close", "i32"),
        _f("fd_datasync", "i32"),
        _f("fd_fdstat_get", "i32 i32"),
        _f("fd_fdstat_set_flags", "i32 i32"),
        _f("fd_fdstat_set_rights", "i32 i64 i64"),
        _f("fd_filestat_get", "i32 i32"),
        _f("fd_filestat_set_size", "i32 i64"),
        _f("fd_filestat_set_times", "i32 i64 i64 i32"),
        _f("fd_pread", "i32 i32 i32 i64 i32"),
        _f("fd_prestat_get", "i32 i32"),
        _f("fd_prestat_dir_name", "i32 i32 i32"),
        _f("fd_pwrite", "i32 i32 i32 i64 i32"),
        _f("fd_read", "i32 i32 i32 i32"),
        _f("fd_readdir", "i32 i32 i32 i64 i32"),
        _f("fd_renumber", "i32 i32"),
        _f("fd_seek", "i32 i64 i32 i32"),
        _f("fd_sync", "i32"),
        _f("fd_tell", "i32 i32"),
        _f("fd_write", "i32 i32 i32 i32"),
        _f("path_create_directory", "i32 i32 i32"),
        _f("path_filestat_get", "i32 i32 i32 i32 i32"),
        _f("path_filestat_set_times", "i32 i32 i32 i32 i64 i64 i32"),
        _f("path_link", "i32 i32 i32 i32 i32 i32 i32"),
        _f("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32"),
        _f("path_readlink", "i32 i32 i32 i32 i32 i32"),
        _f("path_remove_directory", "i32 i32 i32"),
        _f("path_rename", "i32 i32 i32 i32 i32 i32"),
        _f("path_symlink", "i32 i32 i32 i32 i32"),
        _f("path_unlink_file", "i32 i32 i32"),
        _f("poll_oneoff", "i32 i32 i32 i32"),
        _f("proc_exit", "i32", ""),
        _f("proc_raise", "i32"),
        _f("sched_yield", ""),
        _f("random_get", "i32 i32"),
        _f("sock_accept", "i32 i32 i32"),
        _f("sock_recv", "i32 i32 i32 i32 i32 i32"),
        _f("sock_send", "i32 i32 i32 i32 i32"),
        _f("sock_shutdown", "i32 i32"),
    )
}

_PATH_DIRFD_ARG = {name: 0 for name in WASI_FUNCTIONS if name.startswith("path_")}
_PATH_DIRFD_ARG["path_symlink"] = 2  # (old_path, old_path_len, fd, new_path, new_path_len)

_E = int  # errno as returned to the guest


def _fd_errno(fd: int) -> _E:
    """Errno for an fd operation stdio does not allow: ENOTCAPABLE on stdio, else EBADF."""
    return Errno.NOTCAPABLE if fd in _STDIO else Errno.BADF


def _make_impls(state: HostcallState) -> dict[str, Callable[..., Any]]:
    env = state.env
    meter = state.meter

    def put(caller: Caller, ptr: int, data: bytes) -> _E:
        return Errno.SUCCESS if write_bytes(caller, u32(ptr), data) else Errno.FAULT

    def empty_sizes(caller: Caller, count_ptr: int, size_ptr: int) -> _E:
        if not (in_bounds(caller, u32(count_ptr), 4) and in_bounds(caller, u32(size_ptr), 4)):
            return Errno.FAULT
        put(caller, count_ptr, b"\0\0\0\0")
        return put(caller, size_ptr, b"\0\0\0\0")

    def nothing_to_copy(caller: Caller, _list_ptr: int, _buf_ptr: int) -> _E:
        return Errno.SUCCESS  # zero entries: nothing is written

    def clock_res_get(caller: Caller, clock_id: int, ptr: int) -> _E:
        if clock_id in (CLOCK_REALTIME, CLOCK_MONOTONIC):
            return put(caller, ptr, struct.pack("<Q", 1))
        if clock_id in (CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME):
            return Errno.NOTSUP
        return Errno.INVAL

    def clock_time_get(caller: Caller, clock_id: int, _precision: int, ptr: int) -> _E:
        if clock_id in (CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME):
            return Errno.NOTSUP
        if clock_id not in (CLOCK_REALTIME, CLOCK_MONOTONIC):
            return Errno.INVAL
        if not in_bounds(caller, u32(ptr), 8):
            return Errno.FAULT
        try:
            now = max(0, min(_U64_MAX, int(env.now_ns())))
        except Exception as exc:
            state.record_fault("clock_time_get", exc)
            return Errno.IO
        if clock_id == CLOCK_MONOTONIC:
            now = max(now, state.last_monotonic_ns)
            state.last_monotonic_ns = now
        return put(caller, ptr, struct.pack("<Q", now))

    def random_get(caller: Caller, ptr: int, length: int) -> _E:
        ptr, length = u32(ptr), u32(length)
        if length > RANDOM_MAX_BYTES:
            return Errno.INVAL
        if not in_bounds(caller, ptr, length):
            return Errno.FAULT
        if not meter.charge_bytes(caller, length):
            return Errno.IO
        try:
            data = bytes(env.random_bytes(length))
        except Exception:
            return Errno.IO
        if len(data) != length:
            return Errno.IO
        return put(caller, ptr, data)

    def fd_write(caller: Caller, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> _E:
        if fd not in (STDOUT, STDERR):
            return _fd_errno(fd)
        iovs, iovs_len, nwritten_ptr = u32(iovs), u32(iovs_len), u32(nwritten_ptr)
        if iovs_len > MAX_IOVS:
            return Errno.INVAL
        table = read_bytes(caller, iovs, iovs_len * 8)
        if table is None or not in_bounds(caller, nwritten_ptr, 4):
            return Errno.FAULT
        chunks: list[bytes] = []
        total = 0
        for buf, length in struct.iter_unpack("<II", table):
            length = min(length, MAX_WRITE_BYTES - total)
            data = read_bytes(caller, buf, length)
            if data is None:
                return Errno.FAULT
            chunks.append(data)
            total += length
            if total >= MAX_WRITE_BYTES:
                break
        if not meter.charge_bytes(caller, total):
            return Errno.IO
        buffer = state.stdout if fd == STDOUT else state.stderr
        for line in buffer.feed(b"".join(chunks)):
            state.emit(buffer.stream, line)
        return put(caller, nwritten_ptr, struct.pack("<I", total))

    def fd_read(caller: Caller, fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> _E:
        if fd != STDIN:
            return _fd_errno(fd)
        if u32(iovs_len) > MAX_IOVS:
            return Errno.INVAL
        return put(caller, nread_ptr, b"\0\0\0\0")  # stdin is empty: end of file

    def fd_fdstat_get(caller: Caller, fd: int, ptr: int) -> _E:
        if fd not in _STDIO:
            return Errno.BADF
        rights = RIGHT_FD_READ if fd == STDIN else RIGHT_FD_WRITE
        # fdstat: filetype u8, pad, flags u16, pad, rights_base u64, rights_inheriting u64
        return put(caller, ptr, struct.pack("<BxHxxxxQQ", FILETYPE_CHARACTER_DEVICE, 0, rights, 0))

    def fd_filestat_get(caller: Caller, fd: int, ptr: int) -> _E:
        if fd not in _STDIO:
            return Errno.BADF
        # filestat: dev, ino, filetype u8 (+7 pad), nlink, size, atim, mtim, ctim
        stat = struct.pack("<QQB7xQQQQQ", 0, 0, FILETYPE_CHARACTER_DEVICE, 1, 0, 0, 0, 0)
        return put(caller, ptr, stat)

    def fd_prestat(caller: Caller, fd: int, *_: int) -> _E:
        return Errno.BADF  # nothing is preopened

    def fd_renumber(caller: Caller, fd: int, to: int) -> _E:
        if fd not in _STDIO or to not in _STDIO:
            return Errno.BADF
        return Errno.NOTCAPABLE

    def fd_other(caller: Caller, fd: int, *_: int) -> _E:
        return _fd_errno(fd)

    def path_op(dirfd_arg: int) -> Callable[..., _E]:
        def impl(caller: Caller, *args: int) -> _E:
            return Errno.NOTDIR if args[dirfd_arg] in _STDIO else Errno.BADF

        return impl

    def proc_exit(caller: Caller, code: int) -> None:
        state.exit_code = u32(code)
        state.flush_output()
        stop_guest(caller)
        return None

    def not_offered(caller: Caller, *_: int) -> _E:
        return Errno.NOSYS

    def sched_yield(caller: Caller) -> _E:
        return Errno.SUCCESS

    impls: dict[str, Callable[..., Any]] = {
        "args_get": nothing_to_copy,
        "args_sizes_get": empty_sizes,
        "environ_get": nothing_to_copy,
        "environ_sizes_get": empty_sizes,
        "clock_res_get": clock_res_get,
        "clock_time_get": clock_time_get,
        "random_get": random_get,
        "fd_write": fd_write,
        "fd_read": fd_read,
        "fd_fdstat_get": fd_fdstat_get,
        "fd_filestat_get": fd_filestat_get,
        "fd_prestat_get": fd_prestat,
        "fd_prestat_dir_name": fd_prestat,
        "fd_renumber": fd_renumber,
        "proc_exit": proc_exit,
        "proc_raise": not_offered,
        "poll_oneoff": not_offered,
        "sched_yield": sched_yield,
    }
    for name, dirfd_arg in _PATH_DIRFD_ARG.items():
        impls[name] = path_op(dirfd_arg)
    for name in WASI_FUNCTIONS:
        impls.setdefault(name, fd_other)  # the remaining fd_* and sock_* functions
    return impls


def _guarded(name: str, impl: Callable[..., Any], state: HostcallState) -> Callable[..., Any]:
    """Turn an unexpected host exception into a recorded ``HostFault`` (the guest sees EIO)."""

    def call(caller: Caller, *args: Any) -> Any:
        try:
            result = impl(caller, *args)
            return None if result is None else int(result)
        except Exception as exc:
            state.record_fault(name, exc)
            return int(Errno.IO) if WASI_FUNCTIONS[name].results else None

    return call


def define_wasi(linker: Linker, names: tuple[str, ...], state: HostcallState) -> None:
    """Register the WASI functions ``names`` (the ones the module imports), each metered."""
    impls = _make_impls(state)
    for name in names:
        spec = WASI_FUNCTIONS[name]
        guarded = _guarded(name, impls[name], state)
        func = metered(guarded, state.meter, state.stopping, spec.neutral())
        linker.define_func(WASI_MODULE, name, spec.func_type(), func, access_caller=True)
