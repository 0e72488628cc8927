"""The sandboxed WASI preview1: stdout/stderr to the agent log, proc_exit, node clock and
entropy, empty args/environ, no preopens, and an errno for everything else."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wasmtime import Config, Engine, FuncType, Linker, Module, Store, wat2wasm

from igor_p2p.agent import (
    AgentExited,
    ImportSignatureMismatch,
    InstancePoisoned,
    LocalEnvironment,
    LogStream,
    Sandbox,
    load_agent_manifest,
    load_agent_source,
)
from igor_p2p.agent.hoststate import MAX_OUTPUT_LINE_BYTES, HostcallState
from igor_p2p.agent.wasi import WASI_FUNCTIONS, WASI_MODULE, Errno, define_wasi

from .helpers import FUEL, agent_wat, load_wat, manifest_with

# ---------------------------------------------------------------- a bare harness
# Every preview1 function imported and re-exported as ``call_<name>``, linked with
# ``define_wasi`` on a fuel-metered engine, so each can be called with chosen arguments.


def _harness_wat() -> str:
    imports, wrappers = [], []
    for name, spec in WASI_FUNCTIONS.items():
        params = " ".join(spec.params)
        result = f"(result {' '.join(spec.results)})" if spec.results else ""
        imports.append(
            f'(import "{WASI_MODULE}" "{name}" (func ${name} (param {params}) {result}))'
        )
        gets = " ".join(f"(local.get {i})" for i in range(len(spec.params)))
        wrappers.append(
            f'(func (export "call_{name}") (param {params}) {result} (call ${name} {gets}))'
        )
    return (
        "(module " + " ".join(imports) + ' (memory (export "memory") 1) ' + " ".join(wrappers) + ")"
    )


@dataclass
class Harness:
    store: Store
    exports: Any
    state: HostcallState
    env: LocalEnvironment

    def call(self, name: str, *args: int) -> Any:
        return self.exports[f"call_{name}"](self.store, *args)

    def mem(self, ptr: int, length: int) -> bytes:
        memory = self.exports["memory"]
        return bytes(memory.read(self.store, ptr, ptr + length))

    def put(self, ptr: int, data: bytes) -> None:
        self.exports["memory"].write(self.store, data, ptr)


@dataclass
class ScriptedEnvironment(LocalEnvironment):
    clock: list[int] | None = None
    entropy_fails: bool = False

    def now_ns(self) -> int:
        assert self.clock is not None
        return self.clock.pop(0) if len(self.clock) > 1 else self.clock[0]

    def random_bytes(self, n: int) -> bytes:
        if self.entropy_fails:
            raise OSError("no entropy")
        return bytes(range(n % 256)) if n < 256 else b"\x5a" * n


@pytest.fixture
def harness() -> Harness:
    return _make_harness(ScriptedEnvironment(clock=[1_700_000_000_000_000_000]))


def _make_harness(env: LocalEnvironment) -> Harness:
    cfg = Config()
    cfg.consume_fuel = True
    engine = Engine(cfg)
    store = Store(engine)
    store.set_fuel(10**12)
    state = HostcallState(env=env, migration_enabled=True)
    linker = Linker(engine)
    define_wasi(linker, tuple(WASI_FUNCTIONS), state)
    instance = linker.instantiate(store, Module(engine, wat2wasm(_harness_wat())))
    return Harness(store, instance.exports(store), state, env)


def test_every_preview1_function_is_offered_with_its_exact_signature() -> None:
    assert len(WASI_FUNCTIONS) == 46
    module = Module(Engine(), wat2wasm(_harness_wat()))
    imported = {imp.name: imp.type for imp in module.imports}
    assert set(imported) == set(WASI_FUNCTIONS)
    for name, ty in imported.items():
        assert isinstance(ty, FuncType)
        spec = WASI_FUNCTIONS[name]
        assert [str(p) for p in ty.params] == list(spec.params), name
        assert [str(r) for r in ty.results] == list(spec.results), name


# (function, args, expected errno): what each function answers. fd 7 does not exist; fds 0-2
# are stdio; 1024 is a valid pointer into the harness memory.
P = 1024
ERRNO_TABLE: list[tuple[str, tuple[int, ...], Errno]] = [
    ("fd_advise", (1, 0, 0, 0), Errno.NOTCAPABLE),
    ("fd_advise", (7, 0, 0, 0), Errno.BADF),
    ("fd_allocate", (1, 0, 10), Errno.NOTCAPABLE),
    ("fd_close", (1,), Errno.NOTCAPABLE),
    ("fd_close", (7,), Errno.BADF),
    ("fd_datasync", (1,), Errno.NOTCAPABLE),
    ("fd_fdstat_get", (7, P), Errno.BADF),
    ("fd_fdstat_set_flags", (1, 0), Errno.NOTCAPABLE),
    ("fd_fdstat_set_rights", (1, 0, 0), Errno.NOTCAPABLE),
    ("fd_filestat_get", (7, P), Errno.BADF),
    ("fd_filestat_set_size", (1, 0), Errno.NOTCAPABLE),
    ("fd_filestat_set_times", (1, 0, 0, 0), Errno.NOTCAPABLE),
    ("fd_pread", (0, P, 0, 0, P), Errno.NOTCAPABLE),
    ("fd_prestat_get", (3, P), Errno.BADF),
    ("fd_prestat_get", (0, P), Errno.BADF),
    ("fd_prestat_dir_name", (3, P, 16), Errno.BADF),
    ("fd_pwrite", (1, P, 0, 0, P), Errno.NOTCAPABLE),
    ("fd_read", (1, P, 0, P), Errno.NOTCAPABLE),
    ("fd_read", (7, P, 0, P), Errno.BADF),
    ("fd_readdir", (1, P, 16, 0, P), Errno.NOTCAPABLE),
    ("fd_renumber", (1, 2), Errno.NOTCAPABLE),
    ("fd_renumber", (1, 7), Errno.BADF),
    ("fd_seek", (1, 0, 0, P), Errno.NOTCAPABLE),
    ("fd_sync", (2,), Errno.NOTCAPABLE),
    ("fd_tell", (1, P), Errno.NOTCAPABLE),
    ("fd_tell", (7, P), Errno.BADF),
    ("fd_write", (0, P, 0, P), Errno.NOTCAPABLE),
    ("fd_write", (7, P, 0, P), Errno.BADF),
    ("path_create_directory", (3, P, 4), Errno.BADF),
    ("path_create_directory", (1, P, 4), Errno.NOTDIR),
    ("path_filestat_get", (3, 0, P, 4, P), Errno.BADF),
    ("path_filestat_set_times", (3, 0, P, 4, 0, 0, 0), Errno.BADF),
    ("path_link", (3, 0, P, 4, 3, P, 4), Errno.BADF),
    ("path_open", (3, 0, P, 11, 0, 0, 0, 0, P), Errno.BADF),
    ("path_open", (0, 0, P, 11, 0, 0, 0, 0, P), Errno.NOTDIR),
    ("path_readlink", (3, P, 4, P, 16, P), Errno.BADF),
    ("path_remove_directory", (3, P, 4), Errno.BADF),
    ("path_rename", (3, P, 4, 3, P, 4), Errno.BADF),
    ("path_symlink", (P, 4, 3, P, 4), Errno.BADF),
    ("path_symlink", (P, 4, 2, P, 4), Errno.NOTDIR),
    ("path_unlink_file", (3, P, 4), Errno.BADF),
    ("poll_oneoff", (P, P, 1, P), Errno.NOSYS),
    ("proc_raise", (9,), Errno.NOSYS),
    ("sched_yield", (), Errno.SUCCESS),
    ("sock_accept", (1, 0, P), Errno.NOTCAPABLE),
    ("sock_accept", (7, 0, P), Errno.BADF),
    ("sock_recv", (1, P, 0, 0, P, P), Errno.NOTCAPABLE),
    ("sock_send", (7, P, 0, 0, P), Errno.BADF),
    ("sock_shutdown", (1, 0), Errno.NOTCAPABLE),
    ("clock_res_get", (2, P), Errno.NOTSUP),
    ("clock_res_get", (9, P), Errno.INVAL),
    ("clock_time_get", (3, 0, P), Errno.NOTSUP),
    ("clock_time_get", (9, 0, P), Errno.INVAL),
    ("clock_time_get", (0, 0, 70_000), Errno.FAULT),
    ("random_get", (65_530, 16), Errno.FAULT),
    ("args_sizes_get", (70_000, P), Errno.FAULT),
]


@pytest.mark.parametrize(("name", "args", "errno"), ERRNO_TABLE)
def test_each_function_answers_its_documented_errno(
    harness: Harness, name: str, args: tuple[int, ...], errno: Errno
) -> None:
    assert harness.call(name, *args) == errno


def test_no_host_file_is_reachable_whatever_the_fd(harness: Harness) -> None:
    harness.put(P, b"/etc/passwd")
    for fd in range(-1, 64):
        assert harness.call("path_open", fd, 0, P, 11, 0, -1, -1, 0, P + 64) != Errno.SUCCESS
        assert harness.call("fd_prestat_get", fd, P + 64) == Errno.BADF


def test_args_and_environ_are_empty(harness: Harness) -> None:
    harness.put(P, b"\xff" * 16)
    assert harness.call("args_sizes_get", P, P + 4) == Errno.SUCCESS
    assert harness.call("environ_sizes_get", P + 8, P + 12) == Errno.SUCCESS
    assert harness.mem(P, 16) == bytes(16)
    assert harness.call("args_get", P, P + 4) == Errno.SUCCESS
    assert harness.call("environ_get", P, P + 4) == Errno.SUCCESS


def test_stdio_is_described_as_character_devices(harness: Harness) -> None:
    assert harness.call("fd_fdstat_get", 1, P) == Errno.SUCCESS
    filetype, flags, rights, inheriting = struct.unpack("<BxHxxxxQQ", harness.mem(P, 24))
    assert (filetype, flags, rights, inheriting) == (2, 0, 1 << 6, 0)  # FD_WRITE only
    assert harness.call("fd_fdstat_get", 0, P) == Errno.SUCCESS
    assert struct.unpack("<BxHxxxxQQ", harness.mem(P, 24))[2] == 1 << 1  # FD_READ only
    assert harness.call("fd_filestat_get", 2, P) == Errno.SUCCESS
    assert harness.mem(P + 16, 1) == b"\x02"


def test_stdin_is_empty(harness: Harness) -> None:
    harness.put(P, struct.pack("<II", P + 64, 16))
    harness.put(P + 32, b"\xff\xff\xff\xff")
    assert harness.call("fd_read", 0, P, 1, P + 32) == Errno.SUCCESS
    assert harness.mem(P + 32, 4) == bytes(4)


def _iovecs(harness: Harness, chunks: list[bytes], table: int = P, data: int = P + 256) -> None:
    entries = b""
    for chunk in chunks:
        harness.put(data, chunk)
        entries += struct.pack("<II", data, len(chunk))
        data += len(chunk)
    harness.put(table, entries)


def test_fd_write_gathers_iovecs_into_stdout_and_stderr_lines(harness: Harness) -> None:
    _iovecs(harness, [b"hello ", b"world\nsecond ", b"line\npartial"])
    assert harness.call("fd_write", 1, P, 3, P + 128) == Errno.SUCCESS
    assert struct.unpack("<I", harness.mem(P + 128, 4))[0] == len(
        b"hello world\nsecond line\npartial"
    )
    _iovecs(harness, [b"oops\n"])
    assert harness.call("fd_write", 2, P, 1, P + 128) == Errno.SUCCESS
    assert harness.env.streams == [
        (LogStream.STDOUT, b"hello world"),
        (LogStream.STDOUT, b"second line"),
        (LogStream.STDERR, b"oops"),
    ]
    harness.state.flush_output()  # what the sandbox does after every guest call
    assert harness.env.streams[-1] == (LogStream.STDOUT, b"partial")


def test_fd_write_cuts_lines_longer_than_the_line_cap(harness: Harness) -> None:
    harness.store.set_fuel(10**12)
    payload = b"x" * (MAX_OUTPUT_LINE_BYTES * 2 + 10) + b"\n"
    _iovecs(harness, [payload], data=4096)
    assert harness.call("fd_write", 1, P, 1, P + 128) == Errno.SUCCESS
    assert [len(line) for _stream, line in harness.env.streams] == [
        MAX_OUTPUT_LINE_BYTES,
        MAX_OUTPUT_LINE_BYTES,
        10,
    ]


def test_fd_write_with_a_bad_iovec_is_a_fault_and_writes_nothing(harness: Harness) -> None:
    harness.put(P, struct.pack("<II", 65_000, 4096))
    assert harness.call("fd_write", 1, P, 1, P + 128) == Errno.FAULT
    assert harness.call("fd_write", 1, 65_530, 1, P + 128) == Errno.FAULT
    assert harness.call("fd_write", 1, P, 5000, P + 128) == Errno.INVAL
    assert harness.env.streams == []


def test_realtime_clock_is_the_environment_clock_and_monotonic_never_goes_back() -> None:
    env = ScriptedEnvironment(clock=[5_000, 9_000, 7_000, 8_000, 12_000])
    h = _make_harness(env)
    assert h.call("clock_time_get", 0, 0, P) == Errno.SUCCESS
    assert struct.unpack("<Q", h.mem(P, 8))[0] == 5_000
    readings = []
    for _ in range(4):
        assert h.call("clock_time_get", 1, 0, P) == Errno.SUCCESS
        readings.append(struct.unpack("<Q", h.mem(P, 8))[0])
    assert readings == [9_000, 9_000, 9_000, 12_000]
    assert h.call("clock_res_get", 1, P) == Errno.SUCCESS
    assert struct.unpack("<Q", h.mem(P, 8))[0] == 1


def test_random_get_reads_the_environment_entropy() -> None:
    h = _make_harness(ScriptedEnvironment(clock=[0]))
    assert h.call("random_get", P, 16) == Errno.SUCCESS
    assert h.mem(P, 16) == bytes(range(16))
    failing = _make_harness(ScriptedEnvironment(clock=[0], entropy_fails=True))
    assert failing.call("random_get", P, 16) == Errno.IO
    assert failing.state.fault is None  # an entropy failure is an errno, not a host fault


# ---------------------------------------------------------------- through the sandbox

_FD_WRITE = (
    '(import "wasi_snapshot_preview1" "fd_write" '
    "(func $fd_write (param i32 i32 i32 i32) (result i32)))"
)
_PROC_EXIT = '(import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))'
_LOG = '(import "igor" "log_emit" (func $log (param i32 i32)))'
_IOVEC_AT_64 = '(data (i32.const 64) "\\00\\01\\00\\00\\{:02x}\\00\\00\\00")'
"""One iovec at address 64 pointing at the text at 256, of the given length."""
_TEXT = '(data (i32.const 256) "before exit\\n") ' + _IOVEC_AT_64.format(12)
_WRITE_FD2 = "(drop (call $fd_write (i32.const 2) (i32.const 64) (i32.const 1) (i32.const 96)))"


def _exit_agent(code: int, after: str = "") -> bytes:
    return agent_wat(
        imports=f"{_FD_WRITE} {_PROC_EXIT} {_LOG}",
        extra=_TEXT,
        tick=(
            "(drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 96)))"
            f"(call $proc_exit (i32.const {code})) {after} (i32.const 0)"
        ),
    )


@pytest.mark.parametrize("code", [0, 3, 255])
def test_proc_exit_ends_the_call_with_the_exit_code_and_poisons(
    sandbox: Sandbox, code: int
) -> None:
    env = LocalEnvironment()
    inst = load_wat(sandbox, _exit_agent(code), manifest_with("log"), env)
    with pytest.raises(AgentExited) as info:
        inst.tick(FUEL)
    assert info.value.code == code
    assert env.streams == [(LogStream.STDOUT, b"before exit")]
    with pytest.raises(InstancePoisoned):
        inst.tick(FUEL)


def test_nothing_the_agent_does_after_proc_exit_has_an_effect(sandbox: Sandbox) -> None:
    env = LocalEnvironment()
    after = "(call $log (i32.const 256) (i32.const 6))"
    inst = load_wat(sandbox, _exit_agent(7, after), manifest_with("log"), env)
    with pytest.raises(AgentExited):
        inst.tick(FUEL)
    assert [stream for stream, _ in env.streams] == [LogStream.STDOUT]


def test_proc_exit_during_agent_init_refuses_the_instance(sandbox: Sandbox) -> None:
    wasm = agent_wat(imports=_PROC_EXIT, init="(call $proc_exit (i32.const 9))")
    with pytest.raises(AgentExited) as info:
        load_wat(sandbox, wasm)
    assert info.value.code == 9


def test_a_partial_output_line_is_emitted_when_the_tick_ends(sandbox: Sandbox) -> None:
    env = LocalEnvironment()
    wasm = agent_wat(
        imports=_FD_WRITE,
        extra='(data (i32.const 256) "no newline") ' + _IOVEC_AT_64.format(10),
        tick=f"{_WRITE_FD2} (i32.const 0)",
    )
    inst = load_wat(sandbox, wasm, b"", env)
    inst.tick(FUEL)
    assert env.streams == [(LogStream.STDERR, b"no newline")]


def test_wasi_needs_no_capability_in_the_manifest(sandbox: Sandbox) -> None:
    wasm = agent_wat(imports=_FD_WRITE)
    load_wat(sandbox, wasm, b"{}")


def test_a_module_importing_all_of_preview1_loads(sandbox: Sandbox) -> None:
    imports = []
    for name, spec in WASI_FUNCTIONS.items():
        result = f"(result {' '.join(spec.results)})" if spec.results else ""
        imports.append(
            f'(import "{WASI_MODULE}" "{name}" (func (param {" ".join(spec.params)}) {result}))'
        )
    module = sandbox.compile(agent_wat(imports=" ".join(imports)))
    assert set(module.wasi_imports) == set(WASI_FUNCTIONS)
    sandbox.instantiate(module, manifest_with_nothing(), LocalEnvironment()).tick(FUEL)


def manifest_with_nothing() -> Any:
    from igor_p2p.agent import parse_manifest

    return parse_manifest(b"{}")


def test_a_wasi_import_with_the_wrong_signature_is_refused(sandbox: Sandbox) -> None:
    wasm = agent_wat(imports=f'(import "{WASI_MODULE}" "fd_write" (func (param i32) (result i32)))')
    with pytest.raises(ImportSignatureMismatch) as info:
        sandbox.compile(wasm)
    assert (info.value.module, info.value.name) == (WASI_MODULE, "fd_write")


# ---------------------------------------------------------------- the TinyGo-shaped example

TINYGO_WASI_IMPORTS = {
    ("fd_write", ("i32", "i32", "i32", "i32"), ("i32",)),
    ("proc_exit", ("i32",), ()),
    ("clock_time_get", ("i32", "i64", "i32"), ("i32",)),
    ("args_sizes_get", ("i32", "i32"), ("i32",)),
    ("args_get", ("i32", "i32"), ("i32",)),
    ("random_get", ("i32", "i32"), ("i32",)),
}
TINYGO_SDK_IMPORTS = {"clock_now", "rand_bytes", "log_emit"}
TINYGO_EXPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None] = {
    "memory": None,
    "malloc": (("i32",), ("i32",)),
    "free": (("i32",), ()),
    "calloc": (("i32", "i32"), ("i32",)),
    "realloc": (("i32", "i32"), ("i32",)),
    "_start": ((), ()),
    "agent_init": ((), ()),
    "agent_tick": ((), ("i32",)),
    "agent_checkpoint": ((), ("i32",)),
    "agent_checkpoint_ptr": ((), ("i32",)),
    "agent_resume": (("i32", "i32"), ()),
    "asyncify_start_unwind": (("i32",), ()),
    "asyncify_stop_unwind": ((), ()),
    "asyncify_start_rewind": (("i32",), ()),
    "asyncify_stop_rewind": ((), ()),
    "asyncify_get_state": ((), ("i32",)),
}


def _sig(ty: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def test_tinygo_example_has_exactly_the_tinygo_import_and_export_set() -> None:
    module = Module(Engine(), load_agent_source("tinygo"))
    wasi = {(i.name, *_sig(i.type)) for i in module.imports if i.module == WASI_MODULE}
    igor = {i.name for i in module.imports if i.module == "igor"}
    assert wasi == TINYGO_WASI_IMPORTS
    assert igor == TINYGO_SDK_IMPORTS
    assert {i.module for i in module.imports} == {WASI_MODULE, "igor"}
    exports = {e.name: e.type for e in module.exports}
    assert set(exports) == set(TINYGO_EXPORTS)
    for name, sig in TINYGO_EXPORTS.items():
        if sig is None:
            assert exports[name].limits.max is None  # memory without a maximum
        else:
            assert _sig(exports[name]) == sig, name
    wasm = load_agent_source("tinygo")
    assert b"_initialize" not in wasm


def test_tinygo_example_prints_runs_and_resumes(sandbox: Sandbox) -> None:
    module = sandbox.compile(load_agent_source("tinygo"))
    manifest = load_agent_manifest("tinygo")
    env = LocalEnvironment()
    first = sandbox.instantiate(module, manifest, env)
    for _ in range(5):
        first.tick(FUEL)
    state = first.snapshot()
    assert state == (5).to_bytes(8, "little")
    second = sandbox.instantiate(module, manifest, env)
    second.resume(state)
    second.tick(FUEL)
    assert second.snapshot() == (6).to_bytes(8, "little")
    assert env.streams == [
        *[(LogStream.STDOUT, f"tick {n}".encode()) for n in range(1, 6)],
        (LogStream.LOG, b"tinygo: 5 ticks"),
        (LogStream.STDERR, b"resumed at tick 5"),
        (LogStream.STDOUT, b"tick 6"),
    ]


_ANY_I32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_ANY_I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def _wasi_calls(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    name = draw(st.sampled_from(sorted(n for n in WASI_FUNCTIONS if n != "proc_exit")))
    spec = WASI_FUNCTIONS[name]
    args = tuple(draw(_ANY_I32 if p == "i32" else _ANY_I64) for p in spec.params)
    return name, args


@given(calls=st.lists(_wasi_calls(), min_size=1, max_size=20))
@settings(max_examples=150, deadline=None)
def test_any_arguments_give_an_errno_never_a_host_fault(
    calls: list[tuple[str, tuple[int, ...]]],
) -> None:
    h = _make_harness(ScriptedEnvironment(clock=[1_000]))
    known = {int(e) for e in Errno}
    for name, args in calls:
        assert h.call(name, *args) in known, name
    assert h.state.fault is None
