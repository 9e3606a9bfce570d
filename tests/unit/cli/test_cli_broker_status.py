"""`pktlab broker status` against what is not a broker's status page, and `--url`s no
broker serves (session 31, codec31; docs/broker.md)."""

from __future__ import annotations

import argparse

import pytest

from packetlab.cli import broker

PAGE = {"subscribers": 0, "endpoints": 0, "publications": [], "channels": [], "notified": 0}


@pytest.fixture(autouse=True)
def _no_socket(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The probes' one socket call, faked: a unit test opens none. A TLS server's answer
    (a handshake record) unless a test says otherwise; what was sent is listed."""
    from packetlab.cli import broker_probe

    sent: list[bytes] = []

    def first_bytes(host: str, port: int, hello: bytes, timeout: float) -> bytes:
        sent.append(hello)
        return b"\x16\x03\x03"

    monkeypatch.setattr(broker_probe, "_first_bytes", first_bytes)
    return sent


def _run(monkeypatch: pytest.MonkeyPatch, page: object, *words: str) -> tuple[list[str], int]:
    asked: list[str] = []

    def fetch(url: str) -> object:
        asked.append(url)
        return page

    monkeypatch.setattr(broker, "fetch", fetch)
    return asked, status(*words)


def status(*words: str) -> int:
    """`pktlab broker status WORDS`, parsed and run in this process."""
    parser = argparse.ArgumentParser()
    broker.add_arguments(parser)
    return broker.run(parser.parse_args(["status", *words]))


@pytest.mark.parametrize(
    ("page", "said", "raw"),
    [
        ({"a": 1}, 'no "channels" list', []),
        ({"a": 1}, 'no "channels" list', ["--json"]),
        ({**PAGE, "channels": 5}, 'no "channels" list', []),
        ({"channels": []}, 'no "publications" list', ["--json"]),
        ({**PAGE, "channels": [{"x": 1}]}, "no 'private' in an entry", []),
        ({**PAGE, "publications": [{"id": 1}]}, "no 'priority' in an entry", []),
        ({**PAGE, "connections": 3}, "'int' object has no attribute 'get'", []),
    ],
)
def test_a_json_page_that_is_not_the_brokers_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    page: dict[str, object],
    said: str,
    raw: list[str],
) -> None:
    """Another service's JSON at --url: `{"a": 1}` printed an empty broker status, exit 0;
    a field of the wrong type or an entry without its keys a traceback (TypeError,
    KeyError, AttributeError), exit 1."""
    url = "http://127.0.0.1:8000/"
    assert _run(monkeypatch, page, "--url", url, *raw)[1] == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"pktlab broker status: {url} is not a broker's status page ({said}); "
        "StatusListen in broker.conf says where it is\n"
    )


def test_a_brokers_page_still_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(monkeypatch, PAGE, "--url", "http://127.0.0.1:20558/")[1] == 0
    assert capsys.readouterr().out.startswith("listening: \nconnections: 0 publisher(s), ")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:20600", "http://127.0.0.1:20600/"),
        ("localhost:20600/x", "http://localhost:20600/x"),
        ("[::1]:20600", "http://[::1]:20600/"),
        ("http://127.0.0.1:20600", "http://127.0.0.1:20600/"),
        ("https://b.example:443/status", "https://b.example:443/status"),
    ],
)
def test_url_without_a_scheme_is_http(
    monkeypatch: pytest.MonkeyPatch, given: str, url: str
) -> None:
    """`--url 127.0.0.1:20600` (as curl takes it) was `unknown url type: 127.0.0.1`, and
    then asked whether the broker was running."""
    assert _run(monkeypatch, PAGE, "--url", given) == ([url], 0)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("ftp://x/", "not an http:// URL (StatusListen serves HTTP)"),
        ("file:///etc/passwd", "not an http:// URL (StatusListen serves HTTP)"),
        ("http://127.0.0.1:99999/", "Port out of range 0-65535"),
        ("http://127.0.0.1:0/", "port 0"),
        ("http://:20558/", "no host name (http://HOST:PORT/)"),
        ("not a url", "no host name (http://HOST:PORT/)"),
        ("http://[::1", "Invalid IPv6 URL"),
        # was urllib's `Port could not be cast to integer value as ':1:20558'` (session 32)
        ("::1:20558", "an IPv6 address goes in brackets, [ADDR]:PORT"),
        ("2001:db8::1", "an IPv6 address goes in brackets, [ADDR]:PORT"),
        # was `no broker status at ...: Invalid argument (is twistd pktbroker running ...`
        ("[fe80::1]:20558", "the link-local address fe80::1 needs its interface: fe80::1%IFNAME"),
    ],
)
def test_a_url_no_broker_serves_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, given: str, said: str
) -> None:
    """Each was looked for and said `no broker status at URL: ... (is twistd pktbroker
    running ...)`, exit 1: ftp:// `Name or service not known`, port 99999 `Connection
    refused` (a service name lookup), a bare word `unknown url type`."""
    asked, rc = _run(monkeypatch, PAGE, "--url", given)
    assert (asked, rc) == ([], 2)
    assert capsys.readouterr().err == f"pktlab broker status: --url {given!r}: {said}\n"


class _Response:
    """What urlopen returns, reading `chunks` one by one."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read1(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def read(self) -> bytes:  # (all of it: what fetch used to call)
        return b"".join(self.chunks)


@pytest.mark.parametrize(
    ("chunks", "limits", "said"),
    [
        ([b"[" * 100_000], {}, "not JSON: nested too deeply"),  # was a RecursionError
        ([b"9" * 5000], {}, "not JSON: a number of more than 4300 digits"),
        ([b"[1, 2]"], {}, "JSON, but not an object"),
        ([b"{}", b" " * 100, b" "], {"MAX_PAGE": 100}, "over 0 MiB"),  # was read whole
        ([b"{", b" ", b"}"], {"PAGE_SECONDS": -1.0}, "not whole after -1 s"),  # byte by byte
    ],
)
def test_a_page_no_broker_sends_is_bounded_and_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    chunks: list[bytes],
    limits: dict[str, float],
    said: str,
) -> None:
    """An endless page was read until a MemoryError (545 MB at most now, under `ulimit -v`
    2 GB it was the traceback), one sent a byte at a time was waited for without end, and
    JSON nested 100,000 deep was a RecursionError traceback."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response(chunks))
    for name, value in limits.items():
        monkeypatch.setattr(broker, name, value)
    url = "http://127.0.0.1:8000/"
    assert status("--url", url) == 1
    assert capsys.readouterr().err == (
        f"pktlab broker status: {url} is not a broker's status page ({said}); "
        "StatusListen in broker.conf says where it is\n"
    )


HOME_CONF = {
    "PublishListen": "tcp:20556",
    "SubscribeListen": "tcp:20557",
    "StatusListen": None,
}


@pytest.mark.parametrize(
    ("listens", "words", "hint"),
    [
        (HOME_CONF, [], "(StatusListen is not set in the home's broker.conf: the broker "
         "serves no status page; pktlab init sets tcp:20558:interface=127.0.0.1)"),
        ({}, [], "(is twistd pktbroker running, with StatusListen set in its broker.conf?)"),
        (HOME_CONF, ["--url", "127.0.0.1:20558"],
         "(is twistd pktbroker running, with StatusListen set in its broker.conf?)"),
    ],
)  # fmt: skip
def test_a_page_the_home_does_not_set_up_says_so(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    listens: dict[str, str | None],
    words: list[str],
    hint: str,
) -> None:
    """A home whose broker.conf sets no StatusListen (the broker then serves no page):
    `Connection refused (is twistd pktbroker running, ...?)` though it was; now the line
    says the page is off. Refused or an unknown host are not probed (no wait)."""
    import urllib.error

    from packetlab.cli import broker_probe

    def refused(url: str) -> object:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    def probed(*a: object) -> None:
        raise AssertionError("probed a refused port")

    monkeypatch.setattr(broker, "fetch", refused)
    monkeypatch.setattr(broker, "home_listens", lambda: listens)
    monkeypatch.setattr(broker_probe, "what_answered", probed)
    assert status(*words) == 1
    assert capsys.readouterr().err == (
        "pktlab broker status: no broker status at http://127.0.0.1:20558/: Connection "
        f"refused {hint}\n"
    )


def test_https_at_a_plain_http_server_is_told_before_the_fetch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, _no_socket: list[bytes]
) -> None:
    """`--url https://...` at the plain status page waited the handshake's 5 s timeout
    (Twisted's HTTP server waits for the end of the line the hello began): now the hello
    goes with a blank line after it, which such a server answers at once (session 32)."""
    from packetlab.cli import broker_probe

    def fetch(url: str) -> object:
        raise AssertionError("fetched: the handshake's 5 s timeout")

    def first_bytes(host: str, port: int, hello: bytes, timeout: float) -> bytes:
        assert (host, port, hello[:1], hello[-4:]) == ("127.0.0.1", 20558, b"\x16", b"\r\n\r\n")
        return b"HTTP/1.1 400 Bad Request\r\n"

    monkeypatch.setattr(broker, "fetch", fetch)
    monkeypatch.setattr(broker_probe, "_first_bytes", first_bytes)
    assert status("--url", "https://127.0.0.1:20558/") == 1
    assert capsys.readouterr().err == (
        "pktlab broker status: https://127.0.0.1:20558/: a plain HTTP server answered the "
        "TLS hello (the status page serves HTTP: http://127.0.0.1:20558/)\n"
    )


def test_https_at_the_brokers_tls_port_names_the_status_page(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--url https://` at PublishListen's port: `certificate verify failed: unable to get
    local issuer certificate (_ssl.c:1006) (is twistd pktbroker running ...?)`."""
    import ssl
    import urllib.error

    def fetch(url: str) -> object:
        raise urllib.error.URLError(
            ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer")
        )

    listens = {"PublishListen": "tcp:20556", "StatusListen": "tcp:20558:interface=127.0.0.1"}
    monkeypatch.setattr(broker, "fetch", fetch)
    monkeypatch.setattr(broker, "home_listens", lambda: listens)
    assert status("--url", "https://127.0.0.1:20556/") == 1
    assert capsys.readouterr().err == (
        "pktlab broker status: https://127.0.0.1:20556/: a TLS port (PublishListen of the "
        "home's broker.conf), not the status page; the status page is "
        "http://127.0.0.1:20558/\n"
    )
    # another https server whose certificate is not trusted: not the broker's to name
    assert status("--url", "https://127.0.0.1:8443/") == 1
    assert "certificate verify failed" in capsys.readouterr().err
