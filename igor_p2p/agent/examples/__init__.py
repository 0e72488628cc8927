"""Example agents shipped as package data (WAT text plus ``<name>.manifest.json``)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent


def list_examples() -> list[str]:
    """Names of the shipped example agents, sorted."""
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.wat"))


def example_path(name: str) -> Path:
    """Path of the example's ``.wat`` file; ``KeyError`` if there is no such example."""
    if name not in list_examples():
        raise KeyError(name)
    return EXAMPLES_DIR / f"{name}.wat"


def example_manifest_path(name: str) -> Path:
    """Path of the example's ``<name>.manifest.json``."""
    return example_path(name).with_name(f"{name}.manifest.json")
