"""Side effects that survive migration: http and payments gated to the owner, the effect log in
the lineage, tick-input recording and offline replay (docs/effects.md)."""
