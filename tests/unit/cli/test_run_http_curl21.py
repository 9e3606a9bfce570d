"""Session 21 (curl21): the write-out's %{json} as curl 7.88.1 writes it (one line, no
spaces, times with 6 decimals) and the variables it had and we had not (num_headers,
referer, urlnum, ssl_verify_result, proxy_ssl_verify_result, ftp_entry_path), each pinned
from curl 7.88.1's output against a loopback server; --curl-exit-codes; whole runs over
the scripted endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from test_run_http_curl import VALUES, render, run
from web_pki import make_pki

from packetlab.cli import run_http_writeout


def test_json_as_curl_writes_it() -> None:
    # before: json.dumps's '{"content_type": null, ...}' (spaces, 0.0123456, 0.0)
    values = {**VALUES, "method": "GET", "referer": 'a"b\n', "urlnum": 0}
    assert render("%{json}") == [("stdout", run_http_writeout.curl_json(VALUES))]
    assert run_http_writeout.curl_json(values) == (
        '{"content_type":null,"errormsg":null,"exitcode":0,"http_code":200,"method":"GET",'
        '"referer":"a\\"b\\n","response_code":200,"size_download":58,"time_connect":0.000000,'
        '"time_total":0.012346,"url_effective":"http://a.test/x","urlnum":0}'
    )


def test_curls_other_variables_in_a_run() -> None:
    # before: each "unknown --write-out variable", printed as nothing
    w = "%{urlnum} %{num_headers} [%{referer}] %{ssl_verify_result} %{proxy_ssl_verify_result}"
    code, _, out, err, _ = run("-w", w + "\\n", "-o", "/dev/null", "-o", "/dev/null", "-o",
                               "/dev/null", "-e", "http://r.test/",
                               "http://192.0.2.80/a", "http://192.0.2.80/{b,c}",
                               "http://192.0.2.80/r/302?to=/d", "-L")  # fmt: skip
    assert (code, err) == (0, "")
    # (the echo server's answers have 2 fields; a glob's URLs share their place)
    assert out == "".join(f"{n} 2 [http://r.test/] 0 0\n" for n in (0, 1, 1, 2)).encode()
    code, _, raw, _, _ = run("-w", "%{json}", "-o", "/dev/null", "http://192.0.2.80/a")
    got = json.loads(raw)
    assert (got["referer"], got["ftp_entry_path"], got["urlnum"]) == (None, None, 0)
    assert b", " not in raw and b'"time_total":0.' in raw


def test_ssl_verify_result_of_an_untrusted_chain(tmp_path: Path) -> None:
    from test_http import OK, Https, rig_with

    from packetlab.measure.http import http_get

    pki = make_pki(tmp_path)
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                         cafile=str(pki["other-ca"])))  # fmt: skip
    # curl 7.88.1: 20 (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY), exit 60
    assert (r.exitcode, r.ssl_verify_result) == (60, 20)
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                         cafile=str(pki["ca"])))  # fmt: skip
    assert (r.exitcode, r.ssl_verify_result, r.status) == (0, 0, 200)


def test_a_close_during_the_handshake_is_curls_35() -> None:
    # before: 56 (a read failed after the handshake); curl 7.88.1: (35) SSL_ERROR_SYSCALL,
    # %{ssl_verify_result} 1 (no chain checked)
    from http_fake import TlsPeer
    from stream_fakes import StreamRig

    from packetlab.measure.http import http_get

    class Plain(TlsPeer):  # a plain server on the TLS port: the ClientHello, then a close
        def arrived(self) -> None:
            self.close(0.01)

    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 443)] = Plain
    r = rig.run(http_get(rig.session, "https://192.0.2.80/"))
    assert (r.exitcode, r.ssl_verify_result, r.status) == (35, 1, None)
    assert r.error == "the server closed the connection during the TLS handshake"


def test_curl_exit_codes() -> None:
    # curl 7.88.1, measured: the last transfer's code (a success after a failure: 0);
    # -Z: the last one to fail. Before: no such option (ours: 0 or 1)
    import argparse

    from packetlab.cli.run_http import status

    def recs(*codes: int) -> list[dict[str, object]]:
        out: list[dict[str, object]] = [
            {"type": "http", **({"error": "x", "exitcode": c} if c else {})} for c in codes
        ]
        return [*out, {"type": "summary"}]

    serial = argparse.Namespace(curl_exit_codes=True, parallel=False)
    parallel = argparse.Namespace(curl_exit_codes=True, parallel=True)
    assert status(serial, recs(7, 0), 1) == 0 and status(serial, recs(0, 7), 1) == 7
    assert status(serial, recs(22), 1) == 22 and status(serial, recs(), 0) == 0
    assert status(parallel, recs(7, 0), 1) == 7 and status(parallel, recs(7, 28, 0), 1) == 28
    assert status(serial, recs(7), 130) == 130  # Ctrl-C, an error before the run: ours
    assert status(argparse.Namespace(), recs(47), 1) == 1  # without the option: ours
    code, _, _, _, _ = run("--curl-exit-codes", "-s", "-f", "-o", "/dev/null",
                           "http://192.0.2.80/r/404")  # fmt: skip
    assert code == 22


def test_resolve_takes_the_first_address_of_the_family_asked() -> None:
    # curl 7.88.1 -6 --resolve h:80:127.0.0.1,::1 connects to ::1 (before: 127.0.0.1,
    # refused or the wrong server); without -4/-6 each in turn (session 26: the first)
    from packetlab.cli.run_http_opts import resolve_entries

    entries = ["h:80:127.0.0.1,[::1]", "g:81:::2,10.0.0.1"]
    assert resolve_entries(entries) == (("g", 81, "::2,10.0.0.1"), ("h", 80, "127.0.0.1,::1"))
    assert resolve_entries(entries, 6) == (("g", 81, "::2"), ("h", 80, "::1"))
    assert resolve_entries(entries, 4) == (("g", 81, "10.0.0.1"), ("h", 80, "127.0.0.1"))
    assert resolve_entries(["h:80:127.0.0.1"], 6) == (("h", 80, "127.0.0.1"),)  # none: first


def test_a_head_that_never_ends_is_written_as_far_as_it_came() -> None:
    # curl 7.88.1 -i writes each header line as it reads it: the status line before the
    # line of 100 KiB it refuses (27). Before: nothing (the head was never complete)
    from test_hostile_http import Scripted

    huge = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 102400
    w = "|%{exitcode} %{size_header}"
    code, _, out, _, _ = run("--curl-exit-codes", "-s", "-i", "-w", w, "http://192.0.2.80/",
                             server=lambda: Scripted(lambda t: [(huge, 0.01)]))  # fmt: skip
    assert (code, out) == (27, b"HTTP/1.1 200 OK\r\n|27 17")
