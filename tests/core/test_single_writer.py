"""The authority table is the only writer of authority state (issue 8).

Every durable authority change is a ``PersistAuthority`` action of the table, which only the
authority gate interprets, through the store port's ``commit_authority``; only the SQLite port
adapter turns that into the store op ``PutRecord``; only the store writes the ``authority``
table's state. These tests read every module of the package and fail on any other writer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import igor_p2p

PACKAGE = Path(igor_p2p.__file__).parent

GATE = "core/gate.py"
ADAPTER = "store/adapter.py"
STORE = "store/sqlite.py"
SCRATCH_BENCH = "store/benchmark.py"
"""Builds a throw-away store in a temporary directory to time the store's raw batch rate."""


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def _called_names(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                yield func.attr
            elif isinstance(func, ast.Name):
                yield func.id


def test_only_the_gate_commits_authority_through_the_store_port() -> None:
    callers = {name for name, tree in _modules() if "commit_authority" in _called_names(tree)}
    assert callers == {GATE}


def test_the_gate_commits_authority_only_for_a_persist_action_of_the_table() -> None:
    tree = ast.parse((PACKAGE / GATE).read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "commit_authority"
    ]
    assert len(calls) == 1
    (call,) = calls
    record = call.args[1]
    assert ast.unparse(record) == "action.record"  # the record the table built, as it is


def test_only_the_port_adapter_builds_the_store_op_that_writes_a_record() -> None:
    builders = {name for name, tree in _modules() if "PutRecord" in _called_names(tree)}
    assert builders == {ADAPTER, SCRATCH_BENCH}


_STATE_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|REPLACE\s+INTO)\s+authority\b", re.I)


def test_only_the_store_writes_the_authority_table() -> None:
    writers = set()
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _STATE_WRITE.search(node.value)
            ):
                writers.add(name)
    assert writers == {STORE}


def test_no_module_sets_an_authority_state_on_a_record_outside_the_table() -> None:
    # Records change by dataclasses.replace(record, state=...) in the table only.
    offenders = set()
    for name, tree in _modules():
        if name.startswith("authority/") or name == SCRATCH_BENCH:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(k.arg == "state" for k in node.keywords):
                func = ast.unparse(node.func)
                if func in ("replace", "dataclasses.replace", "_bump", "AuthorityRecord"):
                    offenders.add(f"{name}: {ast.unparse(node)[:80]}")
    assert offenders == set()
