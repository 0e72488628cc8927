"""G12: libp2p's records reach our logger, never stderr through logging.lastResort."""

import importlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import libp2p
import pytest

from igor_p2p.net.logs import ROOT_LOGGING_MODULES, Libp2pLogPolicy, route_libp2p_logs


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def target() -> Iterator[tuple[logging.Logger, _ListHandler]]:
    libp2p_logger = logging.getLogger("libp2p")
    saved = (list(libp2p_logger.handlers), libp2p_logger.level, libp2p_logger.propagate)
    root_handlers = list(logging.getLogger().handlers)
    logger = logging.getLogger("igor.test.net.logs")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = _ListHandler()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)
    libp2p_logger.handlers[:] = saved[0]
    libp2p_logger.setLevel(saved[1])
    libp2p_logger.propagate = saved[2]
    logging.getLogger().handlers[:] = root_handlers


def test_libp2p_warning_reaches_our_handler_and_not_stderr(
    target: tuple[logging.Logger, _ListHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, handler = target
    route_libp2p_logs(logger)
    logging.getLogger("libp2p.kad_dht.kad_dht").warning("No validator found for key %s", "k")
    logging.getLogger("libp2p.host.basic_host").info("below the threshold")
    assert [r.getMessage() for r in handler.records] == ["No validator found for key k"]
    assert handler.records[0].levelno == logging.DEBUG  # demoted by default
    assert capsys.readouterr().err == ""


def test_errors_keep_their_level_and_policy_can_keep_warnings(
    target: tuple[logging.Logger, _ListHandler],
) -> None:
    logger, handler = target
    route_libp2p_logs(logger, Libp2pLogPolicy(demote_to=None))
    route_libp2p_logs(logger, Libp2pLogPolicy(demote_to=None))  # idempotent: one handler
    logging.getLogger("libp2p.network.swarm").warning("w")
    logging.getLogger("libp2p.network.swarm").error("e")
    assert [(r.getMessage(), r.levelno) for r in handler.records] == [
        ("w", logging.WARNING),
        ("e", logging.ERROR),
    ]


def test_root_logger_calls_inside_libp2p_are_rerouted(
    target: tuple[logging.Logger, _ListHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, handler = target
    root_handlers_before = list(logging.getLogger().handlers)
    route_libp2p_logs(logger)
    module = importlib.import_module("libp2p.network.connection.swarm_connection")
    module.logging.warning("Error resetting stream: boom")  # what swarm_connection does
    assert [r.getMessage() for r in handler.records] == ["Error resetting stream: boom"]
    assert handler.records[0].name == "libp2p.network.connection.swarm_connection"
    assert logging.getLogger().handlers == root_handlers_before  # no basicConfig side effect
    assert capsys.readouterr().err == ""


def test_every_libp2p_module_that_logs_on_the_root_logger_is_rerouted() -> None:
    """Pins the list against the installed libp2p source (a new one fails here)."""
    root = Path(libp2p.__file__).parent
    pattern = re.compile(
        r"^\s*logging\.(debug|info|warning|warn|error|exception|critical|log)\(", re.M
    )
    found = {
        "libp2p." + ".".join(path.relative_to(root).with_suffix("").parts)
        for path in root.rglob("*.py")
        if pattern.search(path.read_text(errors="replace"))
    }
    assert found == set(ROOT_LOGGING_MODULES)
