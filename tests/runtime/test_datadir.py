"""The data directory: adopted only when it is ours or empty, private files, a lost store named."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from igor_p2p.lineage.identity import Keypair, save_key_file
from igor_p2p.runtime.datadir import MARKER, DataDir, DataDirRefused, StoreLost
from igor_p2p.runtime.services import open_services


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_directory_is_created_private_and_marked(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "new").ensure()
    assert _mode(data.root) == 0o700 and (data.root / MARKER).exists()


def test_a_non_empty_foreign_directory_is_refused_and_left_untouched(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "someone-elses-file").write_text("x")
    os.chmod(shared, 0o755)
    with pytest.raises(DataDirRefused, match="not empty"):
        DataDir(shared).ensure()
    assert _mode(shared) == 0o755 and not (shared / MARKER).exists()


def test_a_shared_sticky_directory_like_tmp_is_never_adopted_or_chmodded(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    with pytest.raises(DataDirRefused, match="shared"):
        DataDir(sticky).ensure()
    assert _mode(sticky) == 0o1777


def test_an_empty_directory_of_ours_and_a_pre_marker_data_dir_are_adopted(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    DataDir(empty).ensure()
    assert (empty / MARKER).exists() and _mode(empty) == 0o700
    old = tmp_path / "old"
    old.mkdir()
    save_key_file(old / "node.key", Keypair.generate())
    (old / "notes.txt").write_text("operator notes")
    DataDir(old).ensure()  # holds a node key: a data dir from before the marker
    assert (old / MARKER).exists()


async def test_the_store_and_history_are_created_0600(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    async with open_services(data) as services:
        services.history.emit("node", event="start", detail="")
    assert _mode(data.database) == 0o600 and _mode(data.history) == 0o600


def test_an_empty_store_beside_agent_keys_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d").ensure()
    save_key_file(data.agent_key_path(Keypair.generate().did), Keypair.generate())
    data.database.write_bytes(b"")
    with pytest.raises(StoreLost, match=r"Restore igor\.db") as caught:
        data.ensure()
    assert "agent-keys" in str(caught.value)
