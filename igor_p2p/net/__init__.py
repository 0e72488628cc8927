"""py-libp2p host set-up and every workaround for it, framing, DHT records, gossip topics."""
