"""curl 7.88.1's --proto and --proto-redir in `pktlab run http` (session 28, http28): each
pinned from what curl did against a raw loopback server
(tests/integration/test_http_curl28.py compares the two side by side). Before, ours did
not know these options (exit 2, `unrecognized arguments`), and an option's value that
starts with a dash (`--proto -all,http`, `-d -x`) was argparse's `expected one
argument` (2) where curl takes it."""

from __future__ import annotations

import pytest
from test_http_redirects import response
from test_run_http_curl import run

from packetlab.cli.run import RunError
from packetlab.cli.run_http_opts import CURL_PROTOCOLS, REDIR_PROTOCOLS, protocols

SAID = 'Protocol "http" not supported or disabled in libcurl'


def _answer(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """/rel: a 302 to /ok (http://, the same server); /ok: 200 ok."""
    if target == "/rel":
        return response(302, b"", Location="/ok")
    return response(200, b"ok")


@pytest.mark.parametrize(
    ("text", "start", "allowed"),
    [
        ("=https", CURL_PROTOCOLS, {"https"}),
        ("-http", CURL_PROTOCOLS, CURL_PROTOCOLS - {"http"}),
        ("-all,http", CURL_PROTOCOLS, {"http"}),
        ("-all,+HTTPS", CURL_PROTOCOLS, {"https"}),  # (no case, as curl's)
        ("=http,bogus", CURL_PROTOCOLS, {"http"}),  # warned, passed over
        ("=ws", CURL_PROTOCOLS, set()),  # an unknown name with =: the set emptied
        ("-=http", CURL_PROTOCOLS, {"http"}),  # the last modifier counts
        ("http,,https", REDIR_PROTOCOLS, REDIR_PROTOCOLS),  # empty tokens skipped
        ("-all", CURL_PROTOCOLS, set()),
        ("all", REDIR_PROTOCOLS, CURL_PROTOCOLS),
        ("=http", REDIR_PROTOCOLS, {"http"}),
    ],
)
def test_protocols_read_as_curls_proto2num(text: str, start: frozenset[str],
                                           allowed: set[str]) -> None:  # fmt: skip
    warned: list[str] = []
    assert protocols(text, start, warned.append) == allowed
    bogus = [t.lstrip("+-=") for t in text.split(",") if t.lstrip("+-=").lower() in ("bogus", "ws")]
    assert warned == [f"unrecognized protocol '{t}'" for t in bogus]


@pytest.mark.parametrize("text", ["=", "+", "http,-", "*http"])
def test_protocols_of_modifiers_only_are_curls_bad_use(text: str) -> None:
    with pytest.raises(RunError, match="is badly used here"):
        protocols(text, CURL_PROTOCOLS, print)


def test_proto_refuses_the_urls_scheme_before_anything_is_sent() -> None:
    # curl 7.88.1 --proto =https http://...: (1), nothing sent, %{http_code} 000
    came: list[str] = []

    def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        came.append(target)
        return _answer(method, target, headers, body)

    code, _, out, err, records = run(
        "-s", "-S", "--proto", "=https", "-w", "%{http_code} %{exitcode} %{errormsg}\n",
        "http://192.0.2.80/ok", handler=answer,
    )  # fmt: skip
    assert code == 1 and came == []
    assert out == f"000 1 {SAID}\n".encode()
    assert "--proto: http:// not allowed" in err
    assert records[0]["exitcode"] == 1


@pytest.mark.parametrize("given", [("--proto", "-all,http"), ("--proto", "-=http")])
def test_a_value_starting_with_a_dash_is_the_options_as_curl(given: tuple[str, ...]) -> None:
    # argparse said `argument --proto: expected one argument` (2); curl takes the word
    code, _, out, err, _ = run("-s", *given, "-w", "%{http_code}\n", "http://192.0.2.80/ok",
                               handler=_answer)  # fmt: skip
    assert code == 0, err
    assert out == b"ok200\n"


def test_data_starting_with_a_dash_is_sent_as_curl() -> None:
    code, _, out, err, _ = run("-s", "-d", "-x", "-w", "", "http://192.0.2.80/echo")
    assert code == 0, err
    assert b'"body": "-x"' in out


def test_proto_redir_refuses_the_redirects_scheme_after_the_302() -> None:
    # curl: %{http_code} 302, %{num_redirects} 1, %{url_effective} the Location's URL
    code, _, out, err, _ = run(
        "-s", "-S", "-L", "--proto-redir", "=https",
        "-w", "%{http_code} %{exitcode} %{num_redirects} %{url_effective}\n",
        "http://192.0.2.80/rel", handler=_answer,
    )  # fmt: skip
    assert code == 1
    assert out == b"302 1 1 http://192.0.2.80/ok\n"
    assert "--proto-redir: http:// not allowed" in err
    # --proto-redir =http lets it through; --proto's set counts for a redirect too
    code, _, out, _, _ = run("-s", "-L", "--proto-redir", "=http", "-w", " %{http_code}\n",
                             "http://192.0.2.80/rel", handler=_answer)  # fmt: skip
    assert (code, out) == (0, b"ok 200\n")
    code, _, out, _, _ = run("-s", "-L", "--proto", "=http", "--proto-redir", "=https",
                             "-w", "%{http_code}\n", "http://192.0.2.80/rel",
                             handler=_answer)  # fmt: skip
    assert (code, out) == (1, b"302\n")


def test_proto_lines_in_verbose_and_unknown_names_warned_as_curl() -> None:
    code, _, _, err, _ = run("-v", "--proto", "=https,bogus", "-w", "",
                             "http://192.0.2.80/ok", handler=_answer)  # fmt: skip
    assert code == 1
    assert err.startswith("Warning: unrecognized protocol 'bogus'\n")
    assert f"* {SAID}\n* Closing connection -1\n" in err
    _, _, _, err, _ = run("-s", "--proto", "bogus", "-w", "", "http://192.0.2.80/ok",
                          handler=_answer)  # fmt: skip
    assert err == ""  # -s: no warning, as curl's


def test_speed_limit_ends_a_stalled_transfer_as_curl() -> None:
    # curl 7.88.1 -Y 1 -y 3 against a server that answers after 20 s: (28) after 3 s,
    # "Operation too slow. ..."; ours: "unrecognized arguments: -Y" (2) before
    from test_http_redirects import Server

    w = "%{http_code} %{exitcode} %{errormsg}\n"
    code, _, out, err, _ = run("-s", "-S", "-Y", "1", "-y", "3", "-w", w,
                                     "http://192.0.2.80/ok",
                                     server=lambda: Server(_answer, delay=20))  # fmt: skip
    assert code == 1
    said = "Operation too slow. Less than 1 bytes/sec transferred the last 3 seconds"
    assert out == f"000 28 {said}\n".encode()  # (not -m's: "Operation timed out ...")
    assert "too slow: under 1 bytes/s from 192.0.2.80:80 for 3 s" in err
    # -Y alone: 30 s, as curl's (the answer at 20 s)
    code, _, out, _, _ = run("-s", "-Y", "1", "-w", "%{http_code}\n", "http://192.0.2.80/ok",
                             server=lambda: Server(_answer, delay=20))  # fmt: skip
    assert (code, out) == (0, b"ok200\n")
    # -y alone: at 1 byte/s, as curl 7.88.1's tool sets it (session 28's CI: curl said 28
    # where ours, which took -y alone as no check, said 0)
    code, _, out, _, _ = run("-s", "-y", "3", "-w", w, "http://192.0.2.80/ok",
                             server=lambda: Server(_answer, delay=20))  # fmt: skip
    assert out == f"000 28 {said}\n".encode()


@pytest.mark.parametrize("given", [("-Y", "1k"), ("-y", "2.5"), ("-Y", "-1")])
def test_speed_options_are_whole_numbers_as_curl(
    given: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        run(*given, "http://192.0.2.80/ok")
    assert e.value.code == 2
    assert "numerical parameter" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "ends"), [(("-m", "2"), 2.0), (("-Y", "1", "-y", "2"), 2.2)])
def test_time_total_of_a_timeout_runs_to_its_end_as_curl(
    given: tuple[str, ...], ends: float
) -> None:
    # curl 7.88.1 -m 2 against a server that never answers in time: %{time_total} 2.0;
    # ours was 0 (no byte came: no last byte's stamp). -Y 1 -y 2 on a new connection:
    # 2.2, its happy eyeballs timer's check 0.2 s in setting the speed check's cadence
    # (measured, session 29; this test said 2.0 for both until then)
    from test_http_redirects import Server

    code, _, out, _, _ = run("-s", *given, "-w", "%{exitcode} %{time_total}\n",
                             "http://192.0.2.80/ok",
                             server=lambda: Server(_answer, delay=20))  # fmt: skip
    exitcode, total = out.decode().split()
    assert (code, exitcode) == (1, "28")
    assert ends <= float(total) < ends + 0.1


def test_each_retried_try_has_its_error_line_as_curl() -> None:
    # curl 7.88.1 --retry 2 -f against a 503: `curl: (22) ...` before each `Warning:
    # Problem ...` line and after the last try; ours printed its line for the last only
    seen: list[str] = []

    def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        seen.append(target)
        return response(503, b"bad", Connection="close")

    code, _, out, err, records = run("--retry", "2", "--retry-delay", "1", "-f", "-w",
                                     "%{http_code}\n", "http://192.0.2.80/x",
                                     handler=answer)  # fmt: skip
    assert (code, out, len(seen), len(records)) == (1, b"503\n", 3, 1)
    line = "pktlab run http: http://192.0.2.80/x: the server answered 503 X (--fail)"
    assert err.splitlines() == [
        line, "Warning: Problem : HTTP error. Will retry in 1 seconds. 2 retries left.",
        line, "Warning: Problem : HTTP error. Will retry in 1 seconds. 1 retries left.",
        line,
    ]  # fmt: skip
    # -s: none; -s -S: the error lines alone, as curl's
    _, _, _, err, _ = run("-s", "--retry", "1", "--retry-delay", "1", "-f", "-w", "",
                          "http://192.0.2.80/x", handler=answer)  # fmt: skip
    assert err == ""
    _, _, _, err, _ = run("-s", "-S", "--retry", "1", "--retry-delay", "1", "-f", "-w", "",
                          "http://192.0.2.80/x", handler=answer)  # fmt: skip
    assert err.splitlines() == [line, line]


def test_speed_limit_over_http2_as_over_http1() -> None:
    # the same check on an h2c stream (--http2-prior-knowledge): the answer after 20 s
    from http_fake import H2Server

    code, _, out, _, _ = run("-s", "--http2-prior-knowledge", "-Y", "1", "-y", "3", "-w",
                             "%{exitcode} %{errormsg}\n", "http://192.0.2.80/",
                             server=lambda: H2Server(delay=20))  # fmt: skip
    said = "Operation too slow. Less than 1 bytes/sec transferred the last 3 seconds"
    assert (code, out) == (1, f"28 {said}\n".encode())
    code, _, out, _, _ = run("-s", "--http2-prior-knowledge", "-Y", "1", "-y", "3", "-w",
                             " %{exitcode}\n", "http://192.0.2.80/",
                             server=lambda: H2Server(delay=2))  # fmt: skip
    assert code == 0 and out.endswith(b" 0\n")
