"""The operator's ``CaptureFilter`` (`packetlab.endpoint.policy`): in a module of its own so
that libpcap and ctypes.util are loaded only by an endpoint whose config sets one (idle
RSS, docs/performance.md, Memory)."""

from __future__ import annotations

from packetlab.endpoint.config import ConfigError
from packetlab.pcap.libpcap import LibpcapUnavailable, OfflineFilter, PcapSyntaxError

__all__ = ["CaptureFilter"]


class CaptureFilter(OfflineFilter):
    """A tcpdump expression compiled once, run on each captured IP packet."""

    def __init__(self, expression: str) -> None:
        try:
            super().__init__(expression)
        except (PcapSyntaxError, LibpcapUnavailable) as e:
            why = e.pcap_message if isinstance(e, PcapSyntaxError) else str(e)
            raise ConfigError(f"bad capture filter {expression!r}: {why}") from None
