"""The lineage of an agent: identities, signed checkpoints, custody records and their verifier.

Everything in this package is pure (no network, no trio, no clock); only `identity` touches the
file system, for key files.
"""
