"""Reading a file someone handed us (a CLI argument, a config file, a key file) safely.

``/dev/zero`` never ends, a FIFO blocks the reader forever, and a 50 GB file exhausts memory:
:func:`read_regular_file` opens without blocking, refuses anything that is not a regular file,
and reads at most ``max_bytes`` (one byte more tells it the file is too large) — the size the
file claims in ``stat`` is never trusted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from igor_p2p.errors import InvalidInput

READ_CHUNK = 1 << 20


class BadInputFile(InvalidInput):
    """A file given to us cannot be used: missing, unreadable, not regular, or too large."""


class NotARegularFile(BadInputFile):
    """The path names a device, FIFO, socket or directory, not a regular file."""


class InputFileTooLarge(BadInputFile):
    """The file holds more bytes than the reader accepts."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: Path | str, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Raises :class:`NotARegularFile`, :class:`InputFileTooLarge` or :class:`BadInputFile`
    (missing, no permission, I/O error); the message names ``what`` and the path.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadInputFile(f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise NotARegularFile(f"the {what} {path} is a directory, not a file") from None
    except PermissionError:
        raise BadInputFile(f"no permission to read the {what} {path}") from None
    except OSError as exc:
        raise BadInputFile(f"cannot open the {what} {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"the {what} {path} is {_kind(mode)}, not a regular file")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(READ_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise InputFileTooLarge(f"the {what} {path} is larger than {max_bytes} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise BadInputFile(f"cannot read the {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_regular_text(path: Path | str, *, max_bytes: int, what: str = "file") -> str:
    """Like :func:`read_regular_file`, decoded as UTF-8 (a decoding error is a BadInputFile)."""
    data = read_regular_file(path, max_bytes=max_bytes, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputFile(f"the {what} {path} is not UTF-8 text") from None
