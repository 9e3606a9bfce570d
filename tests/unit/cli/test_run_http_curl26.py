"""curl 7.88.1's behaviour where `pktlab run http` differed before session 26 (http26):
each pinned from what curl did against a raw loopback server
(tests/integration/test_http_curl26.py compares the two side by side)."""

from __future__ import annotations

import os
import re

from test_run_http_curl import run
from test_run_http_options16 import _seen


def test_fields_that_are_no_fields_are_dropped_with_a_warning() -> None:
    # curl 7.88.1: -H X, -H ':v', -H ';', -H '' are not sent (exit 0, not in -v); ours
    # refused the run (2, "expected 'NAME: VALUE'")
    dropped = ("X", ":v", " :v", ";", "", "X y")
    argv = [w for h in dropped for w in ("-H", h)]
    code, _, raw, err, _ = run(*argv, "-H", "Y: 1", "-A", "", "-o", "-",
                               "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert code == 0, err
    assert raw.decode().splitlines() == ["host: 192.0.2.80", "accept: */*", "y: 1", "GET /p"]
    lines = err.splitlines()
    assert lines[0] == "Warning: -H/--header 'X': no 'NAME: VALUE', not sent (as curl)"
    assert sum(line.startswith("Warning: -H/--header ") for line in lines) == len(dropped)
    # -s: no warning, as curl's warnings
    code, _, _, err, _ = run("-s", "-H", "X", "-o", "-", "http://192.0.2.80/p", handler=_seen)
    assert (code, err) == (0, "")


def test_local_address_written_out() -> None:
    # curl 7.88.1's %{local_ip} and %{local_port}: its socket's own address; ours warned
    # "unknown --write-out variable" and wrote nothing. The endpoint's socket block
    # (LADDR, LPORT) has it: the fake's is 192.0.2.10, port 50000 + the socket id
    w = "%{local_ip} %{local_port} %{remote_ip} %{remote_port}\\n"
    null = ("-o", os.devnull, "-o", os.devnull)
    code, _, out, err, _ = run("-s", *null, "-w", w, "http://192.0.2.80/p", "http://192.0.2.80/q")
    assert code == 0, err
    # the second over the first's connection (curl's values again)
    assert out.decode().splitlines() == ["192.0.2.10 50000 192.0.2.80 80"] * 2
    _, _, out, _, _ = run("-s", *null, "-w", "%{json}", "http://192.0.2.80/p")
    assert b'"local_ip":"192.0.2.10","local_port":50000,' in out
    # a connect that failed: curl's "" and 0
    _, _, out, _, _ = run("-s", "-w", w, "http://192.0.2.81/p")
    assert out == b" 0  0\n"


def test_errormsg_in_curls_words() -> None:
    # curl 7.88.1's %{errormsg}; ours was `connect to 192.0.2.81:80: connection refused
    # (the host answered ...)` (still the stderr line and the table's, with its reason)
    _, _, out, _, _ = run("-s", "-w", "%{errormsg}", "http://192.0.2.81/p")
    assert re.fullmatch(rb"Failed to connect to 192.0.2.81 port 80 after \d+ ms: "
                        rb"Couldn't connect to server", out)  # fmt: skip
    # -m's end: how much of the body came, "out of" a Content-Length's (curl's words)
    from packetlab.measure.http_message import _Hop
    from packetlab.measure.http_told import timed_out
    from packetlab.measure.http_url import parse_url

    hop = _Hop(parse_url("http://h/"), "GET")
    assert timed_out(hop, 1000.4, True) == "Connection timed out after 1000 milliseconds"
    said = "Operation timed out after 1001 milliseconds with 0 bytes received"
    assert timed_out(hop, 1000.6, False) == said
    hop.status, hop.body_len, hop.headers = 200, 3, [("content-length", " 10")]
    assert timed_out(hop, 5, False).endswith(" with 3 out of 10 bytes received")
    hop.headers.append(("Transfer-Encoding", "chunked"))  # (no size then, as curl's)
    assert timed_out(hop, 5, False).endswith(" with 3 bytes received")


def test_resolve_list_tried_in_turn() -> None:
    # curl 7.88.1: --resolve HOST:PORT:A1,A2 tries A2 when A1 refuses; ours took A1 only
    # (exit 7)
    w = "%{exitcode} %{remote_ip} %{num_connects}\\n"
    code, _, out, err, _ = run("-s", "-o", os.devnull, "-w", w, "--resolve",
                               "a.test:80:192.0.2.81,192.0.2.80", "http://a.test/p")  # fmt: skip
    assert (code, out) == (0, b"0 192.0.2.80 1\n"), err
    _, _, out, _, _ = run("-s", "-w", w, "--resolve", "a.test:80:192.0.2.81,192.0.2.82",
                          "http://a.test/p")  # fmt: skip
    assert out == b"7  0\n"
