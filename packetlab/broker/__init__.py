"""The PacketLab broker role (not implemented yet)."""
