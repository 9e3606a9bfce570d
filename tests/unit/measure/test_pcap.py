"""pcap export: the file format (nanosecond LINKTYPE_RAW, read back), synthetic TCP flows
(handshake, sequence numbers counting the stream, valid checksums, large chunks split,
sends timed by their ntag but kept in stream order), UDP datagrams, and the recorder
fed by real DNS and HTTP exchanges through the scripted endpoint."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig
from stream_fakes import StreamRig
from test_dns import SERVER, tcp_server, udp_server
from test_http import CHUNKED, Http

from packetlab.measure.dns import dns_query
from packetlab.measure.http import http_get
from packetlab.measure.packets import inet_checksum, pseudo_header
from packetlab.measure.pcap import LINKTYPE_RAW, PcapRecorder, read_pcap


def decode(pkt: bytes) -> dict[str, object]:
    """IPv4 + TCP/UDP fields, checking every checksum."""
    ihl = (pkt[0] & 0x0F) * 4
    assert struct.unpack("!H", pkt[2:4])[0] == len(pkt)
    assert inet_checksum(pkt[:ihl]) == 0
    proto, src, dst = pkt[9], pkt[12:16], pkt[16:20]
    seg = pkt[ihl:]
    import ipaddress

    ph = pseudo_header(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), proto, len(seg))
    assert inet_checksum(ph + seg) == 0
    if proto == 17:
        sport, dport = struct.unpack("!HH", seg[:4])
        return {"proto": "udp", "sport": sport, "dport": dport, "data": seg[8:]}
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", seg[:14])
    return {"proto": "tcp", "sport": sport, "dport": dport, "seq": seq, "ack": ack,
            "flags": flags, "data": seg[(off >> 4) * 4 :]}  # fmt: skip


def test_file_format_round_trip() -> None:
    rec = PcapRecorder()
    rec.udp(2_000_000_001, "10.0.0.1", 5000, "10.0.0.2", 53, b"q")
    rec.udp(1_000_000_000, "10.0.0.2", 53, "10.0.0.1", 5000, b"answer")
    out = io.BytesIO()
    assert rec.write(out) == 2
    data = out.getvalue()
    assert struct.unpack_from("<IHHiIII", data) == (0xA1B23C4D, 2, 4, 0, 0, 0xFFFF, LINKTYPE_RAW)
    back = read_pcap(data)
    assert [t for t, _ in back] == [1_000_000_000, 2_000_000_001]  # sorted by time
    assert decode(back[0][1])["data"] == b"answer" and decode(back[1][1])["dport"] == 53


def test_tcp_flow_sequence_numbers_and_split() -> None:
    rec = PcapRecorder()
    flow = rec.tcp("10.0.0.1", 40000, "10.0.0.2", 80)
    flow.connected(10, 20)
    idx = flow.sent(20, b"GET / HTTP/1.0\r\n\r\n")
    big = bytes(range(256)) * 400  # 102400 bytes: two segments
    flow.received(40, big)
    rec.retime(idx, 30)  # the ntag came after the reply was recorded
    flow.closed(50, by_peer=True)
    pkts = [decode(p) for _, p in read_pcap(_bytes(rec))]
    flags = [p["flags"] for p in pkts]
    assert flags[:3] == [0x02, 0x12, 0x10]  # SYN, SYN-ACK, ACK
    data_out = [p for p in pkts if p["sport"] == 40000 and p["data"]]
    data_in = [p for p in pkts if p["sport"] == 80 and p["data"]]
    assert b"".join(p["data"] for p in data_in) == big and len(data_in) == 2  # type: ignore[misc]
    assert data_in[1]["seq"] == data_in[0]["seq"] + len(data_in[0]["data"])  # type: ignore[operator,arg-type]
    # the reply acknowledges the request (stream order, whatever the ntag time)
    assert data_in[0]["ack"] == data_out[0]["seq"] + len(data_out[0]["data"])  # type: ignore[operator,arg-type]
    assert [t for t, _ in read_pcap(_bytes(rec))][3] == 30
    assert flags[-2:] == [0x11, 0x11]  # FINs


def _bytes(rec: PcapRecorder) -> bytes:
    out = io.BytesIO()
    rec.write(out)
    return out.getvalue()


def reassemble(rec: PcapRecorder, sport: int) -> bytes:
    segs = [decode(p) for _, p in read_pcap(_bytes(rec))]
    mine = sorted((s for s in segs if s["sport"] == sport and s["data"]), key=lambda s: s["seq"])  # type: ignore[arg-type,return-value]
    return b"".join(s["data"] for s in mine)  # type: ignore[misc]


def test_http_exchange_is_recorded() -> None:
    rig = StreamRig()
    peer = Http(CHUNKED, pieces=3, gap=0.01)
    rig.endpoint.peers[("192.0.2.80", 80)] = lambda: peer
    rec = PcapRecorder()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/x", recorder=rec))
    assert r.error is None
    assert reassemble(rec, 80) == CHUNKED
    sent = [decode(p) for _, p in read_pcap(_bytes(rec)) if decode(p)["dport"] == 80]
    assert b"".join(s["data"] for s in sent).startswith(b"GET /x HTTP/1.1")  # type: ignore[misc]
    times = [t for t, _ in read_pcap(_bytes(rec))]
    assert times == sorted(times) and len(times) >= 8  # handshake, request, 3 replies, FINs


def test_dns_over_udp_and_tcp_recorded() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server("a.example. 1 A 192.0.2.1")
    rec = PcapRecorder()
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53", recorder=rec))
    assert r.error is None
    q, a = [decode(p) for _, p in read_pcap(_bytes(rec))]
    assert (q["dport"], a["sport"], q["sport"] == a["dport"]) == (53, 53, True)
    assert 49152 <= q["sport"] < 65536  # type: ignore[operator]
    srig = StreamRig()
    srig.endpoint.tcp_servers[SERVER] = tcp_server("a.example. 1 A 192.0.2.1")
    srig.endpoint.peers.pop(SERVER, None)
    rec = PcapRecorder()
    r = srig.run(dns_query(srig.session, "a.example", server="192.0.2.53", tcp=True, recorder=rec))
    assert r.error is None
    import dns.message

    stream = reassemble(rec, 53)
    (n,) = struct.unpack("!H", stream[:2])
    reply = dns.message.from_wire(stream[2 : 2 + n])
    assert reply.answer[0].to_text() == "a.example. 1 IN A 192.0.2.1"
