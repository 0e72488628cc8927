"""Migration and recovery: wire messages, pure source/target sessions, resolution, drivers."""
