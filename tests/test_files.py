"""Files handed to us are regular files read with a hard cap; devices and FIFOs are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from igor_p2p.agent.examples import example_path
from igor_p2p.cli.main import app
from igor_p2p.errors import InvalidInput
from igor_p2p.files import InputFileTooLarge, NotARegularFile, read_regular_file


def test_dev_zero_is_refused_without_reading_it() -> None:
    with pytest.raises(NotARegularFile, match="device"):
        read_regular_file("/dev/zero", max_bytes=10)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="FIFO"):
        read_regular_file(fifo, max_bytes=10)


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 11)
    with pytest.raises(InputFileTooLarge):
        read_regular_file(path, max_bytes=10)
    assert read_regular_file(path, max_bytes=11) == b"x" * 11


def test_missing_files_and_directories_are_typed(tmp_path: Path) -> None:
    for path in (tmp_path / "absent", tmp_path):
        with pytest.raises(InvalidInput):
            read_regular_file(path, max_bytes=10)


@pytest.mark.parametrize(
    "args",
    [
        ["checkpoint", "import", "/dev/zero"],
        ["node", "run", "--config", "/dev/zero"],
    ],
)
def test_cli_file_inputs_refuse_devices_in_words(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "d")])
    assert result.exit_code != 0
    assert "not a regular file" in result.output or "not a regular file" in str(result.stderr)
    assert "Traceback" not in result.output


def test_go_identity_from_a_device_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "agent.ckpt"
    checkpoint.write_bytes(bytes([0x02]) + bytes(64))
    result = CliRunner().invoke(
        app,
        [
            "checkpoint", "import", str(checkpoint), "--data-dir", str(tmp_path / "d"),
            "--wasm", str(example_path("counter")), "--identity", "/dev/zero",
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "not a regular file" in result.output
