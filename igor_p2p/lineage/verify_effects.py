"""The effect-log rules of the lineage verifier (pure).

While :func:`~igor_p2p.lineage.verify.verify_lineage` walks the chain from the genesis, every
:class:`~igor_p2p.lineage.effect.EffectRecord` and :class:`~igor_p2p.lineage.inputs.TickInputs`
goes through :func:`check_effect_entry` and every checkpoint through :meth:`EffectLog.checkpoint`:

* an effect or input record is signed by the custodian of the current epoch and names it;
* an INTENT's key is new in the lineage and its tick is after the last checkpoint's; an OUTCOME
  follows the INTENT with the same key, kind and request digest, once;
* the checkpoint after effects has been charged for them: its budget is at most the previous
  checkpoint's minus what the effects cost (an OUTCOME's charge; for an INTENT whose outcome is
  unknown, its reserved charge);
* a tick-input record is followed by the checkpoint of its last tick.

The :class:`EffectLog` is also the report: how many effects, which outcomes are unknown, what
payments were made and what effects cost in total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from igor_p2p.lineage.effect import EffectKind, EffectPhase, EffectRecord
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.inputs import TickInputs


@dataclass
class EffectLog:
    """The effects seen along a verified path, and the walk's pending state."""

    intents: int = 0
    outcomes: int = 0
    payments: int = 0
    """Payments whose OUTCOME says they were settled (status 0)."""
    paid: int = 0
    """What settled payments cost (µ), including their fees."""
    charged: int = 0
    """What every effect cost the budget (µ), unknown outcomes at their reserved charge."""
    unknown: list[bytes] = field(default_factory=list)
    """Keys of INTENTs never followed by their OUTCOME."""
    inputs: int = 0
    """Tick-input records."""
    _keys: set[bytes] = field(default_factory=set)
    _open: dict[bytes, EffectRecord] = field(default_factory=dict)
    _interval_charge: int = 0
    _inputs: TickInputs | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "intents": self.intents,
            "outcomes": self.outcomes,
            "payments": self.payments,
            "paid": self.paid,
            "charged": self.charged,
            "unknown": [k.hex() for k in self.unknown],
            "inputs": self.inputs,
        }

    def checkpoint(self, ck: Checkpoint, budget_before: int) -> list[str]:
        """A checkpoint: the effects since the last one are charged in its budget."""
        problems: list[str] = []
        if self._inputs is not None and ck.tick != self._inputs.last_tick:
            problems.append(
                f"tick inputs for ticks {self._inputs.first_tick}…{self._inputs.last_tick} are "
                f"followed by a checkpoint of tick {ck.tick}"
            )
        self._inputs = None
        charge = self._interval_charge + sum(i.charge for i in self._open.values())
        if charge and ck.budget > budget_before - charge:
            problems.append(
                f"budget {ck.budget} after effects that cost {charge}: at most "
                f"{budget_before - charge} expected"
            )
        self._close_open()
        self._interval_charge = 0
        return problems

    def _close_open(self) -> None:
        for intent in self._open.values():
            self.unknown.append(intent.key)
            self.charged += intent.charge
        self._open.clear()

    def finish(self) -> None:
        """The end of the path: intents still open have an unknown outcome."""
        self._close_open()


def check_effect_entry(
    entry: EffectRecord | TickInputs,
    epoch: int,
    last_tick: int,
    custodian: bytes,
    log: EffectLog,
) -> list[str]:
    """The rules for one effect or input record at the current walk position."""
    problems: list[str] = []
    what = "tick inputs" if isinstance(entry, TickInputs) else f"effect {entry.key.hex()}"
    if entry.owner != custodian:
        problems.append(f"{what}: signed by {entry.owner.hex()[:16]}, not the custodian")
    if entry.epoch != epoch:
        problems.append(f"{what}: epoch {entry.epoch}, current epoch {epoch}")
    if log._inputs is not None:
        problems.append(f"{what}: follows tick inputs before their checkpoint")
        log._inputs = None
    if isinstance(entry, TickInputs):
        log.inputs += 1
        if entry.first_tick <= last_tick:
            problems.append(f"{what}: ticks from {entry.first_tick}, last checkpoint {last_tick}")
        log._inputs = entry
        return problems
    if entry.phase is EffectPhase.INTENT:
        log.intents += 1
        if entry.key in log._keys:
            problems.append(f"{what}: key used twice")
        if entry.tick <= last_tick:
            problems.append(f"{what}: tick {entry.tick}, last checkpoint {last_tick}")
        log._keys.add(entry.key)
        log._open[entry.key] = entry
        return problems
    log.outcomes += 1
    intent = log._open.pop(entry.key, None)
    if intent is None:
        problems.append(f"{what}: outcome without an open intent")
        return problems
    if (intent.effect, intent.request, intent.epoch) != (entry.effect, entry.request, entry.epoch):
        problems.append(f"{what}: outcome does not match its intent")
    log.charged += entry.charge
    log._interval_charge += entry.charge
    if entry.effect is EffectKind.PAYMENT and entry.status == 0:
        log.payments += 1
        log.paid += entry.charge
    return problems
