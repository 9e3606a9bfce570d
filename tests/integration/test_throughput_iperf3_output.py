"""`pktlab run throughput`'s iperf3 output and connection options beside native `iperf3
-c` 3.12 against the same `iperf3 -s` on loopback: -J's documents (the same key paths,
order and `sender` flags; our figures), -f/-T/--timestamps/-V/--get-server-output
lines, --logfile, -B, --connect-timeout against a listener that drops SYNs, -4/-6.

Bounded: 1 s tests, one server per test on a free loopback port (the fixture of
test_throughput_iperf3_options), loose figure bounds for a shared 2-core machine.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_throughput_iperf3_options import REPO, pktlab, port  # noqa: F401 (a fixture)
from testkit.poll import wait_tcp_listening

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "iperf3"], capture_output=True).returncode != 0,
    reason="iperf3 missing",
)


def native_run(port: int, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    wait_tcp_listening(port, timeout=20)  # the server listens anew between tests
    return subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def ours(port: int, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TZ": "UTC"}
    return subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
         str(port), "--insecure-plaintext", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def paths(obj: Any, at: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out |= {f"{at}/{k}"} | paths(v, f"{at}/{k}")
    elif isinstance(obj, list):
        for x in obj:
            out |= paths(x, at + "[]")
    return out


def flags(doc: dict[str, Any]) -> list[tuple[str, bool]]:
    out = [(f"i{k}", v["sender"]) for k, v in doc["intervals"][0].items() if isinstance(v, dict)]
    out += [(f"e{k}", v["sender"]) for k, v in doc["end"].items() if k.startswith("sum")]
    for s in doc["end"]["streams"]:
        out += [(side, v["sender"]) for side, v in s.items()]
    return out


def shape(text: str) -> list[str]:
    """-J's lines with each value masked and the intervals left out (their count may
    differ): cJSON's layout of `start` and `end` as printed, repeated keys too."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith('\t"intervals":'):
            out.append(line[:15])
            inside = True
        elif line.startswith('\t"end":'):
            inside = False
        if not inside:
            out.append(re.sub(r":\t(?![\[{]).*?(,?)$", r":\tV\1", line))
    return out


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        (["-t", "1"], ["-R", "-t", "1"]),
        (["-t", "1", "--direction", "upload", "-b", "50M"], ["-t", "1", "-b", "50M"]),
        (["-t", "1", "-u", "-b", "5M", "-l", "1460", "--direction", "upload"],
         ["-t", "1", "-u", "-b", "5M", "-l", "1460"]),
        (["-t", "1", "-u", "-b", "5M", "-l", "1460"], ["-t", "1", "-u", "-b", "5M", "-l", "1460",
                                                        "-R"]),
        (["-t", "1", "--bidir", "-b", "20M"], ["-t", "1", "--bidir", "-b", "20M"]),
    ],
)  # fmt: skip
def test_json_document_beside_native(port: int, mine: list[str], theirs: list[str]) -> None:  # noqa: F811
    more = ["-J", "--get-server-output", "--extra-data", "x1", "-T", "t1"]
    got = ours(port, *mine, *more)
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)  # one document, nothing else on stdout (as iperf3 -J)
    nat = native_run(port, *theirs, *more)
    assert nat.returncode == 0, nat.stdout[-500:]
    ref = json.loads(nat.stdout)
    assert paths(doc) == paths(ref)
    assert shape(got.stdout) == shape(nat.stdout)  # session 18: json.dumps's layout before
    assert list(doc) == list(ref) and list(doc["end"]) == list(ref["end"])
    assert flags(doc) == flags(ref)
    assert [c["socket"] for c in doc["start"]["connected"]] == [
        c["socket"] for c in ref["start"]["connected"]]  # fmt: skip
    assert doc["start"]["connected"][0]["local_host"] == "127.0.0.1"
    if "tcp_mss_default" in ref["start"]:  # the control connection's, from TCP_INFO
        assert doc["start"]["tcp_mss_default"] == ref["start"]["tcp_mss_default"]
    assert doc["title"] == "t1" and doc["extra_data"] == "x1"
    assert "Accepted connection from 127.0.0.1" in doc["server_output_text"]
    for key in ("protocol", "num_streams", "omit", "duration", "reverse", "target_bitrate"):
        assert doc["start"]["test_start"][key] == ref["start"]["test_start"][key], key
    if "-u" in mine:  # paced: about the same bytes as native's
        for k in ("sum_sent", "sum_received"):
            assert doc["end"][k]["bytes"] == pytest.approx(ref["end"][k]["bytes"], rel=0.1), k
    if "-b" in mine and "-u" not in mine:
        rate = doc["end"]["sum_received"]["bits_per_second"]
        assert rate == pytest.approx(ref["end"]["sum_received"]["bits_per_second"], rel=0.15)
    assert doc["end"]["cpu_utilization_percent"]["remote_total"] > 0  # the server's figure


def test_text_options_beside_native(port: int) -> None:  # noqa: F811
    opts = ["-t", "1", "-f", "k", "-T", "hi", "--timestamps", "-V"]
    got = ours(port, *opts, "--direction", "upload", "-b", "50M")
    assert got.returncode == 0, got.stderr
    nat = native_run(port, *opts, "-b", "50M")
    stamp = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} hi:  "
    # every line of ours; native 3.12 -V prints "Control connection MSS" bare and its
    # uname line with the prefix twice
    assert all(re.match(stamp, line) for line in got.stdout.splitlines()), got.stdout
    assert sum(bool(re.match(stamp, x)) for x in nat.stdout.splitlines()) >= 15, nat.stdout
    mine = [re.sub(stamp, "", x) for x in got.stdout.splitlines()]
    theirs = [re.sub(stamp, "", x) for x in nat.stdout.splitlines()]
    # -V: native's lines that we print, in native's order
    heads = ["Control connection MSS", "Time: ", "Connecting to host", "      Cookie: ",
             "      TCP MSS: ", "[  5] local",
             "Starting Test: ", "[ ID] Interval", "- - - -", "Test Complete. Summary Results:",
             "rcv_tcp_congestion"]  # fmt: skip
    for lines in (mine, theirs):
        at = [next(i for i, x in enumerate(lines) if x.startswith(h)) for h in heads]
        assert at == sorted(at), lines
    for same in ("Starting Test: ", "      TCP MSS: ", "Control connection MSS"):
        assert [x for x in mine if same in x] == [x for x in theirs if same in x], same
    rx = [x for x in mine + theirs if x.endswith("receiver")]  # -f k: ~50000 Kbits/sec both
    assert len(rx) == 2 and all(re.search(r"\s(4\d|5\d)\d{3} Kbits/sec", x) for x in rx), rx


def test_server_output_and_logfile_beside_native(port: int, tmp_path: Path) -> None:  # noqa: F811
    ours_log, native_log = tmp_path / "ours.log", tmp_path / "native.log"
    got = ours(port, "-t", "1", "--get-server-output", "--logfile", str(ours_log))
    assert got.returncode == 0 and got.stdout == "", (got.stdout, got.stderr)
    nat = native_run(port, "-R", "-t", "1", "--get-server-output", "--logfile", str(native_log))
    assert nat.returncode == 0 and nat.stdout == ""
    for log in (ours_log, native_log):
        lines = log.read_text().splitlines()
        assert lines[0] == f"Connecting to host 127.0.0.1, port {port}"
        at = lines.index("Server output:")
        assert lines[at - 1] == "" and "Accepted connection from 127.0.0.1" in "\n".join(lines[at:])
        assert lines[at - 2].endswith("receiver")  # right after the totals (session 19)
        # the stream's label: its socket's descriptor, one more with the log file open
        # (session 19: ours was [  5])
        assert re.fullmatch(r"\[  6\] local 127\.0\.0\.1 port \d+ connected to .*", lines[2])
    # the server's view of our data stream: the port the endpoint connected from
    text = ours_log.read_text()
    local = re.search(r"\[  6\] local 127\.0\.0\.1 port (\d+) connected to", text)
    assert local is not None
    assert f"connected to 127.0.0.1 port {local.group(1)}" in text.split("Server output:")[1]


def test_server_output_with_title_beside_native(port: int) -> None:  # noqa: F811
    """-T with --get-server-output: the server's report unprefixed, the empty line before
    it prefixed, as iperf3 prints it with one printf (session 26: ours prefixed every
    line of it)."""
    args = ["-t", "1", "-b", "10M", "--get-server-output", "-T", "ttl"]
    got = ours(port, *args)
    nat = native_run(port, "-R", *args)
    assert got.returncode == nat.returncode == 0, (got.stderr, nat.stderr)
    for text in (got.stdout, nat.stdout):
        lines = text.splitlines()
        at = lines.index("Server output:")
        assert lines[at - 1] == "ttl:  " and lines[at - 2].endswith("receiver"), text
        report = lines[at + 1 : lines.index("", at)]
        assert report and not any(x.startswith("ttl:") for x in report), text
        assert any(x.startswith("Accepted connection from 127.0.0.1") for x in report), text


def test_bind_beside_native(port: int) -> None:  # noqa: F811
    got = ours(port, "-t", "1", "-B", "127.0.0.1", "--json")
    assert got.returncode == 0, got.stderr
    records = [json.loads(x) for x in got.stdout.splitlines()]
    assert records[0]["streams"][0]["local_host"] == "127.0.0.1"
    bad = ours(port, "-t", "1", "-B", "10.9.9.9")
    assert bad.returncode == 1
    nat = native_run(port, "-t", "1", "-B", "10.9.9.9")
    assert nat.returncode == 1 and nat.stderr.endswith("Cannot assign requested address\n")
    # native's line on stderr (session 19; our row on stdout before), ours in --json
    assert bad.stderr.removeprefix("pktlab run throughput: ") == nat.stderr.removeprefix("iperf3: ")
    bad = ours(port, "-t", "1", "-B", "10.9.9.9", "--json")
    assert ("-B 10.9.9.9: not an address of the endpoint (its addresses: 127.0.0.1)"
            in json.loads(bad.stdout.splitlines()[0])["error"])  # fmt: skip


@pytest.fixture
def dropping() -> Iterator[int]:
    """A loopback port whose listener's queue is full: the kernel drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fill = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(listener.getsockname())
        fill.append(c)
    try:
        yield int(listener.getsockname()[1])
    finally:
        for c in fill:
            c.close()
        listener.close()


def test_connect_timeout_beside_native(dropping: int) -> None:
    t0 = time.monotonic()
    got = ours(dropping, "-t", "1", "--connect-timeout", "300")
    ours_s = time.monotonic() - t0
    assert got.returncode == 1
    # native's words, on stderr (session 19; ours on stdout before)
    assert got.stderr == "pktlab run throughput: error - unable to connect to server: " \
        "Connection timed out\n"  # fmt: skip
    t0 = time.monotonic()
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(dropping), "-t", "1", "--connect-timeout",
            "300"]  # fmt: skip
    nat = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    native_s = time.monotonic() - t0
    assert nat.returncode == 1 and nat.stderr.endswith("error - unable to connect to server: "
                                                       "Connection timed out\n")  # fmt: skip
    assert native_s < 2 and ours_s < 4  # not TcpStream's default 5 s (the run starts a Python)


def test_address_family_beside_native(port: int) -> None:  # noqa: F811
    """-c 127.0.0.1 -6: native's connect fails (exit 1, `error - unable to connect to
    server: Address family for hostname not supported`, -J's `error`); since session 28
    ours too (was our usage error, exit 2, and no -J document)."""
    got = ours(port, "-t", "1", "-6")
    nat = native_run(port, "-t", "1", "-6")
    line = "error - unable to connect to server: Address family for hostname not supported\n"
    assert nat.returncode == 1 and nat.stderr == f"iperf3: {line}", nat.stderr
    assert got.returncode == 1 and got.stderr == f"pktlab run throughput: {line}", got.stderr
    got, nat = ours(port, "-t", "1", "-6", "-J"), native_run(port, "-t", "1", "-6", "-J")
    assert json.loads(got.stdout)["error"] == json.loads(nat.stdout)["error"], got.stdout
    got = ours(port, "-t", "1", "-4", "--json")  # -c 127.0.0.1 with -4: fine
    assert got.returncode == 0, got.stderr


def test_a_name_without_an_address_beside_native(port: int) -> None:  # noqa: F811
    """-c nosuch.invalid (an RFC 6761 name: no address anywhere): iperf3's failed test in
    text, -J and --logfile, as native's (session 28; was a usage error, exit 2)."""
    words = ["-c", "nosuch.invalid", "-t", "1"]
    got, nat = ours(port, *words), native_run(port, *words)
    assert nat.returncode == 1 and nat.stderr.startswith("iperf3: error - unable to connect")
    assert got.returncode == 1, got.stderr
    assert got.stderr.removeprefix("pktlab run throughput: ") == nat.stderr.removeprefix("iperf3: ")
    got, nat = ours(port, *words, "-J"), native_run(port, *words, "-J")
    doc, native = json.loads(got.stdout), json.loads(nat.stdout)
    assert doc["error"] == native["error"] and paths(doc) == paths(native), got.stdout


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An `iperf3 -s` that takes only alice (password s3cret): its RSA key, its users file
    (sha256 of `{alice}s3cret`, as iperf3 salts it); (port, the public key's file)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from test_throughput_iperf3_options import _free_port, _listening

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public, users = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "users.csv"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))  # fmt: skip
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    users.write_text(f"alice,{hashlib.sha256(b'{alice}s3cret').hexdigest()}\n")
    p = _free_port()
    server = subprocess.Popen(
        ["iperf3", "-s", "-p", str(p), "-B", "127.0.0.1", "--rsa-private-key-path",
         str(private), "--authorized-users-path", str(users)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while server.poll() is None and not _listening(p, server.pid):
            assert time.monotonic() < deadline, "iperf3 -s with users: not listening in 20 s"
            time.sleep(0.05)
        assert server.poll() is None, "iperf3 -s with users exited"
        yield p, public
    finally:
        server.terminate()
        server.wait(5)


def test_username_beside_native(auth_server: tuple[int, Path]) -> None:
    p, public = auth_server
    user = ["--username", "alice", "--rsa-public-key-path", str(public)]
    for password, status in (("s3cret", 0), ("wrong", 1)):
        env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "IPERF3_PASSWORD": password}
        got = subprocess.run(
            [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
             str(p), "--insecure-plaintext", "-t", "1", *user],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )  # fmt: skip
        assert got.returncode == status, (got.stdout, got.stderr)
        wait_tcp_listening(p, timeout=20)
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(p), "-t", "1", *user]
        plain = {"PATH": "/usr/bin:/bin", "IPERF3_PASSWORD": password}
        nat = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=plain)
        assert nat.returncode == status, nat.stdout + nat.stderr
        if status:  # the same line on stderr (session 19: ours on stdout before)
            assert nat.stderr == "iperf3: error - test authorization failed\n"
            assert got.stderr == "pktlab run throughput: error - test authorization failed\n"
        else:
            assert got.stdout.rstrip().splitlines()[-1].startswith("# 1 of 1 runs")
        wait_tcp_listening(p, timeout=20)


def test_file_with_parallel_streams_beside_native(port: int, tmp_path: Path) -> None:  # noqa: F811
    """-F f.bin -P 2 -l 100K: each stream sends the file from its start, whole blocks until
    the two together sent its 1,000,000 bytes: 5 blocks of 102,400 each, as native (was:
    refused). -R -F out.bin -P 2 -t 1: each stream writes what came from the file's start
    over the other's: the file is as long as the longer stream's count (native's a little
    longer: it writes what it reads after TEST_END too)."""
    data = tmp_path / "f.bin"
    data.write_bytes(bytes(range(256)) * 3906 + bytes(64))  # 1,000,000 bytes
    args = ("-F", str(data), "-P", "2", "-l", "100K")
    got = ours(port, *args, "--direction", "upload", "--json")
    assert got.returncode == 0, got.stderr
    (r,) = [x for x in map(json.loads, got.stdout.splitlines()) if x["type"] == "throughput"]
    nat = json.loads(native_run(port, *args, "-J").stdout)
    assert nat["start"]["test_start"]["bytes"] == 1_000_000
    mine = [st["sender"]["bytes"] for st in r["streams"]]
    theirs = [st["sender"]["bytes"] for st in nat["end"]["streams"]]
    assert mine == theirs == [512_000, 512_000]
    for who in ("ours", "native"):
        out = tmp_path / f"{who}.bin"
        if who == "ours":
            got = ours(port, "-R", "-t", "1", "-P", "2", "-F", str(out), "--json")
            assert got.returncode == 0, got.stderr
            (r,) = [x for x in map(json.loads, got.stdout.splitlines())
                    if x["type"] == "throughput"]  # fmt: skip
            each = [st["receiver"]["bytes"] for st in r["streams"]]
        else:
            end = json.loads(native_run(port, "-R", "-t", "1", "-P", "2", "-F", str(out),
                                        "-J").stdout)["end"]  # fmt: skip
            each = [st["receiver"]["bytes"] for st in end["streams"]]
        # native writes also what it reads after TEST_END, uncounted (one run: 131,072
        # bytes more than its longer stream's count)
        size = out.stat().st_size
        assert size == max(each) if who == "ours" else max(each) <= size < sum(each), (who, each)


def test_file_beside_native(port: int, tmp_path: Path) -> None:  # noqa: F811
    """-F: a 1,000,000-byte file sent as native sends it (7 blocks of 128 KiB and one of
    82,496 bytes: 1,000,000 in all, the test over at its end); -R -F with
    --repeating-payload: the file holds what came, iperf3's pattern, as native's."""
    data = tmp_path / "f.bin"
    data.write_bytes(bytes(range(256)) * 3906 + bytes(64))  # 1,000,000 bytes
    got = ours(port, "-F", str(data), "--direction", "upload", "--json")
    assert got.returncode == 0, got.stderr
    (r,) = [x for x in map(json.loads, got.stdout.splitlines()) if x["type"] == "throughput"]
    nat = json.loads(native_run(port, "-F", str(data), "-J").stdout)
    assert r["sum"]["sender"]["bytes"] == nat["end"]["sum_sent"]["bytes"] == 1_000_000
    assert r["seconds"] < 5 and nat["end"]["sum_sent"]["seconds"] < 5  # not -t's 10 s
    mine, theirs = tmp_path / "ours.bin", tmp_path / "native.bin"
    got = ours(port, "-R", "-t", "1", "-F", str(mine), "--repeating-payload", "--json")
    assert got.returncode == 0, got.stderr
    (r,) = [x for x in map(json.loads, got.stdout.splitlines()) if x["type"] == "throughput"]
    native_run(port, "-R", "-t", "1", "-F", str(theirs), "--repeating-payload", "-J")
    assert mine.stat().st_size == r["sum"]["receiver"]["bytes"] > 1_000_000
    pattern = b"0123456789" * 100
    for f in (mine, theirs):  # the server's blocks: iperf3's pattern from each block's start
        head = f.read_bytes()[:131072]
        assert head[:1000] == pattern and theirs.stat().st_size > 1_000_000
