"""Every test under ``tests/e2e`` runs real processes: it carries the ``e2e`` mark (so
``make test-fast``, which deselects ``e2e``, never starts one)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
