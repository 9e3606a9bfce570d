"""Answer DCCP-Requests with a Reset, as a host with DCCP and the port closed does (RFC
4340 §8.1.3: Reset code 3, "No Connection"; acknowledging the Request's sequence
number), for traceroute -D tests on a kernel without DCCP (Linux 6.16 dropped it).

``python dccp_responder.py 4|6 SECONDS``: a raw IPPROTO_DCCP socket in the current
network namespace (which also keeps the kernel from answering "protocol unreachable");
prints ``listening``; stops after SECONDS or on SIGTERM.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import time

from packetlab.testbed.probe import inet_checksum as checksum

PROTO_DCCP = 33


def reset_for(request: bytes, src: bytes, dst: bytes) -> bytes | None:
    """The Reset answering `request` (its DCCP header) from `src` to `dst` (packed)."""
    if len(request) < 16 or (request[8] >> 1) & 0xF != 0 or not request[8] & 1:
        return None  # not a Request with a 48-bit sequence number
    sport, dport = struct.unpack_from("!HH", request)
    seq = int.from_bytes(request[10:16], "big")
    body = struct.pack("!HHBBHBB", dport, sport, 7, 0, 0, 7 << 1 | 1, 0)
    body += (1).to_bytes(6, "big")  # our sequence number
    body += b"\0\0" + seq.to_bytes(6, "big")  # acknowledging theirs
    body += bytes([3, 0, 0, 0])  # Reset code 3: No Connection
    length = len(body)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, PROTO_DCCP, length)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", length, PROTO_DCCP)
    csum = checksum(pseudo + body)
    return body[:6] + struct.pack("!H", csum) + body[8:]


def main() -> None:
    family = socket.AF_INET if sys.argv[1] == "4" else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_RAW, PROTO_DCCP)
    sock.settimeout(0.5)
    print("listening", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        try:
            data, (peer, *_) = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if family == socket.AF_INET:  # IPv4 raw sockets read the IP header too
            ihl = (data[0] & 0x0F) * 4
            src, dst, request = data[16:20], data[12:16], data[ihl:]
        else:
            src, dst = b"", ipaddress.IPv6Address(peer).packed
            # (the local address: the one the peer sent to; found by a connected probe)
            probe = socket.socket(family, socket.SOCK_DGRAM)
            probe.connect((peer, 9))
            src = ipaddress.IPv6Address(probe.getsockname()[0]).packed
            probe.close()
            request = data
        reply = reset_for(request, src, dst)
        if reply is not None:
            sock.sendto(reply, (peer, 0))


if __name__ == "__main__":
    main()
