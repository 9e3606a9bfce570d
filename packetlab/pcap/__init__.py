"""libpcap, shared by the roles: tcpdump expressions compiled to classic BPF and run.

The controller turns the classic program into PacketLab eBPF for ``ncap``
(`packetlab.controller.filters`); the endpoint runs an operator's capture filter on each
captured packet (`packetlab.endpoint.policy`). Both use `packetlab.pcap.libpcap`.
"""
