"""Fuzz: node config files and IGOR_* variables load or fail with a ConfigError, nothing else."""

from __future__ import annotations

import json
import tempfile
from dataclasses import fields
from pathlib import Path

from hypothesis import strategies as st

from igor_p2p.node.config import ConfigError, NodeConfig, load_node_config

from .fuzzing import fuzz

FIELDS = [f.name for f in fields(NodeConfig)]
_DIR = Path(tempfile.mkdtemp(prefix="igor-fuzz-config-"))


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid TOML basic string


toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.sampled_from(["nan", "inf", "-inf", "+inf", "1e300", "-1", "0", "0.0", "1e-9"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=30).map(_toml_string),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=6,
)
settings_lines = st.lists(
    st.tuples(
        st.sampled_from(FIELDS) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1),
        toml_values,
    ),
    max_size=6,
    unique_by=lambda kv: kv[0],
)
config_texts = st.one_of(
    settings_lines.map(lambda kvs: "[node]\n" + "".join(f"{k} = {v}\n" for k, v in kvs)),
    settings_lines.map(lambda kvs: "".join(f"{k} = {v}\n" for k, v in kvs)),
    st.text(max_size=200),
)


@fuzz(config_texts)
def _files(text: str) -> None:
    """A config file with any content: a NodeConfig within its ranges, or ConfigError."""
    path = _DIR / "node.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_node_config(config_file=path, env={})
    except ConfigError:
        return
    assert config.capacity <= 100_000 and config.announce_interval_s >= 0.05


test_config_files_load_or_fail_typed, test_config_files_soak = _files


@fuzz(
    st.dictionaries(
        st.sampled_from(FIELDS).map(lambda f: "IGOR_" + f.upper()),
        st.text(max_size=30) | toml_scalars,
        max_size=5,
    )
)
def _env(env: dict[str, str]) -> None:
    """IGOR_* environment variables with any text: a NodeConfig, or ConfigError."""
    try:
        load_node_config(env=env)
    except ConfigError:
        return


test_config_environment_loads_or_fails_typed, test_config_environment_soak = _env
