"""Where a node keeps its files: one data directory per node.

The directory holds private keys, so it is created with mode 0700, and its store and history
files with mode 0600. A node adopts only a directory it can call its own: one it creates, an
empty one, or one that already holds its files (marked by :data:`MARKER`, or, for directories
made before the marker existed, a node key or store). It refuses any other non-empty directory
(``--data-dir /tmp`` or a home directory) and never changes the mode of a directory it did not
create or adopt. A store that is empty or missing while ``agent-keys/`` holds keys means the
store was lost: that is refused with the fix, never silently started afresh.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.identity import Keypair, load_or_create_key_file

MARKER = ".igor-data-dir"
"""Written into every data directory a node creates or adopts."""
DIR_MODE = 0o700
FILE_MODE = 0o600
_LEGACY_SIGNS = ("node.key", "igor.db")


class DataDirError(InvalidInput):
    """The data directory cannot be used as it is (the message says why and what to do)."""


class DataDirRefused(DataDirError):
    """The path is not a directory this node may adopt (not empty and not an Igor data dir,
    shared, or not a directory at all)."""


class StoreLost(DataDirError):
    """The store is empty or missing while agent keys are present: agents would be lost."""


@dataclass(frozen=True)
class DataDir:
    """The layout of a node's data directory."""

    root: Path

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def database(self) -> Path:
        return self.root / "igor.db"

    @property
    def history(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def agent_keys(self) -> Path:
        """Private keys of agents launched here (they sign only their genesis)."""
        return self.root / "agent-keys"

    def agent_key_path(self, did: str) -> Path:
        return self.agent_keys / f"{did.removeprefix('did:key:')}.key"

    def ensure(self) -> DataDir:
        """Create or adopt the directory (see the module docstring), then its private files."""
        self._adopt()
        self.agent_keys.mkdir(exist_ok=True, mode=DIR_MODE)
        self.check_store_present()
        for path in (self.database, self.history):
            _private_file(path)
        return self

    def _adopt(self) -> None:
        root = self.root
        try:
            st = os.stat(root)
        except FileNotFoundError:
            root.mkdir(parents=True, mode=DIR_MODE)
            os.chmod(root, DIR_MODE)  # mkdir's mode is masked by the umask
            self.marker.touch(mode=FILE_MODE)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise DataDirRefused(f"{root} exists and is not a directory")
        if self.marker.exists():
            pass
        elif any((root / sign).exists() for sign in _LEGACY_SIGNS):
            self.marker.touch(mode=FILE_MODE)  # a data dir from before the marker existed
        elif _is_empty(root):
            if st.st_mode & (stat.S_IWOTH | stat.S_ISVTX) or st.st_uid != os.getuid():
                raise DataDirRefused(
                    f"{root} is a shared directory (writable by others, or not yours); "
                    "give a directory of your own, e.g. a new path"
                )
            self.marker.touch(mode=FILE_MODE)
        else:
            raise DataDirRefused(
                f"{root} is not empty and is not an Igor data directory; give a new or empty "
                "directory (the node would take it over and make it private)"
            )
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
            os.chmod(root, DIR_MODE)  # ours: created or adopted above, holding private keys

    def check_store_present(self) -> None:
        """Raise :class:`StoreLost` if agent keys exist but the store is empty or missing."""
        try:
            size = os.stat(self.database).st_size
        except FileNotFoundError:
            size = 0
        if size > 0:
            return
        try:
            keys = [p for p in os.scandir(self.agent_keys) if p.name.endswith(".key")]
        except FileNotFoundError:
            return
        if keys:
            raise StoreLost(
                f"{self.database} is empty or missing but {self.agent_keys} holds "
                f"{len(keys)} agent key(s): the store was lost. Restore igor.db from a backup; "
                "or, to start this node afresh without those agents, move agent-keys/ aside"
            )

    def node_keypair(self) -> Keypair:
        """The node's persistent key (created on first use, mode 0600)."""
        self.ensure()
        return load_or_create_key_file(self.node_key)


def _is_empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing; tighten a looser mode of our own file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
