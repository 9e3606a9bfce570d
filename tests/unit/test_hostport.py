"""`packetlab.hostport`: addresses in log lines as an operator reads them."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError

from packetlab.hostport import cannot_listen, host_port, join_host_port


def test_ipv6_in_brackets() -> None:
    assert host_port(IPv6Address("TCP", "::1", 20557)) == "[::1]:20557"
    assert host_port(IPv4Address("TCP", "127.0.0.1", 20557)) == "127.0.0.1:20557"
    assert join_host_port("fe80::1%veth0", 80) == "[fe80::1%veth0]:80"
    assert join_host_port("[::1]", 80) == "[::1]:80"  # not twice
    assert join_host_port("example.org", 80) == "example.org:80"


def test_cannot_listen_in_one_line() -> None:
    """Twisted's own text (and ours, `pktlab run --listen [::1]:PORT`, until session 32)
    said `::1:20556`."""
    e = CannotListenError("::1", 20556, OSError(98, "Address already in use"))
    assert cannot_listen(e) == "cannot listen on [::1]:20556: [Errno 98] Address already in use"
    assert cannot_listen(CannotListenError("", 5, OSError(13, "Permission denied"))) == (
        "cannot listen on *:5: [Errno 13] Permission denied"
    )
