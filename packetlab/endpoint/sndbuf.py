"""The send buffer of the endpoint's UDP and raw sockets (docs/sending.md, "A full send
buffer")."""

from __future__ import annotations

import socket

__all__ = ["send_while_writable"]


def send_while_writable(sock: socket.socket) -> None:
    """Let a send succeed only while `sock` polls writable, as a sender that waits for
    POLLOUT (iperf3's select) sends: the kernel takes a datagram while the socket's
    queued bytes (skb truesize, held until the device takes them) are under SO_SNDBUF,
    but POLLOUT says writable under half of it. Sending up to the full buffer put ~92
    full-size datagrams (136 kB) in a 20 Mbit/s tbf whose queue holds 129 kB (50 ms): the
    qdisc dropped 34 % of a `-b 30M` upload with no error (the kernel hides the qdisc's
    ENOBUFS from UDP and raw sockets without IP_RECVERR), where iperf3 lost none. Half
    the buffer makes the non-blocking send's EAGAIN come where a polling sender waits."""
    try:
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # the kernel's doubled
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size // 4)  # doubled again
    except OSError:
        pass
