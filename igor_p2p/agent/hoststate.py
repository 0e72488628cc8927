"""Per-instance state shared by the host functions (``igor`` and WASI) and the sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field

from igor_p2p.agent.effect_policy import HttpPolicy, PaymentPolicy
from igor_p2p.agent.environment import HostEnvironment, LogStream
from igor_p2p.agent.hostfuel import FuelMeter

MAX_OUTPUT_LINE_BYTES = 4096
"""A WASI output line longer than this is cut into lines of this size."""


@dataclass(frozen=True)
class HostFaultRecord:
    hostcall: str
    cause: BaseException


@dataclass
class LineBuffer:
    """Bytes written to one WASI output fd, cut into lines for the agent log."""

    stream: LogStream
    pending: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the complete lines (without their ``\\n``)."""
        self.pending += data
        lines: list[bytes] = []
        while True:
            cut = self.pending.find(b"\n")
            if cut < 0 or cut > MAX_OUTPUT_LINE_BYTES:
                if len(self.pending) < MAX_OUTPUT_LINE_BYTES:
                    break
                cut = MAX_OUTPUT_LINE_BYTES
                lines.append(bytes(self.pending[:cut]))
                del self.pending[:cut]
                continue
            lines.append(bytes(self.pending[:cut]))
            del self.pending[: cut + 1]
        return lines

    def drain(self) -> bytes | None:
        """The unfinished line, if any (emitted at the end of each guest call)."""
        if not self.pending:
            return None
        rest = bytes(self.pending)
        self.pending.clear()
        return rest


@dataclass
class HostcallState:
    """Per-instance mutable state the host functions share with the sandbox."""

    env: HostEnvironment
    migration_enabled: bool
    fault: HostFaultRecord | None = None
    meter: FuelMeter = field(default_factory=FuelMeter)
    exit_code: int | None = None
    """Set by WASI ``proc_exit``; the sandbox then ends the call with ``AgentExited``."""
    last_monotonic_ns: int = 0
    stdout: LineBuffer = field(default_factory=lambda: LineBuffer(LogStream.STDOUT))
    stderr: LineBuffer = field(default_factory=lambda: LineBuffer(LogStream.STDERR))
    http_policy: HttpPolicy | None = None
    """The manifest's ``http`` options (None: not declared)."""
    payment_policy: PaymentPolicy | None = None
    """The manifest's ``x402`` options (None: not declared)."""

    def record_fault(self, hostcall: str, cause: BaseException) -> None:
        if self.fault is None:
            self.fault = HostFaultRecord(hostcall, cause)

    def stopping(self) -> bool:
        """True once the guest must not cause any more effects in this call."""
        return self.exit_code is not None or self.meter.exhausted or self.fault is not None

    def emit(self, stream: LogStream, line: bytes) -> None:
        try:
            self.env.log(line, stream)
        except Exception as exc:
            self.record_fault("fd_write", exc)

    def flush_output(self) -> None:
        """Emit unfinished stdout/stderr lines (called after every guest call)."""
        for buffer in (self.stdout, self.stderr):
            rest = buffer.drain()
            if rest is not None:
                self.emit(buffer.stream, rest)
