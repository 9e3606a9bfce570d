"""The PacketLab proxy role (not implemented yet)."""
