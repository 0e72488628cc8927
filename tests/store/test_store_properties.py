"""Random op batches never leave damage the integrity check can see, and failures leave nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import (
    AppendEntries,
    DeleteLineage,
    MarkRecoveryRequired,
    PutAuthority,
    RaiseFence,
    Store,
    StoreError,
)

from .helpers import ZERO, entry, record

AGENTS = ["did:key:z6MkA", "did:key:z6MkB", "did:key:z6MkC"]
STATES = [AuthorityState.ACTIVE_OWNER, AuthorityState.HANDOFF_PENDING, AuthorityState.RETIRED]


def _draw_op(data: st.DataObject, model: dict[str, list], counter: list[int]):
    agent = data.draw(st.sampled_from(AGENTS))
    tip = model[agent][-1] if model[agent] else None
    kind = data.draw(
        st.sampled_from(["append", "append", "bad_append", "auth", "fence", "delete", "mark"])
    )
    if kind in ("append", "bad_append"):
        prev = tip.digest if tip is not None else ZERO
        if kind == "bad_append" and tip is not None:
            prev = bytes(32 - 1) + b"\x09"
        entries = []
        for _ in range(data.draw(st.integers(1, 3))):
            counter[0] += 1
            e = entry(prev, b"blob-%d" % counter[0])
            entries.append(e)
            prev = e.digest
        return AppendEntries(agent, entries)
    if kind == "auth":
        stale = data.draw(st.booleans())
        head = tip if not stale or len(model[agent]) < 2 else model[agent][-2]
        seq = len(model[agent]) - 1 if head is tip else len(model[agent]) - 2
        epoch = data.draw(st.integers(1, 4))
        return PutAuthority(record(agent, head, seq, data.draw(st.sampled_from(STATES)), epoch))
    if kind == "fence":
        return RaiseFence(agent, data.draw(st.integers(0, 5)), "evidence")
    if kind == "delete":
        return DeleteLineage(agent)
    return MarkRecoveryRequired(agent, "because")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_random_batches_keep_the_store_intact(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "igor.db")
        model: dict[str, list] = {a: [] for a in AGENTS}
        counter = [0]
        try:
            for _ in range(data.draw(st.integers(1, 8))):
                # ops of one batch are drawn against the model before the batch
                ops = [_draw_op(data, model, counter) for _ in range(data.draw(st.integers(1, 4)))]
                before = {a: store.lineage(a) for a in AGENTS}
                fences = {a: store.fence(a) for a in AGENTS}
                try:
                    store.apply(ops)
                except StoreError:
                    assert {a: store.lineage(a) for a in AGENTS} == before
                    assert {a: store.fence(a) for a in AGENTS} == fences
                for a in AGENTS:
                    rows = store.lineage_rows(a)
                    model[a] = rows
                    rec = store.authority(a)
                    if rec is not None:
                        assert rec.epoch <= store.fence(a)
                assert store.check_integrity() == []
        finally:
            store.close()
