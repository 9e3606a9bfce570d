"""Session 25 (wrapb25): errnos of refused connects and more unmodified tools under
`pktlab wrap`, side by side with native runs against the test's own servers. Each test
failed on the code before its fix (say so in its docstring), or records a behaviour that
already matched so that it stays so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import test_wrap
from conftest import REPO
from test_wrap import NAME, Servers, home_limited, wrap
from test_wrap_sockets25 import _ipv6, _proxychains, native_and_wrapped

servers = test_wrap.servers  # its recording HTTP/HTTPS/DNS servers (a module fixture)

PKTLAB = [sys.executable, "-m", "packetlab"]

_UNREACHABLE = """\
import errno, socket, sys
addrs = ["224.0.0.1", "224.0.0.251", "239.1.2.3", "255.255.255.255", "127.0.0.1"]
if sys.argv[1] == "6":
    addrs += ["ff02::1", "ff05::1:3", "::ffff:224.0.0.1", "::ffff:255.255.255.255"]
for a in addrs:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    with socket.socket(fam) as s:
        s.settimeout(10)
        try:
            s.connect((a, 9))
            print(a, "connected")
        except OSError as e:
            print(a, errno.errorcode.get(e.errno, e.errno), end=" ")
    if a == "127.0.0.1":  # non-blocking, EINPROGRESS natively (docs/wrap.md)
        print()
        continue
    with socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        print(errno.errorcode.get(s.connect_ex((a, 9)), "0"))
"""


def test_tcp_to_multicast_or_broadcast_is_enetunreach_as_natively() -> None:
    """The kernel refuses a TCP connect to a multicast or the limited broadcast address
    with ENETUNREACH at once. Before: 224.0.0.0/8 (proxychains' placeholder subnet) was
    ECONNREFUSED (no SOCKS request at all), 255.255.255.255 and ff02::1 EHOSTUNREACH
    (the endpoint's UNREACH). Now the shim answers them itself. (127.0.0.1:9: a closed
    port, ECONNREFUSED both ways.)"""
    native, wrapped = native_and_wrapped(_UNREACHABLE, "6" if _ipv6() else "4")
    assert native.returncode == 0, native
    assert b"224.0.0.1 ENETUNREACH ENETUNREACH" in native.stdout
    assert b"127.0.0.1 ECONNREFUSED " in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr
    nc = ["nc", "-v", "-w", "2", "224.0.0.1", "80"]
    native = subprocess.run(nc, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    wrapped = subprocess.run(
        [*PKTLAB, "wrap", "--", *nc], capture_output=True, timeout=60, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert b"Network is unreachable" in native.stderr
    assert (wrapped.returncode, wrapped.stderr) == (native.returncode, native.stderr)


def test_a_placeholder_address_of_proxychains_still_connects(
    tmp_path: Path, servers: Servers
) -> None:
    """A process that cannot reach the wrapper's socket (a chroot; here PKTLAB_WRAP_UDP
    names no socket) has its names from proxychains' proxy_dns: placeholders in
    224.0.0.0/8, which only proxychains' connect maps back to the name. The shim leaves
    224.0.0.0/8 to proxychains once a lookup went that way (before that flag, the new
    multicast check made curl fail 7 here)."""
    url = servers.url("http", "index.html", host=NAME)
    script = f'PKTLAB_WRAP_UDP=/nonexistent curl -sS -w "%{{remote_ip}}\\n" {url}'
    done, timings = wrap(tmp_path, ["sh", "-c", script], "--dns", servers.dns)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello through the endpoint\n224.0.0.1\n"
    assert [t["host"] for t in timings] == [NAME]


_REFUSED = """\
import errno, socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except OSError as e:
    print(type(e).__name__, errno.errorcode.get(e.errno, e.errno), e.strerror)
"""


def test_a_connect_the_certificate_forbids_is_eperm(tmp_path: Path) -> None:
    """A destination outside the certificate's valid_dest: the endpoint refuses the
    nopen (ESKTOPNDENY), SOCKS NOT_ALLOWED. Before: ECONNREFUSED, as a closed port
    ("Connection refused": the user looks for a server that is not down). Now EPERM
    ("Operation not permitted", what a local firewall's DROP gives) and one line on
    stderr saying whose rule it was; nothing leaves the endpoint."""
    _proxychains()
    home = home_limited(tmp_path)
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(8)
        lsn.setblocking(False)
        port = lsn.getsockname()[1]
        done = subprocess.run(
            [*PKTLAB, "wrap", "--home", str(home), "--",
             "sh", "-c", f'python3 -c "$0" {port}; nc -zv 127.0.0.1 {port}; echo nc $?',
             _REFUSED],
            capture_output=True, timeout=90, cwd=REPO, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        with pytest.raises(BlockingIOError):
            lsn.accept()  # nothing left the endpoint
    assert done.stdout == b"PermissionError EPERM Operation not permitted\nnc 1\n", done.stderr
    err = done.stderr.decode()
    assert f"nc: connect to 127.0.0.1 port {port} (tcp) failed: Operation not permitted" in err
    assert err.count("pktlab wrap: the endpoint refused a connection to 127.0.0.1:") == 1
    assert "ESKTOPNDENY" in err


_FDS = """\
import os, sys
fd = int(sys.argv[1])
print(os.fstat(fd).st_ino, os.read(fd, 100))
others = []
for name in os.listdir("/proc/self/fd"):
    try:
        others.append(os.readlink(f"/proc/self/fd/{name}").split(":")[0])
    except OSError:
        pass  # the listing's own descriptor
print(sorted(set(others) - {"/dev/null", "pipe"}))
"""


def test_descriptors_given_to_pktlab_wrap_reach_the_program(tmp_path: Path) -> None:
    """`pktlab wrap -- CMD 3<file` (or a shell's `<(...)`, /dev/fd/63): the program gets
    the descriptor, as natively. Before: only 0-2 were passed on, and fd 3 was
    proxychains' pipe (`sh -c 'cat <&3'` hung reading it; here the inode differed).
    None of pktlab wrap's own descriptors (sockets, its unix socket, log files) leak to
    the program: besides 0-2 and the given one, only proxychains' pipes."""
    _proxychains()
    given = tmp_path / "given.txt"
    given.write_bytes(b"given to the program\n")
    with open(given, "rb") as f:
        done = subprocess.run(
            [*PKTLAB, "wrap", "--", "python3", "-c", _FDS, str(f.fileno())],
            capture_output=True, timeout=60, cwd=REPO, pass_fds=(f.fileno(),),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    ino = given.stat().st_ino
    assert done.stdout.decode().splitlines() == [
        f"{ino} b'given to the program\\n'",
        str([str(given)]),
    ], done.stderr


_HANDOFF = """\
import socket, subprocess, sys, threading
if len(sys.argv) > 2:  # the exec()ed program, given the connected socket
    s = socket.socket(fileno=int(sys.argv[1]))
    print("peer", s.getpeername() == ("127.0.0.1", int(sys.argv[2])), flush=True)
    s.sendall(b"hi")
    print(s.recv(10), flush=True)
    sys.exit()
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(10) + b"!")
    c.close()
threading.Thread(target=serve, daemon=True).start()
s = socket.create_connection(("127.0.0.1", port))
print("peer", s.getpeername() == ("127.0.0.1", port), flush=True)
argv = [sys.executable, __file__, str(s.fileno()), str(port)]
subprocess.run(argv, pass_fds=(s.fileno(),), check=True)
"""


_UDP_HANDOFF = """\
import socket, subprocess, sys, threading
if len(sys.argv) > 2:  # the exec()ed program, given the connected UDP socket
    s = socket.socket(fileno=int(sys.argv[1]))
    want = ("127.0.0.1", int(sys.argv[2]))
    print("peer", s.getpeername() == want)
    data, peer = s.recvfrom(100)
    print(data, "from", peer == want, flush=True)
    sys.exit()
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
port = srv.getsockname()[1]
def echo():
    data, peer = srv.recvfrom(100)
    srv.sendto(data + b"!", peer)
threading.Thread(target=echo, daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
s.send(b"ping")
print("peer", s.getpeername() == ("127.0.0.1", port), flush=True)
argv = [sys.executable, __file__, str(s.fileno()), str(port)]
subprocess.run(argv, pass_fds=(s.fileno(),), check=True)
"""


def test_a_socket_inherited_over_exec_shows_its_real_peer(tmp_path: Path) -> None:
    """An inetd-like hand-off: a program connects, then exec()s another with the socket
    (subprocess with pass_fds). The new program's shim never saw the connect; it asks
    the wrapper by the socket's loopback port ("P"). Before: its getpeername showed our
    SOCKS server (127.0.0.1, its port): `peer False`."""
    native, wrapped = native_and_wrapped(_HANDOFF, "x", path=tmp_path / "handoff.py")
    assert native.stdout == b"peer True\npeer True\nb'hi!'\n", native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_FDNUMS = """\
import os, socket, subprocess, sys
s = socket.socket()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r, w = os.pipe()
print("first descriptors", s.fileno(), u.fileno(), r, w)
fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
print("below 64", [fd for fd in fds if fd < 64])
out = subprocess.run(["sh", "-c", "exec 3</dev/null; echo sh ok"], capture_output=True)
print(out.stdout)
"""


def test_descriptor_numbers_are_the_programs_own() -> None:
    """proxychains' four pipes (its name allocator thread) took fds 3-6 of every wrapped
    process: the program's first socket was 7 (iperf3 printed "[  9]" where natively
    "[  5]"). The shim moves them up (from fd 512) as proxychains makes them. Before:
    `first descriptors 7 8 9 10`."""
    native, wrapped = native_and_wrapped(_FDNUMS)
    assert native.stdout.startswith(b"first descriptors 3 4 5 6\n"), native
    assert wrapped.stdout == native.stdout, wrapped.stderr


def _listeners(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        out.append(s)
    return out


def test_nc_port_scan_as_natively() -> None:
    """`nc -zv` over open and closed ports (checked in session 25, wrapb25; already as
    natively): the same lines on stderr, the same exit status, one connection to each
    open port per run."""
    if not shutil.which("nc"):
        pytest.skip("needs nc (OpenBSD netcat)")
    _proxychains()
    open_ = _listeners(2)
    closed = _listeners(2)
    ports = [s.getsockname()[1] for s in (*open_, *closed)]
    for s in closed:
        s.close()  # their ports now refuse
    try:
        cmd = ["nc", "-zv", "-w", "5", "127.0.0.1", *map(str, ports)]
        native = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        wrapped = subprocess.run(
            [*PKTLAB, "wrap", "--", *cmd], capture_output=True, timeout=90, cwd=REPO,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        accepted = []
        for s in open_:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    s.accept()[0].close()
                    n += 1
                except BlockingIOError:
                    break
            accepted.append(n)
    finally:
        for s in open_:
            s.close()
    assert native.stderr.count(b"succeeded!") == 2 and native.stderr.count(b"refused") == 2
    assert (wrapped.returncode, wrapped.stderr) == (native.returncode, native.stderr)
    assert accepted == [2, 2]  # one native, one wrapped connection each


_TLS_SERVERS = """\
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/cert.pem", sys.argv[1] + "/key.pem")
ctx.set_alpn_protocols(["h2", "http/1.1"])
seen = []
ctx.sni_callback = lambda s, name, c: seen.append(name) and None
def tls(conn, kind):
    s = ctx.wrap_socket(conn, server_side=True)
    data = s.recv(100)
    print(kind, "sni", seen[-1] if seen else None, "alpn", s.selected_alpn_protocol(),
          "got", data, flush=True)
    s.sendall(b"pong\\n")
    s.unwrap().close()  # close_notify: s_client ends cleanly, not on a race with stdin
def smtp(conn):
    f = conn.makefile("rb")
    conn.sendall(b"220 fake ESMTP\\r\\n")
    while True:
        line = f.readline()
        if not line:
            return
        print("smtp", line.strip(), flush=True)
        if line.upper().startswith((b"EHLO", b"HELO")):
            conn.sendall(b"250-fake\\r\\n250 STARTTLS\\r\\n")
        elif line.upper().startswith(b"STARTTLS"):
            conn.sendall(b"220 go ahead\\r\\n")
            seen.clear()
            return tls(conn, "starttls")
        else:
            conn.sendall(b"500 ?\\r\\n")
a = socket.create_server(("127.0.0.1", 0))
b = socket.create_server(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1], flush=True)
def loop(lsn, fn):
    while True:
        c, p = lsn.accept()
        print("accept from", p[0], flush=True)
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=loop, args=(a, lambda c: tls(c, "tls")), daemon=True).start()
loop(b, smtp)
"""


def test_openssl_s_client_sni_alpn_and_starttls_as_natively(tmp_path: Path) -> None:
    """`openssl s_client` with SNI and ALPN, and `-starttls smtp` against a fake ESMTP
    server (checked in session 25, wrapb25; already as natively): the same handshake
    summary, and the servers saw the same SNI, ALPN, SMTP commands and data."""
    _proxychains()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
         "-days", "2", "-subj", "/CN=tls.test",
         "-addext", "subjectAltName=DNS:tls.test,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    srv = subprocess.Popen(
        [sys.executable, "-c", _TLS_SERVERS, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert srv.stdout is not None
        tls_port, smtp_port = srv.stdout.readline().split()
        ca = str(tmp_path / "cert.pem")
        runs = [
            ["openssl", "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
             "tls.test", "-alpn", "h2", "-CAfile", ca, "-verify_return_error", "-brief",
             "-ign_eof"],
            ["openssl", "s_client", "-connect", f"127.0.0.1:{smtp_port}", "-starttls",
             "smtp", "-CAfile", ca, "-verify_return_error", "-brief", "-ign_eof"],
        ]  # fmt: skip
        outs, logs = [], []
        for wrapped in (False, True):
            for cmd in runs:
                argv = [*PKTLAB, "wrap", "--", *cmd] if wrapped else cmd
                done = subprocess.run(
                    argv, input=b"ping\n", capture_output=True, timeout=60, cwd=REPO
                )
                outs.append((done.returncode, done.stdout, done.stderr))
            logs.append([srv.stdout.readline() for _ in range(6)])
    finally:
        srv.kill()
        srv.wait()
    assert outs[0][0] == 0 and b"Verification: OK" in outs[0][2], outs[0]
    assert outs[2:] == outs[:2]
    assert logs[0] == logs[1]
    assert "tls sni tls.test alpn h2 got b'ping\\n'\n" in logs[0], logs[0]
    assert "smtp b'STARTTLS'\n" in logs[0]


def test_a_udp_socket_inherited_over_exec_shows_its_real_peer(tmp_path: Path) -> None:
    """The same hand-off with a connected UDP socket whose echo the exec()ed program
    reads: its shim never asked for the relay port the echo comes from and asks the
    wrapper what it stands for ("D"). Before: `getpeername` and `recvfrom` showed the
    relay port (`peer False`, `from False`)."""
    native, wrapped = native_and_wrapped(_UDP_HANDOFF, "x", path=tmp_path / "handoff.py")
    assert native.stdout == b"peer True\npeer True\nb'ping!' from True\n", native
    assert wrapped.stdout == native.stdout, wrapped.stderr
