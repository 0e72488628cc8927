"""Stream handlers that can never take the host down (G1), with a per-peer inbound stream limit.

G1: an exception escaping a py-libp2p stream handler crashes the Swarm; other peers then hang
for 10 s on ``new_stream``. :func:`guarded` wraps every handler we register: it catches every
``Exception`` (including ``ExceptionGroup``\\ s from nurseries inside the handler), resets the
stream, counts it and logs it: at most once per peer per :data:`PEER_FAILURE_LOG_INTERVAL_S`,
and without a traceback when the error is typed (the peer sent something bad), so a peer cannot
amplify bad bytes into log volume. ``trio.Cancelled`` coming from *outside* the handler (the
connection or the node is being torn down) is re-raised, never swallowed; any other exceptions
that arrived in the same group are logged and dropped so that they cannot crash the swarm while
it shuts down.
"""

import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol

from igor_p2p.errors import IgorError
from igor_p2p.logs import LogThrottle

StreamHandler = Callable[[INetStream], Awaitable[None]]

DEFAULT_MAX_INBOUND_STREAMS_PER_PEER = 16
RESET_TIMEOUT_S = 1.0
PEER_FAILURE_LOG_INTERVAL_S = 60.0

PEER_FAILURE_LOG = LogThrottle(PEER_FAILURE_LOG_INTERVAL_S)
"""Shared by every guarded handler: a failing peer is logged once per interval across all
protocols (log amplification, issue 10)."""


@dataclass
class HandlerCounters:
    """What happened to inbound streams, keyed by protocol ID."""

    completed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    over_limit: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)


class PeerStreamLimiter:
    """At most ``max_streams_per_peer`` concurrent inbound streams per peer (a semaphore per peer).

    Share one limiter between handlers to make the limit span protocols.
    """

    def __init__(self, max_streams_per_peer: int = DEFAULT_MAX_INBOUND_STREAMS_PER_PEER) -> None:
        if max_streams_per_peer < 1:
            raise ValueError("max_streams_per_peer must be >= 1")
        self.max_streams_per_peer = max_streams_per_peer
        self._semaphores: dict[str, trio.Semaphore] = {}

    def try_acquire(self, peer: str) -> bool:
        sem = self._semaphores.get(peer)
        if sem is None:
            sem = self._semaphores[peer] = trio.Semaphore(self.max_streams_per_peer)
        try:
            sem.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    def release(self, peer: str) -> None:
        sem = self._semaphores[peer]
        sem.release()
        if sem.value == self.max_streams_per_peer:  # idle peer: do not keep its entry forever
            del self._semaphores[peer]

    def active(self, peer: str) -> int:
        sem = self._semaphores.get(peer)
        return 0 if sem is None else self.max_streams_per_peer - sem.value


def _remote_peer(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)
    except Exception:
        return "<unknown>"


async def reset_quietly(stream: INetStream) -> None:
    """Reset ``stream``, shielded and bounded, ignoring errors (it may already be dead)."""
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(RESET_TIMEOUT_S),
        contextlib.suppress(Exception),
    ):
        await stream.reset()


def split_cancelled(
    exc: BaseException,
) -> tuple[BaseException | None, BaseException | None]:
    """Split ``exc`` into (the ``trio.Cancelled`` part, the rest); either may be None."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)
    if isinstance(exc, trio.Cancelled):
        return exc, None
    return None, exc


class GuardedHandler:
    """The callable :func:`guarded` returns; exposes its ``counters`` and ``limiter``."""

    def __init__(
        self,
        handler: StreamHandler,
        *,
        protocol: str,
        log: logging.Logger,
        limiter: PeerStreamLimiter,
        counters: HandlerCounters,
        throttle: LogThrottle | None = None,
    ) -> None:
        self.handler = handler
        self.throttle = throttle if throttle is not None else PEER_FAILURE_LOG
        self.protocol = str(protocol)
        self.log = log
        self.limiter = limiter
        self.counters = counters

    async def __call__(self, stream: INetStream) -> None:
        peer = _remote_peer(stream)
        if not self.limiter.try_acquire(peer):
            self.counters.over_limit[self.protocol] += 1
            self.log.debug("%s: stream from %s over the per-peer limit, reset", self.protocol, peer)
            await reset_quietly(stream)
            return
        try:
            await self._run(stream, peer)
        finally:
            self.limiter.release(peer)

    async def _run(self, stream: INetStream, peer: str) -> None:
        try:
            await self.handler(stream)
        except BaseException as exc:
            cancelled, rest = split_cancelled(exc)
            if rest is not None and not isinstance(rest, Exception):
                # KeyboardInterrupt, SystemExit, ... (possibly grouped): not ours to swallow.
                await reset_quietly(stream)
                raise
            await reset_quietly(stream)
            if rest is not None:
                self.counters.failed[self.protocol] += 1
                self._log_failure(peer, rest)
            if cancelled is not None:
                self.counters.cancelled[self.protocol] += 1
                raise cancelled from None
            return
        self.counters.completed[self.protocol] += 1

    def _log_failure(self, peer: str, exc: BaseException) -> None:
        """One record per peer per throttle interval. A typed error (the peer sent something
        bad) gets no traceback; anything else is a bug of ours and keeps its traceback."""
        log_it, suppressed = self.throttle.admit(peer)
        if not log_it:
            return
        ours = not _all_typed(exc)
        self.log.warning(
            "%s: handler failed for stream from %s: %s%s",
            self.protocol,
            peer,
            _describe(exc),
            f" ({suppressed} more failures from this peer not logged)" if suppressed else "",
            exc_info=exc if ours else None,
        )


def _all_typed(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_all_typed(e) for e in exc.exceptions)
    return isinstance(exc, IgorError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def guarded(
    handler: StreamHandler,
    *,
    protocol: str,
    log: logging.Logger,
    limiter: PeerStreamLimiter | None = None,
    counters: HandlerCounters | None = None,
) -> GuardedHandler:
    """Wrap a stream handler so that no failure of it can reach the swarm (G1)."""
    return GuardedHandler(
        handler,
        protocol=protocol,
        log=log,
        limiter=limiter if limiter is not None else PeerStreamLimiter(),
        counters=counters if counters is not None else HandlerCounters(),
    )


def set_guarded_handler(
    host: IHost,
    protocol: str,
    handler: StreamHandler,
    *,
    log: logging.Logger,
    limiter: PeerStreamLimiter | None = None,
    counters: HandlerCounters | None = None,
) -> GuardedHandler:
    """Register ``handler`` for ``protocol`` on ``host``, guarded; return the wrapper."""
    wrapped = guarded(handler, protocol=protocol, log=log, limiter=limiter, counters=counters)
    host.set_stream_handler(TProtocol(protocol), wrapped)
    return wrapped
