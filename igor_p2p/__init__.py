"""Igor-P2P: portable WebAssembly agents that wander between libp2p peers without forking."""
