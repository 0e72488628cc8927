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
