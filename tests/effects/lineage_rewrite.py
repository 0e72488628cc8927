"""Rewriting an agent's history the way a dishonest owner could: every entry after a changed one
re-linked and re-signed, so that signatures and links hold and only replay can tell."""

from __future__ import annotations

import dataclasses

from igor_p2p.lineage.effect import EffectRecord, UnsignedEffectRecord
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.inputs import TickInputs, UnsignedTickInputs


def resigned_from(entries: list[LineageEntry], index: int, key: Keypair) -> list[LineageEntry]:
    """The lineage with entry ``index`` as given and everything after it re-linked and
    re-signed by ``key`` (an owner rewriting its own history)."""
    out = list(entries[: index + 1])
    for entry in entries[index + 1 :]:
        prev = out[-1].digest()
        fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
        fields.pop("signature", None)
        fields.pop("signer", None)
        fields["prev"] = prev
        if isinstance(entry, Checkpoint):
            out.append(UnsignedCheckpoint(**fields).sign(key))
        elif isinstance(entry, TickInputs):
            out.append(UnsignedTickInputs(**fields).sign(key))
        else:
            assert isinstance(entry, EffectRecord)
            out.append(UnsignedEffectRecord(**fields).sign(key))
    return out
