"""Typed errors of the agent sandbox.

Everything the sandbox raises on purpose subclasses :class:`SandboxError`. Errors caused by
the agent's bytes or manifest (external input) also subclass :class:`InvalidInput`.
"""

from __future__ import annotations

from igor_p2p.errors import IgorError, InvalidInput


class SandboxError(IgorError):
    """Base class of every error the agent sandbox raises."""


class InvalidModule(SandboxError, InvalidInput):
    """The bytes are not an acceptable WebAssembly agent module."""


class ModuleTooLarge(InvalidModule):
    """The module is larger than ``SandboxConfig.max_module_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"module is {size} bytes, limit is {limit}")
        self.size = size
        self.limit = limit


class MissingExport(InvalidModule):
    """A required export is absent (``name`` says which)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"missing required export {name!r}")
        self.name = name


class ExportSignatureMismatch(InvalidModule):
    """An ABI export exists with the wrong type."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"export {name!r} has the wrong type: {detail}")
        self.name = name


class UnknownImport(InvalidModule):
    """The module imports something that is neither a hostcall of module ``igor`` nor a
    function of ``wasi_snapshot_preview1``."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"unknown import {module}.{name}")
        self.module = module
        self.name = name


class ImportSignatureMismatch(InvalidModule):
    """The module imports a known hostcall (or WASI function) with the wrong type."""

    def __init__(self, name: str, module: str = "igor") -> None:
        super().__init__(f"import {module}.{name} has the wrong type")
        self.name = name
        self.module = module


class UndeclaredCapability(InvalidModule):
    """The module imports a hostcall whose capability its manifest does not declare."""

    def __init__(self, capability: str, import_name: str) -> None:
        super().__init__(
            f"import igor.{import_name} needs capability {capability!r}, not declared in manifest"
        )
        self.capability = capability
        self.import_name = import_name


class CapabilityNotOffered(SandboxError, InvalidInput):
    """The manifest declares a capability this node does not know."""

    def __init__(self, capability: str) -> None:
        super().__init__(f"capability {capability!r} is not offered by this node")
        self.capability = capability


class MemoryLimitExceeded(SandboxError):
    """The agent needs more linear memory than its cap allows."""


class AgentSourceNotFound(SandboxError, InvalidInput):
    """``load_agent_source`` found neither a file nor a shipped example of that name."""


class GuestStopped(SandboxError):
    """A call into the guest ended abnormally; the instance is now poisoned.

    ``fuel_used`` is the fuel the call burned before it stopped and ``elapsed_s`` how long it
    ran (both set by the sandbox), so a failing tick can be charged like any other. After a
    watchdog stop wasmtime does not report the fuel burned since the last call out of the guest,
    so ``fuel_used`` may undercount there; the runtime's metering prices ``elapsed_s`` then."""

    fuel_used: int = 0
    elapsed_s: float = 0.0


class AgentTrapped(GuestStopped):
    """The guest trapped (unreachable, memory fault, stack overflow, ...)."""

    def __init__(self, message: str, trap_code: object | None = None) -> None:
        super().__init__(message)
        self.trap_code = trap_code


class OutOfFuel(GuestStopped):
    """The call used up all the fuel it was given."""

    def __init__(self, fuel_used: int) -> None:
        super().__init__(f"out of fuel after {fuel_used}")
        self.fuel_used = fuel_used


class AgentExited(GuestStopped):
    """The agent called WASI ``proc_exit``: it stops with its exit code (``code``)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"agent exited with code {code} (proc_exit)")
        self.code = code


class TickTimeout(GuestStopped):
    """The wall-clock watchdog (``tick_timeout_s``) stopped the call."""


class TickInterrupted(GuestStopped):
    """The call was interrupted on request (trio cancellation). Retryable after a rebuild."""


class BadSnapshot(GuestStopped, InvalidInput):
    """``agent_checkpoint``/``agent_checkpoint_ptr`` described bytes outside guest memory."""


class HostFault(GuestStopped):
    """The host environment raised inside a hostcall; the guest saw a neutral value."""

    def __init__(self, hostcall: str, cause: BaseException) -> None:
        super().__init__(f"host environment failed in {hostcall}: {cause!r}")
        self.hostcall = hostcall


class InstancePoisoned(SandboxError):
    """The instance stopped abnormally before; rebuild it from the last committed checkpoint."""


class CallOrderError(SandboxError):
    """The host called the ABI out of order (e.g. ``resume`` after a tick)."""


class SandboxClosed(SandboxError):
    """The ``Sandbox`` owning this instance was closed."""
