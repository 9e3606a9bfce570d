"""iperf3's output options through the scripted endpoint and iperf3 server: the -J
document (measure/throughput_json.py) against native iperf3 3.12's key paths, order and
`sender` flags (iperf3_native_json, captured), the parameters --extra-data,
--get-server-output and --repeating-payload add (native's order), the server's report
and figures in the record, -B's check and local address, and iperf3's -f units byte for
byte against lines a native `iperf3 -s -f X` printed for figures its client's -J gave."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from iperf3_native_json import NATIVE
from test_throughput_timed import RATE, SERVER, rig_with_server

from packetlab.measure import iperf3
from packetlab.measure.throughput_json import document
from packetlab.measure.throughput_timed import TimedSpec, timed_test
from packetlab.wire import Nopen, Nsend, vmem

SPECS: dict[str, dict[str, Any]] = {
    "tcp_download": {"direction": "download"},
    "tcp_upload_p2": {"direction": "upload", "streams": 2},
    "udp_upload": {"direction": "upload", "udp": True, "bitrate": 5e6, "length": 1000},
    "udp_download": {"direction": "download", "udp": True, "bitrate": 5e6, "length": 1000},
    "tcp_bidir": {"bidir": True, "bitrate": 8e6, "length": 10_000},
    "udp_bidir": {"bidir": True, "udp": True, "bitrate": 5e6, "length": 1000},
}
SERVER_SAYS = {"server_output_text": "Accepted connection from 192.0.2.1\n",
               "cpu_util_total": 12.5, "cpu_util_user": 2.5, "cpu_util_system": 10.0,
               "congestion_used": "cubic"}  # fmt: skip


def add_to_results(server: Any, extra: dict[str, Any]) -> None:
    """The scripted server's results JSON with `extra` (what a real one sends besides)."""
    write = server.ctl.write

    def patched(data: bytes) -> None:
        if data[4:5] == b"{" and b'"streams"' in data:
            data = iperf3.encode_json({**json.loads(data[4:]), **extra})
        write(data)

    server.ctl.write = patched


Ran = tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]], Any, Any]


def run_test(spec: TimedSpec, extra: dict[str, Any] | None = None, memory: bytes = b"") -> Ran:
    """(the record, the connected record, the intervals, the server, the rig)."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    bytes_in: dict[int, bytearray] = {}  # each data stream's bytes as they came (cookie first)
    handle = server._data

    def data(i: int, chunk: bytes) -> None:
        bytes_in.setdefault(i, bytearray()).extend(chunk)  # (bytes + bytes: quadratic)
        handle(i, chunk)

    server._data = data  # type: ignore[method-assign,assignment]
    server.bytes_in = bytes_in  # type: ignore[attr-defined]
    if memory:
        rig.endpoint.memory[: len(memory)] = memory
    add_to_results(server, SERVER_SAYS if extra is None else extra)
    intervals: list[dict[str, Any]] = []
    connected: list[dict[str, Any]] = []
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=intervals.append,
                           on_connected=connected.append))  # fmt: skip
    return r.to_dict(), connected[0] if connected else None, intervals, server, rig


def paths(obj: Any, at: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out |= {f"{at}/{k}"} | paths(v, f"{at}/{k}")
    elif isinstance(obj, list):
        for x in obj:
            out |= paths(x, at + "[]")
    return out


def flags(doc: dict[str, Any]) -> dict[str, bool]:
    out = {f"intervals.streams[{i}]": s["sender"]
           for i, s in enumerate(doc["intervals"][0]["streams"])}  # fmt: skip
    out.update({f"intervals.{k}": v["sender"] for k, v in doc["intervals"][0].items()
                if isinstance(v, dict)})  # fmt: skip
    for i, s in enumerate(doc["end"]["streams"]):
        out.update({f"end.streams[{i}].{side}": v["sender"] for side, v in s.items()})
    out.update({f"end.{k}": v["sender"] for k, v in doc["end"].items() if k.startswith("sum")})
    return out


@pytest.mark.parametrize("case", sorted(SPECS))
def test_document_has_native_keys_nesting_and_flags(case: str) -> None:
    native = NATIVE[case]
    spec = TimedSpec(seconds=0.3, interval=0.1, server_output=True, extra_data="x",
                     **SPECS[case])  # fmt: skip
    r, connected, intervals, _server, _rig = run_test(spec)
    assert "error" not in r, r
    doc = document(connected, intervals, r, 1796460585.0, "packetlab", title="t")
    # the same documents as native's -J, -T t, --extra-data x, --get-server-output
    assert paths(doc) == set(native["paths"])
    assert list(doc) == native["top"] and list(doc["end"]) == native["end"]
    assert flags(doc) == native["flags"]
    assert [c["socket"] for c in doc["start"]["connected"]] == native["sockets"]
    ours, theirs = doc["start"]["test_start"], dict(native["test_start"])
    assert ours["target_bitrate"] == int(spec.rate or 0)
    for key in ("blksize", "target_bitrate"):  # ours: -l 1000/10000 and -b 8M above
        theirs[key] = ours[key]
    assert ours == theirs
    # the values are ours and the server's
    assert doc["title"] == "t" and doc["extra_data"] == "x"
    assert doc["server_output_text"] == SERVER_SAYS["server_output_text"]
    assert doc["end"]["cpu_utilization_percent"]["remote_total"] == 12.5
    assert doc["start"]["cookie"] == connected["cookie"] and len(connected["cookie"]) == 36  # type: ignore[index]
    assert doc["start"]["timestamp"] == {"time": "Sat, 05 Dec 2026 08:49:45 GMT",
                                         "timesecs": 1796460585}  # fmt: skip
    total = sum(i["sum"]["bytes"] for i in doc["intervals"])
    if case.startswith("tcp") and "bidir" not in case:
        assert total == doc["end"]["sum_sent" if r["direction"] == "upload" else "sum_received"][
            "bytes"]  # fmt: skip
        assert total > 0


def test_congestion_control_is_the_servers_where_it_is_its_side() -> None:
    up = run_test(TimedSpec(seconds=0.2, interval=0.1, direction="upload"))[0]
    down = run_test(TimedSpec(seconds=0.2, interval=0.1, direction="download"))[0]
    up_end = document(None, [], up, 0.0, "v")["end"]
    down_end = document(None, [], down, 0.0, "v")["end"]
    assert (up_end["sender_tcp_congestion"], up_end["receiver_tcp_congestion"]) == (
        "unknown", "cubic")  # fmt: skip
    assert (down_end["sender_tcp_congestion"], down_end["receiver_tcp_congestion"]) == (
        "cubic", "unknown")  # fmt: skip


def test_a_failed_test_is_a_document_with_its_error() -> None:
    r = {"type": "throughput", "direction": "download", "server": "192.0.2.5", "port": 5201,
         "protocol": "tcp", "parallel": 1, "time": 1.0, "error": "connection refused"}  # fmt: skip
    doc = document(None, [], r, 0.0, "v")
    assert list(doc) == ["start", "intervals", "end", "error"]
    assert doc["end"] == {} and doc["intervals"] == [] and doc["error"] == "connection refused"


def test_parameters_in_native_order() -> None:
    """`iperf3 -c -t 1 --extra-data xx --get-server-output --repeating-payload -d`'s
    send_parameters, key for key."""
    p = iperf3.timed_parameters(udp=False, seconds=1, nbytes=None, streams=1, reverse=False,
                                length=131072, bitrate=None, extra_data="xx",
                                get_server_output=True, repeating_payload=True)  # fmt: skip
    assert list(p.items()) == [
        ("tcp", True), ("omit", 0), ("time", 1), ("num", 0), ("blockcount", 0),
        ("parallel", 1), ("len", 131072), ("pacing_timer", 1000), ("extra_data", "xx"),
        ("get_server_output", 1), ("repeating_payload", 1), ("client_version", "3.12"),
    ]  # fmt: skip
    plain = iperf3.timed_parameters(udp=False, seconds=1, nbytes=None, streams=1,
                                    reverse=False, length=131072, bitrate=None)  # fmt: skip
    assert not {"extra_data", "get_server_output", "repeating_payload"} & set(plain)


def test_server_output_only_when_asked() -> None:
    """An iperf3 3.12 server goes on sending its text to later clients once one asked
    (seen on loopback): it is shown only with --get-server-output, as native's."""
    asked, _c, _i, server, _r = run_test(TimedSpec(seconds=0.2, server_output=True))
    assert server.params["get_server_output"] == 1
    assert asked["server_output_text"] == SERVER_SAYS["server_output_text"]
    plain, _c, _i, server, _r = run_test(TimedSpec(seconds=0.2))
    assert "get_server_output" not in server.params and "server_output_text" not in plain
    assert plain["server_info"]["congestion_used"] == "cubic"
    doc = {"server_output_json": {"start": {}}, "congestion_used": "bad\nname",
           "cpu_util_total": float("inf")}  # fmt: skip
    json_out = run_test(TimedSpec(seconds=0.2, server_output=True), extra=doc)[0]
    assert json_out["server_output_json"] == {"start": {}}
    assert "server_info" not in json_out  # neither figure is one


def test_hostile_server_extras_are_dropped() -> None:
    assert iperf3.remote({"cpu_util_total": "x", "congestion_used": "c" * 99}) == {}
    assert iperf3.remote({"cpu_util_total": -5, "cpu_util_user": True}) == {
        "cpu_util_total": 0.0}  # fmt: skip
    assert iperf3.server_output({"server_output_text": 5, "server_output_json": []}) is None


def test_repeating_payload_blocks() -> None:
    assert iperf3.repeating_pattern(23) == b"01234567890123456789012"
    _r, _c, _i, server, _rig = run_test(TimedSpec(blocks=4, direction="upload",
                                                  repeating_payload=True, length=1000))  # fmt: skip
    assert server.params["repeating_payload"] == 1
    data = server.bytes_in[0][iperf3.COOKIE_SIZE :]
    assert len(data) >= 1000 and data[:1000] == iperf3.repeating_pattern(1000)
    plain = run_test(TimedSpec(blocks=4, direction="upload", length=1000))[3]
    block = plain.bytes_in[0][iperf3.COOKIE_SIZE :][:1000]  # random, as native (session 24)
    assert len(block) == 1000 and block.count(0) < 100 and block != iperf3.repeating_pattern(1000)


def _memory(*addrs: str) -> bytes:
    img = bytearray(vmem.IP4LS.addr - vmem.SYS_BASE + vmem.IP4LS_ENTRY * len(addrs))
    img[vmem.IP4NO.addr - vmem.SYS_BASE] = len(addrs)
    for i, a in enumerate(addrs):
        at = vmem.IP4LS.addr - vmem.SYS_BASE + i * vmem.IP4LS_ENTRY
        img[at : at + 8] = ipaddress.ip_address(a).packed + bytes([255, 255, 255, 0])
    return bytes(img)


def test_bind_to_an_address_of_the_endpoint() -> None:
    mem = _memory("192.0.2.1", "198.51.100.7")
    r, _c, _i, _s, rig = run_test(TimedSpec(seconds=0.2, bind="198.51.100.7"),
                                         memory=mem)  # fmt: skip
    assert "error" not in r, r
    opens = [m for m in rig.endpoint.received if isinstance(m, Nopen)]
    assert len(opens) == 2  # the control connection and the data stream, both from -B's
    assert all(ipaddress.ip_address(m.laddr) == ipaddress.ip_address("198.51.100.7")
               for m in opens)  # fmt: skip
    bad, _c, _i, _s, rig = run_test(TimedSpec(seconds=0.2, bind="10.9.9.9"), memory=mem)
    assert bad["error"] == (
        "-B 10.9.9.9: not an address of the endpoint (its addresses: 192.0.2.1, "
        "198.51.100.7); iperf3 would fail to bind it (Cannot assign requested address)"
    )
    assert not [m for m in rig.endpoint.received if isinstance(m, Nopen)]  # nothing opened
    six = run_test(TimedSpec(seconds=0.2, bind="2001:db8::1"), memory=mem)[0]
    assert six["error"].startswith("-B 2001:db8::1: not an address of the endpoint")


def test_connect_timeout_bounds() -> None:
    with pytest.raises(ValueError, match=r"--connect-timeout must be 1\.\.3600000 ms, got 0"):
        TimedSpec(connect_timeout=0.0).check()


# (-f letter, bytes, seconds the client's -J gave for the server's receiver figure, the
# receiver line `iperf3 -s -1 -f X` printed for it), iperf3 3.12 on loopback
NATIVE_FORMAT_LINES = [
    ("m", 1225523200, 1.002027, "[  5]   0.00-1.00   sec  1.14 GBytes  9784 Mbits/sec"),
    ("K", 1290797056, 1.001412, "[  5]   0.00-1.00   sec  1.20 GBytes  1258767 KBytes/sec"),
    ("g", 1319895040, 1.010861, "[  5]   0.00-1.01   sec  1.23 GBytes  10.4 Gbits/sec"),
    ("k", 1402732544, 1.000721, "[  5]   0.00-1.00   sec  1.31 GBytes  11213775 Kbits/sec"),
    ("M", 1153957888, 1.007256, "[  5]   0.00-1.01   sec  1.07 GBytes  1093 MBytes/sec"),
    ("t", 1360527360, 1.007006, "[  5]   0.00-1.01   sec  1.27 GBytes  0.01 Tbits/sec"),
]


@pytest.mark.parametrize(("fmt", "nbytes", "seconds", "line"), NATIVE_FORMAT_LINES)
def test_format_units_byte_for_byte(fmt: str, nbytes: int, seconds: float, line: str) -> None:
    tail = iperf3.NO_RETR + "receiver"
    ours = iperf3.report_line(5, 0.0, seconds, nbytes, seconds, tail, fmt)
    assert ours == line + tail


def test_unit_snprintf_adaptive_matches_the_default_columns() -> None:
    for value in (0, 999, 1000, 9_994_999, 12_345_678_901, 3e13):
        assert iperf3.unit_snprintf(value / 8, "a") == iperf3.unit(value, "bits")
        assert iperf3.unit_snprintf(value, "A") == iperf3.unit(value, "bytes")


def test_authtoken_as_iperf3_builds_it() -> None:
    """--username: `user: U\\npwd:  P\\nts:   T` under the server's RSA key with PKCS #1
    v1.5 padding, base64 on one line: a token native iperf3 3.12 sent decrypted only so
    (OAEP failed), the same text."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, spki)
    token = iperf3.authtoken("alice", "s3cret", pem, 1796461894)
    assert "\n" not in token
    plain = key.decrypt(base64.b64decode(token), padding.PKCS1v15())
    assert plain == b"user: alice\npwd:  s3cret\nts:   1796461894"
    with pytest.raises(ValueError):
        iperf3.authtoken(
            "a", "b", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 0
        )
    _r, _c, _i, server, _rig = run_test(TimedSpec(seconds=0.2, authtoken=token))
    assert server.params["authtoken"] == token
    params = list(server.params)  # -R: "reverse" after them
    assert params.index("authtoken") + 1 == params.index("client_version")


def test_file_sent_in_blocks_the_last_short_and_the_test_ends_at_its_end(tmp_path: Any) -> None:
    """-F (iperf3 3.12's diskfile_send): the file's bytes in -l blocks, the last one short,
    nothing more; the test ends at the file's end, not at -t."""
    f = tmp_path / "f.bin"
    content = bytes(range(256)) * 10  # 2560 bytes: 1000, 1000, 560
    f.write_bytes(content)
    r, _c, _i, server, rig = run_test(TimedSpec(seconds=5, direction="upload", length=1000,
                                                file=str(f)))  # fmt: skip
    assert "error" not in r, r
    assert server.bytes_in[0][iperf3.COOKIE_SIZE :] == content
    assert r["sum"]["sender"]["bytes"] == 2560 and r["seconds"] < 1  # not the 5 s of -t
    data = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid != 0]
    assert [len(m.data) for m in data][1:] == [1000, 1000, 560]  # after the cookie


def test_file_written_with_what_came(tmp_path: Any) -> None:
    f = tmp_path / "out.bin"
    f.write_bytes(b"old")
    r, _c, _i, _server, _rig = run_test(TimedSpec(seconds=0.2, direction="download",
                                                  file=str(f)))  # fmt: skip
    assert "error" not in r, r
    got = f.read_bytes()
    assert len(got) == r["sum"]["receiver"]["bytes"] > 0 and set(got) == {ord("x")}
    missing = run_test(TimedSpec(seconds=0.2, direction="upload", file=str(tmp_path / "no")))[0]
    assert missing["error"] == f"-F {tmp_path / 'no'}: No such file or directory"
    with pytest.raises(ValueError, match="-F with --bidir is not built: iperf3 3"):
        TimedSpec(bidir=True, file=str(f)).check()


def test_file_alone_is_n_of_its_size(tmp_path: Any) -> None:
    """-F f.bin with no -t/-n/-k: iperf3 3.12 tells the server `num` of the file's size and
    no time (its -J test_start: bytes 1000000, duration 0); with -t, the time."""
    f = tmp_path / "f.bin"
    f.write_bytes(bytes(2560))
    _r, _c, _i, server, _rig = run_test(TimedSpec(direction="upload", length=1000,
                                                  file=str(f)))  # fmt: skip
    assert server.params["num"] == 2560 and server.params["time"] == 0
    spec = TimedSpec(direction="upload", seconds=2, file=str(f))
    spec.check()
    assert spec.nbytes is None and spec.seconds == 2


def test_file_with_parallel_streams_each_from_its_start(tmp_path: Any) -> None:
    """-F f.bin -P 2 (iperf3 3.12: each stream opens the file; -n of its size): blocks of
    -l from the file's start on each stream, whole, until the streams together sent the
    file's size (native, a 1,000,000-byte file, -l 100K: 5 blocks of 102400 on each,
    1,024,000 in all). Was: refused, `-F with -P or --bidir is not built here`."""
    f = tmp_path / "f.bin"
    content = bytes(range(256)) * 10  # 2560 bytes
    f.write_bytes(content)
    r, _c, _i, server, _rig = run_test(TimedSpec(direction="upload", length=500, streams=2,
                                                 file=str(f)))  # fmt: skip
    assert "error" not in r, r
    cookie = iperf3.COOKIE_SIZE
    got = [bytes(server.bytes_in[i][cookie:]) for i in range(2)]
    assert got == [content[:1500]] * 2  # 6 blocks of 500 in turn: 3000 >= 2560
    assert r["sum"]["sender"]["bytes"] == 3000 and server.params["num"] == 2560


def test_file_written_by_parallel_streams_from_its_start(tmp_path: Any) -> None:
    """-R -F out.bin -P 2: each stream writes what it read from the file's start, over the
    other's (iperf3 3.12, measured: 2,228,224 and 917,504 bytes read, a file of 2,228,224)."""
    f = tmp_path / "out.bin"
    r, _c, _i, _server, _rig = run_test(TimedSpec(seconds=0.2, direction="download",
                                                  streams=2, file=str(f)))  # fmt: skip
    assert "error" not in r, r
    each = [st["receiver"]["bytes"] for st in r["streams"]]
    assert min(each) > 0 and len(f.read_bytes()) == max(each) < sum(each)
