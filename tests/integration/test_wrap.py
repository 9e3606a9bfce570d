"""`pktlab wrap` with real programs (curl, dig, kdig, openssl, python) through a real
endpoint (in this process, and a twistd one with --listen), against local servers on
loopback (tests/integration/wrap_servers.py). Every test also reads --timings to see that
the traffic went through the endpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, stop_process, twistd
from testkit.poll import wait_tcp_listening

PKTLAB = [sys.executable, "-m", "packetlab"]
NAME = "www.wrap.test"


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (scripts/setup.sh installs it)")


def _proxychains() -> None:
    from packetlab.wrap.shim import ShimError, proxychains_lib

    try:
        proxychains_lib()
    except ShimError as e:
        pytest.skip(str(e))


class Servers:
    def __init__(self, root: Path, proc: subprocess.Popen[str], ports: dict[str, int]) -> None:
        self.root, self.proc, self.ports = root, proc, ports
        self.cert = root / "cert.pem"

    def url(self, kind: str, path: str, host: str = "127.0.0.1") -> str:
        return f"{kind}://{host}:{self.ports[kind]}/{path}"

    @property
    def dns(self) -> str:
        return f"127.0.0.1:{self.ports['dns']}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    _need("openssl")
    root = tmp_path_factory.mktemp("www")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
         "-days", "2", "-subj", f"/CN={NAME}",
         "-addext", f"subjectAltName=DNS:{NAME},IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (root / "index.html").write_bytes(b"hello through the endpoint\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    with open(root / "zeros.bin", "wb") as f:  # sparse: 64 MiB served fast
        f.truncate(64 << 20)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("wrap_servers.py")), str(root)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        yield Servers(root, proc, json.loads(line))
    finally:
        stop_process(proc)


def home_limited(tmp_path: Path, valid_dest: str = "192.0.2.0/24") -> Path:
    """A home made by the real `pktlab init` whose exppriv, signed again by `pktlab ppks
    sign`, allows only `valid_dest`: its endpoint refuses a connect elsewhere."""
    home = tmp_path / "home"
    subprocess.run([*PKTLAB, "init", "--home", str(home)], check=True, capture_output=True)
    subprocess.run(
        [*PKTLAB, "ppks", "sign", "exppriv", str(home / "keys/k_eop"), "0", "1900000000",
         str(home / "certs/exppriv_eop_exper.cert"), "-r", str(home / "csrs/exppriv_exper.csr"),
         "--valid-dest", valid_dest],
        check=True, capture_output=True,
    )  # fmt: skip
    return home


def wrap(
    tmp_path: Path,
    cmd: Sequence[str],
    *options: str,
    timeout: float = 60,
    stdin: str | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], list[dict[str, Any]]]:
    _proxychains()
    tfile = tmp_path / f"timings-{time.monotonic_ns()}.jsonl"
    argv = [*PKTLAB, "wrap", "--timings", str(tfile), *options, "--", *cmd]
    done = subprocess.run(
        argv, capture_output=True, timeout=timeout, cwd=REPO,
        input=stdin.encode() if stdin is not None else None,
    )  # fmt: skip
    lines = tfile.read_text().splitlines() if tfile.exists() else []
    return done, [json.loads(x) for x in lines]


def test_curl_http_stdout_and_status_pass_through(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    done, timings = wrap(tmp_path, ["curl", "-s", servers.url("http", "index.html")])
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello through the endpoint\n"  # nothing else on stdout
    (t,) = timings
    assert t["proto"] == "tcp" and t["port"] == servers.ports["http"] and t["error"] is None
    assert t["bytes_down"] > len(done.stdout) and t["bytes_up"] > 0
    for key in ("connect_ns", "handshake_ns", "first_byte_ns", "transfer_ns"):
        assert t[key] is not None
    # (the request's ntag is stamped after its send: on a busy endpoint it can come after
    # the answer's kernel receive stamp, so request_sent <= first_byte is not checked)
    assert t["connect_start"] <= t["connected"] <= t["request_sent"]
    assert t["connected"] < t["first_byte"] <= t["last_byte"] <= t["peer_closed"]


def test_curl_https_by_name_end_to_end_tls(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    url = servers.url("https", "big.bin", host=NAME)
    done, timings = wrap(
        tmp_path, ["curl", "-sS", "--cacert", str(servers.cert), url], "--dns", servers.dns
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (servers.root / "big.bin").read_bytes()
    (t,) = timings
    assert t["host"] == NAME and t["addr"] == "127.0.0.1"  # resolved by the endpoint
    assert t["dns_ns"] is not None and t["bytes_down"] > 3 << 20


def test_exit_status_and_failures_pass_through(tmp_path: Path, servers: Servers) -> None:
    done, _ = wrap(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout) == (3, b"out\n") and b"err" in done.stderr
    done, _ = wrap(tmp_path, ["sh", "-c", "kill -9 $$"])
    assert done.returncode == 128 + signal.SIGKILL
    done, _ = wrap(tmp_path, ["no-such-program-pktlab"])
    assert done.returncode == 127 and b"command not found" in done.stderr
    assert done.stdout == b""


def test_refused_connection_is_a_connection_error_in_the_program(
    tmp_path: Path, servers: Servers
) -> None:
    _need("curl")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done, timings = wrap(tmp_path, ["curl", "-s", f"http://127.0.0.1:{port}/"])
    assert done.returncode == 7  # curl: failed to connect
    assert "REFUSED" in timings[0]["error"] or "RESET" in timings[0]["error"]


def test_unknown_name_fails_in_the_program(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    done, timings = wrap(
        tmp_path, ["curl", "-s", f"http://nx.wrap.test:{servers.ports['http']}/"],
        "--dns", servers.dns,
    )  # fmt: skip
    # as natively: "could not resolve host" (6), not a refused connection (7)
    assert done.returncode == 6 and done.stdout == b"", done.stderr
    assert timings[0]["proto"] == "dns" and "no such name" in timings[0]["error"]


def test_python_urllib(tmp_path: Path, servers: Servers) -> None:
    url = servers.url("http", "slow/50")
    script = f"import urllib.request as u; print(u.urlopen({url!r}).read().decode(), end='')"

    done, timings = wrap(tmp_path, ["python3", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"slow 50\n"
    (t,) = timings
    assert t["first_byte"] - t["connected"] >= 50_000_000  # the server's 50 ms, at the endpoint


def test_openssl_s_client(tmp_path: Path, servers: Servers) -> None:
    _need("openssl")
    target = f"127.0.0.1:{servers.ports['https']}"
    done, timings = wrap(
        tmp_path,
        ["openssl", "s_client", "-connect", target, "-CAfile", str(servers.cert), "-quiet"],
        stdin="GET /index.html HTTP/1.0\r\n\r\n",
    )
    assert b"hello through the endpoint" in done.stdout
    assert timings and timings[0]["port"] == servers.ports["https"]


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_dns_over_tcp(tmp_path: Path, servers: Servers, tool: str) -> None:
    _need(tool)
    port = str(servers.ports["dns"])
    done, timings = wrap(tmp_path, [tool, "+tcp", "+short", "@127.0.0.1", "-p", port, NAME])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"127.0.0.1"
    assert [t["port"] for t in timings] == [servers.ports["dns"]]


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_dns_over_udp(tmp_path: Path, servers: Servers, tool: str) -> None:
    _need(tool)
    port = str(servers.ports["dns"])
    done, timings = wrap(tmp_path, [tool, "+short", "@127.0.0.1", "-p", port, NAME])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"127.0.0.1"
    (t,) = timings
    assert (t["proto"], t["port"], t["datagrams_up"], t["datagrams_down"]) == (
        "udp", servers.ports["dns"], 1, 1,
    )  # fmt: skip
    assert t["first_byte"] >= t["request_sent"]


def test_unconnected_udp_socket_sees_the_real_peer(tmp_path: Path, servers: Servers) -> None:
    """sendto/recvfrom without connect: the program is told the server's address, not
    the relay port's."""
    port = servers.ports["dns"]
    script = (
        "import socket, struct\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "q = struct.pack('>HHHHHH', 7, 0x100, 1, 0, 0, 0) + b'\\x01a\\x00\\x00\\x01\\x00\\x01'\n"
        f"s.sendto(q, ('127.0.0.1', {port}))\n"
        "data, peer = s.recvfrom(512)\n"
        "print(peer[0], peer[1], data[:2] == q[:2])\n"
    )
    done, timings = wrap(tmp_path, ["python3", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"127.0.0.1 {port} True\n".encode()
    assert timings[0]["datagrams_up"] == 1


def test_several_connections_at_once(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    urls = [servers.url("http", f"slow/{200 + i}") for i in range(6)]
    done, timings = wrap(
        tmp_path, ["curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", "6", *urls]
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split(b"\n")[:-1]) == [b"slow %d" % (200 + i) for i in range(6)]
    assert len(timings) == 6
    # they overlapped at the endpoint: all connected before the first answer came
    assert max(t["connected"] for t in timings) < min(t["first_byte"] for t in timings)


def test_congruence_200_pages_native_vs_wrapped(tmp_path: Path, servers: Servers) -> None:
    """The paper's web-content check (C3): 200 pages over HTTPS (slow, failing and large
    ones among them), fetched by curl natively and through pktlab wrap; every body and
    status code must be the same (paper: 0.84 before cleaning)."""
    _need("curl")
    url = servers.url("https", "page/[1-200]", host="127.0.0.1")

    def fetch(outdir: Path, wrapped: bool) -> dict[str, bytes]:
        outdir.mkdir()
        cmd = ["curl", "-s", "--cacert", str(servers.cert), url, "-o", f"{outdir}/#1",
               "-w", "%{http_code}\n"]  # fmt: skip
        if wrapped:
            done, timings = wrap(tmp_path, cmd, timeout=120)
            assert timings and all(t["error"] is None for t in timings)
        else:
            done = subprocess.run(cmd, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        codes = done.stdout.split()
        assert len(codes) == 200
        pages = {p.name: p.read_bytes() for p in outdir.iterdir()}
        pages["codes"] = b" ".join(codes)
        return pages

    native, wrapped = fetch(tmp_path / "native", False), fetch(tmp_path / "wrapped", True)
    same = sum(native[k] == wrapped.get(k) for k in native)
    assert same / len(native) == 1.0  # C3
    assert native["codes"].count(b"500") == 11 and len(native["23"]) == 1 << 20


def test_slow_reader_backpressure_keeps_memory_bounded(tmp_path: Path, servers: Servers) -> None:
    """64 MiB from a fast server to a program that reads slowly: the wrapper holds the
    endpoint socket's data back (NOTIFMASK) instead of buffering it; its peak memory stays
    far below the transfer's size, and every byte arrives."""
    _need("curl")
    reader = (
        "import sys, time\n"
        "n = 0\n"
        "while chunk := sys.stdin.buffer.read(1 << 20):\n"
        "    n += len(chunk); time.sleep(0.02)\n"
        "print(n)\n"
    )
    url = servers.url("http", "zeros.bin")
    cmd = f"curl -s {url} | python3 -c '{reader}'"
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "print(done.returncode, done.stdout.decode().strip(),"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    tfile = tmp_path / "t.jsonl"
    argv = [sys.executable, "-c", probe, *PKTLAB, "wrap", "--timings", str(tfile),
            "--", "sh", "-c", cmd]  # fmt: skip
    _proxychains()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    status, count, maxrss_kib = done.stdout.split()
    assert (status, count) == ("0", str(64 << 20)), done.stderr
    assert int(maxrss_kib) < 100 * 1024  # peak RSS, KiB: ~55 MiB idle; 64 MiB went through
    (t,) = [json.loads(x) for x in tfile.read_text().splitlines()]
    assert t["bytes_down"] > 64 << 20


def test_certificate_limits_apply_to_wrapped_traffic(tmp_path: Path, servers: Servers) -> None:
    """TLS link from a `pktlab init` home whose exppriv allows only 192.0.2.0/24: a TCP
    connect elsewhere fails in the program as a connection error and never leaves the
    endpoint; a UDP query elsewhere is dropped (dig times out)."""
    _need("curl", "dig")
    home = home_limited(tmp_path)
    with socket.socket() as lsn:  # a server nobody may reach
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(8)
        lsn.setblocking(False)
        port = lsn.getsockname()[1]
        done, timings = wrap(
            tmp_path, ["curl", "-sS", f"http://127.0.0.1:{port}/"], "--home", str(home)
        )
        assert done.returncode == 7, done.stderr  # curl: could not connect
        with pytest.raises(BlockingIOError):
            lsn.accept()  # nothing left the endpoint
    assert "ESKTOPNDENY" in timings[0]["error"]
    dns = str(servers.ports["dns"])
    done, timings = wrap(
        tmp_path, ["dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "-p", dns, NAME],
        "--home", str(home),
    )  # fmt: skip
    assert done.returncode == 9, done.stdout  # dig: no reply
    assert "ESKTPKTDENY" in timings[0]["error"] and timings[0]["datagrams_down"] == 0
    # the user is told once why (dig only says it timed out)
    assert done.stderr.count(b"pktlab wrap: the endpoint refused a datagram to 127.0.0.1") == 1


def test_children_are_wrapped_too(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    url = servers.url("http", "index.html")
    done, timings = wrap(tmp_path, ["sh", "-c", f"curl -s {url}; (curl -s {url}) | cat"])
    assert done.returncode == 0
    assert done.stdout == b"hello through the endpoint\n" * 2
    assert len(timings) == 2


def test_socks_env_mode_for_socks_aware_tools(tmp_path: Path, servers: Servers) -> None:
    _need("curl")
    done, timings = wrap(
        tmp_path, ["curl", "-s", servers.url("http", "index.html", host=NAME)],
        "--socks-env", "--dns", servers.dns,
    )  # fmt: skip
    assert done.stdout == b"hello through the endpoint\n"
    assert timings[0]["host"] == NAME  # socks5h: the name went to the endpoint


def test_timing_fidelity_shim_changes_only_the_programs_clock(tmp_path: Path) -> None:
    from packetlab.wrap.shim import ShimError, wrap_shim
    from packetlab.wrap.vclock import VirtualClock

    try:
        lib = wrap_shim()
    except ShimError as e:
        pytest.skip(str(e))
    vc = VirtualClock(str(tmp_path / "clock"))
    now = vc.virtual()
    time.sleep(0.01)
    vc.due(now)  # hide the last 10 ms from the program
    env = dict(os.environ, LD_PRELOAD=str(lib), PKTLAB_WRAP_CLOCK=str(tmp_path / "clock"))
    code = "import time; print(time.monotonic_ns(), time.time_ns())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    mono, wall = map(int, out.stdout.split())
    assert 9_000_000 <= time.monotonic_ns() - mono < 2_000_000_000
    assert 9_000_000 <= time.time_ns() - wall < 2_000_000_000
    vc.close()


@pytest.fixture
def listen_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_twistd_endpoint_with_listen(tmp_path: Path, servers: Servers, listen_port: int) -> None:
    """The same programs through a separate `twistd pktendpoint` that connects to
    `pktlab wrap --listen` (names resolved from the endpoint, at the test's DNS server)."""
    _need("curl", "dig")
    _proxychains()
    script = (
        f"curl -s --cacert {servers.cert} https://{NAME}:{servers.ports['https']}/index.html"
        f" && dig +short @127.0.0.1 -p {servers.ports['dns']} {NAME}"
    )
    tfile = tmp_path / "t.jsonl"
    wrap_proc = subprocess.Popen(
        [*PKTLAB, "wrap", "--listen", f"127.0.0.1:{listen_port}", "--insecure-plaintext",
         "--dns", servers.dns, "--timings", str(tfile), "--wait", "30", "--", "sh", "-c",
         script],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    ep = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
         "--config", os.devnull, "--transproto", "tcp,udp", "--reconnect-delay", "0.05",
         "--retry-delay", "0.2", f"127.0.0.1:{listen_port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, err = wrap_proc.communicate(timeout=60)
    finally:
        stop_process(ep)
        stop_process(wrap_proc)
    assert wrap_proc.returncode == 0, err
    assert out == b"hello through the endpoint\n127.0.0.1\n"
    protos = sorted(json.loads(x)["proto"] for x in tfile.read_text().splitlines())
    assert protos == ["tcp", "udp"]


@pytest.mark.parametrize("host", ["127.0.0.1", NAME])
@pytest.mark.parametrize("fidelity", [False, True])
def test_fidelity_hides_a_slow_controller_link(
    tmp_path: Path, servers: Servers, listen_port: int, fidelity: bool, host: str
) -> None:
    """The endpoint's link to the controller goes through a relay adding 50 ms each way.
    A Python client timing its own HTTP fetch (a connect and a request: two controller
    round trips, >= 200 ms) sees that delay plainly, and with --fidelity only the
    endpoint's intervals (loopback: far below one controller round trip). By name, the
    lookup (now in the program's getaddrinfo, from the endpoint) is hidden the same way."""
    _proxychains()
    relay = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.delay_relay", "0", str(listen_port), "50"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert relay.stdout is not None
    relay_port = relay.stdout.readline().strip()
    url = servers.url("http", "index.html", host=host)
    script = (
        "import time, urllib.request as u\n"
        f"t = time.monotonic(); body = u.urlopen({url!r}).read()\n"
        "print(round((time.monotonic() - t) * 1000), len(body))\n"
    )
    extra = ["--fidelity"] if fidelity else []
    wrap_proc = subprocess.Popen(
        [*PKTLAB, "wrap", "--listen", f"127.0.0.1:{listen_port}", "--insecure-plaintext",
         "--dns", servers.dns, *extra, "--", "python3", "-c", script],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_tcp_listening(listen_port, timeout=30)
    ep = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
         "--config", os.devnull, "--transproto", "tcp,udp", "--retry-delay", "0.2",
         f"127.0.0.1:{relay_port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, err = wrap_proc.communicate(timeout=60)
    finally:
        for p in (ep, relay, wrap_proc):
            stop_process(p)
    assert wrap_proc.returncode == 0, err
    elapsed_ms, size = map(int, out.split())
    assert size == len("hello through the endpoint\n")
    if fidelity:
        assert elapsed_ms < 100  # the 200 ms of controller round trips are hidden
    else:
        assert elapsed_ms >= 200


def test_remote_endpoint_gone_mid_transfer(
    tmp_path: Path, servers: Servers, listen_port: int
) -> None:
    """--listen with a twistd endpoint that is killed while curl downloads: curl fails
    with a transfer error, pktlab wrap ends promptly with curl's status, nothing hangs."""
    _need("curl")
    _proxychains()
    url = servers.url("http", "drip/50000000")  # ~12 s of slow data
    wrap_proc = subprocess.Popen(
        [*PKTLAB, "wrap", "-v", "--listen", f"127.0.0.1:{listen_port}", "--insecure-plaintext",
         "--", "curl", "-s", "-o", os.devnull, url],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    ep = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
         "--config", os.devnull, "--transproto", "tcp,udp", f"127.0.0.1:{listen_port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wrap_proc.stderr is not None
        deadline = time.monotonic() + 30
        for raw in wrap_proc.stderr:  # -v: the controller logs the session's start
            if b"running the experiment" in raw or time.monotonic() > deadline:
                break
        time.sleep(1.5)
        assert wrap_proc.poll() is None  # still downloading
        ep.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        out, err = wrap_proc.communicate(timeout=20)
        assert time.monotonic() - t0 < 10
        assert wrap_proc.returncode not in (0, 125), err
        assert out == b""
    finally:
        stop_process(ep)
        stop_process(wrap_proc)


# -- session 20 (wrap20): what a first-time user hit ---------------------------------------


class _Echo:
    """A UDP echo server (and, on IPv6, a TCP one that says hello) in a thread."""

    def __init__(self, host: str) -> None:
        import threading

        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.bind((host, 0))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(fam, socket.SOCK_STREAM)
        self.tcp.bind((host, 0))
        self.tcp.listen(4)
        self.tcp.settimeout(0.2)
        self.port, self.tport = self.udp.getsockname()[1], self.tcp.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(65535)
                self.udp.sendto(data, peer)
            except OSError:
                pass
            try:
                conn, _ = self.tcp.accept()
                with conn:
                    conn.sendall(b"hello over tcp\n")
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def echo4() -> Iterator[_Echo]:
    e = _Echo("127.0.0.1")
    yield e
    e.close()


@pytest.fixture
def echo6() -> Iterator[_Echo]:
    try:
        e = _Echo("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield e
    e.close()


def test_ipv6_destinations_through_the_in_process_endpoint(tmp_path: Path, echo6: _Echo) -> None:
    """The in-process endpoint stands for this host, IPv6 included: it exported only
    127.0.0.1 and every IPv6 connect or datagram failed (ESKTNOPRFAM)."""
    script = (
        "import socket\n"
        f"t = socket.create_connection(('::1', {echo6.tport}), timeout=10)\n"
        "print(t.makefile('rb').readline().decode().strip(), *t.getpeername()[:2])\n"
        "u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(10)\n"
        f"u.sendto(b'six', ('::1', {echo6.port}))\n"
        "data, peer = u.recvfrom(100)\n"
        "print(data.decode(), peer[0], peer[1])\n"
    )
    done, timings = wrap(tmp_path, ["python3", "-c", script])
    assert done.returncode == 0, done.stderr
    # getpeername: the server, not our SOCKS server (proxychains' connection)
    assert done.stdout == f"hello over tcp ::1 {echo6.tport}\nsix ::1 {echo6.port}\n".encode()
    assert sorted(t["proto"] for t in timings) == ["tcp", "udp"]
    assert all(t["error"] is None and t["addr"] == "::1" for t in timings), timings


def test_udp_to_an_ipv4_mapped_address_and_datagrams_over_8_kib(
    tmp_path: Path, echo4: _Echo
) -> None:
    """A dual-stack socket sending to ::ffff:127.0.0.1 reaches the IPv4 peer (it failed:
    the endpoint was asked for an IPv6 socket); a 60,000-byte datagram arrives whole both
    ways (the relay port read 8192 bytes and cut the rest)."""
    script = (
        "import socket\n"
        "u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(10)\n"
        f"u.sendto(b'mapped', ('::ffff:127.0.0.1', {echo4.port}))\n"
        "data, peer = u.recvfrom(100)\n"
        "print(data.decode(), peer[0], peer[1])\n"
        "b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.settimeout(10)\n"
        f"b.sendto(bytes(range(256)) * 234 + b'end', ('127.0.0.1', {echo4.port}))\n"
        "data, peer = b.recvfrom(65535)\n"
        "print(len(data), data == bytes(range(256)) * 234 + b'end')\n"
    )
    done, timings = wrap(tmp_path, ["python3", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mapped ::ffff:127.0.0.1 {echo4.port}\n59907 True\n".encode()
    assert all(t["addr"] == "127.0.0.1" and t["error"] is None for t in timings), timings


_COUNT_SIGINTS = """\
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
print("ready", flush=True)
deadline = time.monotonic() + 20
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # a second SIGINT, if any, comes within this
sys.exit(len(got))
"""


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_at_a_terminal_reaches_the_program_once(tmp_path: Path, wrapped: bool) -> None:
    """Ctrl-C on a real terminal (a pty): the program sees one SIGINT, as when it runs
    natively. pktlab wrap forwarded its own copy on top of the terminal's."""
    import fcntl
    import termios

    script = tmp_path / "count.py"
    script.write_text(_COUNT_SIGINTS)
    argv = ["python3", str(script)]
    if wrapped:
        argv = [*PKTLAB, "wrap", "--", *argv]
    master, slave = os.openpty()

    def own_terminal() -> None:  # after setsid: the pty becomes our controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
        start_new_session=True, preexec_fn=own_terminal,
    )  # fmt: skip
    os.close(slave)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        os.write(master, b"\x03")  # the terminal sends SIGINT to its foreground group
        status = proc.wait(timeout=30)
    finally:
        stop_process(proc)
        os.close(master)
    assert status == 1  # the number of SIGINTs the program got


def test_raw_and_icmp_sockets_are_refused_not_sent_from_this_host(tmp_path: Path) -> None:
    """They cannot go through the endpoint; they were let through, so a wrapped `ping`
    (root here) measured this host's path and looked like a wrapped measurement."""
    script = (
        "import socket\n"
        "for fam, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),\n"
        "        (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),\n"
        "        (socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 58)):\n"
        "    try:\n"
        "        socket.socket(fam, kind, proto).close(); print('opened')\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close(); print('udp ok')\n"
    )
    done, _ = wrap(tmp_path, ["python3", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["1", "13", "1", "udp", "ok"]  # EPERM EACCES EPERM
    assert done.stderr.count(b"raw and ICMP sockets cannot go through the endpoint") == 1
    if shutil.which("ping"):
        done, _ = wrap(tmp_path, ["ping", "-c", "1", "-W", "1", "127.0.0.1"])
        assert done.returncode != 0 and b"bytes from" not in done.stdout


def test_names_resolve_to_the_endpoints_real_addresses(tmp_path: Path, servers: Servers) -> None:
    """getaddrinfo returns what the endpoint's DNS server answered, so a UDP tool can use
    a name (dig @NAME sent its query to proxychains' placeholder 224.0.0.1) and a program
    sees the real address; the connection's timings still name the host."""
    _need("dig", "curl")
    dns = str(servers.ports["dns"])
    done, timings = wrap(
        tmp_path, ["dig", "+short", "+time=5", "+tries=1", "@" + NAME, "-p", dns, NAME],
        "--dns", servers.dns,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == b"127.0.0.1\n"
    assert [t["addr"] for t in timings] == ["127.0.0.1"]
    script = (
        "import socket\n"
        f"print(socket.getaddrinfo({NAME!r}, 80, socket.AF_INET)[0][4][0])\n"
        "try:\n"
        f"    socket.getaddrinfo({NAME!r}, 80, socket.AF_INET6)\n"
        "except socket.gaierror as e:\n"
        "    print(e.errno == socket.EAI_NONAME)\n"  # no AAAA: not a temporary failure
    )
    done, _ = wrap(tmp_path, ["python3", "-c", script], "--dns", servers.dns)
    assert done.stdout == b"127.0.0.1\nTrue\n", done.stderr
    url = servers.url("http", "index.html", host=NAME)
    done, timings = wrap(
        tmp_path, ["curl", "-s", "-w", "%{remote_ip}\\n", url], "--dns", servers.dns
    )
    assert done.stdout == b"hello through the endpoint\n127.0.0.1\n", done.stderr
    (t,) = timings
    assert t["host"] == NAME and t["dns_sent"] is not None and t["dns_ns"] is not None


def test_sigterm_while_waiting_for_an_endpoint(listen_port: int) -> None:
    """It ended silently with 125 ("pktlab wrap failed"); now a line and 143, as a shell
    reports a program SIGTERM ended."""
    proc = subprocess.Popen(
        [*PKTLAB, "wrap", "--listen", f"127.0.0.1:{listen_port}", "--insecure-plaintext",
         "--", "true"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert "waiting for an endpoint" in proc.stderr.readline()
        proc.terminate()
        status = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        stop_process(proc)
    assert status == 143
    assert err.strip() == "pktlab wrap: terminated before CMD ran"


def test_an_upload_over_the_endpoints_send_window_is_explained(tmp_path: Path) -> None:
    """The endpoint's send window (12.5 MB per 10 s without a grant) refuses the rest of
    a fast upload and the program's connection is reset; the user was told nothing but
    the program's "Connection reset by peer"."""
    import threading

    sink = socket.create_server(("127.0.0.1", 0))
    port = sink.getsockname()[1]

    def drain() -> None:
        conn, _ = sink.accept()
        with conn:
            while conn.recv(1 << 20):
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    script = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        "try:\n"
        "    for _ in range(32):\n"
        "        s.sendall(bytes(1 << 20))\n"
        "    s.shutdown(socket.SHUT_WR); s.recv(1)\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    try:
        done, timings = wrap(tmp_path, ["python3", "-c", script])
    finally:
        sink.close()
        reader.join(5)
    assert done.stdout in (b"ConnectionResetError\n", b"BrokenPipeError\n"), done.stderr
    assert b"over its send window" in done.stderr and b"--max-burst-rate-byte" in done.stderr
    assert done.stderr.count(b"pktlab wrap:") == 1
    assert "ESKTPKTDENY" in timings[0]["error"]


def test_a_background_child_left_running_is_still_wrapped(tmp_path: Path, servers: Servers) -> None:
    """`sh -c 'curl URL &'`: the shell exits at once and curl goes on, as natively; its
    connection was cut when the shell exited (curl printed 000)."""
    _need("curl")
    url = servers.url("http", "slow/300")
    done, timings = wrap(
        tmp_path, ["sh", "-c", f"curl -s -o /dev/null -w '%{{http_code}}\\n' {url} &"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"200\n"
    assert [t["error"] for t in timings] == [None]


def test_the_callers_own_children_do_not_hold_a_run(tmp_path: Path) -> None:
    """`wrap()` as a building block in a program that started a process of its own
    (a server): the run must not take it for the wrapped program's orphan and wait."""
    script = (
        "import subprocess\n"
        "from twisted.internet import task\n"
        "from packetlab.cli.link import run_in_process\n"
        "from packetlab.wrap.runner import WrapOptions, wrap\n"
        "server = subprocess.Popen(['sleep', '60'])\n"
        "async def experiment(session):\n"
        "    return (await wrap(session, ['true'], WrapOptions())).status\n"
        "async def main(reactor):\n"
        "    print('status', await run_in_process(reactor, experiment, plaintext=True))\n"
        "    server.kill(); server.wait()\n"
        "task.react(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=40, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"status 0\n"


DUAL = "dual.wrap.test"  # the test DNS server answers A 127.0.0.1 and AAAA ::1


def _native_hosts(tmp_path: Path, script: str, addrs: str = "127.0.0.1 ::1") -> bytes | None:
    """`python3 -c script` run natively with DUAL at `addrs` in /etc/hosts (a user and
    mount namespace); None where namespaces are not allowed."""
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"{a} {DUAL}\n" for a in addrs.split()))
    if shutil.which("unshare") is None:
        return None
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec python3 -c "$1"',
         str(hosts), script],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else None


def test_getaddrinfo_without_a_family_gets_both_in_native_order(
    tmp_path: Path, servers: Servers
) -> None:
    """AF_UNSPEC gave the A addresses only (AAAA only when there was no A); natively both
    come, ::1 before 127.0.0.1 (RFC 6724 precedence; the endpoint has both loopbacks)."""
    script = (
        "import socket\n"
        f"print([a[4][0] for a in socket.getaddrinfo({DUAL!r}, 80, type=socket.SOCK_STREAM)])\n"
    )
    done, _ = wrap(tmp_path, ["python3", "-c", script], "--dns", servers.dns)
    assert done.stdout == b"['::1', '127.0.0.1']\n", done.stderr
    native = _native_hosts(tmp_path, script)
    if native is not None:  # the same addresses from a hosts file, natively
        assert native == done.stdout


def test_gethostbyname_answers_from_the_endpoint(tmp_path: Path, servers: Servers) -> None:
    """gethostbyname returned proxychains' placeholder (224.0.0.1), and gethostbyname_r
    (Python's gethostbyname_ex) asked this host's DNS, which does not know the name."""
    _need("cc")
    src = tmp_path / "ghbn.c"
    src.write_text(
        "#include <arpa/inet.h>\n#include <netdb.h>\n#include <stdio.h>\n"
        "int main(int c, char **v) {\n"
        "  struct hostent *h = gethostbyname(v[1]);\n"
        '  if (!h) { printf("h_errno %d\\n", h_errno); return 2; }\n'
        "  char t[64]; for (char **a = h->h_addr_list; *a; a++)\n"
        '    printf("%s %s\\n", h->h_name, inet_ntop(h->h_addrtype, *a, t, sizeof t));\n'
        "  h = gethostbyname2(v[1], AF_INET6);\n"
        '  if (h) printf("%s\\n", inet_ntop(AF_INET6, h->h_addr_list[0], t, sizeof t));\n'
        "  return 0; }\n"
    )
    exe = tmp_path / "ghbn"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    done, _ = wrap(tmp_path, [str(exe), DUAL], "--dns", servers.dns)
    assert done.stdout == f"{DUAL} 127.0.0.1\n::1\n".encode(), done.stderr
    done, _ = wrap(tmp_path, [str(exe), "nx.wrap.test"], "--dns", servers.dns)
    assert (done.returncode, done.stdout) == (2, b"h_errno 1\n")  # HOST_NOT_FOUND
    script = f"import socket\nprint(socket.gethostbyname_ex({DUAL!r}))\n"
    done, _ = wrap(tmp_path, ["python3", "-c", script], "--dns", servers.dns)
    assert done.stdout == f"('{DUAL}', [], ['127.0.0.1'])\n".encode(), done.stderr
    # (glibc's hosts file gives gethostbyname a "::1" line as 127.0.0.1 too: v4 only)
    native = _native_hosts(tmp_path, script, "127.0.0.1")
    if native is not None:
        assert native == done.stdout


def test_getsockname_shows_the_endpoint_side_of_a_connection(tmp_path: Path) -> None:
    """getsockname() showed the program's loopback end towards our SOCKS server; natively
    (and now) it is the address and port the server sees the connection come from."""
    script = (
        "import socket, sys\n"
        "srv = socket.create_server(('127.0.0.1', 0))\n"
        "c = socket.create_connection(srv.getsockname())\n"
        "peer = srv.accept()[1]\n"
        "print(c.getsockname() == peer == c.getsockname())\n"
    )
    native = subprocess.run(["python3", "-c", script], capture_output=True, timeout=30)
    assert native.stdout == b"True\n"
    done, _ = wrap(tmp_path, ["python3", "-c", script])
    assert done.stdout == b"True\n", done.stderr


# -- session 21 (wrap21): reverse lookups, UDP getsockname, an outside tester's pass -------

_UDP_LOCAL = """\
import socket
def pair(fam, host, dst):
    srv = socket.socket(fam, socket.SOCK_DGRAM); srv.bind((host, 0))
    c = socket.socket(fam, socket.SOCK_DGRAM)  # unconnected: sendto, then getsockname
    c.sendto(b"x", (dst, srv.getsockname()[1])); peer = srv.recvfrom(9)[1]
    k = socket.socket(fam, socket.SOCK_DGRAM)  # connected: getsockname before a send
    k.connect((dst, srv.getsockname()[1])); mine = k.getsockname(); k.send(b"y")
    kpeer = srv.recvfrom(9)[1]; k.send(b"z")
    print(c.getsockname()[1] == peer[1], c.getsockname()[0], mine[:2] == kpeer[:2],
          srv.recvfrom(9)[1] == kpeer, c.getsockname()[1] != k.getsockname()[1])
pair(socket.AF_INET, "127.0.0.1", "127.0.0.1")
try:
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
except OSError:
    print("True :: True True True")  # no IPv6 loopback here
else:
    pair(socket.AF_INET6, "::1", "::1")
"""


def test_udp_getsockname_shows_the_port_datagrams_leave_from(tmp_path: Path) -> None:
    """A wrapped UDP socket's getsockname showed its loopback end (towards a relay port);
    natively, and now, it is the address and port its datagrams leave from (the server
    sees them come from there), and one socket keeps one port for all its datagrams."""
    native = subprocess.run(["python3", "-c", _UDP_LOCAL], capture_output=True, timeout=30)
    assert native.stdout == b"True 0.0.0.0 True True True\nTrue :: True True True\n"
    done, timings = wrap(tmp_path, ["python3", "-c", _UDP_LOCAL])
    assert done.stdout == native.stdout, done.stderr
    assert sum(t["datagrams_up"] for t in timings if t["proto"] == "udp") >= 3


_REVERSE = """\
getent hosts 127.0.0.1 127.0.0.2; echo "getent $?"
getent hosts 127.0.0.3; echo "getent $?"
getent hosts 2001:db8::2 ::2; echo "getent $?"
host 127.0.0.2; echo "host $?"
host 127.0.0.1; echo "host $?"
python3 -c '
import socket
for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "::ffff:127.0.0.2"):
    for flags in (0, socket.NI_NAMEREQD):
        try:
            print(socket.getnameinfo((a, 53), flags))
        except OSError as e:
            print(e)
    try:
        print(socket.gethostbyaddr(a))
    except OSError as e:
        print(e)
print(socket.getfqdn("127.0.0.2"), socket.getfqdn("127.0.0.3"))
'
"""

_IN_NAMESPACE = """\
set -e
mount --bind "$RESOLV" /etc/resolv.conf
ip link set lo up
"$PY" "$SERVERS" "$ROOT" 127.0.0.1 53 > "$OUT/ports" &
trap 'kill $!' EXIT
while [ ! -s "$OUT/ports" ]; do sleep 0.05; done
set +e
sh -c "$PROBE" > "$OUT/native" 2>&1
"$PY" -m packetlab wrap --timings "$OUT/timings" -- sh -c "$PROBE" > "$OUT/wrapped" 2>&1
"""


def test_reverse_lookups_come_from_the_endpoint_as_natively(
    tmp_path: Path, servers: Servers
) -> None:
    """getnameinfo gave numbers only (proxychains' hook, whatever the flags: no name, no
    service name, no NI_NAMEREQD error), gethostbyaddr the address as the name, and
    gethostbyaddr_r asked this host's DNS. In a namespace whose resolv.conf names our DNS
    server (PTR: x.x.x.2 is www.wrap.test), getent, host and Python's socket calls print
    the same natively and wrapped, and the lookups went out from the endpoint."""
    _need("getent", "host", "unshare", "ip")
    _proxychains()
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    env = dict(
        os.environ, RESOLV=str(tmp_path / "resolv.conf"), PY=sys.executable, ROOT=str(servers.root),
        SERVERS=str(Path(__file__).with_name("wrap_servers.py")), OUT=str(tmp_path),
        PROBE=_REVERSE,
    )  # fmt: skip
    done = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", _IN_NAMESPACE], env=env, cwd=REPO, capture_output=True,
        timeout=90,
    )  # fmt: skip
    if not (tmp_path / "native").exists():
        pytest.skip(f"no namespace here: {done.stderr.decode()[-200:]}")
    native, wrapped = (tmp_path / "native").read_text(), (tmp_path / "wrapped").read_text()
    assert "127.0.0.2       www.wrap.test\ngetent 0\ngetent 2\n" in native, native
    # (glibc looks up ::a.b.c.d as a.b.c.d and answers an IPv4 entry)
    assert "2001:db8::2     www.wrap.test\n0.0.0.2         www.wrap.test\n" in native
    assert "2.0.0.127.in-addr.arpa domain name pointer www.wrap.test." in native
    assert "('www.wrap.test', 'domain')" in native and "www.wrap.test 127.0.0.3" in native
    assert wrapped == native
    timings = [json.loads(x) for x in (tmp_path / "timings").read_text().splitlines()]
    # 127.0.0.3 has no name: each failed lookup from the endpoint is a line of its own
    assert [t["host"] for t in timings if t["proto"] == "dns"] == ["127.0.0.3"] * 5, timings


_TOOLS = """\
curl -s -w ' %{http_code} %{local_ip} %{remote_ip}:%{remote_port}\\n' "$URL"; echo "curl $?"
curl -s "http://127.0.0.1:$CLOSED/"; echo "curl $?"
if command -v wget >/dev/null; then
    wget -q -O - "$URL"; echo "wget $?"; wget -q -O - "http://127.0.0.1:$CLOSED/"; echo "wget $?"
fi
dig +short @127.0.0.1 -p "$DNS" www.wrap.test; echo "dig $?"
nc -zv 127.0.0.1 "$CLOSED" 2>&1; echo "nc $?"
printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -N 127.0.0.1 "$HTTP" | tail -1; echo "nc $?"
ssh -V 2>&1 | cut -c1-8; ssh -o BatchMode=yes -p "$CLOSED" 127.0.0.1 true 2>&1; echo "ssh $?"
python3 -c "$PROBE"; echo "python $?"
if [ -n "$PKTLAB_WRAP_SOCKS" ]; then  # wrapped only: no TTL through the endpoint
    traceroute -q1 -w1 -m1 127.0.0.1 >/dev/null; echo "traceroute $?"
fi
"""

_PROBE = """\
import asyncio, os, socket, struct, sys, threading
HTTP, UDP = int(sys.argv[1]), int(sys.argv[2])
async def main():
    r, w = await asyncio.open_connection("127.0.0.1", HTTP)
    w.write(b"GET /index.html HTTP/1.0\\r\\n\\r\\n")
    print((await r.read()).split(b"\\r\\n")[0].decode(), w.get_extra_info("peername"))
    w.close()
    loop, got = asyncio.get_running_loop(), asyncio.Queue()
    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, a): got.put_nowait((d, a))
    t, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", UDP))
    t.sendto(b"dgram"); print(await asyncio.wait_for(got.get(), 10)); t.close()
    print(await loop.getnameinfo(("127.0.0.1", 80)))
asyncio.run(main())
def half_close(fam, host):  # a server that answers once the client's FIN came
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen(4)
    def serve():
        c = srv.accept()[0]; n = 0
        while chunk := c.recv(65536): n += len(chunk)
        c.sendall(b"got %d" % n); c.close()
    threading.Thread(target=serve).start()
    s = socket.create_connection((host, srv.getsockname()[1]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
    names = s.getsockname()[0], s.getpeername()[0]
    s.sendall(b"x" * 100000); s.shutdown(socket.SHUT_WR)
    print(s.recv(100), *names)
half_close(socket.AF_INET, "127.0.0.1")
try:
    socket.socket(socket.AF_INET6).bind(("::1", 0))
except OSError:
    print("b'got 100000' ::1 ::1")
else:
    half_close(socket.AF_INET6, "::1")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000))
u.connect(("127.0.0.1", UDP)); u.send(b"1")
print(u.recv(9))
try:
    u.recv(9)
except BlockingIOError:
    print("SO_RCVTIMEO")
out = []
def worker(i):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(10)
    c.sendto(b"%d" % i, ("127.0.0.1", UDP)); out.append(c.recv(9))
ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out))
pid = os.fork()
if pid == 0:
    os.execvp("curl", ["curl", "-s", "-o", "/dev/null", "-w", "child %{http_code}\\n",
                       f"http://127.0.0.1:{HTTP}/index.html"])
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_an_outside_testers_tools_behave_as_natively(
    tmp_path: Path, servers: Servers, echo4: _Echo
) -> None:
    """What a researcher would wrap first, natively and wrapped side by side, same output
    and exit codes: curl and wget (a page, a refused port), dig, nc, ssh's quick exits, a
    Python script with asyncio (TCP, UDP, getnameinfo), a half-close and SO_RCVTIMEO on
    IPv4 and IPv6, threads, fork + exec. Before: getnameinfo gave ('127.0.0.1', '80'),
    an IPv6 connection's getsockname an IPv4 address, and a traceroute exited 0 having
    shown "*" for every hop (the TTL never reached the endpoint)."""
    _need("curl", "dig", "nc", "ssh", "traceroute")
    hold = socket.socket()  # bound, never listening: refused, and nobody else takes it
    hold.bind(("127.0.0.1", 0))
    closed = hold.getsockname()[1]
    env = dict(
        os.environ, URL=servers.url("http", "index.html"), HTTP=str(servers.ports["http"]),
        DNS=str(servers.ports["dns"]), CLOSED=str(closed), PROBE=_PROBE,
    )  # fmt: skip
    cmd = ["sh", "-c", _TOOLS.replace('"$PROBE"', f'"$PROBE" {servers.ports["http"]} {echo4.port}')]
    try:
        native = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
        _proxychains()
        wrapped = subprocess.run(
            [*PKTLAB, "wrap", "--", *cmd], env=env, capture_output=True, timeout=90, cwd=REPO
        )
    finally:
        hold.close()
    assert b"python 0" in native.stdout and b"curl 7" in native.stdout, native
    out, tail = wrapped.stdout.rsplit(b"traceroute ", 1)
    assert out == native.stdout, wrapped.stderr
    assert tail != b"0\n" and b"IP_TTL refused (use pktlab run traceroute)" in wrapped.stderr
