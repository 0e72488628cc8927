"""The wasmtime sandbox: one Engine, a compiled-module cache, fuel, a wall-clock watchdog and a
memory cap per agent instance.

Watchdog and interruption
-------------------------
Every store gets an *epoch deadline callback* and an epoch deadline of 1 tick before each call.
A daemon thread increments the engine epoch every ``epoch_interval_s``; at each increment the
callback of every *running* guest checks two things of its own instance only: has
``interrupt()`` been requested, and has this call's wall-clock deadline (``tick_timeout_s``)
passed. If neither, the guest continues for one more epoch. So interrupting one guest (and the
extra ``increment_epoch`` that makes it prompt) has no collateral on the other running guests:
their callbacks run once more and let them continue.

Poisoning
---------
Any abnormal end of a guest call (trap, out of fuel, watchdog, interruption, host fault, bad
snapshot, failed malloc) poisons the instance: later calls raise ``InstancePoisoned``; the
runtime rebuilds it from the last committed checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from wasmtime import (
    Config,
    Engine,
    Func,
    FuncType,
    Linker,
    Memory,
    MemoryType,
    Module,
    Store,
    Trap,
    TrapCode,
    ValType,
    WasmtimeError,
)
from wasmtime import _ffi as wasmtime_ffi

from igor_p2p.agent.effect_policy import http_policy, payment_policy
from igor_p2p.agent.environment import HostEnvironment
from igor_p2p.agent.errors import (
    AgentExited,
    AgentTrapped,
    BadSnapshot,
    CallOrderError,
    CapabilityNotOffered,
    ExportSignatureMismatch,
    GuestStopped,
    HostFault,
    ImportSignatureMismatch,
    InstancePoisoned,
    InvalidModule,
    MemoryLimitExceeded,
    MissingExport,
    ModuleTooLarge,
    OutOfFuel,
    SandboxClosed,
    SandboxError,
    TickInterrupted,
    TickTimeout,
    UndeclaredCapability,
    UnknownImport,
)
from igor_p2p.agent.hostcalls import (
    HOST_MODULE,
    HOSTCALLS,
    HostcallState,
    define_hostcalls,
)
from igor_p2p.agent.hostfuel import HOSTCALL_BASE_FUEL, HOSTCALL_FUEL_PER_BYTE, FuelMeter
from igor_p2p.agent.manifest import KNOWN_CAPABILITIES, Manifest
from igor_p2p.agent.wasi import WASI_FUNCTIONS, WASI_MODULE, define_wasi

MIB = 1024 * 1024
WASM_MAGIC = b"\x00asm"
_START_SECTION_ID = 8

_EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(wasmtime_ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(wasmtime_ffi.wasmtime_update_deadline_kind_t),
)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()
_UPDATE_DEADLINE_CONTINUE = 0


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of the sandbox. Fuel for ticks is chosen per call; ``system_fuel`` caps the
    non-tick calls (``_initialize``, ``agent_init``, ``agent_resume``, ``malloc``,
    ``agent_checkpoint``, ``agent_checkpoint_ptr``)."""

    memory_limit_bytes: int = 64 * MIB
    tick_timeout_s: float = 15.0
    max_module_bytes: int = 32 * MIB
    system_fuel: int = 50_000_000_000
    epoch_interval_s: float = 0.01
    module_cache_entries: int = 256
    module_cache_bytes: int = 256 * MIB
    """The compiled modules kept in the cache take at most this much (their compiled size)."""
    max_table_elements: int = 1 << 20
    hostcall_base_fuel: int = HOSTCALL_BASE_FUEL
    """Fuel every hostcall (``igor`` and WASI) costs before it runs."""
    hostcall_fuel_per_byte: int = HOSTCALL_FUEL_PER_BYTE
    """Fuel per byte a hostcall copies between host and guest memory."""


@dataclass(frozen=True)
class TickResult:
    more_work: bool
    fuel_used: int


@dataclass(frozen=True)
class CompiledModule:
    """A validated, compiled agent module (cached by the sha256 of its bytes)."""

    module: Module
    sha256: bytes
    size: int
    min_memory_bytes: int
    legacy_tick: bool
    has_malloc: bool
    has_initialize: bool
    hostcall_imports: tuple[str, ...]
    compiled_bytes: int = 0
    """Size of the compiled code (what the module cache holds in memory)."""
    wasi_imports: tuple[str, ...] = ()
    """Functions of ``wasi_snapshot_preview1`` the module imports."""


def _functype(params: list[ValType], results: list[ValType]) -> tuple[list[str], list[str]]:
    return [str(p) for p in params], [str(r) for r in results]


_I32 = "i32"
_REQUIRED_FUNCS: dict[str, tuple[list[str], list[str]]] = {
    "agent_init": ([], []),
    "agent_checkpoint": ([], [_I32]),
    "agent_checkpoint_ptr": ([], [_I32]),
    "agent_resume": ([_I32, _I32], []),
}
_OPTIONAL_FUNCS: dict[str, tuple[list[str], list[str]]] = {
    "malloc": ([_I32], [_I32]),
    "_initialize": ([], []),
}


def _read_leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise InvalidModule("truncated section header")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise InvalidModule("bad LEB128 in section header")


def _has_start_section(wasm: bytes) -> bool:
    pos = 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, pos = _read_leb_u32(wasm, pos + 1)
        if section_id == _START_SECTION_ID:
            return True
        pos += size
    return False


def _signature(ty: Any) -> tuple[list[str], list[str]] | None:
    if not isinstance(ty, FuncType):
        return None
    return _functype(ty.params, ty.results)


def _inspect_module(module: Module, wasm: bytes) -> CompiledModule:
    exports = {e.name: e.type for e in module.exports}
    memory_type = exports.get("memory")
    if memory_type is None:
        raise MissingExport("memory")
    if not isinstance(memory_type, MemoryType):
        raise ExportSignatureMismatch("memory", "not a memory")
    if memory_type.is_64 or memory_type.is_shared:
        raise ExportSignatureMismatch("memory", "must be a 32-bit unshared memory")
    for name, expected in _REQUIRED_FUNCS.items():
        if name not in exports:
            raise MissingExport(name)
        if _signature(exports[name]) != expected:
            raise ExportSignatureMismatch(name, f"expected {expected}")
    if "agent_tick" not in exports:
        raise MissingExport("agent_tick")
    tick_sig = _signature(exports["agent_tick"])
    if tick_sig not in (([], [_I32]), ([], [])):
        raise ExportSignatureMismatch("agent_tick", "expected () -> i32 or () -> ()")
    for name, expected in _OPTIONAL_FUNCS.items():
        if name in exports and _signature(exports[name]) != expected:
            raise ExportSignatureMismatch(name, f"expected {expected}")

    hostcall_imports: list[str] = []
    wasi_imports: list[str] = []
    for imp in module.imports:
        name = imp.name or ""
        if imp.module == WASI_MODULE and name in WASI_FUNCTIONS:
            wasi = WASI_FUNCTIONS[name]
            if _signature(imp.type) != (list(wasi.params), list(wasi.results)):
                raise ImportSignatureMismatch(name, WASI_MODULE)
            wasi_imports.append(name)
            continue
        if imp.module != HOST_MODULE or name not in HOSTCALLS:
            raise UnknownImport(imp.module, name)
        spec = HOSTCALLS[name]
        if _signature(imp.type) != (list(spec.params), list(spec.results)):
            raise ImportSignatureMismatch(name)
        hostcall_imports.append(name)

    return CompiledModule(
        module=module,
        sha256=hashlib.sha256(wasm).digest(),
        size=len(wasm),
        min_memory_bytes=memory_type.limits.min * memory_type.page_size,
        legacy_tick=tick_sig == ([], []),
        has_malloc="malloc" in exports,
        has_initialize="_initialize" in exports,
        hostcall_imports=tuple(hostcall_imports),
        wasi_imports=tuple(wasi_imports),
    )


_DISABLED_FEATURES = (
    "wasm_threads",
    "shared_memory",
    "wasm_memory64",
    "wasm_gc",
    "wasm_component_model",
    "wasm_stack_switching",
)


def _make_engine() -> Engine:
    cfg = Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True
    # Agents are single-threaded, 32-bit, plain core wasm.
    for setting in _DISABLED_FEATURES:
        with contextlib.suppress(AttributeError, WasmtimeError):  # version dependent
            setattr(cfg, setting, False)
    return Engine(cfg)


class _EpochTicker:
    """Daemon thread that increments the engine epoch every ``interval`` seconds."""

    def __init__(self, engine: Engine, interval_s: float) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="igor-epoch-ticker", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._engine.increment_epoch()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)


class Sandbox:
    """Owns one wasmtime Engine, the compiled-module cache and the epoch ticker."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.engine = _make_engine()
        self._ticker = _EpochTicker(self.engine, self.config.epoch_interval_s)
        self._cache: OrderedDict[bytes, CompiledModule] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_bytes = 0
        self.cache_hits = 0
        self.closed = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the epoch ticker; instances of this sandbox refuse further calls."""
        self.closed = True
        self._ticker.stop()

    def check_open(self) -> None:
        if self.closed:
            raise SandboxClosed("sandbox is closed")

    def kick_epoch(self) -> None:
        """Increment the engine epoch now (makes running guests check for interruption)."""
        self.engine.increment_epoch()

    def compile(self, wasm: bytes) -> CompiledModule:
        """Validate and compile agent bytes (binary wasm only); cached by sha256."""
        self.check_open()
        if not isinstance(wasm, (bytes, bytearray, memoryview)):
            raise InvalidModule("module must be bytes")
        wasm = bytes(wasm)
        if len(wasm) > self.config.max_module_bytes:
            raise ModuleTooLarge(len(wasm), self.config.max_module_bytes)
        digest = hashlib.sha256(wasm).digest()
        with self._cache_lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                self.cache_hits += 1
                return cached
        if not wasm.startswith(WASM_MAGIC) or len(wasm) < 8:
            raise InvalidModule("not a binary WebAssembly module")
        if _has_start_section(wasm):
            raise InvalidModule("modules with a start function are not accepted")
        try:
            module = Module(self.engine, wasm)
        except WasmtimeError as exc:
            raise InvalidModule(f"invalid module: {exc}") from exc
        compiled = _inspect_module(module, wasm)
        compiled = replace(compiled, compiled_bytes=len(module.serialize()))
        with self._cache_lock:
            if compiled.compiled_bytes <= self.config.module_cache_bytes:
                raced = self._cache.pop(digest, None)  # compiled twice concurrently
                if raced is not None:
                    self._cache_bytes -= raced.compiled_bytes
                self._cache[digest] = compiled
                self._cache_bytes += compiled.compiled_bytes
            while (
                len(self._cache) > self.config.module_cache_entries
                or self._cache_bytes > self.config.module_cache_bytes
            ):
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= evicted.compiled_bytes
        return compiled

    @property
    def cache_bytes(self) -> int:
        """Compiled bytes the module cache holds now."""
        return self._cache_bytes

    def memory_cap(self, manifest: Manifest) -> int:
        cap = self.config.memory_limit_bytes
        declared = manifest.resource_limits.max_memory_bytes
        if declared:
            cap = min(cap, declared)
        return cap

    def instantiate(
        self, module: CompiledModule, manifest: Manifest, env: HostEnvironment
    ) -> AgentInstance:
        """Link, instantiate and run ``_initialize`` then ``agent_init``.

        Raises CapabilityNotOffered, UndeclaredCapability, MemoryLimitExceeded, InvalidModule,
        or a GuestStopped error if ``_initialize``/``agent_init`` misbehaves.
        """
        self.check_open()
        for capability in manifest.capabilities:
            if capability not in KNOWN_CAPABILITIES:
                raise CapabilityNotOffered(capability)
        for name in module.hostcall_imports:
            spec = HOSTCALLS[name]
            if not spec.granted_by(manifest):
                raise UndeclaredCapability(spec.capability, name)
        http_policy(manifest)  # ManifestError on bad options
        payment_policy(manifest)
        cap = self.memory_cap(manifest)
        if module.min_memory_bytes > cap:
            raise MemoryLimitExceeded(
                f"module needs {module.min_memory_bytes} bytes of memory, cap is {cap}"
            )
        self._ticker.ensure_started()
        instance = AgentInstance(self, module, manifest, env, cap)
        instance._start()
        return instance


@dataclass
class _Exports:
    memory: Memory
    init: Func
    tick: Func
    checkpoint: Func
    checkpoint_ptr: Func
    resume: Func
    malloc: Func | None
    initialize: Func | None


class AgentInstance:
    """One instantiated agent: its own Store, fuel, memory cap and watchdog.

    Use from one thread at a time (a busy instance refuses a second concurrent call);
    only ``interrupt()`` may be called from any thread.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        module: CompiledModule,
        manifest: Manifest,
        env: HostEnvironment,
        memory_cap: int,
    ) -> None:
        self.sandbox = sandbox
        self.module = module
        self.manifest = manifest
        self.memory_cap = memory_cap
        self.poisoned: SandboxError | None = None
        self.closed = False
        self.system_fuel_used = 0
        self._hoststate = HostcallState(
            env=env,
            migration_enabled=manifest.migration_policy.enabled,
            http_policy=http_policy(manifest),
            payment_policy=payment_policy(manifest),
            meter=FuelMeter(
                sandbox.config.hostcall_base_fuel, sandbox.config.hostcall_fuel_per_byte
            ),
        )
        self._store: Store | None = Store(sandbox.engine)
        self._store.set_limits(
            memory_size=memory_cap,
            table_elements=sandbox.config.max_table_elements,
            instances=1,
            tables=8,
            memories=1,
        )
        self._busy = threading.Lock()
        self._interrupt_requested = False
        self._stop_cause: str | None = None
        self._deadline = 0.0
        self._ticked = False
        self._resumed = False
        self._exports: _Exports | None = None
        self._epoch_callback = _EpochCallback(self._on_epoch)
        wasmtime_ffi.wasmtime_store_epoch_deadline_callback(
            self._store.ptr(), self._epoch_callback, None, _NO_FINALIZER
        )

    # -- watchdog -------------------------------------------------------------------------
    def _on_epoch(self, _ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
        try:
            if self._interrupt_requested:
                self._stop_cause = "interrupt"
            elif time.monotonic() >= self._deadline:
                self._stop_cause = "timeout"
            else:
                delta[0] = 1
                kind[0] = _UPDATE_DEADLINE_CONTINUE
                return 0
        except BaseException:  # never let an exception cross the C boundary
            self._stop_cause = "interrupt"
        err = wasmtime_ffi.wasmtime_error_new(b"igor: guest stopped by host")
        return ctypes.cast(err, ctypes.c_void_p).value or 0

    @property
    def call_deadline(self) -> float:
        """``time.monotonic()`` at which the watchdog stops the current call."""
        return self._deadline

    def interrupt(self) -> None:
        """Stop the running call (if any) promptly with ``TickInterrupted``. Thread-safe.

        If no call is running, the next call raises ``TickInterrupted`` without running
        (``clear_interrupt`` withdraws the request)."""
        self._interrupt_requested = True
        self.sandbox.kick_epoch()

    def clear_interrupt(self) -> None:
        self._interrupt_requested = False

    # -- calls ----------------------------------------------------------------------------
    def _check_usable(self) -> Store:
        if self.closed or self._store is None:
            raise InstancePoisoned("instance is closed")
        if self.poisoned is not None:
            raise InstancePoisoned(f"instance was stopped earlier: {self.poisoned!r}")
        self.sandbox.check_open()
        return self._store

    def _poison(self, error: SandboxError) -> SandboxError:
        if self.poisoned is None:
            self.poisoned = error
        return error

    def _call(self, func: Func, *args: int, fuel: int) -> tuple[Any, int]:
        """Call ``func`` with ``fuel`` under the watchdog; map every failure to a typed error."""
        store = self._check_usable()
        if not self._busy.acquire(blocking=False):
            raise CallOrderError("instance is already running a call")
        try:
            if self._interrupt_requested:
                self._interrupt_requested = False
                raise TickInterrupted("interrupted before the call started")
            store.set_fuel(fuel)
            self._stop_cause = None
            started = time.monotonic()
            self._deadline = started + self.sandbox.config.tick_timeout_s
            store.set_epoch_deadline(1)
            hoststate = self._hoststate
            try:
                result = func(store, *args)
            except (Trap, WasmtimeError) as exc:
                stopped = self._classify(exc, fuel)
                stopped.fuel_used = fuel - self._remaining_fuel(store)  # burned, to be charged
                stopped.elapsed_s = time.monotonic() - started
                raise self._poison(stopped) from exc
            finally:
                if self._stop_cause == "interrupt":
                    self._interrupt_requested = False
                hoststate.flush_output()
            used = fuel - self._remaining_fuel(store)
            if hoststate.exit_code is not None:
                exited = AgentExited(hoststate.exit_code)
                exited.fuel_used = used
                raise self._poison(exited)
            fault = hoststate.fault
            if fault is not None:
                faulted = HostFault(fault.hostcall, fault.cause)
                faulted.fuel_used = used
                raise self._poison(faulted)
            if hoststate.meter.exhausted:
                spent = OutOfFuel(fuel)
                spent.fuel_used = fuel
                raise self._poison(spent)
            return result, used
        finally:
            self._busy.release()

    @staticmethod
    def _remaining_fuel(store: Store) -> int:
        try:
            return store.get_fuel()
        except WasmtimeError:  # pragma: no cover - defensive
            return 0

    def _classify(self, exc: Exception, fuel: int) -> GuestStopped:
        if self._stop_cause == "interrupt":
            return TickInterrupted("call interrupted by the host")
        if self._stop_cause == "timeout":
            return TickTimeout(f"call exceeded {self.sandbox.config.tick_timeout_s} s")
        if self._hoststate.exit_code is not None:
            return AgentExited(self._hoststate.exit_code)
        fault = self._hoststate.fault
        if fault is not None:
            return HostFault(fault.hostcall, fault.cause)
        code = getattr(exc, "trap_code", None)
        if code == TrapCode.OUT_OF_FUEL or self._hoststate.meter.exhausted:
            return OutOfFuel(fuel)
        if code == TrapCode.INTERRUPT:
            return TickTimeout("epoch deadline reached")
        return AgentTrapped(f"agent trapped: {_first_line(exc)}", code)

    def _system_call(self, func: Func, *args: int) -> Any:
        result, used = self._call(func, *args, fuel=self.sandbox.config.system_fuel)
        self.system_fuel_used += used
        return result

    def take_system_fuel(self) -> int:
        """Fuel burned by non-tick calls (start, resume, snapshots) since the last call; the
        runtime charges it to the agent like tick fuel."""
        used, self.system_fuel_used = self.system_fuel_used, 0
        return used

    def _start(self) -> None:
        store = self._check_usable()
        linker = Linker(self.sandbox.engine)
        define_hostcalls(linker, self.manifest, self._hoststate)
        define_wasi(linker, self.module.wasi_imports, self._hoststate)
        store.set_fuel(self.sandbox.config.system_fuel)
        self._deadline = time.monotonic() + self.sandbox.config.tick_timeout_s
        store.set_epoch_deadline(1)
        try:
            instance = linker.instantiate(store, self.module.module)
        except (Trap, WasmtimeError) as exc:
            raise InvalidModule(f"instantiation failed: {_first_line(exc)}") from exc
        ex = instance.exports(store)

        def func(name: str) -> Func:
            item = ex[name]
            assert isinstance(item, Func)
            return item

        memory = ex["memory"]
        assert isinstance(memory, Memory)
        self._exports = _Exports(
            memory=memory,
            init=func("agent_init"),
            tick=func("agent_tick"),
            checkpoint=func("agent_checkpoint"),
            checkpoint_ptr=func("agent_checkpoint_ptr"),
            resume=func("agent_resume"),
            malloc=func("malloc") if self.module.has_malloc else None,
            initialize=func("_initialize") if self.module.has_initialize else None,
        )
        if self._exports.initialize is not None:
            self._system_call(self._exports.initialize)
        self._system_call(self._exports.init)

    @property
    def exports(self) -> _Exports:
        if self._exports is None:  # pragma: no cover - set in _start
            raise InstancePoisoned("instance not started")
        return self._exports

    def memory_size_bytes(self) -> int:
        store = self._check_usable()
        return self.exports.memory.data_len(store)

    def resume(self, state: bytes) -> None:
        """Hand the agent its saved state, once, before any tick.

        Empty state calls ``agent_resume(0, 0)`` without ``malloc``."""
        store = self._check_usable()
        if self._resumed or self._ticked:
            raise CallOrderError("resume must happen once, before the first tick")
        ex = self.exports
        self._resumed = True
        if not state:
            self._system_call(ex.resume, 0, 0)
            return
        if ex.malloc is None:
            raise MissingExport("malloc")
        length = len(state)
        if length > self.memory_cap:
            raise self._poison(MemoryLimitExceeded(f"state of {length} bytes exceeds the cap"))
        ptr = self._system_call(ex.malloc, length) & 0xFFFFFFFF
        if ptr == 0:
            raise self._poison(MemoryLimitExceeded(f"malloc({length}) returned null"))
        if ptr + length > ex.memory.data_len(store):
            raise self._poison(AgentTrapped("malloc returned a pointer outside memory"))
        buf = ex.memory.get_buffer_ptr(store, length, ptr)
        ctypes.memmove(ctypes.addressof(buf), bytes(state), length)
        self._system_call(ex.resume, ptr, length)

    def tick(self, fuel: int) -> TickResult:
        """Run ``agent_tick`` with ``fuel``. Synchronous; meant for a worker thread."""
        if fuel < 1:
            raise ValueError("fuel must be positive")
        self._ticked = True
        result, used = self._call(self.exports.tick, fuel=fuel)
        more = False if self.module.legacy_tick else bool(result)
        return TickResult(more_work=more, fuel_used=used)

    def snapshot(self) -> bytes:
        """``agent_checkpoint`` + ``agent_checkpoint_ptr`` + a bounds-checked memory copy."""
        store = self._check_usable()
        ex = self.exports
        size = self._system_call(ex.checkpoint) & 0xFFFFFFFF
        if size == 0:
            return b""
        ptr = self._system_call(ex.checkpoint_ptr) & 0xFFFFFFFF
        mem_len = ex.memory.data_len(store)
        if size > mem_len or ptr + size > mem_len:
            raise self._poison(
                BadSnapshot(f"checkpoint [{ptr}, +{size}) is outside memory of {mem_len}")
            )
        return bytes(ex.memory.get_buffer_ptr(store, size, ptr))

    def close(self) -> None:
        """Drop the store; further calls raise ``InstancePoisoned``."""
        self.closed = True
        self._exports = None
        self._store = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        if "wasm trap" in line or "memory fault" in line:
            return re.sub(r"^\d+:\s*", "", line.strip())
    return text.splitlines()[0] if text else type(exc).__name__
