"""The PacketLab proxy role: `twistd pktproxy`, SNI routing to backlogs (docs/proxy.md)."""
