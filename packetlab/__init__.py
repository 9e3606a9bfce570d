"""packetlab: a Twisted implementation of the PacketLab measurement endpoint interface."""

__version__ = "0.1.0.dev0"
