"""The iperf3 control protocol (client side), sans-IO: what a stock `iperf3 -s` (3.x)
expects, so the throughput measurement can use the many existing servers.

A test: the client connects the control channel and sends a 37-byte cookie; the server
drives it with one signed state byte at a time. PARAM_EXCHANGE: the client sends its
parameters (u32 length + JSON). CREATE_STREAMS: the client connects each data stream and
sends the same cookie on it. TEST_START, TEST_RUNNING: the sender sends (the server with
`reverse`). The client sends TEST_END when done; EXCHANGE_RESULTS: the client sends its
results (u32 + JSON) and reads the server's; DISPLAY_RESULTS: the client sends IPERF_DONE.
Checked against iperf3 3.12 (Debian bookworm).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packetlab.measure.throughput_cnum import UnitNumber

__all__ = [
    "BUSY",
    "COOKIE_SIZE",
    "DEFAULT_PORT",
    "INTERRUPTED",
    "TERMINATED",
    "Intervals",
    "Iperf3Error",
    "ServerSockopts",
    "State",
    "UdpReceiver",
    "client_results",
    "cookie",
    "decode_json",
    "encode_json",
    "parameters",
    "stream_result",
]

DEFAULT_PORT = 5201
COOKIE_SIZE = 37  # 36 characters and a NUL
BLOCK = 128 * 1024  # iperf3's default TCP block ("len")
MAX_JSON = 1 << 20
_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # the alphabet of iperf3's make_cookie


# iperf3 3.12's client's words for a failed test (iperf_strerror; its `iperf3: error - `
# line and -J's `error`): a busy server, one stopped mid-test, Ctrl-C (IECLIENTTERM)
BUSY = "the server is busy running a test. try again later"
TERMINATED = "the server has terminated"
INTERRUPTED = "interrupt - the client has terminated"


class Iperf3Error(Exception):
    """The server refused, failed, or said something this client does not understand.
    `native`: what iperf3 3.12's client says of the same (its `error - ...` words), when
    it has words of its own for it."""

    def __init__(self, message: str, native: str | None = None) -> None:
        super().__init__(message)
        self.native = native


class State(IntEnum):
    TEST_START = 1
    TEST_RUNNING = 2
    TEST_END = 4
    PARAM_EXCHANGE = 9
    CREATE_STREAMS = 10
    SERVER_TERMINATE = 11
    CLIENT_TERMINATE = 12
    EXCHANGE_RESULTS = 13
    DISPLAY_RESULTS = 14
    IPERF_START = 15
    IPERF_DONE = 16
    ACCESS_DENIED = -1
    SERVER_ERROR = -2


def cookie() -> bytes:
    import secrets  # (hmac, hashlib: `pktlab run --help` needs neither)

    return ("".join(secrets.choice(_B32) for _ in range(COOKIE_SIZE - 1)) + "\0").encode()


def state_byte(state: State) -> bytes:
    return struct.pack("b", state)


def parse_state(b: bytes) -> State:
    (v,) = struct.unpack("b", b[:1])
    try:
        return State(v)
    except ValueError:
        raise Iperf3Error(f"unknown iperf3 state {v}") from None


def encode_json(obj: dict[str, Any]) -> bytes:
    """A control connection JSON message, as iperf3 3.12 sends it: u32 length, then the
    object in cJSON's unformatted text, UTF-8 (an argument's undecodable bytes, which
    Python holds as surrogates, sent back as the bytes they were, as native does)."""
    from packetlab.measure.throughput_cjson import unformatted

    data = unformatted(obj).encode("utf-8", "surrogateescape")
    return struct.pack(">I", len(data)) + data


def json_length(head: bytes) -> int:
    (n,) = struct.unpack(">I", head)
    if not 0 < n <= MAX_JSON:
        raise Iperf3Error(f"iperf3 JSON of {n} bytes announced (at most {MAX_JSON})")
    return n


def decode_json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise Iperf3Error(f"bad iperf3 JSON: {e}") from None
    except RecursionError:  # "[[[[...": within MAX_JSON, deeper than the parser goes
        raise Iperf3Error("bad iperf3 JSON: nested too deep") from None
    if not isinstance(obj, dict):
        raise Iperf3Error("iperf3 JSON is not an object")
    if _deeper_than(obj, MAX_NESTING):
        raise Iperf3Error(f"bad iperf3 JSON: nested deeper than {MAX_NESTING}")
    return obj


# A real server's messages nest 5 deep (its --get-server-output report); a hostile one
# nested ~500 deep decoded, and printing it (cJSON's layout, two Python frames a level)
# ran out of stack: a traceback (session 27, the fuzz target `iperf3`).
MAX_NESTING = 64


def _deeper_than(obj: object, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        for c in children:
            if isinstance(c, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((c, depth + 1))
    return False


def parameters(nbytes: int, *, reverse: bool, block: int = BLOCK) -> dict[str, Any]:
    """One TCP stream moving exactly `nbytes` (no time limit, nothing omitted). The server
    takes the mere presence of "reverse" as true, so it is left out for an upload."""
    return {
        "tcp": True,
        "omit": 0,
        "time": 0,
        "num": nbytes,
        "blockcount": 0,
        "parallel": 1,
        **({"reverse": True} if reverse else {}),  # native's place: after "parallel"
        "len": block,
        "pacing_timer": 1000,
        "client_version": "3.12",
    }


def client_results(nbytes: int, seconds: float, *, sending: bool = False) -> dict[str, Any]:
    """What the client reports at EXCHANGE_RESULTS for one stream (id 1); `sending`: an
    upload, whose retransmits are not counted here (native's 0, a sender that cannot)."""
    return timed_client_results([(1, nbytes, 0, seconds)], has_retransmits=0 if sending else -1)


MAX_COUNT = (1 << 63) - 1  # iperf3's byte and packet counters are 64-bit
MAX_SECONDS = 1e7  # no test runs 115 days


class _Bad(Exception):
    """A figure of the server's results that is no figure (`Iperf3Error` once wrapped)."""


def _number(stream: dict[str, Any], key: str, hi: float, default: float | None = None) -> float:
    """stream[key] as a JSON number in 0..hi (finite); _Bad naming the key if not."""
    if key not in stream and default is not None:
        return default
    v = stream[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad(f"{key} {v!r} is not a number")
    if not (math.isfinite(v) and 0 <= v <= hi):
        raise _Bad(f"{key} {v!r} out of range")
    return v


def _count(stream: dict[str, Any], key: str, default: int | None = None) -> int:
    v = _number(stream, key, MAX_COUNT, default)
    if v != int(v):
        raise _Bad(f"{key} {v!r} is not a whole number")
    return int(v)


def _retransmits(stream: dict[str, Any]) -> int:
    """A stream's "retransmits": -1 when iperf3 does not know (a receiving server), which
    3.12 sends as 2**64 - 1 (its -1 in an unsigned 64-bit counter)."""
    v = stream.get("retransmits", -1)
    if isinstance(v, int) and v in (-1, (1 << 64) - 1):
        return -1
    return _count(stream, "retransmits")


def _span(stream: dict[str, Any]) -> float:
    start = _number(stream, "start_time", MAX_SECONDS, 0.0)
    end = _number(stream, "end_time", MAX_SECONDS, 0.0)
    if end < start:
        raise _Bad(f"end_time {end!r} before start_time {start!r}")
    return end - start


def _streams(results: dict[str, Any]) -> list[dict[str, Any]]:
    streams = results["streams"]
    if not isinstance(streams, list) or not all(isinstance(s, dict) for s in streams):
        raise _Bad(f"streams is not a list of objects: {str(streams)[:60]!r}")
    return streams


def stream_result(results: dict[str, Any]) -> tuple[int, float]:
    """(bytes, seconds) of the server's one stream. Every figure is checked: a JSON
    number, finite, not negative, at most MAX_COUNT bytes and MAX_SECONDS."""
    try:
        streams = _streams(results)
        if len(streams) != 1:
            raise _Bad(f"{len(streams)} streams, not 1")
        return _count(streams[0], "bytes"), _span(streams[0])
    except KeyError as e:
        raise Iperf3Error(f"unexpected iperf3 results: no {e}") from None
    except _Bad as e:
        raise Iperf3Error(f"unexpected iperf3 results: {e}") from None


# ---------------------------------------------------------------- timed, parallel, UDP tests

#: iperf3's bounds on its options (iperf_api.c, 3.12): -P, -i, UDP block, default -t.
MAX_STREAMS = 128
MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0
DEFAULT_TIME = 10.0
DEFAULT_UDP_RATE = 1 << 20  # bit/s: iperf3's -b default for UDP (iperf.h UDP_RATE, 1024 * 1024)
DEFAULT_UDP_BLOCK = 1460  # iperf3's on a 1500-byte MTU path (it takes the control MSS)
MAX_UDP_BLOCK = 65535 - 8 - 20  # one IPv4 datagram's payload (iperf.h MAX_UDP_BLOCKSIZE)
MIN_UDP_BLOCK = 16  # its header: the send time and the datagram's number
MAX_BLOCK = 1 << 20  # a TCP block (iperf.h MAX_BLOCKSIZE)
#: The datagram a UDP stream's client sends to be "accepted" and the server's answer:
#: iperf3 writes the ints 0x36373839 / 0x39383736 in host order (little-endian here).
UDP_CONNECT_MSG, UDP_CONNECT_REPLY = b"9876", b"6789"


DEFAULT_PACING_TIMER = 1000  # µs: iperf3's --pacing-timer default, always told the server
MAX_PACING_TIMER = (1 << 31) - 1  # µs: an int in iperf3 (a negative one wraps there)
MIN_RCV_TIMEOUT, MAX_RCV_TIMEOUT = 0.1, 86400.0  # s: --rcv-timeout's bounds in 3.12
MAX_BURST = 1000  # iperf.h MAX_BURST: -b RATE/BURST's bound
MAX_OMIT = 60  # iperf3 3.12: -O above it is "bogus value for --omit"


def stream_ids(n: int) -> list[int]:
    """iperf3's stream ids for `n` streams: 1, 3, 4, ... (iperf_add_stream counts from 2
    past the streams already listed, so the second stream is 3; client and server agree)."""
    return [1, *range(3, n + 2)]


def display_ids(n: int, offset: int = 0) -> list[int]:
    """The `[  5]` labels iperf3 3.12 prints for `n` streams (its socket numbers; `offset`
    more descriptors open before them: 1 with --logfile)."""
    return [5 + offset + 2 * i for i in range(n)]


@dataclass(frozen=True, slots=True)
class ServerSockopts:
    """iperf3's -N, --fq-rate, -C, -Z and --dont-fragment, as its client tells the server
    (`nodelay`, `fqrate`, `congestion`, `zerocopy`, `dont_fragment` in the parameters: it
    sets them on its own data sockets too). Only where the server alone sends (-R, not
    --bidir) are they all that matters: nopen sets no option on the endpoint's sockets,
    and a receiver's are moot (its congestion control, Nagle, pacing and sendfile act on
    what it sends: ACKs, the UDP connect datagram)."""

    nodelay: bool = False
    fq_rate: int = 0  # bits/s
    congestion: str | None = None
    zerocopy: bool = False
    dont_fragment: bool = False

    def any(self) -> bool:
        return self != ServerSockopts()


def timed_parameters(
    *,
    udp: bool,
    seconds: float | None,
    nbytes: int | None,
    streams: int,
    blocks: int | None = None,
    reverse: bool,
    length: int,
    bitrate: float | None,
    wide_counters: bool = False,
    omit: int = 0,
    bidir: bool = False,
    extra_data: str | None = None,
    get_server_output: bool = False,
    repeating_payload: bool = False,
    authtoken: str | None = None,
    title: str | None = None,
    pacing_timer: int = DEFAULT_PACING_TIMER,
    burst: int = 0,
    server_sockopts: ServerSockopts | None = None,
) -> dict[str, Any]:
    """The PARAM_EXCHANGE object of native `iperf3 -c` with -t, -n or -k, -P, -u, -b, -l, -R
    (checked with `iperf3 -d`): "time" a whole number of seconds (iperf3 takes -t as an
    integer; the test itself runs the fraction too, timed by the client)."""
    # iperf3 3.12's order (send_parameters; recorded beside native in
    # test_throughput_control_as_iperf3): reverse after parallel, bandwidth after len,
    # title, --extra-data, --get-server-output, --udp-counters-64bit, --repeating-payload
    # (the server fills its blocks with the pattern when it sends), the token, the version;
    # -N, --fq-rate, -C, -Z, --dont-fragment where 3.12 puts them (`ServerSockopts`)
    opts = server_sockopts or ServerSockopts()
    return {
        "udp" if udp else "tcp": True,
        "omit": omit,
        "time": 0 if not seconds else max(1, int(seconds + 0.999)),  # 0: until Ctrl-C (-t 0)
        "num": nbytes or 0,
        "blockcount": blocks or 0,
        **({"nodelay": True} if opts.nodelay else {}),
        "parallel": streams,
        **({"reverse": True} if reverse else {}),
        **({"bidirectional": True} if bidir else {}),
        "len": length,
        **({"bandwidth": int(bitrate)} if bitrate else {}),
        **({"fqrate": opts.fq_rate} if opts.fq_rate else {}),
        # --pacing-timer: 3.12 leaves a 0 out; -b RATE/BURST: "burst" after it
        **({"pacing_timer": pacing_timer} if pacing_timer else {}),
        **({"burst": burst} if burst else {}),
        **({"title": title} if title is not None else {}),  # -T: the server's lines show it
        **({"extra_data": extra_data} if extra_data is not None else {}),
        **({"congestion": opts.congestion} if opts.congestion is not None else {}),
        **({"get_server_output": 1} if get_server_output else {}),
        **({"udp_counters_64bit": 1} if wide_counters else {}),
        **({"repeating_payload": 1} if repeating_payload else {}),
        **({"zerocopy": 1} if opts.zerocopy else {}),
        **({"dont_fragment": 1} if opts.dont_fragment else {}),
        **({"authtoken": authtoken} if authtoken is not None else {}),
        "client_version": "3.12",
    }


#: iperf3 3.12's -1 in its unsigned 64-bit fields, as its client sends it at
#: EXCHANGE_RESULTS: a receiving stream's "retransmits" (a UDP stream's too), and
#: "sender_has_retransmits" of a client that does not send (-R)
UNSIGNED_MINUS_1 = (1 << 64) - 1


def result_stream(
    sid: int,
    nbytes: int,
    seconds: float,
    *,
    packets: int = 0,
    retransmits: int = -1,
    jitter: float = 0.0,
    errors: int = 0,
) -> dict[str, Any]:
    """One stream of the client's results as iperf3 3.12 sends it: `retransmits` a TCP
    sender's count (-1: none, sent as 2**64 - 1), `jitter` (s) and `errors` (lost) a UDP
    receiver's, `packets` a UDP stream's (0 for TCP), the span in microseconds."""
    return {"id": sid, "bytes": nbytes,
            "retransmits": retransmits if retransmits >= 0 else UNSIGNED_MINUS_1,
            "jitter": jitter, "errors": errors, "packets": packets, "start_time": 0,
            "end_time": round(seconds, 6)}  # fmt: skip


def timed_client_results(
    figures: list[tuple[int, int, int, float]] | list[dict[str, Any]],
    *,
    has_retransmits: int = -1,
) -> dict[str, Any]:
    """What the client reports at EXCHANGE_RESULTS (the fields the server requires), for
    several streams: result_stream()'s, or (id, bytes, packets, seconds) each.
    `has_retransmits`: 1 a TCP sender that counts them, 0 a UDP sender (or one that
    cannot count), -1 a client that only receives (sent as 2**64 - 1, as native). The CPU
    figures are 0: the endpoint's are not known here (docs/throughput.md)."""
    streams = [f if isinstance(f, dict) else result_stream(f[0], f[1], f[3], packets=f[2])
               for f in figures]  # fmt: skip
    return {
        "cpu_util_total": 0,
        "cpu_util_user": 0,
        "cpu_util_system": 0,
        "sender_has_retransmits": has_retransmits if has_retransmits >= 0 else UNSIGNED_MINUS_1,
        "streams": streams,
    }


def server_streams(results: dict[str, Any]) -> dict[int, dict[str, float]]:
    """The server's figures per stream id: bytes, seconds, jitter (s), errors (lost
    datagrams), packets (the highest datagram number seen, iperf3's total), retransmits
    (a sending server's TCP retransmits, else -1)."""
    out: dict[int, dict[str, float]] = {}
    try:
        for s in _streams(results):
            out[_count(s, "id")] = {
                "bytes": _count(s, "bytes"),
                "seconds": _span(s),
                "jitter": float(_number(s, "jitter", MAX_SECONDS, 0.0)),
                "errors": _count(s, "errors", 0),
                "packets": _count(s, "packets", 0),
                # the sender's TCP retransmits (iperf3's Retr); -1 from a receiving server
                "retransmits": _retransmits(s),
            }
    except KeyError as e:
        raise Iperf3Error(f"unexpected iperf3 results: no {e}") from None
    except _Bad as e:
        raise Iperf3Error(f"unexpected iperf3 results: {e}") from None
    return out


def server_output(results: dict[str, Any]) -> str | dict[str, Any] | None:
    """What a server asked for `get_server_output` sends with its results: its text
    (`server_output_text`) or, a server with -J, its JSON document (`server_output_json`);
    None when it sent neither, or something else."""
    text = results.get("server_output_text")
    if isinstance(text, str):
        return text
    doc = results.get("server_output_json")
    return doc if isinstance(doc, dict) else None


def remote(results: dict[str, Any]) -> dict[str, Any]:
    """The server's CPU figures (`cpu_util_total`, `_user`, `_system`: percent), its
    congestion control (`congestion_used`) and `sender_has_retransmits`, those it sent in
    range; -J shows the first as remote_* and sender/receiver_tcp_congestion."""
    out: dict[str, Any] = {}
    for key in ("cpu_util_total", "cpu_util_user", "cpu_util_system"):
        v = results.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = min(max(float(v), 0.0), 1e4)
    cc = results.get("congestion_used")
    if isinstance(cc, str) and cc.isprintable() and len(cc) <= 32:
        out["congestion_used"] = cc
    has = results.get("sender_has_retransmits")  # 1: its TCP sender reports Retr
    if has in (-1, 0, 1) and not isinstance(has, bool):
        out["sender_has_retransmits"] = has
    return out


def authtoken(username: str, password: str, public_key_pem: bytes, now: int) -> str:
    """iperf3's --username token (iperf_auth.c, 3.12): `user: U\\npwd:  P\\nts:   T` (T
    the time in s) encrypted with the server's RSA public key, PKCS #1 v1.5 padding (a
    token of native 3.12's decrypts only so), base64 on one line. The server decrypts it
    with its private key and checks sha256("{U}P") against its authorized users.
    ValueError for a key that is no RSA public key."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    text = f"user: {username}\npwd:  {password}\nts:   {now}".encode()
    return base64.b64encode(key.encrypt(text, padding.PKCS1v15())).decode()


def repeating_pattern(n: int) -> bytes:
    """iperf3's --repeating-payload: "0123456789" over and over (its
    fill_with_repeating_pattern), instead of its random bytes."""
    return (b"0123456789" * (n // 10 + 1))[:n]


def udp_header(count: int, ns: int, *, wide: bool = False) -> bytes:
    """iperf3's UDP payload head: the send time (u32 seconds, u32 microseconds) and the
    datagram's number from 1 (u32, or u64 with --udp-counters-64bit), big-endian."""
    sec, usec = divmod(ns // 1000, 1_000_000)
    if wide:
        return struct.pack(">IIQ", sec & 0xFFFFFFFF, usec, count)
    return struct.pack(">III", sec & 0xFFFFFFFF, usec, count & 0xFFFFFFFF)


def parse_udp_header(data: bytes, *, wide: bool = False) -> tuple[int, float]:
    """(datagram number, send time in s) of an iperf3 UDP datagram."""
    if wide:
        sec, usec, count = struct.unpack_from(">IIQ", data)
    else:
        sec, usec, count = struct.unpack_from(">III", data)
    return count, sec + usec / 1e6


class UdpReceiver:
    """What an iperf3 receiver counts of one UDP stream (iperf_udp_recv, 3.12): the
    highest number seen (the total), the gaps (lost; a late datagram takes one back),
    out-of-order datagrams, and the RFC 1889 jitter of transit times (s)."""

    def __init__(self) -> None:
        self.packets = 0
        self.lost = 0
        self.out_of_order = 0
        self.jitter = 0.0
        self._transit: float | None = None

    def add(self, count: int, sent: float, arrived: float) -> None:
        if count >= self.packets + 1:
            if count > self.packets + 1:
                self.lost += count - 1 - self.packets
            self.packets = count
        else:
            self.out_of_order += 1
            if self.lost > 0:
                self.lost -= 1
        transit = arrived - sent
        if self._transit is None:
            self._transit = transit
        d = abs(transit - self._transit)
        self._transit = transit
        self.jitter += (d - self.jitter) / 16.0


def read_rate(text: str) -> UnitNumber:
    """iperf3's -b and --fq-rate as 3.12's unit_atof_rate reads them: bits/s, the number
    `sscanf`'s `%lf` takes (`1.5M`, `1e3`, `0x10`), times 10^3/10^6/10^9/10^12 for a
    k/m/g/t right after it; any other text after the number is ignored, as iperf3 ignores
    it (`10Q` is 10 bit/s, `10 M` too, `10Mbit` 10 Mbit/s: `ignored` says what). No
    number, or a negative, infinite or NaN one, has no value in iperf3's C: refused."""
    from packetlab.measure.throughput_cnum import RATE_STEPS, unit_number

    try:
        return unit_number(text, RATE_STEPS)
    except ValueError as e:
        raise ValueError(f"expected a rate like 10M (bits/s), got {text!r}: {e}") from None


def parse_rate(text: str) -> float:
    """iperf3's -b: bits/s as `read_rate` reads it; 0 is unlimited."""
    return read_rate(text).value


def parse_rate_burst(text: str) -> tuple[float, int]:
    """iperf3's -b RATE[/BURST]: the rate (`parse_rate`) and its burst (0: none), read
    as 3.12 reads it (glibc's atoi: `3abc` and `+3` are 3, `010` is 10, `٣` and `3_00`'s
    `_` end the number: 0 and 3), 1..1000 blocks sent back to back, in its words if not."""
    from packetlab.measure.throughput_cnum import c_atoi

    rate_text, slash, burst_text = text.partition("/")
    value = parse_rate(rate_text)
    if not slash:
        return value, 0
    burst = c_atoi(burst_text)
    if not 1 <= burst <= MAX_BURST:
        raise ValueError(f"-b {text}: invalid burst count (maximum = {MAX_BURST}), as iperf3")
    return value, burst


def unit(value: float, kind: str) -> str:
    """iperf3's adaptive unit_snprintf: `kind` "bytes" (1024 steps, "MBytes") or "bits"
    (1000 steps, "Mbits"); #.## under 10, ##.# under 100, else whole."""
    step, labels = (
        (1024.0, ("Bytes", "KBytes", "MBytes", "GBytes", "TBytes"))
        if kind == "bytes"
        else (1000.0, ("bits", "Kbits", "Mbits", "Gbits", "Tbits"))
    )
    i = 0
    while value >= step and i < len(labels) - 1:
        value /= step
        i += 1
    if value < 9.995:
        num = f"{value:4.2f}"
    elif value < 99.95:
        num = f"{value:4.1f}"
    else:
        num = f"{value:4.0f}"
    return f"{num} {labels[i]}"


#: iperf3's -f letters: a (adaptive bits, the default), k, m, g, t (10^3 steps of bits);
#: A, K, M, G, T the same in bytes (2^10 steps).
FORMATS = "akmgtAKMGT"
_BIT_LABELS = ("bit", "Kbit", "Mbit", "Gbit", "Tbit")
_BYTE_LABELS = ("Byte", "KByte", "MByte", "GByte", "TByte")


def unit_snprintf(value: float, fmt: str) -> str:
    """iperf3's unit_snprintf (units.c, 3.12) with the plural `s` its report lines add:
    `value` in bytes (a rate: bytes per second); a lower-case `fmt` shows it as bits
    (x 8, 1000 steps), an upper-case one as bytes (1024 steps); `a`/`A` pick the unit,
    the others fix it (`-f m`: `21809 Mbits`, `-f K`: `2612365 KBytes`)."""
    bits = not fmt.isupper()
    step = 1000.0 if bits else 1024.0
    if bits:
        value *= 8
    conv = "BKMGT".find(fmt.upper())
    if conv < 0:  # "a"/"A": adaptive
        conv, v = 0, value
        while v >= step and conv < 4:
            v /= step
            conv += 1
    value /= step**conv
    if value < 9.995:
        num = f"{value:4.2f}"
    elif value < 99.95:
        num = f"{value:4.1f}"
    else:
        num = f"{value:4.0f}"
    return f"{num} {(_BIT_LABELS if bits else _BYTE_LABELS)[conv]}s"


HEADER = "[ ID] Interval           Transfer     Bitrate"
UDP_HEADER = HEADER + "         Jitter    Lost/Total Datagrams"
UDP_SENDER_HEADER = HEADER + "         Total Datagrams"
SEPARATOR = "- - - - - - - - - - - - - - - - - - - - - - - - -"
#: TCP with the sender's columns (iperf3 on Linux shows them also when it receives, -R:
#: the lines are then blank there) and the closing block's header with Retr.
TCP_HEADER = HEADER + "         Retr  Cwnd"
TCP_TOTAL_HEADER = HEADER + "         Retr"
NO_RETR = " " * 18  # a TCP line without Retr (and Cwnd): the columns left blank


def retr_tail(retransmits: int, cwnd: int | None = None) -> str:
    """A TCP sender's columns: `    0   1023 KBytes       ` (a stream's interval) or,
    without `cwnd`, `    4             ` ([SUM] interval, and the sender totals)."""
    if cwnd is None:
        return f"  {retransmits:3d}             "
    return f"  {retransmits:3d}   {unit(cwnd, 'bytes')}       "


def report_line(
    label: int | str,
    start: float,
    end: float,
    nbytes: int,
    seconds: float,
    tail: str = "",
    fmt: str = "a",
) -> str:
    """One of iperf3's `[  5]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec ...` lines;
    `fmt` the rate's -f letter (the transfer is always adaptive bytes, as iperf3's)."""
    ident = f"[{label:>3}]" if isinstance(label, int) else f"[{label}]"
    if fmt == "a":
        rate = unit(nbytes * 8 / seconds if seconds > 0 else 0.0, "bits")
    else:
        rate = unit_snprintf(nbytes / seconds if seconds > 0 else 0.0, fmt)
    return f"{ident} {start:6.2f}-{end:<6.2f} sec  {unit(nbytes, 'bytes')}  {rate}/sec{tail}"


def udp_tail(jitter_s: float, lost: int, total: int) -> str:
    """The receiver columns of a UDP line: `  0.006 ms  0/39 (0%)`."""
    pct = 100.0 * lost / total if total else 0.0
    return f"  {jitter_s * 1e3:5.3f} ms  {lost}/{total} ({pct:.2g}%)"


class Intervals:
    """Per-interval counts of several streams from endpoint stamps (ns), as iperf3's -i
    reports: interval k spans (start + k*every, start + (k+1)*every]; it is complete once a
    stamp past its end is seen (or at `finish`). A stamp earlier than the open interval
    (another stream's, reported late) counts in the open one. A stamp exactly at an end
    counts in the interval it ends: until session 27 it opened the next one, and at the
    test's end (-t's stop time, -n's last read) that one was never shown, its bytes in the
    totals and in no line (a fake endpoint's stamps on whole milliseconds hit it)."""

    def __init__(
        self,
        start_ns: int,
        every_ns: int,
        ids: list[int],
        extra: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self.start, self.every, self.ids = start_ns, every_ns, ids
        self.extra = extra  # more fields of a stream's interval, asked when it closes
        self.k = 0
        self.bytes = dict.fromkeys(ids, 0)
        self.packets = dict.fromkeys(ids, 0)

    def add(self, sid: int, t: int, nbytes: int, packets: int = 0) -> list[dict[str, Any]]:
        out = self.until(t)
        self.bytes[sid] += nbytes
        self.packets[sid] += packets
        return out

    def until(self, t: int) -> list[dict[str, Any]]:
        """Close every interval that ended before `t`."""
        out = []
        while self.every > 0 and t > self.start + (self.k + 1) * self.every:
            out.append(self._close(self.start + (self.k + 1) * self.every))
        return out

    def finish(self, end_ns: int) -> list[dict[str, Any]]:
        """The intervals up to the test's end, the last one partial if it is at least a
        tenth of an interval or carried bytes (iperf3 drops a shorter, empty one). With
        `every` 0 (-i 0) the one interval of the whole test, as iperf3 3.12 reports it
        at the end."""
        out = self.until(end_ns)
        if self.every <= 0:
            return [self._close(max(end_ns, self.start))] if self.k == 0 else out
        begin = self.start + self.k * self.every
        if end_ns > begin and (end_ns - begin >= self.every / 10 or any(self.bytes.values())):
            out.append(self._close(end_ns))
        return out

    def _close(self, end_ns: int) -> dict[str, Any]:
        begin = self.start + self.k * self.every
        seconds = (end_ns - begin) / 1e9
        streams: list[dict[str, Any]] = [
            {"id": sid, "bytes": self.bytes[sid], "packets": self.packets[sid],
             "bits_per_second": self.bytes[sid] * 8 / seconds if seconds > 0 else 0.0}
            for sid in self.ids
        ]  # fmt: skip
        if self.extra is not None:
            for st in streams:
                st.update(self.extra(st["id"]))
        total = sum(self.bytes.values())
        rec = {
            "start": round((begin - self.start) / 1e9, 6),
            "end": round((end_ns - self.start) / 1e9, 6),
            "seconds": round(seconds, 6),
            "streams": streams,
            "sum": {"bytes": total, "packets": sum(self.packets.values()),
                    "bits_per_second": total * 8 / seconds if seconds > 0 else 0.0},
        }  # fmt: skip
        self.k += 1
        self.bytes = dict.fromkeys(self.ids, 0)
        self.packets = dict.fromkeys(self.ids, 0)
        return rec
