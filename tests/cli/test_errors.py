"""Failures are told in words, with a documented exit code, and as JSON under --json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from igor_p2p.cli.common import EXIT_CODE_WORDS, ExitCode, exit_code_of, humanize
from igor_p2p.node.admin_client import AdminCallFailed, AdminUnavailable

from .clitools import cli_env, igor

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_exit_code_is_in_the_documented_table() -> None:
    text = DOC.read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| {EXIT_CODE_WORDS[code]} \|", text, re.M), code
    wanted = {"bad usage", "not found", "node unreachable", "refused", "safety halt"}
    assert wanted <= set(EXIT_CODE_WORDS.values())
    assert len({int(c) for c in ExitCode}) == len(ExitCode), "one code per meaning"


def test_node_side_error_types_map_to_codes_by_their_class() -> None:
    assert exit_code_of(AdminCallFailed("UnknownAgent", "no record")) is ExitCode.NOT_FOUND
    assert exit_code_of(AdminCallFailed("NotOwner", "x")) is ExitCode.REFUSED
    assert exit_code_of(AdminCallFailed("BadParams", "x")) is ExitCode.USAGE
    assert exit_code_of(AdminUnavailable("no node")) is ExitCode.UNREACHABLE


def test_class_names_inside_messages_become_words() -> None:
    assert humanize("UnknownAgent: no record of x") == "no record of x"
    assert humanize("owner unreachable: SwarmException") == "owner unreachable: could not connect"
    assert humanize("12D3KooWAbc is RECOVERY_REQUIRED") == "12D3KooWAbc is RECOVERY_REQUIRED"


def test_no_running_node_is_unreachable_in_words(tmp_path: Path) -> None:
    tmp_path.joinpath("n").mkdir()
    run = igor("agent", "list", "-d", tmp_path / "n")
    assert run.rc == ExitCode.UNREACHABLE
    run.assert_words()
    assert "is the node running?" in run.stderr


def test_missing_data_dir_is_said_plainly(tmp_path: Path) -> None:
    for args in (
        ("agent", "status", "abc", "-d", tmp_path / "nope"),
        ("agent", "resume", "abc", "-d", tmp_path / "nope"),
        ("checkpoint", "verify", "abc", "-d", tmp_path / "nope"),
        ("node", "peers", "-d", tmp_path / "nope"),
    ):
        run = igor(*args)
        assert run.rc == ExitCode.NOT_FOUND, run.stderr
        run.assert_words()
        assert "missing data dir" in run.stderr
        assert "sqlite" not in run.stderr.lower()


def test_not_a_did_is_said_so(tmp_path: Path) -> None:
    tmp_path.joinpath("n").mkdir()
    run = igor("agent", "status", "not/a-did!", "-d", tmp_path / "n")
    assert run.rc == ExitCode.USAGE
    run.assert_words()
    assert "is not a DID" in run.stderr


def test_unknown_agent_name_lists_the_shipped_examples(tmp_path: Path) -> None:
    run = igor("agent", "run", "countr", "-d", tmp_path / "a", "--ticks", "1")
    assert run.rc == ExitCode.NOT_FOUND
    run.assert_words()
    assert "shipped examples:" in run.stderr and "counter" in run.stderr


def test_unknown_scenario_lists_the_shipped_scenarios(tmp_path: Path) -> None:
    run = igor("testnet", "run", "partition-durin", "--dir", tmp_path / "tn")
    assert run.rc == ExitCode.NOT_FOUND
    run.assert_words()
    assert "partition-during-migration" in run.stderr and "fs1-source-crash" in run.stderr


def test_a_mistyped_config_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[node]\nprise = 3\n")
    run = igor("node", "run", "--config", config, "-d", tmp_path / "n")
    assert run.rc == ExitCode.USAGE
    run.assert_words()
    assert "did you mean 'price'?" in run.stderr


def test_no_testnet_says_how_to_start_one(tmp_path: Path) -> None:
    run = igor("testnet", "status", "--dir", tmp_path / "tn", env=cli_env(tmp_path / "state"))
    assert run.rc == ExitCode.NOT_FOUND
    run.assert_words()
    assert "igor testnet up" in run.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("agent", "list"), ExitCode.UNREACHABLE),
        (("agent", "status", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
         ExitCode.UNREACHABLE),
        (("agent", "launch", "nothing-like-this"), ExitCode.NOT_FOUND),
        (("agent", "logs", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
         ExitCode.UNREACHABLE),
    ],
)  # fmt: skip
def test_errors_under_json_are_an_object_on_stdout_and_words_on_stderr(
    tmp_path: Path, args: tuple[str, ...], code: ExitCode
) -> None:
    tmp_path.joinpath("n").mkdir()
    run = igor(*args, "-d", tmp_path / "n", "--json")
    assert run.rc == code
    run.assert_words()
    error = run.json()["error"]
    assert error["exit_code"] == int(code) and error["code"] == code.name.lower()
    assert error["message"] and error["message"] in run.stderr
