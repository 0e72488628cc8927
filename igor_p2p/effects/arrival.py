"""Replay on arrival: a target re-executes an incoming agent's last ticks before it takes it.

A node policy (``replay_on_arrival = K``, off at 0) or the agent's manifest
(``migration_policy.replay_on_arrival``) asks for it; the target replays
``min(MAX_REPLAY_TICKS, max(node, manifest))`` ticks. The source puts the lineage entries those
ticks need in the OFFER (:func:`replay_window`: the checkpoint K ticks back, every entry after
it — tick inputs, effect records, checkpoints, custody — up to the HANDOFF checkpoint's ``prev``);
a source that does not know the target's policy learns it from a REJECT ``REPLAY_REQUIRED`` and
offers once more. The target checks the window (:func:`checked_window`: it links to the offered
checkpoint, every entry is signed by the owner of its epoch, it reaches back far enough) and
re-executes it with :func:`~igor_p2p.effects.replay.replay_lineage` — the same replayer as
``igor checkpoint replay``. A state that comes out different refuses the offer
(``REPLAY_MISMATCH``) and is kept as :class:`Evidence` in ``DATA_DIR/evidence/replay.jsonl``,
which ``igor checkpoint verify`` shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from igor_p2p.agent.manifest import Manifest
from igor_p2p.authority.custody import EpochStart
from igor_p2p.effects.replay import GENESIS_KINDS, Interval
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage.effect import EffectRecord
from igor_p2p.lineage.entries import LineageEntry, decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.identity import BadSignature
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.wire.messages import (
    MAX_REPLAY_BYTES,
    MAX_REPLAY_ENTRIES,
    MAX_REPLAY_TICKS,
    Offer,
    RejectCode,
)

MAX_EVIDENCE = 256
"""Evidence records a node keeps (the oldest go first)."""
EVIDENCE_FILE = Path("evidence") / "replay.jsonl"
"""Where, under the data directory, the evidence is kept."""


class ArrivalRefused(IgorError):
    """The offered window does not let this node replay what it asks; ``code`` goes on the
    wire (with ``replay_ticks`` for REPLAY_REQUIRED)."""

    def __init__(self, code: RejectCode, reason: str, replay_ticks: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.replay_ticks = replay_ticks


def replay_ticks(node_policy: int, manifest: Manifest) -> int:
    """How many ticks a target with ``node_policy`` replays of an agent with ``manifest``."""
    return max(
        0, min(MAX_REPLAY_TICKS, max(node_policy, manifest.migration_policy.replay_on_arrival))
    )


def replay_window(blobs: Sequence[bytes], head: Checkpoint, ticks: int) -> tuple[bytes, ...]:
    """The stored entries (chain order, ``blobs`` as the store holds them) a target needs to
    replay the ``ticks`` ticks before ``head`` (the HANDOFF checkpoint, not stored): from the
    last checkpoint at or before ``head.tick - ticks`` to the entry ``head`` names as ``prev``.
    Shorter when a compacted gap, the genesis or the caps (:data:`MAX_REPLAY_ENTRIES`,
    :data:`MAX_REPLAY_BYTES`) come first; empty when not even one checkpoint fits."""
    if ticks <= 0:
        return ()
    picked: list[bytes] = []  # newest first
    through_base = 0
    size = 0
    expected = head.prev
    for blob in reversed(blobs):
        if len(picked) >= MAX_REPLAY_ENTRIES or size + len(blob) > MAX_REPLAY_BYTES:
            break
        entry = decode_entry(blob)
        if entry.digest() != expected:
            break  # compacted away before this point
        picked.append(blob)
        size += len(blob)
        expected = entry.prev
        if isinstance(entry, Checkpoint):
            through_base = len(picked)
            if entry.tick <= head.tick - ticks or entry.kind in GENESIS_KINDS:
                break
    return tuple(reversed(picked[:through_base]))


def checked_window(
    offer: Offer, checkpoint: Checkpoint, custody: Sequence[EpochStart], ticks: int
) -> list[LineageEntry]:
    """The offer's window, decoded, once it is shown to lead to ``checkpoint`` (the verified
    HANDOFF of the offer), to be signed by the owners ``custody`` proves and to reach back
    ``ticks`` ticks (or to where the agent's epoch or life began); else :class:`ArrivalRefused`."""
    if offer.replay is None:
        raise ArrivalRefused(
            RejectCode.REPLAY_REQUIRED,
            f"this node replays the last {ticks} ticks of an incoming agent; offer them",
            ticks,
        )
    if not offer.replay:
        raise ArrivalRefused(RejectCode.MALFORMED, "the replay window is empty")
    try:
        entries = [decode_entry(blob) for blob in offer.replay]
    except InvalidInput as exc:
        raise ArrivalRefused(
            RejectCode.MALFORMED, f"an entry of the replay window does not decode: {exc}"
        ) from None
    base = entries[0]
    if not isinstance(base, Checkpoint) or base.agent != offer.agent:
        raise ArrivalRefused(
            RejectCode.MALFORMED, "the replay window does not start at a checkpoint of the agent"
        )
    for before, after in zip(entries, [*entries[1:], checkpoint], strict=True):
        if after.prev != before.digest():
            raise ArrivalRefused(
                RejectCode.LINEAGE_GAP,
                "the replay window is not one chain leading to the offered checkpoint",
            )
    owners = {start.epoch: start.owner for start in custody}
    links = {blob for start in custody for blob in start.links()}
    for blob, entry in zip(offer.replay, entries, strict=True):
        if blob in links:
            continue  # custody, verified with the offer
        if not isinstance(entry, Checkpoint | TickInputs | EffectRecord):
            raise ArrivalRefused(
                RejectCode.MALFORMED, f"the replay window holds a {type(entry).__name__} entry"
            )
        if entry.agent != offer.agent or owners.get(entry.epoch) != entry.signer:
            raise ArrivalRefused(
                RejectCode.BAD_SIGNATURE,
                f"an entry of epoch {entry.epoch} in the replay window is not signed by its owner",
            )
        try:
            entry.verify_signature()
        except BadSignature:
            raise ArrivalRefused(
                RejectCode.BAD_SIGNATURE, "a signature in the replay window fails"
            ) from None
    covered = checkpoint.tick - base.tick
    genesis = decode_entry(custody[0].genesis)
    began = {genesis.digest()}
    if not custody[-1].is_genesis:
        began.add(decode_entry(custody[-1].record).prev)  # the checkpoint this epoch resumed
    if covered < ticks and base.digest() not in began:
        raise ArrivalRefused(
            RejectCode.POLICY_DENIED,
            f"the offer carries {covered} of the last {ticks} ticks this node replays (their "
            "inputs were compacted away at the source, or are over the size limit)",
        )
    return entries


@dataclass(frozen=True)
class Evidence:
    """A checkpoint of an offered agent whose state its ticks and recorded inputs do not give."""

    agent: str
    source: str
    """Hex key of the node that offered the agent."""
    migration_id: str
    epoch: int
    first_tick: int
    last_tick: int
    checkpoint: str
    """Hex digest of the checkpoint whose state did not come out."""
    expected: str
    """Hex SHA-256 of the state the checkpoint holds."""
    actual: str
    """Hex SHA-256 of the state the replay computed (empty when it stopped before)."""
    detail: str
    wall_ns: int

    @classmethod
    def of(cls, offer: Offer, interval: Interval, wall_ns: int) -> Evidence:
        return cls(
            agent=offer.agent,
            source=offer.sender.hex(),
            migration_id=offer.migration_id.hex(),
            epoch=interval.epoch,
            first_tick=interval.first_tick,
            last_tick=interval.last_tick,
            checkpoint=interval.checkpoint.hex(),
            expected=interval.expected.hex(),
            actual=interval.actual.hex(),
            detail=interval.detail,
            wall_ns=wall_ns,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Evidence | None:
        """The record a line holds, or None for a line that is not one."""
        try:
            evidence = cls(**raw)
        except TypeError:
            return None
        for name, value in raw.items():
            want = int if name in _INT_FIELDS else str
            if type(value) is not want:
                return None
        return evidence

    def describe(self) -> str:
        got = f", replay gave {self.actual[:12]}" if self.actual else ""
        return (
            f"offered by node {self.source[:16]}… (migration {self.migration_id[:8]}, epoch "
            f"{self.epoch}): ticks {self.first_tick}–{self.last_tick}: {self.detail}; "
            f"checkpoint {self.checkpoint[:12]} holds {self.expected[:12]}{got}"
        )


_INT_FIELDS = frozenset({"epoch", "first_tick", "last_tick", "wall_ns"})


def keep_evidence(root: Path, found: Sequence[Evidence]) -> None:
    """Append ``found`` to the node's evidence file (durably; at most :data:`MAX_EVIDENCE`
    records are kept, the oldest dropped)."""
    path = root / EVIDENCE_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    lines = [json.dumps(e.to_json(), sort_keys=True) for e in found]
    kept = _read_lines(path)
    if len(kept) + len(lines) > MAX_EVIDENCE:
        everything = (kept + lines)[-MAX_EVIDENCE:]
        temp = path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in everything))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f if line.strip()][-MAX_EVIDENCE:]
    except FileNotFoundError:
        return []


def load_evidence(root: Path, agent: str | None = None) -> list[Evidence]:
    """The evidence kept under the data directory ``root`` (of ``agent``, when given); lines
    that are not evidence records are skipped."""
    out: list[Evidence] = []
    for line in _read_lines(root / EVIDENCE_FILE):
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        evidence = Evidence.from_json(raw) if isinstance(raw, dict) else None
        if evidence is not None and (agent is None or evidence.agent == agent):
            out.append(evidence)
    return out
