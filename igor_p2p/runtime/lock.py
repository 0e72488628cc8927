"""One process at a time may run agents from a data directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from igor_p2p.errors import IgorError


class DataDirBusy(IgorError):
    """Another process (a running node or a local run) holds this data directory."""


class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/lock``, released when the process exits."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "lock"
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(
                f"{self.path.parent} is in use by another igor process "
                "(a running node is driven through its admin socket)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
