"""The PacketLab endpoint role."""
