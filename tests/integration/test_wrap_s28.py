"""Session 28 (wrap28): programs not tried before under `pktlab wrap`, side by side with
native runs (in-process endpoint, servers on loopback). Each script runs natively and
wrapped and the outputs must be the same."""

from __future__ import annotations

from test_wrap_sockets25 import native_and_wrapped

_NONBLOCKING_REFUSED = """\
import errno, select, socket
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); port = closed.getsockname()[1]
closed.close()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
for name, p in (("closed", port), ("open", srv.getsockname()[1])):
    s = socket.socket(); s.setblocking(False)
    rc = s.connect_ex(("127.0.0.1", p))
    # an event loop's way: 0 or EINPROGRESS, wait for writability, then SO_ERROR
    print(name, "connect", "failed" if rc not in (0, errno.EINPROGRESS) else "pending")
    ready = select.poll(); ready.register(s, select.POLLOUT)
    events = ready.poll(5000)
    print(name, "writable", bool(events and events[0][1] & select.POLLOUT))
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print(name, "SO_ERROR", errno.errorcode.get(err, err),
          "then", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    s.close()
# the fd number of the refused socket, reused by a new socket, has no stale error
s = socket.socket(); print("new socket SO_ERROR", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
"""


def test_a_refused_non_blocking_connect_fails_through_so_error_as_natively() -> None:
    native, wrapped = native_and_wrapped(_NONBLOCKING_REFUSED)
    assert native.returncode == 0, native.stderr
    assert b"closed SO_ERROR ECONNREFUSED then 0" in native.stdout
    assert wrapped.stdout == native.stdout, wrapped.stderr
    assert wrapped.returncode == 0
