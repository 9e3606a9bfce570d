"""`http_get` keeps connections as curl 7.88 does: no `Connection: close` sent, a redirect
hop or the next URL to the same scheme, host and port goes over the connection (and TLS
session) already open (curl's "Re-using existing connection"), with curl's num_connects
(0 when reused) and times (no lookup, connect or handshake on a reused connection); a
server's `Connection: close`, another port or a connection that died while idle mean a
new connect."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_fake import TlsPeer, serve
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure.http import Connections, http_get


class KeepServer(TlsPeer):
    """An HTTP/1.1 server that answers each request on the connection and keeps it open
    (plain, or TLS with `pki`); /close answers with `Connection: close` and closes;
    /r?to=WHERE redirects."""

    def __init__(self, pki: dict[str, Path] | None = None) -> None:
        super().__init__(pki)
        self.requests: list[bytes] = []
        self.drop_next = False  # /then-drop: the next request is met by a close

    def arrived(self) -> None:
        for head in self.heads():
            self.requests.append(head)
            target = head.split(b" ")[1].decode()
            if self.drop_next:  # closed as the request came: it gets no answer
                self.close(0.0)
                return
            self.drop_next = target == "/then-drop"
            body = f"request {len(self.requests)} {target}".encode()
            extra = ""
            if target.startswith("/r?to="):
                extra = f"Location: {target[6:]}\r\n"
            elif target == "/close":
                extra = "Connection: close\r\n"
            status = "302 Found" if extra.startswith("Location") else "200 OK"
            out = (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode()
            if target == "/notify" and self.tls is not None:  # a body ended by close_notify,
                self.tls.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil close_notify")
                self.shutdown(0.01)  # the TCP connection left open
                return
            self.send(out + body, 0.01)
            if target == "/close":
                self.close(0.01)
            elif target == "/junk":  # bytes nobody asked for, after the response
                self.send(b"junk", 0.02)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serving(
    pki: dict[str, Path] | None = None, ports: tuple[int, ...] = (80,)
) -> tuple[StreamRig, list[KeepServer]]:
    return serve(lambda _: KeepServer(pki), ports)


def test_a_redirect_to_the_same_origin_reuses_the_connection() -> None:
    rig, made = serving()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/r?to=/page", follow=True))
    assert (r.status, r.error, r.num_redirects) == (200, None, 1)
    assert len(made) == 1 and len(made[0].requests) == 2  # one TCP connection, two requests
    assert all(b"connection:" not in q.lower() for q in made[0].requests)  # none, as curl
    assert r.connects == 1 and r.reused  # curl's num_connects: the one connect
    assert r.to_dict()["reused"] is True and r.to_dict()["connects"] == 1
    # the second hop added no connect time: connect is the first hop's alone
    assert r.connect_us is not None and r.connect_us < 1000
    assert r.first_byte_us == pytest.approx(20_000, abs=2000)  # 10 ms + 10 ms


def test_the_next_url_reuses_the_connection_with_curls_times() -> None:
    rig, made = serving()
    pool = Connections()
    first = rig.run(http_get(rig.session, "http://192.0.2.80/a", connections=pool))
    second = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (first.connects, first.reused, second.connects, second.reused) == (1, False, 0, True)
    assert len(made) == 1 and [q.split(b" ")[1] for q in made[0].requests] == [b"/a", b"/b"]
    assert second.server == "192.0.2.80:80"
    # curl on a reused connection: time_namelookup and time_connect 0, then the request
    assert (second.namelookup_us, second.connect_us, second.tls_us) == (0, 0, None)
    assert second.pretransfer_us is not None and second.pretransfer_us < 1000
    assert second.first_byte_us == pytest.approx(10_000, abs=1000)
    # without a pool each fetch closes its connections at its end
    rig.run(http_get(rig.session, "http://192.0.2.80/c"))
    assert len(made) == 2


def test_https_reuses_the_tls_session_no_second_handshake(pki: dict[str, Path]) -> None:
    rig, made = serving(pki, ports=(443,))
    pool = Connections()
    kw = {"cafile": str(pki["ca"]), "connect_to": "192.0.2.80", "connections": pool}
    first = rig.run(http_get(rig.session, "https://www.test/a", **kw))  # type: ignore[arg-type]
    second = rig.run(http_get(rig.session, "https://www.test/b", **kw))  # type: ignore[arg-type]
    rig.run(pool.close())
    assert (first.error, second.error, second.status) == (None, None, 200)
    assert len(made) == 1 and made[0].handshakes == 1 and len(made[0].requests) == 2
    assert second.connects == 0 and second.tls_us == 0 and second.tls_version == first.tls_version


def test_connection_close_another_port_or_a_dead_connection_mean_a_new_connect() -> None:
    rig, made = serving(ports=(80, 8080))
    pool = Connections()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/close", connections=pool))
    assert r.status == 200 and not pool.idle  # Connection: close: not kept
    r = rig.run(http_get(rig.session, "http://192.0.2.80/a", connections=pool))
    assert (r.connects, r.reused, len(made)) == (1, False, 2)
    r = rig.run(http_get(rig.session, "http://192.0.2.80:8080/a", connections=pool))
    assert (r.connects, r.reused, len(made)) == (1, False, 3)
    # the port-80 connection is closed by the server while idle: a fresh connect, no error
    made[1].close()
    rig.run(http_get(rig.session, "http://192.0.2.80:8080/b", connections=pool))  # time passes
    r = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (r.error, r.status, r.connects, r.reused, len(made)) == (None, 200, 1, False, 4)


def test_a_connection_closed_as_the_next_request_came_is_retried_on_a_new_one() -> None:
    # curl's "Connection died, retrying a fresh connect": the kept connection looked
    # alive when taken (no close had come), the server closed it on the request
    rig, made = serving()
    pool = Connections()
    rig.run(http_get(rig.session, "http://192.0.2.80/then-drop", connections=pool))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (r.error, r.status, r.connects, r.reused, len(made)) == (None, 200, 1, False, 2)
    assert [q.split(b" ")[1] for q in made[0].requests] == [b"/then-drop", b"/b"]


def test_an_idle_connection_with_bytes_to_read_is_not_reused() -> None:
    # curl: "Connection #0 seems to be dead" when an idle connection is readable
    rig, made = serving(ports=(80, 8080))
    pool = Connections()
    rig.run(http_get(rig.session, "http://192.0.2.80/junk", connections=pool))
    rig.run(http_get(rig.session, "http://192.0.2.80:8080/a", connections=pool))  # time passes
    r = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (r.error, r.status, r.reused, r.connects, len(made)) == (None, 200, False, 1, 3)


def test_a_body_ended_by_close_notify_leaves_its_connection_closed(
    pki: dict[str, Path],
) -> None:
    # a close-delimited body over TLS ends with close_notify before the TCP FIN: that
    # connection is done even while its TCP side is still open
    rig, made = serving(pki, ports=(443,))
    pool = Connections()
    kw = {"cafile": str(pki["ca"]), "connect_to": "192.0.2.80", "connections": pool}
    first = rig.run(http_get(rig.session, "https://www.test/notify", **kw))  # type: ignore[arg-type]
    second = rig.run(http_get(rig.session, "https://www.test/a", **kw))  # type: ignore[arg-type]
    rig.run(pool.close())
    assert (first.error, first.body_len) == (None, len(b"until close_notify"))
    assert (second.error, second.status, second.reused, len(made)) == (None, 200, False, 2)
