"""The PacketLab broker role (PROTOCOL.md §5): endpoints subscribe, controllers publish,
the broker matches them. Sans-IO state in `auth`, `registry`, `session`, `throttle`;
Twisted in `protocol`, `service`, `status`; `twistd pktbroker` in `tap`. See docs/broker.md.
"""
