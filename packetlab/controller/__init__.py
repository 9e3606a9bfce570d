"""The controller API: Twisted clients that drive PacketLab endpoints."""
