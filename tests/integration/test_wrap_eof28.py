"""Session 28 (epclose28): a program writing to a server that closed, natively and under
`pktlab wrap`. Natively the 1st send after the close succeeds, the server's RST answers
it and the 2nd send fails EPIPE; wrapped it was the 3rd (session 27), as the endpoint
learnt of the RST only when its own next send failed. Now the endpoint watches a socket
past EOF for errors: its nstat RESET comes when the RST does, and the program's 2nd send
fails as natively. The --timings line shows what the controller saw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from test_wrap_sockets25 import _proxychains

PKTLAB = [sys.executable, "-m", "packetlab"]

_CLIENT = """\
import errno, signal, socket, time
signal.alarm(20)
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname())
conn = srv.accept()[0]
conn.close()  # the server closes: FIN
c.settimeout(5)
print("read", c.recv(10))  # the EOF reached the program
for i in range(1, 5):
    time.sleep(0.5)
    try:
        c.send(b"x")
        print("send", i, "ok", flush=True)
    except OSError as e:
        print("send", i, errno.errorcode[e.errno], flush=True)
        break
"""


def test_the_second_send_after_the_close_fails_as_natively(tmp_path: Path) -> None:
    _proxychains()
    cmd = ["python3", "-c", _CLIENT]
    native = subprocess.run(cmd, capture_output=True, timeout=60)
    timings = tmp_path / "t.jsonl"
    wrapped = subprocess.run(
        [*PKTLAB, "wrap", "--timings", str(timings), "--", *cmd],
        capture_output=True,
        timeout=90,
        cwd=REPO,
    )
    expected = b"read b''\nsend 1 ok\nsend 2 EPIPE\n"
    assert native.stdout == expected, native
    assert wrapped.returncode == 0 and wrapped.stdout == expected, wrapped
    (line,) = [json.loads(x) for x in timings.read_text().splitlines()]
    # The controller saw the server's FIN (PEERCLOSED), then the reset (nstat RESET)
    # that the RST to the program's 1st send drew.
    assert line["peer_closed"] and line["error"] == "RESET", line
