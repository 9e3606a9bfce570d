"""Session 26 (wrap26): what sessions 25 left of the socket API under `pktlab wrap`, side
by side with native runs. Each test failed on the code before its fix (its docstring
says how), or records a behaviour that already matched so that it stays so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_wrap_sockets25 import _ipv6, _proxychains, native_and_wrapped

PKTLAB = [sys.executable, "-m", "packetlab"]

_CONNECTS = """\
import errno, select, socket, sys
for a in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    for nonblocking in (False, True)[: 1 if a == "127.0.0.1" else 2]:  # EINPROGRESS natively
        with socket.socket(fam, socket.SOCK_STREAM | (socket.SOCK_NONBLOCK * nonblocking)) as s:
            rc = s.connect_ex((a, 80))
            how = "non-blocking" if nonblocking else "blocking"
            if rc == errno.EINPROGRESS:  # wrapped (parked, session 31): SO_ERROR says it
                select.select([], [s], [], 10)
                rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                how += " EINPROGRESS then"
            print(a, how, errno.errorcode.get(rc, rc))
"""

# In a user and network namespace: loopback only, so 10.1.2.3 and 2001:db8::1 have no
# route; 10.9.0.255 is the broadcast address of a subnet on lo.
_NO_ROUTE = """\
ip link set lo up && ip addr add 10.9.0.1/24 dev lo || exit 99
for run in native wrapped; do
    [ $run = wrapped ] && W="$PY -m packetlab wrap --" || W=
    $W python3 -c "$CONNECTS" 10.1.2.3 2001:db8::1 10.9.0.255 127.0.0.1; echo "status $?"
    $W nc -v -w 2 10.1.2.3 80; echo "nc $?"
    echo ---
done
"""


def test_a_network_without_a_route_is_enetunreach_as_natively(tmp_path: Path) -> None:
    """No route to the network: the kernel's connect() fails ENETUNREACH at once (nc
    "Network is unreachable"), as to a subnet's broadcast address. The endpoint's own
    connect() fails the same way; its socket's STAT is UNREACH as the nopen is answered
    (the in-process endpoint's nstat says UNKNOWN), which the wrapper now reads as the
    network's. Before: EHOSTUNREACH
    ("No route to host"), as for a host that does not answer (ECONNREFUSED before the
    controller read STAT). 127.0.0.1:80, closed: ECONNREFUSED both ways (blocking: a
    non-blocking one is EINPROGRESS natively, docs/wrap.md). Session 31 parked a
    non-blocking connect (EINPROGRESS at once, its ENETUNREACH SO_ERROR's a controller
    round trip later); since session 32 it fails in the call again, as natively."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip")
    if shutil.which("nc") is None:
        pytest.skip("needs nc")
    _proxychains()
    env = dict(os.environ, PY=sys.executable, CONNECTS=_CONNECTS)
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", _NO_ROUTE],
        capture_output=True, timeout=120, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode == 99 or b"unshare:" in done.stderr:
        pytest.skip(f"no user and network namespace here: {done.stderr[-200:]!r}")
    native, wrapped, _ = done.stdout.split(b"---\n")
    assert b"10.1.2.3 blocking ENETUNREACH\n" in native, done
    assert b"2001:db8::1 non-blocking ENETUNREACH\n" in native
    assert b"127.0.0.1 blocking ECONNREFUSED\n" in native
    assert b"10.9.0.255 blocking ENETUNREACH\n" in native
    assert wrapped == native, done.stderr
    assert done.stderr.count(b"Network is unreachable") == 2, done.stderr


_UDP_HANDOFF = """\
import socket, subprocess, sys, threading
if len(sys.argv) > 2:  # the exec()ed program, given the unconnected UDP socket
    s = socket.socket(fileno=int(sys.argv[1]))
    server = ("127.0.0.1", int(sys.argv[2]))
    data, peer = s.recvfrom(100)
    print(data, "from", peer == server, flush=True)
    d = s.dup()  # the same socket under another number
    d.sendto(b"again", server)
    data, peer = d.recvfrom(100)
    print(data, "from", peer == server, flush=True)
    sys.exit()
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
port = srv.getsockname()[1]
def echo():
    for _ in range(2):
        data, peer = srv.recvfrom(100)
        srv.sendto(data + b"!", peer)
threading.Thread(target=echo, daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"ping", ("127.0.0.1", port))
argv = [sys.executable, __file__, str(s.fileno()), str(port)]
subprocess.run(argv, pass_fds=(s.fileno(),), check=True)
"""


def test_an_unconnected_udp_socket_inherited_over_exec_sees_its_real_peers(
    tmp_path: Path,
) -> None:
    """An unconnected UDP socket handed to an exec()ed program (subprocess with
    pass_fds) after it sent to a server: the new program's shim never asked for the relay
    port the answers come from. It now asks the wrapper ("D") for a loopback source of a
    socket it had when it started (known by inode: its dup too). Before: `recvfrom`
    showed the relay port (`from False`)."""
    native, wrapped = native_and_wrapped(_UDP_HANDOFF, "x", path=tmp_path / "handoff.py")
    assert native.stdout == b"b'ping!' from True\nb'again!' from True\n", native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_THIS_HOST = """\
import errno, socket, subprocess, sys
srv = socket.socket(); srv.bind(("0.0.0.0", 0)); srv.listen(8); srv.settimeout(10)
port = srv.getsockname()[1]
for host in ("0.0.0.0", "127.0.0.1"):
    with socket.socket() as s:
        try:
            s.connect((host, port))
            conn = srv.accept()[0]
            s.sendall(b"hi")
            print(host, "connected", s.getpeername() == ("127.0.0.1", port), conn.recv(2))
            conn.close()
        except OSError as e:
            print(host, errno.errorcode.get(e.errno, e.errno))
if sys.argv[1] == "6":
    lsn = socket.socket(socket.AF_INET6); lsn.bind(("::", 0)); lsn.listen(1); lsn.settimeout(10)
    with socket.socket(socket.AF_INET6) as s:
        s.connect(("::", lsn.getsockname()[1]))
        lsn.accept()[0].close()
        print(":: peer", s.getpeername()[:2] == ("::1", lsn.getsockname()[1]))
with socket.socket() as closed:
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
with socket.socket() as s:
    print("0.0.0.0 closed", errno.errorcode.get(s.connect_ex(("0.0.0.0", free))))
"""


def test_a_connect_to_the_unspecified_address_reaches_this_host_as_natively() -> None:
    """connect() to 0.0.0.0 (or ::) reaches the local host natively, and the socket's
    peer is 127.0.0.1 (::1): `curl http://0.0.0.0:8000/`, as a server that prints
    "Serving on 0.0.0.0:8000" invites. Before: proxychains refused 0.0.0.0 itself
    (`ECONNREFUSED`, nothing reached the endpoint; curl 7 "Couldn't connect", nc exit 1)
    and `::` showed as the peer. Now the shim gives the endpoint its loopback address,
    its own host as natively."""
    native, wrapped = native_and_wrapped(_THIS_HOST, "6" if _ipv6() else "4")
    assert native.returncode == 0, native
    assert b"0.0.0.0 connected True b'hi'\n" in native.stdout
    assert b"0.0.0.0 closed ECONNREFUSED\n" in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr


_LINK_LOCAL = """\
import errno, socket
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    for addr in (("fe80::1", 80), ("fe80::1", 80, 0, 0)):
        with socket.socket(socket.AF_INET6, kind) as s:
            print(kind.name, len(addr), errno.errorcode.get(s.connect_ex(addr)))
"""


def test_a_link_local_address_without_a_scope_is_einval_as_natively() -> None:
    """connect() to an IPv6 link-local address without a scope id (interface): the
    kernel's EINVAL at once. Before: TCP went to the endpoint, which could not connect
    either (`ECONNREFUSED`); UDP was connected to a relay port (0)."""
    if not _ipv6():
        pytest.skip("no IPv6 here")
    native, wrapped = native_and_wrapped(_LINK_LOCAL)
    assert native.stdout.count(b"EINVAL") == 4, native
    assert wrapped.stdout == native.stdout, wrapped.stderr


_V6_OPTIONS = """\
import errno, socket
lsn = socket.socket(socket.AF_INET6); lsn.bind(("::1", 0)); lsn.listen(4)
s = socket.socket(socket.AF_INET6); s.connect(("::1", lsn.getsockname()[1]))
conn = lsn.accept()[0]
def call(f):
    try:
        return f()
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
P6 = socket.IPPROTO_IPV6
print("SO_DOMAIN", call(lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)))
print("V6ONLY", call(lambda: s.getsockopt(P6, socket.IPV6_V6ONLY)))
print("TCLASS set", call(lambda: s.setsockopt(P6, socket.IPV6_TCLASS, 0x10)))
print("TCLASS", call(lambda: s.getsockopt(P6, socket.IPV6_TCLASS)))
print("HOPS set", call(lambda: s.setsockopt(P6, socket.IPV6_UNICAST_HOPS, 33)))
print("HOPS", call(lambda: s.getsockopt(P6, socket.IPV6_UNICAST_HOPS)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("IPv4 UDP TCLASS", call(lambda: u.getsockopt(P6, socket.IPV6_TCLASS)))
"""


def test_ipv6_options_of_a_wrapped_ipv6_connection_as_natively() -> None:
    """A wrapped IPv6 TCP socket is an IPv4 one after connect() (proxychains' SOCKS server
    is IPv4). Before: `SO_DOMAIN` 2, and IPv6-level options failed (`IPV6_TCLASS` set
    ENOPROTOOPT, read ENOTSUP; ssh sets it on an interactive session and prints the
    failure). Now `SO_DOMAIN` AF_INET6, `IPV6_V6ONLY` 0, and `IPV6_TCLASS` and
    `IPV6_UNICAST_HOPS` are the IPv4 socket's `IP_TOS` and `IP_TTL` (neither reaches the
    endpoint, as with an IPv4 socket's)."""
    if not _ipv6():
        pytest.skip("no IPv6 here")
    native, wrapped = native_and_wrapped(_V6_OPTIONS)
    assert native.stdout.startswith(b"SO_DOMAIN 10\nV6ONLY 0\nTCLASS set None\nTCLASS 16\n"), native
    assert b"HOPS 33\n" in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr
