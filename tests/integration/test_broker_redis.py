"""Two `twistd pktbroker --store redis://...` processes sharing a real redis-server started
by the test: a publication at broker B reaches a subscriber of broker A within 1 s, ends
everywhere when its publisher goes, and the delivery record holds across brokers."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_world import BrokerProcess, Identity, free_port
from broker_world import publish_raw as publish
from conftest import stop_process
from testkit.poll import poll_until
from tls_world import home_fixture

from packetlab import wire
from packetlab.broker.redis_store import TTL
from packetlab.ppks import PktlabHome

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed (apt redis-server)"
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/3"
    stop_process(proc)


def start_redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc


home = home_fixture(scope="function")


@pytest.fixture
def brokers(home: PktlabHome, tmp_path: Path, redis_url: str) -> Iterator[list[BrokerProcess]]:
    out = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        out.append(BrokerProcess(home, tmp_path / name, "--store", redis_url))
    for b in out:
        b.wait_log("shared state in redis://")
    yield out
    for b in out:
        b.stop()


def test_publication_at_b_reaches_a_within_1s_and_ends_everywhere(
    home: PktlabHome, brokers: list[BrokerProcess], tmp_path: Path
) -> None:
    a, b = brokers
    ep = Identity(home, tmp_path, "ep")
    sub = ep.subscribe(a.sub_port)
    xd = b"controller_addr=127.0.0.1:20600;sni_key=cross;"
    t0 = time.monotonic()
    pub = publish(home, b, xd)
    assert sub.recv(timeout=1.0) == wire.Xnotify(ep.channel, xd)
    took = time.monotonic() - t0
    assert took < 1.0
    # the same endpoint reconnecting to the other broker is not sent it again
    sub.close()
    again = ep.subscribe(b.sub_port)
    assert again.quiet(0.5) == []
    again.close()
    # a late subscriber at A gets the live publication
    late = Identity(home, tmp_path, "late").subscribe(a.sub_port)
    assert late.recv(timeout=2.0) == wire.Xnotify(ep.channel, xd)
    late.close()
    # the publisher goes: it ends at A too
    mark = len(a.output())
    pub.close()
    a.wait_log("publisher gone at another broker", since=mark)
    after = Identity(home, tmp_path, "after").subscribe(a.sub_port)
    assert after.quiet(0.5) == []
    after.close()


def test_publications_of_a_killed_broker_expire(
    home: PktlabHome, brokers: list[BrokerProcess], tmp_path: Path, redis_url: str
) -> None:
    a, b = brokers
    pub = publish(home, b, b"controller_addr=127.0.0.1:20601;sni_key=dead;")
    a.wait_log("from another broker")
    mark = len(a.output())
    assert b.proc is not None
    b.proc.kill()  # no goodbye: its keys expire
    b.proc.wait(5)
    # They expire within the TTL (10 s) of B's last refresh: each has one, no longer; then
    # the test ends them at once, not 10 s later (Redis's own clock is Redis's matter)
    keys = [k for k in _redis_keys(redis_url, "pktlab:pub:*") if k.count(":") == 3]
    assert keys, "B's publication is not in Redis"
    for key in keys:
        assert 0 < _redis_int(redis_url, "TTL", key) <= TTL, key
        assert _redis_int(redis_url, "PEXPIRE", key, "1") == 1, key
    a.wait_log("its broker stopped refreshing it", timeout=20, since=mark)
    pub.close()


def _redis_keys(url: str, pattern: str) -> list[str]:
    """KEYS `pattern` in the test's database."""
    import socket

    from packetlab.broker.redis_store import parse_redis_url

    host, port, db = parse_redis_url(url)
    with socket.create_connection((host, port), timeout=2.0) as s:
        s.sendall(b"SELECT %d\r\nKEYS %s\r\n" % (db, pattern.encode()))
        data = b""
        while True:
            lines = data.split(b"\r\n")
            if len(lines) > 2 and lines[1].startswith(b"*"):
                n = int(lines[1][1:])
                if len(lines) > 2 + 2 * n:
                    assert lines[0] == b"+OK", data
                    return [k.decode() for k in lines[3 : 2 + 2 * n : 2]]
            chunk = s.recv(4096)
            assert chunk, "redis closed"
            data += chunk


def _redis_int(url: str, *args: str) -> int:
    """One Redis command answered by an integer (EXISTS, TTL), in the test's database."""
    import socket

    from packetlab.broker.redis_store import parse_redis_url

    host, port, db = parse_redis_url(url)

    def command(*words: str) -> bytes:
        parts = [w.encode() for w in words]
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in parts)

    with socket.create_connection((host, port), timeout=2.0) as s:
        s.sendall(command("SELECT", str(db)) + command(*args))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = s.recv(4096)
            assert chunk, "redis closed"
            data += chunk
    ok, answer = data.split(b"\r\n")[:2]
    assert ok == b"+OK" and answer.startswith(b":"), data
    return int(answer[1:])


def test_the_delivery_record_outlives_the_publication_across_brokers(
    home: PktlabHome, brokers: list[BrokerProcess], tmp_path: Path, redis_url: str
) -> None:
    # The endpoint got the bytes through A; the publication ends (pktxpmgr -n ends it as
    # the endpoints start) and the same bytes are published again at B, where the
    # endpoint now subscribes: it may still hold them (a second copy crashes the
    # reference, OBSERVED §2.3), so only the shared record in Redis can keep them away.
    import hashlib

    a, b = brokers
    ep = Identity(home, tmp_path, "ep")
    sub = ep.subscribe(a.sub_port)
    xd = b"controller_addr=127.0.0.1:20602;sni_key=again;"
    h = hashlib.sha256(xd).hexdigest()
    pub = publish(home, a, xd)
    assert sub.recv(timeout=2.0) == wire.Xnotify(ep.channel, xd)
    sub.close()
    pub.close()
    deadline = time.monotonic() + 10
    while _redis_int(redis_url, "EXISTS", f"pktlab:xref:{h}"):  # A ended it in Redis
        assert time.monotonic() < deadline, "the publication never ended in redis"
        time.sleep(0.05)
    assert 0 < _redis_int(redis_url, "TTL", f"pktlab:delivered:{h}") <= 3600
    at_b = ep.subscribe(b.sub_port)
    other = Identity(home, tmp_path, "other").subscribe(b.sub_port)
    pub2 = publish(home, b, xd)
    assert other.recv(timeout=2.0) == wire.Xnotify(ep.channel, xd)
    assert at_b.quiet(0.5) == []
    assert _redis_int(redis_url, "TTL", f"pktlab:delivered:{h}") == -1  # live: kept
    for c in (at_b, other, pub2):
        c.close()


def test_redis_lost_and_back_is_said_in_words(home: PktlabHome, tmp_path: Path) -> None:
    """Redis stopped under a running broker: its log said only Twisted's "Scheduling retry
    N to connect <twisted.internet.endpoints.TCP4ClientEndpoint object at 0x...>". Now one
    line says what is lost meanwhile, and one that it is back."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    (tmp_path / "a").mkdir()
    broker = BrokerProcess(home, tmp_path / "a", "--store", f"redis://127.0.0.1:{port}/3")
    try:
        broker.wait_log("shared state in redis://")
        stop_process(redis)
        out = broker.wait_log("shared state: lost Redis at 127.0.0.1:", timeout=15)
        assert "publications made here reach only this broker's subscribers" in out
        redis = start_redis(port, tmp_path)
        broker.wait_log(f"shared state: Redis at 127.0.0.1:{port} is back", timeout=60)
        assert broker.output().count("shared state: lost Redis") == 1
    finally:
        broker.stop()
        stop_process(redis)


class OwnRedis:
    """A Redis of the test's own, to stop and start again on its port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port, self.tmp_path = free_port(), tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/3"
        self.proc = start_redis(self.port, tmp_path)

    def stop(self) -> None:
        stop_process(self.proc)

    def start(self) -> None:
        self.proc = start_redis(self.port, self.tmp_path)


AB = tuple[OwnRedis, BrokerProcess, BrokerProcess]


@pytest.fixture
def own_redis(home: PktlabHome, tmp_path: Path) -> Iterator[AB]:
    """Two brokers A and B sharing a Redis the test may stop and start again."""
    redis = OwnRedis(tmp_path)
    brokers: list[BrokerProcess] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            brokers.append(BrokerProcess(home, tmp_path / name, "--store", redis.url))
        for x in brokers:
            x.wait_log("shared state in redis://")
        yield redis, brokers[0], brokers[1]
    finally:
        for x in brokers:
            x.stop()
        redis.stop()


def _pub_keys(url: str) -> list[str]:
    """The publications' keys in Redis (`pktlab:pub:BROKER:ID`)."""
    return [k for k in _redis_keys(url, "pktlab:pub:*") if k.count(":") == 3]


def test_a_redis_restart_loses_nothing(home: PktlabHome, tmp_path: Path, own_redis: AB) -> None:
    """Redis restarted (empty: no persistence) under two running brokers (session 20):
    * while it is down, a publication made at A still reaches A's own subscriber (the
      shared delivery record failed, and a failed claim sent nothing, ever);
    * once it is back, A's publications, the one from before and the one made meanwhile,
      reach B's subscribers again and keep refreshed (A's refresh loop stopped for good at
      its first failure, and nothing wrote A's publications into the new Redis)."""
    redis, a, b = own_redis
    url = redis.url
    before = publish(home, a, b"controller_addr=127.0.0.1:20603;sni_key=before;")
    b.wait_log("from another broker")
    redis.stop()
    a.wait_log("shared state: lost Redis at 127.0.0.1:", timeout=15)
    ep = Identity(home, tmp_path, "ep")
    sub = ep.subscribe(a.sub_port)
    assert sub.recv(timeout=2.0) == wire.Xnotify(
        ep.channel, b"controller_addr=127.0.0.1:20603;sni_key=before;"
    )
    during_xd = b"controller_addr=127.0.0.1:20604;sni_key=during;"
    during = publish(home, a, during_xd)
    assert sub.recv(timeout=2.0) == wire.Xnotify(ep.channel, during_xd)
    time.sleep(4)  # A's refresh (3 s) ran while Redis was down
    redis.start()
    a.wait_log("is back", timeout=60)
    b.wait_log("is back", timeout=60)
    at_b = Identity(home, tmp_path, "at_b").subscribe(b.sub_port)
    try:
        got = [at_b.recv(timeout=15.0), at_b.recv(timeout=15.0)]
    except TimeoutError:  # (CI, session 33, once: the second never came) say why
        tails = [x.output().splitlines()[-25:] for x in (a, b)]
        raise AssertionError(f"B sent one publication of two; A, B: {tails}") from None
    assert {m.xdescr for m in got if isinstance(m, wire.Xnotify)} == {
        b"controller_addr=127.0.0.1:20603;sni_key=before;",
        during_xd,
    }
    # and they stay: A refreshes them (else they expire at B after TTL)
    assert at_b.quiet(TTL + 3) == []
    mark = len(b.output())
    keys = _pub_keys(url)
    assert len(keys) == 2 and all(0 < _redis_int(url, "TTL", k) <= TTL for k in keys)
    assert "stopped refreshing" not in b.output()[mark:]
    # the one from before, put back once (the refresh after the reconnect and a
    # periodic one both found it gone: it was added, and counted, twice); read while
    # its publisher is still connected: closing it withdraws the publication and
    # takes the count to 0 (CI, session 28: closed first, the count was read after A
    # had seen the close)
    assert a.output().count("was gone from Redis; put back") == 1
    h = hashlib.sha256(b"controller_addr=127.0.0.1:20603;sni_key=before;").hexdigest()
    assert _redis_int(url, "INCRBY", f"pktlab:xref:{h}", "0") == 1
    for c in (sub, at_b, before, during):
        c.close()
    assert "Traceback" not in a.output() + b.output()


def test_sweeps_go_on_after_a_redis_outage(home: PktlabHome, tmp_path: Path, own_redis: AB) -> None:
    """After a Redis outage a broker's sweeps go on (txredisapi holds a command made while
    Redis is away until it is back, so the sweep's LoopingCall is not failed and stopped):
    A is killed once Redis is back, its keys expire, and B ends A's publication (a
    suspect of session 33's one CI failure of the test above, checked and cleared)."""
    redis, a, b = own_redis
    url = redis.url
    pub = publish(home, a, b"controller_addr=127.0.0.1:20605;sni_key=sweep;")
    b.wait_log("from another broker")
    down = len(b.output())
    redis.stop()
    b.wait_log("shared state: lost Redis at 127.0.0.1:", timeout=15)
    time.sleep(2.5)  # a window holding one of B's sweeps (every 2 s), made while away
    redis.start()
    for x in (a, b):
        x.wait_log("is back", timeout=60)
    # A puts its publication back into the new Redis (its refresh)
    poll_until(lambda: _pub_keys(url), timeout=20, what="A's publication back in Redis")
    a.wait_log("was gone from Redis; put back")
    # B kept it through the outage (session 35's CI: B's first sweep on the empty Redis
    # ended it a moment before A put it back, and B then never tracked it again)
    assert "gone from the shared store" not in b.output()[down:]
    mark = len(b.output())
    assert a.proc is not None
    a.proc.kill()  # no goodbye: only B's sweep can end its publication now
    a.proc.wait(5)
    for key in _pub_keys(url):
        _redis_int(url, "PEXPIRE", key, "1")
    b.wait_log("its broker stopped refreshing it", timeout=20, since=mark)
    pub.close()
