"""Session 25 (wrap25): the socket API under `pktlab wrap` as natively, beyond what
test_wrap.py covers. Each script runs natively and wrapped (in-process endpoint) and the
outputs must be the same; each test failed on the shim before session 25.

The servers a script talks to are its own (a listening TCP socket in a thread: inbound
connections are not intercepted, the endpoint connects to it over loopback) or the
test's, so nothing depends on another test's fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO
from test_wrap import _proxychains
from testkit.net import has_ipv6_loopback as _ipv6

PKTLAB = [sys.executable, "-m", "packetlab"]


def native_and_wrapped(
    script: str, *args: str, timeout: float = 60, path: Path | None = None
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """`python3 -c script args` natively, then under `pktlab wrap`. With `path` the
    script is written there and run as a file (one that exec()s itself needs __file__);
    test_wrap_tools_b25.py and test_wrap_s26.py's hand-offs share this (session 27)."""
    _proxychains()
    if path is None:
        cmd = ["python3", "-c", script, *args]
    else:
        path.write_text(script)
        cmd = ["python3", str(path), *args]
    native = subprocess.run(cmd, capture_output=True, timeout=timeout)
    wrapped = subprocess.run(
        [*PKTLAB, "wrap", "--", *cmd], capture_output=True, timeout=timeout + 30, cwd=REPO
    )
    return native, wrapped


_OPTIONS = """\
import fcntl, os, signal, socket, struct, sys, threading
signal.alarm(20)  # a read that should time out must not hold the test
families = [(socket.AF_INET, "127.0.0.1")]
if sys.argv[1] == "6":
    families.append((socket.AF_INET6, "::1"))
for fam, host in families:
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen(4)
    for nonblocking in (False, True):
        s = socket.socket(fam, socket.SOCK_STREAM | (socket.SOCK_NONBLOCK if nonblocking else 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 4, 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        try:
            s.connect((host, srv.getsockname()[1]))
        except BlockingIOError:
            pass
        conn = srv.accept()[0]
        def get(level, name, n=0):
            return s.getsockopt(level, name, n) if n else s.getsockopt(level, name)
        print(fam.name, "nonblocking" if nonblocking else "blocking",
              "cloexec", fcntl.fcntl(s, fcntl.F_GETFD) & fcntl.FD_CLOEXEC,
              "nonblock", bool(fcntl.fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK),
              "rcvtimeo", struct.unpack("ll", get(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)),
              "sndtimeo", struct.unpack("ll", get(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)),
              "nodelay", get(socket.IPPROTO_TCP, socket.TCP_NODELAY),
              "keepalive", get(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
              "keepidle", get(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
              "linger", struct.unpack("ii", get(socket.SOL_SOCKET, socket.SO_LINGER, 8)),
              "oobinline", get(socket.SOL_SOCKET, socket.SO_OOBINLINE), flush=True)
        if not nonblocking:  # SO_RCVTIMEO set before connect() still bounds a read
            try:
                s.recv(10)
                print("read returned")
            except BlockingIOError:
                print("read timed out")
            # close-on-exec: a program's child does not get the connection
            child = "import os; print('child has the socket', os.path.exists('/proc/self/fd/%d'))"
            argv = [sys.executable, "-c", child % s.fileno()]
            pid = os.posix_spawn(sys.executable, argv, os.environ)
            os.waitpid(pid, 0)
        s.close(); conn.close()
    srv.close()
"""


@contextmanager
def udp_echo_server() -> Iterator[int]:
    """A loopback UDP echo server on a thread while the block runs; yields its port."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(100)
                udp.sendto(data, peer)
            except OSError:
                pass

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        yield udp.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        udp.close()


def test_socket_options_and_close_on_exec_survive_a_wrapped_connect() -> None:
    """proxychains connects a new socket to our SOCKS server and dup2()s it over the
    program's: every option set before connect() was lost and the fd lost FD_CLOEXEC.
    Before: SO_RCVTIMEO (0.3 s) set before connect() never fired, the read waited until
    the script's alarm; TCP_NODELAY, SO_KEEPALIVE, SO_LINGER, ... read back as 0; an
    exec()ed child inherited the connection."""
    native, wrapped = native_and_wrapped(_OPTIONS, "6" if _ipv6() else "4")
    assert native.returncode == 0, native
    assert b"read timed out" in native.stdout and b"child has the socket False" in native.stdout
    assert b"rcvtimeo (0, 300000)" in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr
    assert wrapped.returncode == 0


_NAMES = """\
import os, socket, sys, threading
TCP = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if sys.argv[2] == "6" else [])
UDP = int(sys.argv[1])
for fam, host in TCP:
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen(8)
    accepted = []
    def serve():
        while True:
            c = srv.accept()[0]
            accepted.append(c)
            if c.recv(10) == b"end":
                return
    t = threading.Thread(target=serve); t.start()
    s = socket.create_connection((host, srv.getsockname()[1]))
    d = s.dup()
    n2 = os.dup2(s.fileno(), 200); s2 = socket.socket(fileno=n2)
    srv_port = srv.getsockname()[1]
    print(fam.name, "peer", [(x.getpeername()[0], x.getpeername()[1] == srv_port)
                             for x in (s, d, s2)])
    print(fam.name, "local", [x.getsockname()[0] for x in (s, d, s2)],
          s.getsockname() == d.getsockname() == s2.getsockname())
    s2.detach(); os.close(200)
    # connect() on a connected socket: EISCONN, and no second connection
    print(fam.name, "again", os.strerror(s.connect_ex((host, srv.getsockname()[1]))))
    s.sendall(b"end"); t.join(10)
    print(fam.name, "connections the server saw", len(accepted))
    s.close(); d.close(); srv.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
u.connect(("127.0.0.1", UDP)); u.send(b"1"); u.recv(10)
d = u.dup()
print("udp", d.getpeername(), u.getsockname() == d.getsockname())
"""


def test_dup_fds_and_a_second_connect_as_natively() -> None:
    """A dup()ed fd is the same socket. Before: its getpeername showed our SOCKS server
    (127.0.0.1:PORT), an IPv6 socket's dup showed an IPv4 getsockname, and a UDP
    socket's dup showed its loopback port, not the endpoint's (the shim kept them by fd).
    connect() on a connected TCP socket returned 0 and proxychains put a new connection
    in its place: the server saw 2 connections (natively EISCONN, 1)."""
    with udp_echo_server() as port:
        native, wrapped = native_and_wrapped(_NAMES, str(port), "6" if _ipv6() else "4")
    assert native.returncode == 0, native
    assert b"connections the server saw 1" in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr
    assert wrapped.returncode == 0


_UDP_SERVER = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
s.settimeout(20)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    data, peer = s.recvfrom(100)
    s.sendto(b"re:" + data, peer)  # an answer, to whoever asked this host
print("served", flush=True)
"""


@pytest.mark.parametrize("wrapped", [False, True], ids=["native", "wrapped"])
def test_a_wrapped_udp_server_answers_from_its_own_port(wrapped: bool) -> None:
    """A program that serves UDP (`nc -u -l`, a DNS server script) answers a client of
    this host from the port it was asked on. Before: its answers went out through the
    endpoint, from another port, and a connected client (dig's socket is) never got
    them (a timeout); an unconnected one saw them come from the endpoint's port."""
    if wrapped:
        _proxychains()
    cmd = ["python3", "-c", _UDP_SERVER]
    argv = [*PKTLAB, "wrap", "--", *cmd] if wrapped else cmd
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        got = []
        for connected in (True, False):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(5)
            if connected:
                c.connect(("127.0.0.1", port))
                c.send(b"hi")
            else:
                c.sendto(b"hi", ("127.0.0.1", port))
            try:
                data, peer = c.recvfrom(100)
                got.append((data, peer[1] == port))
            except TimeoutError:
                got.append((b"timed out", False))
            c.close()
        assert got == [(b"re:hi", True), (b"re:hi", True)]
        assert proc.stdout.readline() == b"served\n"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


_REFUSED = """\
import socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "255.255.255.255")):
    u = socket.socket(fam, socket.SOCK_DGRAM)
    port = 0 if host == "127.0.0.1" else 9
    for call in (lambda: u.sendto(b"x", (host, port)),
                 lambda: u.sendmsg([b"x"], [], 0, (host, port))):
        try:
            print(host, port, "sent", call())
        except OSError as e:
            print(host, port, type(e).__name__, e.strerror)
"""


def test_datagrams_the_kernel_refuses_are_refused_as_natively() -> None:
    """A datagram to port 0 (EINVAL) or to 255.255.255.255 without SO_BROADCAST (EACCES).
    Before: relayed, the send returned 1 and the datagram went nowhere."""
    native, wrapped = native_and_wrapped(_REFUSED)
    assert b"sent" not in native.stdout, native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_CONNECT_FAILS = """\
import socket, subprocess, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(0)
hold = socket.create_connection(srv.getsockname())  # a full backlog: SYNs go unanswered
closed = socket.socket(); closed.bind(("127.0.0.1", 0))  # bound, never listening
for port in (srv.getsockname()[1], closed.getsockname()[1]):
    s = socket.socket()
    s.settimeout(float(sys.argv[1]))
    try:
        s.connect(("127.0.0.1", port))
        print("connected")
    except OSError as e:
        print(type(e).__name__)
url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
curl = subprocess.run(["curl", "-s", "--connect-timeout", "2", url])
print("curl", curl.returncode)
"""


def test_a_connect_that_times_out_fails_as_a_timeout() -> None:
    """proxychains makes every failed connect ECONNREFUSED: a connect the endpoint gave
    up on (`--connect-timeout`) raised ConnectionRefusedError in Python (natively
    TimeoutError) and curl exited 7 (natively 28, "Timeout was reached"). Now the shim
    asks the wrapper why ("E") and sets ETIMEDOUT; a refused one stays ECONNREFUSED."""
    if not shutil.which("curl"):
        pytest.skip("needs curl")
    _proxychains()
    cmd = ["python3", "-c", _CONNECT_FAILS]
    native = subprocess.run([*cmd, "3"], capture_output=True, timeout=60)
    wrapped = subprocess.run(
        [*PKTLAB, "wrap", "--connect-timeout", "1", "--", *cmd, "30"],
        capture_output=True, timeout=90, cwd=REPO,
    )  # fmt: skip
    assert native.stdout == b"TimeoutError\nConnectionRefusedError\ncurl 28\n", native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_CANON = """\
import socket
for name, fam in (("www.test", socket.AF_UNSPEC), ("idn.test", socket.AF_INET),
                  ("a.test", socket.AF_INET)):
    r = socket.getaddrinfo(name, 80, fam, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    print(name, fam.name, repr(r[0][3]), sorted({x[4][0] for x in r}))
for name in ("idn.test", "a.test"):
    h = socket.gethostbyname_ex(name)
    print(h[0], h[1], sorted(h[2]))
"""

# glibc's resolver asks 127.0.0.1:53: a forwarder there to the zone server's own port
_FORWARD = """\
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
def one(data, peer):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
    u.sendto(data, ("127.0.0.1", int(sys.argv[1])))
    try:
        s.sendto(u.recv(65535), peer)
    except OSError:
        pass
print("ready", flush=True)
while True:
    threading.Thread(target=one, args=s.recvfrom(65535), daemon=True).start()
"""

_NAMESPACE = """\
mount --bind "$DIR/resolv.conf" /etc/resolv.conf && ip link set lo up || exit 99
"$PY" tests/integration/dns_zone_server.py > "$DIR/port" & Z=$!
for i in $(seq 100); do [ -s "$DIR/port" ] && break; sleep 0.1; done
python3 -c "$FORWARD" "$(cat "$DIR/port")" > "$DIR/fwd" & F=$!
for i in $(seq 100); do [ -s "$DIR/fwd" ] && break; sleep 0.1; done
python3 -c "$CANON"; echo "status $?"
echo ---
"$PY" -m packetlab wrap -- python3 -c "$CANON"; echo "status $?"
echo ---
getent hosts idn.test; "$PY" -m packetlab wrap -- getent hosts idn.test
kill $Z $F
"""


def test_canonical_names_and_aliases_of_a_cname_as_natively(tmp_path: Path) -> None:
    """A name that is a CNAME: glibc gives the canonical name as getaddrinfo's
    ai_canonname and gethostbyname's h_name, the alias in h_aliases (getent prints both).
    Before: the name asked, and no aliases. Natively and wrapped in one user and network
    namespace whose resolver is the test's zone server (dns_zone_server.py)."""
    if shutil.which("unshare") is None or shutil.which("getent") is None:
        pytest.skip("needs unshare and getent")
    _proxychains()
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    env = dict(
        os.environ, DIR=str(tmp_path), PY=sys.executable, CANON=_CANON, FORWARD=_FORWARD
    )  # fmt: skip
    done = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", _NAMESPACE],
        capture_output=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    if done.returncode == 99 or b"unshare:" in done.stderr:
        pytest.skip(f"no user and network namespace here: {done.stderr[-200:]!r}")
    native, wrapped, getent = done.stdout.split(b"---\n")
    assert b"'xn--bcher-kva.test'" in native and b"status 0" in native, done
    assert b"xn--bcher-kva.test ['idn.test']" in native
    assert wrapped == native, done.stderr
    lines = getent.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1], getent


_SHORT = """\
import ctypes, errno, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(f, *args):
    rc = f(*args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
port = srv.getsockname()[1]
sin = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, socket.inet_aton("127.0.0.1"))
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    for n in (8, 15, 16):
        s = socket.socket(socket.AF_INET, kind)
        print(kind.name, "connect", n, call(libc.connect, s.fileno(), sin, n))
        s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in (8, 16):
    print("sendto", n, call(libc.sendto, u.fileno(), b"x", 1, 0, sin, n))
if sys.argv[1] == "6":  # 24 bytes: an IPv6 address without its scope id is taken
    a6 = socket.inet_pton(socket.AF_INET6, "::1")
    sin6 = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI16s", port, 0, a6)
    for n in (20, 24):
        u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        print("udp6 connect", n, call(libc.connect, u6.fileno(), sin6, n))
"""


def test_an_address_shorter_than_the_kernel_takes_is_einval() -> None:
    """connect() or sendto() with an IPv4 address of 8 or 15 bytes: EINVAL natively.
    Before: the shim and proxychains read past what the program gave and connected or
    sent. An IPv6 address of 24 bytes (no scope id) is taken, as natively."""
    native, wrapped = native_and_wrapped(_SHORT, "6" if _ipv6() else "4")
    assert b"SOCK_STREAM connect 8 EINVAL" in native.stdout, native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_MANY = """\
import socket, sys
ok = 0
for i in range(200):  # one socket a query, as a script running dig in a loop
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.sendto(b"%d" % i, ("127.0.0.1", int(sys.argv[1])))
    try:
        ok += u.recv(10) == b"%d" % i
    except OSError:
        print("no answer to socket", i)
        break
    u.close()
print("answered", ok)
"""


def test_more_udp_sockets_one_after_another_than_the_endpoint_keeps() -> None:
    """200 UDP sockets, one after another, each asking once. Before: the 129th and every
    later one got no answer (128 endpoint UDP sockets were kept for sockets the program
    had closed long ago)."""
    with udp_echo_server() as port:
        native, wrapped = native_and_wrapped(_MANY, str(port))
    assert native.stdout == b"answered 200\n", native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_CHROOT = """\
import os, socket, sys
os.chroot(sys.argv[1])  # as scamper's privilege separation does
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("192.0.2.1", 53))
    print("sent")
except OSError as e:
    print(type(e).__name__, e.strerror)
"""


@pytest.mark.root
def test_a_process_that_cannot_reach_the_wrapper_is_told_why(tmp_path: Path) -> None:
    """A wrapped process that chroot()s (scamper as root) cannot reach the wrapper's
    socket: its UDP datagrams are refused (ENETUNREACH). Before: only the program's own
    words ("scamper_getsrc: connect to dst failed: Network is unreachable"), exit 0,
    nothing measured; now one line says why."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    _proxychains()
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [*PKTLAB, "wrap", "--", "python3", "-c", _CHROOT, str(empty)],
        capture_output=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.stdout == b"OSError Network is unreachable\n", done
    assert done.stderr.count(b"cannot reach pktlab wrap's socket (it chroot()ed?)") == 1
