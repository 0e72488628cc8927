"""The agent runtime: launch, tick, meter, checkpoint and resume one agent on one node."""
