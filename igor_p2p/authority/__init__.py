"""Per-agent authority: the states a node can hold an agent in, and the pure machine."""
