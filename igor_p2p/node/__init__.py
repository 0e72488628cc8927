"""The node: root nursery, scheduler, placement, admin socket, event history."""
