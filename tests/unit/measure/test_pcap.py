"""pcap export: the file format (nanosecond LINKTYPE_RAW, read back), synthetic TCP flows
(handshake, sequence numbers counting the stream, valid checksums, large chunks split,
sends timed by their ntag but kept in stream order), UDP datagrams, and the recorder
fed by real DNS and HTTP exchanges through the scripted endpoint."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig
from stream_fakes import StreamRig
from test_dns import SERVER, tcp_server, udp_server
from test_http import CHUNKED, Http

from packetlab.measure.dns import dns_query
from packetlab.measure.http import http_get
from packetlab.measure.packets import inet_checksum, pseudo_header
from packetlab.measure.pcap import LINKTYPE_RAW, PcapRecorder, pcap_records, read_pcap


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
    # snapshot length 262144, tcpdump -w's (was 65535: under an IPv6 UDP datagram's 65575)
    assert struct.unpack_from("<IHHiIII", data) == (0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_RAW)
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


# ----------------------------------------------------- the file as tcpdump reads it


def records(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(sec, frac, caplen, len, packet) of each record, every length checked against
    the header's snapshot length and the file's end."""
    snaplen = struct.unpack_from("<I", data, 16)[0]
    out, off = [], 24
    while off < len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, off)
        assert incl <= snaplen and incl <= orig  # libpcap cuts or refuses a record otherwise
        out.append((sec, frac, incl, orig, data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    assert off == len(data)  # no half record
    return out


def test_an_ipv6_udp_datagram_of_65527_bytes_is_within_the_snapshot_length() -> None:
    rec = PcapRecorder()
    rec.udp(1, "2001:db8::1", 5000, "2001:db8::2", 9, bytes(65527))
    ((_, _, incl, orig, pkt),) = records(_bytes(rec))
    assert incl == orig == len(pkt) == 40 + 8 + 65527  # 65575 > the 65535 written before


def _udp_sum(pkt: bytes) -> int:
    head = 40 if pkt[0] >> 4 == 6 else 20
    return int(struct.unpack_from("!H", pkt, head + 6)[0])


def test_a_datagram_kept_whole_by_a_snap_length_has_its_checksum() -> None:
    """`udp_truncated` of a datagram no longer than what it keeps (iperf3's 4-byte UDP
    connect datagrams): over IPv6 it had checksum 0, which IPv6 forbids (tcpdump -vv:
    `bad udp cksum 0x0000 -> 0xcb75!`)."""
    import ipaddress

    for src, dst in (("::1", "::2"), ("10.0.0.1", "10.0.0.2")):
        rec = PcapRecorder()
        rec.udp_truncated(1, src, 5000, dst, 5201, 4, b"9876")
        ((_, _, incl, orig, pkt),) = records(_bytes(rec))
        head = 40 if ":" in src else 20
        ph = pseudo_header(ipaddress.ip_address(src), ipaddress.ip_address(dst), 17, 12)
        assert incl == orig == head + 12
        assert _udp_sum(pkt) != 0 and inet_checksum(ph + pkt[head:]) == 0


def test_a_datagram_cut_short_over_ipv6_has_a_checksum_other_than_0() -> None:
    rec = PcapRecorder()
    rec.udp_truncated(1, "::1", 5000, "::2", 5201, 1000, bytes(range(64)))
    rec.udp_truncated(2, "10.0.0.1", 5000, "10.0.0.2", 5201, 1000, bytes(range(64)))
    (_, _, incl6, orig6, pkt6), (_, _, incl4, orig4, pkt4) = records(_bytes(rec))
    assert (incl6, orig6, incl4, orig4) == (40 + 8 + 64, 40 + 8 + 1000, 20 + 8 + 64, 20 + 8 + 1000)
    assert struct.unpack_from("!H", pkt6, 44)[0] == 8 + 1000  # the header says the whole
    assert _udp_sum(pkt6) != 0 and _udp_sum(pkt4) == 0  # IPv4: none, as the docs say


def test_an_endpoint_time_outside_the_format_is_clamped_not_a_crash() -> None:
    """A hostile or broken endpoint clock (u64 ns) past 2106: struct.error in save(),
    every packet of the run lost."""
    rec = PcapRecorder()
    rec.udp(2**64 - 1, "10.0.0.1", 5000, "10.0.0.2", 53, b"q")
    rec.udp(1_500_000_000_123_456_789, "10.0.0.1", 5000, "10.0.0.2", 53, b"r")
    (a, b) = records(_bytes(rec))
    assert (a[0], a[1]) == (1_500_000_000, 123_456_789)
    assert (b[0], b[1]) == (0xFFFF_FFFF, 999_999_999)


def test_save_replaces_the_file_whole_or_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while writing (a second Ctrl-C is os._exit), the file was half a record;
    now the file `pcapout` made stays whole and no temporary file is left."""
    from packetlab.measure import pcap

    path = tmp_path / "x.pcap"
    path.write_bytes(pcap.pcap_header())
    path.chmod(0o640)
    rec = PcapRecorder()
    for i in range(100):
        rec.udp(i, "10.0.0.1", 5000, "10.0.0.2", 53, bytes(1000))
    real = pcap._RECORD

    class Failing:  # the 50th record's write is interrupted
        calls = 0

        def pack(self, *a: int) -> bytes:
            self.calls += 1
            if self.calls == 50:
                raise KeyboardInterrupt
            return real.pack(*a)

    monkeypatch.setattr(pcap, "_RECORD", Failing())
    with pytest.raises(KeyboardInterrupt):
        rec.save(path)
    assert path.read_bytes() == pcap.pcap_header()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pcap"]
    monkeypatch.undo()
    assert rec.save(path) == 100
    assert len(records(path.read_bytes())) == 100
    assert path.stat().st_mode & 0o777 == 0o640  # the file's mode kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pcap"]


def test_save_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "real.pcap"
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    rec = PcapRecorder()
    rec.udp(1, "10.0.0.1", 5000, "10.0.0.2", 53, b"q")
    assert rec.save(link) == 1
    assert link.is_symlink() and len(records(target.read_bytes())) == 1


# ---------------------------------------------------------------- pcap_records


def _classic(order: str, magic: int, recs: list[tuple[int, int, bytes]], link: int = 1) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, link)
    for sec, frac, pkt in recs:
        out += struct.pack(order + "IIII", sec, frac, len(pkt), len(pkt)) + pkt
    return out


def test_pcap_records_reads_either_byte_order_and_both_precisions() -> None:
    for order in "<>":
        for magic, scale in ((0xA1B2C3D4, 1000), (0xA1B23C4D, 1)):
            data = _classic(order, magic, [(5, 7, b"abc"), (6, 8, b"de")])
            link, recs = pcap_records(data)
            assert link == 1
            assert list(recs) == [
                (5_000_000_000 + 7 * scale, b"abc"),
                (6_000_000_000 + 8 * scale, b"de"),
            ]


def test_pcap_records_leaves_out_a_last_record_cut_short() -> None:
    """A capture killed while writing: the half record was given as a short packet."""
    data = _classic("<", 0xA1B2C3D4, [(5, 7, b"abc"), (6, 8, bytes(100))])[:-10]
    _, recs = pcap_records(data)
    assert list(recs) == [(5_000_007_000, b"abc")]


def test_pcap_records_names_a_pcapng_file() -> None:
    with pytest.raises(ValueError, match=r"a pcapng file, not a classic pcap .*editcap -F pcap"):
        pcap_records(bytes.fromhex("0a0d0d0a") + bytes(40))
    with pytest.raises(ValueError, match=r"not a classic pcap \(magic 00010203\)"):
        pcap_records(bytes(range(40)))


# ------------------------------------------------------------- examples/dns.pcap

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def trace_as_pcap(frames_hex: Path, lport: int) -> bytes:
    """The UDP exchange of a reference session as `PcapRecorder` writes it: each nsend at
    its ntag's time, each ndata at its own (the local port, which nopen leaves to the
    kernel, is `lport`; the local address the peer's, as on loopback)."""
    import ipaddress

    from packetlab import wire
    from packetlab.wire.framer import Framer

    text = "".join(line.split("#", 1)[0] for line in frames_hex.read_text().splitlines())
    msgs = list(Framer().feed(bytes.fromhex("".join(text.split()))))
    rec = PcapRecorder()
    sends = {m.tag: m for m in msgs if isinstance(m, wire.Nsend)}
    for m in msgs:
        if isinstance(m, wire.Ntag):
            s = sends[m.tag]
            peer = str(ipaddress.ip_address(bytes(s.raddr or b"")))
            rec.udp(m.time, peer, lport, peer, s.rport or 0, s.data)
        elif isinstance(m, wire.Ndata):
            peer = str(ipaddress.ip_address(bytes(m.raddr or b"")))
            rec.udp(m.time, peer, m.rport or 0, peer, lport, m.data)
    return _bytes(rec)


def test_the_example_pcap_is_the_reference_dns_session() -> None:
    """examples/dns.pcap (docs/wire.md's tcpdump example, run by test_docs_shell.py) is
    what the recorder writes for examples/dns.frames.hex. When the format changes on
    purpose, write it again: `PYTHONPATH=tests:tests/unit:tests/unit/controller:
    tests/unit/measure .venv/bin/python -c "import test_pcap as t; open('examples/dns.pcap',
    'wb').write(t.trace_as_pcap(t.EXAMPLES / 'dns.frames.hex', 48630))"`."""
    data = trace_as_pcap(EXAMPLES / "dns.frames.hex", lport=48630)
    assert (EXAMPLES / "dns.pcap").read_bytes() == data
    assert [len(r[4]) for r in records(data)] == [20 + 8 + 33, 20 + 8 + 49]


def test_a_flow_closed_after_the_peer_shows_its_fin_first_and_what_it_sent() -> None:
    """A connection the peer closed (its last data and PEERCLOSED queued, unread) when we
    close it: the pcap had our FIN first and not the peer's last data (a capture shows
    both, the peer's FIN first)."""
    from stream_fakes import Peer
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater

    from packetlab.measure.stream import TcpStream

    class Talker(Peer):
        def received(self, data: bytes) -> None:
            self.write(b"bye", 0.01)
            self.close(0.02)

    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 80)] = Talker
    rec = PcapRecorder()

    async def talk() -> None:
        s = await TcpStream.connect(rig.session, "192.0.2.80", 80, recorder=rec)
        s.send(b"hi")
        await deferLater(rig.clock, 0.1, lambda: None)  # "bye" and PEERCLOSED queued, unread
        await s.close()

    rig.run(Deferred.fromCoroutine(talk()))
    pkts = [decode(p) for _, p in read_pcap(_bytes(rec))]
    assert [(p["sport"] == 80, p["flags"], p["data"]) for p in pkts[-3:]] == [
        (True, 0x18, b"bye"),
        (True, 0x11, b""),  # theirs first
        (False, 0x11, b""),
    ]


@pytest.mark.parametrize(
    ("src", "dst", "whole"), [("127.0.0.1", "127.0.0.2", 84), ("::1", "::2", 104)]
)
def test_a_packet_captured_cut_short_keeps_its_length_from_its_ip_header(
    src: str, dst: str, whole: int
) -> None:
    """A captured packet cut by the endpoint's CaptureSnaplen (alias --pcap records them as
    captured) was written with the cut length as its length: `tcpdump -r -v` said
    `IP truncated-ip - 20 bytes missing!` and tshark showed a 64-byte frame. Now its
    length is its IP header's (84: `length 84`, no warning), as `tcpdump -s 64` writes."""
    from packetlab.measure.packets import ip_packet

    echo = struct.pack("!BBHHH", 0, 0, 0, 1, 1) + bytes(56)
    pkt = ip_packet(src, dst, 1 if ":" not in src else 58, echo)
    assert len(pkt) == whole
    rec = PcapRecorder()
    rec.add(10**9, pkt[:64])
    rec.add(2 * 10**9, pkt)  # whole: as before
    rec.add(3 * 10**9, pkt + bytes(6))  # trailing padding: the bytes there, as before
    rec.add(4 * 10**9, b"\x00garbage")  # not IP: as before
    out = io.BytesIO()
    rec.write(out)
    data, off, lengths = out.getvalue(), 24, []
    while off < len(data):
        _, _, incl, orig = struct.unpack_from("<IIII", data, off)
        lengths.append((incl, orig))
        off += 16 + incl
    assert lengths == [(64, whole), (whole, whole), (whole + 6, whole + 6), (8, 8)]
