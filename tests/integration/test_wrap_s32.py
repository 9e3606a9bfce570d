"""Session 32 (wrap32): what session 31's parked connects left. A connect the endpoint
refuses at once fails inside connect() again, a loopback port's answer is on the socket
as connect() returns, a dup() of a parked socket reads its connect's errno, and a
blocking connect is bounded by the program's SO_SNDTIMEO. Each test runs the same
programs natively and wrapped (in-process endpoint) in a user and network namespace of
its own (test_wrap_s31's), and failed on the code before (its docstring says how)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_wrap import home_limited
from test_wrap_s31 import _in_namespace
from test_wrap_sockets25 import _proxychains

PKTLAB = [sys.executable, "-m", "packetlab"]

# A non-blocking connect: the call's errno, what poll(0) shows right after it (natively
# a loopback port's answer is there), the end, SO_ERROR, and connect() again (0 once
# after a made connect, ECONNABORTED once after a failure read through SO_ERROR).
_NB = r"""
import errno, select, socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.setblocking(False)
    rc = s.connect_ex((host, int(port)))
    p = select.poll()
    p.register(s, select.POLLOUT)
    now = p.poll(0)
    end = p.poll(15000)
    flags = lambda ev: "+".join(n for n, b in (("OUT", 4), ("ERR", 8), ("HUP", 16))
                                if ev and ev[0][1] & b) or "-"
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    again = s.connect_ex((host, int(port)))
    print(target, *(errno.errorcode.get(e, str(e)) for e in (rc,)), flags(now), flags(end),
          errno.errorcode.get(err, str(err)), errno.errorcode.get(again, str(again)))
    s.close()
"""

# asyncio's open_connection: a failure inside connect() is the kernel's words, one
# through SO_ERROR is "Connect call failed (addr)"
_AIO = r"""
import asyncio, sys
async def main(host, port):
    try:
        await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        return "connected"
    except Exception as e:
        return f"{type(e).__name__} {e}"
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    print(target, asyncio.run(main(host, int(port))))
"""


def _native_and_wrapped(tmp_path: Path, name: str, source: str, args: str) -> list[str]:
    (tmp_path / name).write_text(source)
    run = f'"$PY" {tmp_path / name} {args}'
    lines = _in_namespace(f'{run}; echo ==; "$PY" -m packetlab wrap -- {run}\n', tmp_path)
    cut = lines.index("==")
    return [*lines[:cut], "|", *lines[cut + 1 :]]


def test_connects_the_endpoint_answers_at_once_end_in_the_call(tmp_path: Path) -> None:
    """No route (10.98.0.1: the namespace has none), a loopback port that refuses (9) and
    one that listens (18031): the same lines natively and wrapped. Before: `EINPROGRESS`
    and nothing to poll at once for all three (the failure a round trip later through
    SO_ERROR, asyncio's "Connect call failed ('10.98.0.1', 80)" for "Network is
    unreachable"), and connect() again after a made one `EISCONN` (natively 0)."""
    targets = "10.98.0.1:80 127.0.0.1:9 127.0.0.1:18031"
    lines = _native_and_wrapped(tmp_path, "nb.py", _NB, targets)
    assert lines[:3] == [
        "10.98.0.1:80 ENETUNREACH OUT+HUP OUT+HUP 0 ENETUNREACH",
        "127.0.0.1:9 EINPROGRESS OUT+ERR+HUP OUT+ERR+HUP ECONNREFUSED ECONNABORTED",
        "127.0.0.1:18031 EINPROGRESS OUT OUT 0 0",
    ], lines
    assert lines[4:] == lines[:3], lines
    lines = _native_and_wrapped(tmp_path, "aio.py", _AIO, targets)
    assert lines[0] == "10.98.0.1:80 OSError [Errno 101] Network is unreachable", lines
    assert lines[4:] == lines[:3], lines


_DUP = r"""
import errno, os, select, socket, sys
name = lambda e: errno.errorcode.get(e, str(e))
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    for first in ("SO_ERROR", "recv"):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, int(port)))
        d = socket.socket(fileno=os.dup(s.fileno()))
        p = select.poll()
        p.register(d, select.POLLOUT)
        p.poll(15000)
        if first == "SO_ERROR":
            seen = name(d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        else:
            try:
                seen = "data %r" % d.recv(10)
            except OSError as e:
                seen = name(e.errno)
        then = name(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        print(target, "dup", first, seen, "then", then)
        s.close(); d.close()
"""


def test_a_dup_of_a_parked_socket_reads_its_connects_errno(tmp_path: Path) -> None:
    """A non-blocking connect, then os.dup() of its socket; the dup polls, reads SO_ERROR
    (or recv()s) first, then the original reads SO_ERROR: natively the dup gets the
    connect's errno and the original 0 (one socket, its error read once). Before: the
    dup got ECONNRESET (the parking port's reset) and the original the errno again."""
    lines = _native_and_wrapped(tmp_path, "dup.py", _DUP, "127.0.0.1:9 10.99.0.3:80")
    assert lines[:4] == [
        "127.0.0.1:9 dup SO_ERROR ECONNREFUSED then 0",
        "127.0.0.1:9 dup recv ECONNREFUSED then 0",
        "10.99.0.3:80 dup SO_ERROR EHOSTUNREACH then 0",
        "10.99.0.3:80 dup recv EHOSTUNREACH then 0",
    ], lines
    assert lines[5:] == lines[:4], lines


_SNDTIMEO = r"""
import errno, socket, struct, sys, time
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))
    t = time.monotonic()
    try:
        s.connect((host, int(port)))
        s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        r = "connected %s:%d %s" % (*s.getpeername(), s.recv(12).decode())
    except OSError as e:
        r = type(e).__name__ + " " + errno.errorcode.get(e.errno, str(e.errno))
    print(target, r, "%.1f" % (time.monotonic() - t))
    s.close()
"""


@pytest.mark.serial  # times compared (with a wide margin)
def test_a_blocking_connect_ends_at_the_programs_sndtimeo(tmp_path: Path) -> None:
    """A blocking connect with SO_SNDTIMEO 2 s: to the blackhole (10.99.0.2) the kernel
    gives up waiting after 2 s with EINPROGRESS (Python's BlockingIOError); refused,
    made and unroutable as without. Before: `TimeoutError ETIMEDOUT` after the wrapper's
    `--connect-timeout` (20 s)."""
    targets = "10.99.0.2:80 127.0.0.1:9 127.0.0.1:18031 10.98.0.1:80"
    lines = _native_and_wrapped(tmp_path, "sndtimeo.py", _SNDTIMEO, targets)
    words = [line.rsplit(" ", 1)[0] for line in lines]
    assert words[:4] == [
        "10.99.0.2:80 BlockingIOError EINPROGRESS",
        "127.0.0.1:9 ConnectionRefusedError ECONNREFUSED",
        "127.0.0.1:18031 connected 127.0.0.1:18031 HTTP/1.0 200",
        "10.98.0.1:80 OSError ENETUNREACH",
    ], lines
    assert words[5:] == words[:4], lines
    assert 1.9 <= float(lines[5].rsplit(" ", 1)[1]) < 10, lines  # its 2 s, not 20


_EPERM = r"""
import asyncio, errno, socket, sys
s = socket.socket()
s.setblocking(False)
print("connect_ex", errno.errorcode.get(s.connect_ex(("127.0.0.1", int(sys.argv[1])))))
async def main():
    try:
        await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    except OSError as e:
        print(type(e).__name__, e)
asyncio.run(main())
"""


def test_a_connect_the_endpoints_rules_refuse_fails_in_the_call(tmp_path: Path) -> None:
    """A destination outside the certificate's valid_dest (as test_wrap_tools_b25): a
    non-blocking connect fails EPERM inside the call, as a local firewall's does, and
    asyncio says the kernel's words. Before: `EINPROGRESS`, then "PermissionError [Errno
    1] Connect call failed ('127.0.0.1', PORT)"."""
    _proxychains()
    home = home_limited(tmp_path)
    done = subprocess.run(
        [*PKTLAB, "wrap", "--home", str(home), "--", sys.executable, "-c", _EPERM, "9"],
        capture_output=True, timeout=90, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.stdout.decode().splitlines() == [
        "connect_ex EPERM",
        "PermissionError [Errno 1] Operation not permitted",
    ], done.stderr


_AGAIN = r"""
import errno, socket
s = socket.socket()
s.setblocking(False)
print(errno.errorcode.get(s.connect_ex(("10.98.0.1", 80))), *s.getsockname())
s.setblocking(True)
try:
    s.connect(("127.0.0.1", 18031))
    print("again", s.getsockname()[1] != 0, *s.getpeername())
except OSError as e:
    print("again", type(e).__name__, e)
"""


def test_a_socket_whose_connect_failed_in_the_call_is_unbound_and_connects(
    tmp_path: Path,
) -> None:
    """After a connect that failed in the call (no route) the socket is unbound
    (`getsockname` `0.0.0.0 0`: Node prints it, `connect ENETUNREACH ... - Local
    (0.0.0.0:0)`) and connects again to a listening port. Before: `EINPROGRESS` and the
    parking port shown, then the second connect failed `Network is unreachable`; with
    the failure in the call but no getsockname fix, `0.0.0.0 49994` (this kernel, gVisor,
    keeps the port the parking took)."""
    lines = _native_and_wrapped(tmp_path, "again.py", _AGAIN, "")
    assert lines[:2] == ["ENETUNREACH 0.0.0.0 0", "again True 127.0.0.1 18031"], lines
    assert lines[3:] == lines[:2], lines
