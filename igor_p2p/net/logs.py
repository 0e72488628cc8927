"""Route py-libp2p's log records into our logging (G12).

Importing libp2p leaves the ``libp2p`` logger at WARNING with ``propagate=False`` and no
handlers, so its records bypass the application's configuration and reach stderr through
``logging.lastResort``. A few libp2p modules also call the *root* logger functions
(``logging.warning(...)``), which, worse, run ``logging.basicConfig()`` when the root logger has
no handler. :func:`route_libp2p_logs` fixes both, in this one place:

* it attaches a :class:`Libp2pLogRouter` handler to the ``libp2p`` logger, which re-emits every
  record at or above ``min_level`` on ``target_logger`` (demoted to ``demote_to`` unless the
  record is at or above ``keep_level``);
* it points the module-level ``logging`` name of each module in :data:`ROOT_LOGGING_MODULES`
  at a shim that logs to that module's own ``libp2p.…`` logger instead of the root logger.
"""

import importlib
import logging
import types
from dataclasses import dataclass
from typing import Any

LIBP2P_LOGGER = "libp2p"

# libp2p modules that call logging.debug()/warning() on the root logger (checked by a test
# against the installed source, so a libp2p upgrade that adds one fails loudly).
ROOT_LOGGING_MODULES: tuple[str, ...] = (
    "libp2p.network.connection.swarm_connection",
    "libp2p.tools.utils",
)

_ROOT_FUNCTIONS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "log")


@dataclass(frozen=True)
class Libp2pLogPolicy:
    """Which libp2p records we keep and at what level we re-emit them.

    Default: WARNING and above are kept; below ERROR they are demoted to DEBUG (libp2p's
    warnings are mostly benign noise: closed DHT query streams, "no validator", ...).
    """

    min_level: int = logging.WARNING
    demote_to: int | None = logging.DEBUG
    keep_level: int = logging.ERROR


class Libp2pLogRouter(logging.Handler):
    """Re-emits libp2p records on our logger."""

    def __init__(self, target: logging.Logger, policy: Libp2pLogPolicy) -> None:
        super().__init__(level=policy.min_level)
        self.target = target
        self.policy = policy

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        if self.policy.demote_to is not None and level < self.policy.keep_level:
            level = self.policy.demote_to
        if not self.target.isEnabledFor(level):
            return
        copy = logging.makeLogRecord(record.__dict__)
        copy.levelno = level
        copy.levelname = logging.getLevelName(level)
        self.target.handle(copy)


class _ModuleLogging(types.ModuleType):
    """Stands in for ``logging`` inside one libp2p module: root-level calls go to its logger."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__("logging")
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        if name in _ROOT_FUNCTIONS:
            return getattr(self._logger, name)
        return getattr(logging, name)


def _reroute_root_logging(module_name: str) -> None:
    module = importlib.import_module(module_name)
    current = getattr(module, "logging", None)
    if current is logging:
        module.logging = _ModuleLogging(logging.getLogger(module_name))  # type: ignore[attr-defined]


def route_libp2p_logs(
    target_logger: logging.Logger, policy: Libp2pLogPolicy | None = None
) -> Libp2pLogRouter:
    """Send libp2p's records to ``target_logger`` according to ``policy``; idempotent."""
    policy = policy or Libp2pLogPolicy()
    libp2p_logger = logging.getLogger(LIBP2P_LOGGER)
    for handler in list(libp2p_logger.handlers):
        if isinstance(handler, Libp2pLogRouter):
            libp2p_logger.removeHandler(handler)
    router = Libp2pLogRouter(target_logger, policy)
    libp2p_logger.addHandler(router)
    libp2p_logger.setLevel(policy.min_level)
    libp2p_logger.propagate = False
    for module_name in ROOT_LOGGING_MODULES:
        _reroute_root_logging(module_name)
    return router
