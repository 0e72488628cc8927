"""Where a node keeps its files: one data directory per node."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from igor_p2p.lineage.identity import Keypair, load_or_create_key_file


@dataclass(frozen=True)
class DataDir:
    """The layout of a node's data directory."""

    root: Path

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def database(self) -> Path:
        return self.root / "igor.db"

    @property
    def history(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def agent_keys(self) -> Path:
        """Private keys of agents launched here (they sign only their genesis)."""
        return self.root / "agent-keys"

    def agent_key_path(self, did: str) -> Path:
        return self.agent_keys / f"{did.removeprefix('did:key:')}.key"

    def ensure(self) -> DataDir:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.agent_keys.mkdir(exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        return self

    def node_keypair(self) -> Keypair:
        """The node's persistent key (created on first use, mode 0600)."""
        self.ensure()
        return load_or_create_key_file(self.node_key)
