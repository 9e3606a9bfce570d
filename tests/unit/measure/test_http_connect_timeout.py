"""curl's --connect-timeout over the scripted endpoint: it bounds the whole connection
phase (the name lookup, the TCP connect, the TLS handshake), not the TCP connect alone,
and says which step ran out in curl's words (exit 28)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_http import OK, Http, Https, rig_with
from web_pki import make_pki

from packetlab.measure.http import http_get


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_server_that_never_answers_the_client_hello_is_a_connect_timeout() -> None:
    # curl 7.88.1 --connect-timeout 1 -m 5: "(28) SSL connection timeout" after 1 s
    rig = rig_with(Http(b"", close=False), 443)  # takes the ClientHello, says nothing
    start = rig.clock.seconds()
    r = rig.run(http_get(rig.session, "https://192.0.2.80/", timeout=5.0, connect_timeout=1.0))
    assert (r.exitcode, r.status) == (28, None)
    assert r.error == ("SSL connection timeout: no TLS handshake from 192.0.2.80:443 within 1 s "
                       "of the connection's start (--connect-timeout)")  # fmt: skip
    assert rig.clock.seconds() - start == pytest.approx(1.0, abs=0.1)


def test_max_time_still_wins_when_it_comes_first() -> None:
    rig = rig_with(Http(b"", close=False), 443)
    r = rig.run(http_get(rig.session, "https://192.0.2.80/", timeout=1.0, connect_timeout=5.0))
    assert r.exitcode == 28 and (r.error or "").startswith("timed out: no response")


def test_the_handshake_within_the_bound_and_a_slow_answer_after_it(
    pki: dict[str, Path],
) -> None:
    # the connect timeout ends with the handshake: a response 3 s later is -m's business
    peer = Https(pki, OK, pieces=2, gap=3.0)
    rig = rig_with(peer, 443)
    r = rig.run(http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                         cafile=str(pki["ca"]), timeout=10.0,
                         connect_timeout=1.0))  # fmt: skip
    assert (r.status, r.error) == (200, None)


def test_a_silent_dns_server_is_a_resolve_timeout_within_the_bound() -> None:
    # curl: "(28) Resolving timed out after 1000 milliseconds"; ours asked the endpoint's
    # DNS server 2 s twice per type (8 s for A and AAAA), then said 6
    from packetlab.endpoint.config import parse_config
    from packetlab.endpoint.memory import system_image

    rig = rig_with(Http(OK))
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    rig.endpoint.udp_servers[("192.0.2.53", 53)] = lambda query: []
    start = rig.clock.seconds()
    r = rig.run(http_get(rig.session, "http://slow.test/", connect_timeout=1.0))
    assert r.exitcode == 28, r.error
    assert (r.error or "").startswith(
        "could not resolve host slow.test: resolving timed out after 10"
    )
    assert rig.clock.seconds() - start == pytest.approx(1.0, abs=0.1)


def test_a_plain_http_exchange_is_not_bounded_by_it() -> None:
    rig = rig_with(Http(OK, pieces=2, gap=2.0))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", connect_timeout=1.0))
    assert (r.status, r.error) == (200, None)
