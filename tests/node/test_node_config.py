"""Node config precedence: TOML file < ``IGOR_*`` environment < flags; bad values are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.node.config import ConfigError, NodeConfig, load_node_config


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_file_then_environment_then_flags_each_override_the_one_before(tmp_path: Path) -> None:
    config_file = _toml(
        tmp_path,
        '[node]\nname = "from-file"\nprice = 7\ncapacity = 3\n'
        'bootstrap = ["/ip4/127.0.0.1/tcp/1/p2p/A"]\npeer_down_after_s = 9.5\n',
    )
    env = {"IGOR_PRICE": "11", "IGOR_CAPACITY": "5", "IGOR_UNRELATED_THING": "x"}
    flags = {"capacity": 8, "name": None, "listen": ()}  # None / () mean "flag not given"
    config = load_node_config(config_file=config_file, env=env, flags=flags)
    assert config.name == "from-file"  # file only
    assert config.price == 11  # env beats file
    assert config.capacity == 8  # flag beats env and file
    assert config.bootstrap == ("/ip4/127.0.0.1/tcp/1/p2p/A",)
    assert config.peer_down_after_s == 9.5
    assert config.listen == NodeConfig().listen  # untouched default


def test_environment_lists_are_comma_separated_and_bools_parse() -> None:
    config = load_node_config(
        env={
            "IGOR_BOOTSTRAP": "/ip4/127.0.0.1/tcp/1/p2p/A, /ip4/127.0.0.1/tcp/2/p2p/B",
            "IGOR_TEST_DISABLE_FENCING": "yes",
        },
    )
    assert config.bootstrap == ("/ip4/127.0.0.1/tcp/1/p2p/A", "/ip4/127.0.0.1/tcp/2/p2p/B")
    assert config.test_disable_fencing is True


def test_no_sources_gives_the_defaults() -> None:
    assert load_node_config(env={}) == NodeConfig()


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("env", {"IGOR_PRICE": "cheap"}),
        ("env", {"IGOR_PEER_DOWN_AFTER_S": "soon"}),
        ("env", {"IGOR_CAPACITY": "-1"}),
        ("flags", {"wander": "sideways"}),
        ("flags", {"log_format": "xml"}),
        ("flags", {"checkpoint_every": 0}),
        ("flags", {"no_such_setting": 1}),
        ("file", '[node]\nprice = "x"\n'),
        ("file", "[node]\nmystery = 1\n"),
        ("file", "[node\nbroken"),
        ("file", "node = 3\n"),
    ],
)
def test_a_bad_value_from_any_source_is_a_config_error(
    tmp_path: Path, source: str, value: object
) -> None:
    with pytest.raises(ConfigError):
        if source == "env":
            load_node_config(env=value)  # type: ignore[arg-type]
        elif source == "flags":
            load_node_config(env={}, flags=value)  # type: ignore[arg-type]
        else:
            load_node_config(config_file=_toml(tmp_path, value), env={})  # type: ignore[arg-type]


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_node_config(config_file=tmp_path / "absent.toml", env={})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("announce_interval_s = -1", "outside"),
        ("announce_interval_s = nan", "not a valid finite number"),
        ("price = inf", "not a valid whole number"),
        ("price = 1_000_000_000_000", "outside"),
        ("log_level = 'SHOUT'", "log level"),
        ("announce_interval_s = 0", "outside"),
        ("idle_interval_s = 0", "outside"),
        ("recover_interval_s = 0.0", "outside"),
        ("capacity = true", "not a valid whole number"),
        ("checkpoint_every = 2.5", "not a valid whole number"),
        ("bootstrap = 3", "list of strings"),
        ("metrics = 'localhost:99999'", "metrics"),
        ('name = "a\\u0000b"', "name"),
    ],
)
def test_config_values_are_range_checked_with_words(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_node_config(config_file=_toml(tmp_path, f"[node]\n{text}\n"), env={})


def test_an_unknown_setting_suggests_the_closest_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'announce_interval_s'"):
        load_node_config(config_file=_toml(tmp_path, "[node]\nannounce_intervals = 2\n"), env={})


def test_environment_values_are_range_checked_too() -> None:
    for env in (
        {"IGOR_PRICE": "inf"},
        {"IGOR_ANNOUNCE_INTERVAL_S": "nan"},
        {"IGOR_LOG_LEVEL": "x"},
    ):
        with pytest.raises(ConfigError):
            load_node_config(env=env)


def test_test_only_switches_are_refused_outside_the_test_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IGOR_ALLOW_TEST_SWITCHES", raising=False)
    config_file = _toml(tmp_path, "[node]\ntest_disable_fencing = true\n")
    with pytest.raises(ConfigError, match="test-only"):
        load_node_config(config_file=config_file, env={})
    with pytest.raises(ConfigError, match="test-only"):
        NodeConfig(test_disable_fencing=True)
    monkeypatch.setenv("IGOR_ALLOW_TEST_SWITCHES", "1")
    assert load_node_config(config_file=config_file, env={}).test_disable_fencing


def test_a_config_file_that_is_a_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_node_config(config_file=Path("/dev/zero"), env={})
