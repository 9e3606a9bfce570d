"""Certificate limits on an endpoint session (packetlab.endpoint.limits, §1.4 step 2, §4.5)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from testkit.clock import FakeClock
from testkit.logs import captured_events
from twisted.python import usage

from packetlab.clockstep import is_wall
from packetlab.endpoint.checks import NDATA_DELIVER, NDATA_DROP_COUNTED, SessionRefused
from packetlab.endpoint.config import ConfigError, EndpointConfig, load_config, parse_config
from packetlab.endpoint.limits import QUOTA_CHUNK, BurstWindow, LimitsGate, admit
from packetlab.endpoint.sockets import Skt
from packetlab.endpoint.tap import Options
from packetlab.endpoint.tlslink import Admission, TLSLink, open_accounting
from packetlab.ppks import (
    Accounting,
    BurstRate,
    CertLimits,
    Counter,
    generate_private_key,
    issue_certificate,
    write_key_pair,
)
from packetlab.ppks.limits import parse_valid_dest
from packetlab.wire.constants import Proto, Status
from packetlab.wire.messages import Nclose, Nopen, Nsend, Result

NOW = 1_800_000_000
NS = 1_000_000_000
LO = ipaddress.IPv4Address("127.0.0.1").packed
FAR = ipaddress.IPv4Address("192.0.2.1").packed
UDP, TCP = int(Proto.UDP), int(Proto.TCP)


def still_clock() -> FakeClock:
    return FakeClock(NOW * NS, step=0)


def chain(limits: CertLimits | None = None, not_after: int = 2**31 - 1) -> list[object]:
    eop, exper, xc = (generate_private_key() for _ in range(3))
    return [
        issue_certificate("pubcmd", exper, xc, 0, not_after),
        issue_certificate("exppriv", eop, exper, 0, not_after, limits=limits),
    ]


def gate(tmp_path: Path, limits: CertLimits, clock: FakeClock | None = None) -> LimitsGate:
    acct = Accounting(tmp_path / "rlim.sqlite3", clock=lambda: NOW)
    return admit(chain(limits), acct, clock or still_clock())  # type: ignore[arg-type]


def nsend(data: bytes, raddr: bytes = LO, time: int = 0, proto: int = UDP) -> Nsend:
    return Nsend(1, 4, proto, time, 0, data, raddr if proto == UDP else None, 9)


def udp_nopen(sktid: int = 1) -> Nopen:
    return Nopen(sktid, 4, UDP, 65536, LO, 0)


DENY = Result(errid=int(Status.ESKTPKTDENY))


# -------------------------------------------------------------------------- windows


def test_burst_window_slides() -> None:
    w = BurstWindow(BurstRate(10, 100))
    assert w.fits(0, 6)
    w.add(0, 6)
    assert not w.fits(50, 5)
    assert w.fits(50, 4)
    w.add(50, 4)
    assert not w.fits(99, 1)
    assert w.fits(100, 6)  # the first entry left the window
    assert not w.fits(100, 11)  # larger than the window can ever hold


def test_out_of_order_send_is_counted_at_the_latest_time() -> None:
    w = BurstWindow(BurstRate(2, 100))
    w.add(500, 1)
    w.add(10, 1)  # scheduled earlier than an accounted send: counted at 500
    assert not w.fits(550, 1)
    assert w.fits(600, 2)


# ---------------------------------------------------------------------------- admit


def test_admit_refuses_priority_above_max(tmp_path: Path) -> None:
    with pytest.raises(SessionRefused) as e:
        admit(chain(CertLimits(max_num_priority=0)), None, still_clock(), priority=1)  # type: ignore[arg-type]
    assert e.value.rule == "max_num_priority"
    # NoSub mode has no exp_priority: 0, allowed by any max_num_priority.
    admit(chain(CertLimits(max_num_priority=0)), None, still_clock())  # type: ignore[arg-type]


def test_admit_refuses_when_runtime_is_used_up(tmp_path: Path) -> None:
    certs = chain(CertLimits(max_exp_period=10))
    acct = Accounting(tmp_path / "rlim.sqlite3", clock=lambda: NOW)
    acct.budget(certs).reserve(Counter.RUNTIME, 10)  # type: ignore[arg-type]
    with pytest.raises(SessionRefused, match="max_exp_period"):
        admit(certs, acct, still_clock())  # type: ignore[arg-type]


def test_end_time_is_min_of_not_after_and_runtime(tmp_path: Path) -> None:
    clock = still_clock()
    g = admit(chain(CertLimits(max_exp_period=30 * NS)), None, clock)  # type: ignore[arg-type]
    assert g.end_ns == clock.now + 30 * NS
    g = admit(chain(not_after=NOW + 5), None, clock)  # type: ignore[arg-type]
    assert g.end_ns == (NOW + 5) * NS


def test_required_digests_refuse_start(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits(monitor_digests=(b"\x01" * 32,)))
    error, extra = g.start()
    assert error == Result(errid=int(Status.ECRTNOHDAT)) and extra == []
    g.supplied_digests.add(b"\x01" * 32)
    assert g.start() == (None, [])


def test_admit_takes_at_most_100_monitor_digests(tmp_path: Path) -> None:
    """§1.4 step 2: at most MAX_PROG_NUM = 100 digests from the chain; more refuse the
    session (the endpoint disconnects)."""
    digests = tuple(i.to_bytes(32, "big") for i in range(101))
    with pytest.raises(SessionRefused) as e:
        admit(chain(CertLimits(monitor_digests=digests)), None, still_clock())  # type: ignore[arg-type]
    assert e.value.rule == "monitor"
    g = admit(chain(CertLimits(monitor_digests=digests[:100])), None, still_clock())  # type: ignore[arg-type]
    assert len(g.required_digests) == 100


# --------------------------------------------------------------------------- checks


def test_valid_dest(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits(valid_dest=parse_valid_dest("v", "127.0.0.0/8")))
    tcp_far = Nopen(1, 4, TCP, 65536, LO, 0, FAR, 80)
    assert g.check(tcp_far) == Result(errid=int(Status.ESKTOPNDENY))
    assert g.check(Nopen(1, 4, TCP, 65536, LO, 0, LO, 80)) is None
    passive = Nopen(1, 4, TCP, 65536, LO, 8080)  # accepts any peer: not under valid_dest
    assert g.check(passive) == Result(errid=int(Status.ESKTOPNDENY))
    assert gate(tmp_path, CertLimits()).check(passive) is None
    assert g.check(nsend(b"x", FAR)) == DENY
    assert g.check(nsend(b"x", LO)) is None
    raw = bytes(16) + FAR
    assert g.check(Nsend(1, 4, int(Proto.RAW), 0, 0, raw)) == DENY


def test_socket_count_counts_successful_nopens(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits(max_socket_count=1))
    assert g.check(udp_nopen()) is None
    g.done(udp_nopen(), int(Status.ESKTINUSE))  # failed: not counted
    assert g.check(udp_nopen()) is None
    g.done(udp_nopen(), 0)
    g.done(Nclose(1), 0)
    assert g.check(udp_nopen(2)) == Result(errid=int(Status.ENORES))


def test_send_quota_persists_and_refunds(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits(max_send_byte=1000))
    assert g.check(nsend(b"a" * 700)) is None
    assert g.check(nsend(b"b" * 400)) == DENY
    g.done(nsend(b"c" * 300), 0)
    assert g.check(nsend(b"d" * 300)) is None
    g.done(nsend(b"d" * 300), int(Status.ESYSNOBUFS))  # not sent after all: given back
    assert g.check(nsend(b"e" * 300)) is None
    assert g.check(nsend(b"f")) == DENY
    g.close()
    assert g.budget is not None and g.budget.remaining(Counter.SEND_BYTE) == 0


def test_reservation_is_durable_before_the_send(tmp_path: Path) -> None:
    certs = chain(CertLimits(max_send_byte=10 * QUOTA_CHUNK))
    db = tmp_path / "rlim.sqlite3"
    g = admit(certs, Accounting(db, clock=lambda: NOW), still_clock())  # type: ignore[arg-type]
    assert g.check(nsend(b"x" * 100)) is None
    # Another process (a restarted endpoint) already sees the chunk as used.
    other = Accounting(db, clock=lambda: NOW).budget(certs)  # type: ignore[arg-type]
    assert other.remaining(Counter.SEND_BYTE) == 9 * QUOTA_CHUNK


def test_burst_rate_refuses_instead_of_delaying(tmp_path: Path) -> None:
    clock = still_clock()
    g = gate(tmp_path, CertLimits(max_burst_rate_byte=(BurstRate(100, NS),)), clock)
    assert g.check(nsend(b"x" * 80)) is None
    assert g.check(nsend(b"x" * 30)) == DENY
    assert g.check(nsend(b"x" * 30, time=clock.now + 2 * NS)) is None  # scheduled later


def test_default_send_burst_applies(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits())
    big = b"x" * 65000
    sent = sum(g.check(nsend(big)) is None for _ in range(200))
    assert sent == 12_500_000 // 65000


def test_receive_quota_drops_and_counts(tmp_path: Path) -> None:
    g = gate(tmp_path, CertLimits(max_recv_byte=10, max_recv_pkt=5))
    skt = Skt(1, 4, UDP, 65536)
    assert g.checks_ndata
    assert g.check_ndata(skt, b"12345678", 0, LO, 9) == NDATA_DELIVER
    assert g.check_ndata(skt, b"123", 0, LO, 9) == NDATA_DROP_COUNTED
    assert g.check_ndata(skt, b"12", 0, LO, 9) == NDATA_DELIVER
    assert g.dropped == 1


def test_no_receive_limits_keeps_ndata_off_the_gate(tmp_path: Path) -> None:
    assert not gate(tmp_path, CertLimits(max_send_byte=5)).checks_ndata


def test_runtime_is_paid_ahead(tmp_path: Path) -> None:
    clock = still_clock()
    certs = chain(CertLimits(max_exp_period=60 * NS))
    acct = Accounting(tmp_path / "rlim.sqlite3", clock=lambda: NOW)
    g = admit(certs, acct, clock)  # type: ignore[arg-type]
    budget = acct.budget(certs)  # type: ignore[arg-type]
    assert budget.remaining(Counter.RUNTIME) == 55 * NS  # one 5 s step held ahead
    clock.now += 7 * NS
    assert g.charge_runtime()
    left = budget.remaining(Counter.RUNTIME)
    assert left is not None and left <= 53 * NS
    g.close()
    assert budget.remaining(Counter.RUNTIME) == 53 * NS  # exactly what ran
    clock.now += 60 * NS
    g2 = admit(certs, acct, clock)  # type: ignore[arg-type]
    clock.now += 60 * NS
    assert not g2.charge_runtime()


# ------------------------------------------------------------------ config and TLS link


def test_config_keys(tmp_path: Path) -> None:
    cfg = parse_config(
        [
            "ControllerCertChainPath ~/a.cert, /b.cert",
            "EndpointPrivKey /k",
            "EndpointOpPubKeyPath /e1.pub,/e2.pub",
            "RLimDBPath /db",
        ]
    )
    assert cfg.controller_chain[1] == "/b.cert" and not cfg.controller_chain[0].startswith("~")
    assert cfg.private_key == "/k" and cfg.eop_pubkeys == ["/e1.pub", "/e2.pub"]
    assert cfg.rlim_db == "/db" and not cfg.warnings


def test_tls_link_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="needs ControllerCertChainPath"):
        TLSLink.from_config(EndpointConfig())


def test_tls_link_errors_name_the_file(tmp_path: Path) -> None:
    key = generate_private_key()
    priv, _ = write_key_pair(tmp_path / "k", key)
    cert = tmp_path / "c.cert"
    cert.write_bytes(
        issue_certificate("subcmd", generate_private_key(), key, 0, 2**31 - 1).to_pem()
    )
    cfg = EndpointConfig(controller_chain=[str(tmp_path / "missing")], private_key=str(priv))
    with pytest.raises(ConfigError, match=r"^ControllerCertChainPath: .*missing"):
        TLSLink.from_config(cfg)
    # the key file alone at fault: that key is named (was both, whichever was wrong)
    cfg = EndpointConfig(controller_chain=[str(cert)], private_key=str(tmp_path / "nokey"))
    cfg.origins["EndpointPrivKey"] = "endpt.conf:4"
    with pytest.raises(ConfigError, match=r"^endpt\.conf:4: EndpointPrivKey: .*nokey"):
        TLSLink.from_config(cfg)
    cfg = EndpointConfig(controller_chain=[str(cert)], private_key=str(priv))
    cfg.eop_pubkeys = [str(tmp_path / "nope.pub")]
    with pytest.raises(
        ConfigError, match=r"^EndpointOpPubKeyPath: .*nope\.pub: No such file or directory$"
    ):
        TLSLink.from_config(cfg)
    wrong, _ = write_key_pair(tmp_path / "k2", generate_private_key())
    cfg = EndpointConfig(controller_chain=[str(cert)], private_key=str(wrong))
    with pytest.raises(ConfigError, match=r"^ControllerCertChainPath and EndpointPrivKey: "):
        TLSLink.from_config(cfg)
    cfg = EndpointConfig(controller_chain=[str(cert)], private_key=str(priv))
    link = TLSLink.from_config(cfg)
    assert link.trusts_any_root


def test_an_expired_or_expiring_chain_of_ours_is_said_at_start(tmp_path: Path) -> None:
    """Our subcmd chain expired: the endpoint started, connected, and every controller
    refused it, without a word at our end. Now it does not start (one line: which file and
    line, which certificate, when, what to do); expiring within a week is a warning."""
    import time

    from twisted.internet.task import Clock

    key = generate_private_key()
    priv, _ = write_key_pair(tmp_path / "k", key)
    now = int(time.time())

    def conf(not_before: int, not_after: int) -> EndpointConfig:
        cert = tmp_path / f"sub{not_after}.cert"
        cert.write_bytes(
            issue_certificate("subcmd", generate_private_key(), key, not_before, not_after).to_pem()
        )
        path = tmp_path / "endpt.conf"
        path.write_text(f"ControllerCertChainPath {cert}\nEndpointPrivKey {priv}\n")
        return load_config(path)

    with pytest.raises(
        ConfigError,
        match=r"endpt.conf:1: ControllerCertChainPath: certificate #0 \(subcmd\) expired at "
        r"1970-01-01T00:01:40Z: every peer refuses the chain; renew it \(pktlab ppks sign subcmd",
    ):
        TLSLink.from_config(conf(0, 100))
    with pytest.raises(ConfigError, match=r"is not valid before .*is this host's clock right"):
        TLSLink.from_config(conf(now + 3600, 2**31 - 1))
    from twisted.logger import LogLevel

    with captured_events() as seen:
        link = TLSLink.from_config(conf(0, now + 7200))  # starts, with a warning
        clock = Clock()
        clock.advance(time.time())
        link.watch_expiry(clock)
        [expiry] = clock.getDelayedCalls()
        assert is_wall(expiry)  # on its wall moment across a clock step (clockstep)
        clock.advance(7201)  # ... and one line when it expires
    warned = seen.where(level=(LogLevel.warn, LogLevel.error))
    said = [str(e.get("warning") or e.get("text")) for e in warned]
    assert len(said) == 2, said
    assert "expires at" in said[0] and "in 2 h: renew it before then" in said[0]
    assert said[1].endswith("the chain expired now; every controller will refuse this "
                            "endpoint until it is renewed and the endpoint restarted")  # fmt: skip
    assert TLSLink.from_config(conf(0, 2**31 - 1)) is not None  # far off: nothing said


def test_accounting_path_errors(tmp_path: Path) -> None:
    bad = tmp_path / "lmdb"
    bad.write_bytes(b"\x00" * 4096)  # not SQLite (e.g. the reference's LMDB file)
    with pytest.raises(ConfigError, match="RLimDBPath"):
        open_accounting(EndpointConfig(rlim_db=str(bad)))


def test_accounting_path_in_a_missing_directory(tmp_path: Path) -> None:
    """An operator's RLimDBPath must be in an existing directory (a typo would otherwise
    put the accounting in a new tree); only the pktlab home's default is made."""
    conf = tmp_path / "endpt.conf"
    missing = tmp_path / "no" / "such"
    conf.write_text(f"RLimDBPath {missing / 'rlim.sqlite3'}\n")
    cfg = load_config(conf)
    with pytest.raises(
        ConfigError, match=r"endpt.conf:1: RLimDBPath: directory .*no/such' does not exist"
    ):
        open_accounting(cfg)
    assert not (tmp_path / "no").exists()
    (tmp_path / "no" / "such").mkdir(parents=True)
    assert open_accounting(cfg).path == str(missing / "rlim.sqlite3")


def test_tap_tls_options(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("NoSubMode 1\n")
    with pytest.raises(usage.UsageError, match="needs ControllerCertChainPath"):
        Options().parseOptions(["-c", str(conf), "127.0.0.1:1"])
    with pytest.raises(usage.UsageError, match="not a snikey"):
        Options().parseOptions(["-c", str(conf), "--snikey", "Bad!", "127.0.0.1:1"])


# ------------------------------------------------------- a database that cannot record
def test_a_full_accounting_database_refuses_the_session_in_words(tmp_path: Path) -> None:
    """RLimDBPath on a full disk: admitting a new chain raised sqlite3's error into the
    reactor (an unhandled traceback, no session and no word why). Now the session is
    refused with the database and SQLite's reason. SQLite's own "full" is made here with
    max_page_count (the integration run used a full tmpfs)."""
    acct = Accounting(tmp_path / "rlim.sqlite3", clock=lambda: NOW)
    admit(chain(CertLimits(max_send_byte=1000)), acct, still_clock())  # type: ignore[arg-type]
    pages = acct._db.execute("PRAGMA page_count").fetchone()[0]
    acct._db.execute(f"PRAGMA max_page_count = {pages}")
    limits = CertLimits(max_send_byte=1, max_send_pkt=1, max_recv_byte=1, max_recv_pkt=1)
    with pytest.raises(SessionRefused) as e:
        for _ in range(50):  # new records until a page is needed
            admit(chain(limits), acct, still_clock())  # type: ignore[arg-type]
    assert e.value.rule == "accounting"
    assert "rlim.sqlite3: database or disk is full" in str(e.value)


def test_sends_that_cannot_be_recorded_are_refused_and_logged_once(tmp_path: Path) -> None:
    """A debit the database cannot record (disk full, read-only): the nsend got no answer
    (sqlite3's error escaped from the gate into the reactor), and the session's close
    raised again. Now each such nsend is ESKTPKTDENY, one error line per session says why
    and what to do, and the close logs what it could not refund."""

    from twisted.logger import LogLevel

    g = gate(tmp_path, CertLimits(max_send_pkt=10**9))
    assert g.budget is not None
    g.budget._acct._db.execute("PRAGMA query_only = 1")  # every write now fails
    with captured_events() as seen:
        for _ in range(20):
            assert g.check(nsend(b"x")) == DENY
        g.close()
    errors = seen.where(level=(LogLevel.error, LogLevel.warn))
    assert len(errors) == 2, [e["log_format"] for e in seen]
    first = errors[0]["log_format"].format(**errors[0])
    assert first.startswith("nsend (ESKTPKTDENY) refused: accounting database ")
    assert "readonly database" in first and "RLimDBPath" in first


def test_the_admission_line_says_when_the_experiment_ends() -> None:
    """Was "experiment ends in 351054399.4 s" alone (the demo chain's 2038)."""
    from types import SimpleNamespace

    from packetlab.endpoint.tlslink import Admission

    peer = SimpleNamespace(chain=SimpleNamespace(certs=chain()))
    with captured_events() as seen:
        Admission(None, still_clock()).gate_for(peer)  # type: ignore[arg-type]
    (event,) = seen.where(fmt="admitted")
    line = str(event["log_format"]).format(**event)
    assert "experiment ends in 347483647.0 s (2038-01-19T03:14:07Z)" in line, line


def test_a_controller_silent_in_the_handshake_is_given_up_on(tmp_path: Path) -> None:
    """Something on the controller's port that accepts and says nothing: the endpoint sat in
    the TLS handshake for ever, its log silent. Now the connect fails after 10 s (the
    reference's setup window), and the connect cycle logs it and tries again."""
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from packetlab.cli.init import init_home
    from packetlab.endpoint.service import ControllerAddress
    from packetlab.endpoint.tlslink import HANDSHAKE_TIMEOUT
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    link = TLSLink.from_config(load_config(home.root / "endpt.conf"))
    reactor = MemoryReactorClock()
    d = link.endpoint(reactor, ControllerAddress("127.0.0.1", 20556)).connect(
        Factory.forProtocol(Protocol)
    )
    failures: list[object] = []
    d.addErrback(failures.append)
    factory = reactor.tcpClients[0][2]
    proto = factory.buildProtocol(None)
    assert proto is not None
    proto.makeConnection(StringTransport())  # connected; the peer never answers
    reactor.advance(HANDSHAKE_TIMEOUT - 0.1)
    assert not failures
    reactor.advance(0.1)
    assert len(failures) == 1
    assert "TLS handshake not done in 10 s" in str(failures[0])


@pytest.mark.parametrize("kind", ["agent", "pubcmd", "exppriv"])
def test_a_chain_of_ours_of_another_role_is_refused_at_start(tmp_path: Path, kind: str) -> None:
    """An agent, pubcmd or exppriv certificate at ControllerCertChainPath: the endpoint
    started, and every controller refused it (`wrong_cert_type`, its log alone; session
    29 tried each against a real `pktlab run --listen`). Now one line at start."""
    key = generate_private_key()
    priv, _ = write_key_pair(tmp_path / "k", key)
    cert = tmp_path / f"{kind}.cert"
    signer = key if kind == "agent" else generate_private_key()
    cert.write_bytes(issue_certificate(kind, signer, key, 0, 2**31 - 1).to_pem())
    path = tmp_path / "endpt.conf"
    path.write_text(f"ControllerCertChainPath {cert}\nEndpointPrivKey {priv}\n")
    with pytest.raises(ConfigError) as e:
        TLSLink.from_config(load_config(path))
    assert str(e.value).startswith(
        f"{path}:1: ControllerCertChainPath: wrong_cert_type: cert #0: {kind} where subcmd is "
        "expected ("
    )
    assert str(e.value).endswith(
        "): every controller checks the endpoint's chain (a subcmd certificate, then any "
        "delpriv ones, leaf first) and refuses this one"
    )


def test_a_refusal_line_says_the_limit_in_words(tmp_path: Path) -> None:
    """An operator's log read `request refused by certificate limit max_send_pkt {}`, and
    valid_dest `{'dest': '192.0.2.9'}` (a dict's repr, or an empty one)."""
    for d in "abc":
        (tmp_path / d).mkdir()
    with captured_events() as seen:
        g = gate(tmp_path / "a", CertLimits(max_send_pkt=1))
        assert g.check(nsend(b"x")) is None
        assert g.check(nsend(b"x")) == DENY
        g = gate(tmp_path / "b", CertLimits(max_send_byte=3))
        assert g.check(nsend(b"xxxx")) == DENY
        g = gate(tmp_path / "c", CertLimits(valid_dest=parse_valid_dest("v", "192.0.2.0/24")))
        assert g.check(nsend(b"x")) == DENY
    lines = seen.lines(fmt="refused by certificate")
    assert lines == [
        "request refused by certificate limit max_send_pkt limit=1 left=0",
        "request refused by certificate limit max_send_byte limit=3 nsend=4B",
        "request refused by certificate limit valid_dest dest=127.0.0.1",
    ]


def test_the_remedy_fits_the_accounting_failure() -> None:
    """Every database failure said "free space there, or move RLimDBPath", also for a
    lock held by another process and a file deleted in use (acct32)."""
    from packetlab.endpoint.limits import remedy
    from packetlab.ppks import AccountingError

    def r(text: str) -> str:
        return remedy(AccountingError(f"accounting database /x.db: {text}"))

    assert "write lock" in r("database is locked")
    assert r("the file was deleted or replaced while in use; ...") == "restart the endpoint"
    assert "writable" in r("attempt to write a readonly database")
    assert r("database or disk is full") == "free space there, or move RLimDBPath"


def test_after_the_database_recovers_a_limit_refusal_is_the_limit_s(tmp_path: Path) -> None:
    """A Meter kept its database error after a reservation succeeded again (acct32 made
    recovery a feature: "refuses then resumes"), so the limit's own refusal later was
    taken for the database's: no `refused by certificate limit` line, not counted in
    `denied`, and the close warned that the accounting "could not all be recorded"
    though every debit and the refund were (review32A)."""

    from twisted.logger import LogLevel

    g = gate(tmp_path, CertLimits(max_send_pkt=3))
    assert g.budget is not None
    db = g.budget._acct._db
    with captured_events() as seen:
        db.execute("PRAGMA query_only = 1")  # the database cannot record: refused
        assert g.check(nsend(b"x")) == DENY
        db.execute("PRAGMA query_only = 0")  # it can again: sends resume
        for _ in range(3):
            assert g.check(nsend(b"x")) is None
        assert g.check(nsend(b"x")) == DENY  # the limit's
        g.close()
    assert g.denied == 1
    lines = seen.lines()
    assert "request refused by certificate limit max_send_pkt limit=3 left=0" in lines, lines
    assert not [line for line in lines if "could not all be recorded" in line], lines
    warned = seen.lines(level=LogLevel.warn)
    assert any("1 request(s) refused" in w and "recorded again" in w for w in warned), lines


def test_the_experiment_end_timer_is_on_its_wall_moment() -> None:
    """gate.end_ns is an endpoint (wall) time: across a clock step the timer that ends
    the session stays on it (packetlab.clockstep); the runtime tick keeps its period."""
    from types import SimpleNamespace

    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    clock = Clock()
    clock.advance(NOW)
    gate = SimpleNamespace(end_ns=(NOW + 30) * NS, charge_runtime=lambda: True)
    proto = SimpleNamespace(done=Deferred(), end_session=lambda *a, **k: None)
    admission = Admission(None, lambda: int(clock.seconds() * NS))
    admission.watch(gate, proto, clock)  # type: ignore[arg-type]
    [end] = [c for c in clock.getDelayedCalls() if c.getTime() == NOW + 30]
    assert is_wall(end)
    assert [is_wall(c) for c in clock.getDelayedCalls() if c is not end] == [False]
    proto.done.callback(None)
