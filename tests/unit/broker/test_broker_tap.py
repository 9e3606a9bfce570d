"""`twistd pktbroker` options: defaults from the pktlab init home, and credentials the
reference clients would refuse are refused at start, in one line naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.logs import captured_events
from twisted.python import usage

from packetlab.broker.tap import Options
from packetlab.cli.init import init_home
from packetlab.ppks import PktlabHome, issue_certificate
from packetlab.tapoptions import TapOptions, tap_service


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("tap") / "home")
    init_home(h)
    return h


@pytest.fixture(autouse=True)
def _home_env(home: PktlabHome, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKTLAB_HOME", str(home.root))


def parse(*args: str) -> Options:
    o = Options()
    o.parseOptions(list(args))
    return o


def test_defaults_from_the_home(home: PktlabHome) -> None:
    o = parse()
    cfg = o["broker_config"]
    # pktlab init writes a broker.conf with the reference ports, all IPv4 addresses
    assert (cfg.publish, cfg.subscribe) == ("tcp:20556", "tcp:20557")
    assert o["credentials"].leaf.cert_type.label == "agent"
    assert cfg.cert == [str(home.cert_path("agent_bop_brk"))]
    assert cfg.private_key == str(home.key_path("k_brk"))


def _cert(home: PktlabHome, tmp: Path, ctype: str, nb: int, na: int) -> Path:
    bop, brk = home.private_key("k_bop"), home.private_key("k_brk")
    path = tmp / f"{ctype}-{nb}.cert"
    path.write_bytes(issue_certificate(ctype, bop, brk, nb, na).to_pem())
    return path


@pytest.mark.parametrize(
    ("ctype", "nb", "na", "message"),
    [
        ("subcmd", 0, 2**31 - 1, "is a subcmd certificate, not an agent certificate"),
        ("agent", 0, 1_000_000_000, "expired at 2001-09-09T01:46:40Z"),
        ("agent", 2**31 - 2, 2**31 - 1, "not valid before 2038-01-19T03:14:06Z"),
    ],
)
def test_a_broker_certificate_clients_would_refuse_stops_it(
    home: PktlabHome, tmp_path: Path, ctype: str, nb: int, na: int, message: str
) -> None:
    # Every reference client checks the broker's chain in AGENT mode (an agent cert, valid
    # now) and, refused, reconnects at once for ever (~470 connections/s): the broker must
    # not start with such a certificate.
    cert = _cert(home, tmp_path, ctype, nb, na)
    with pytest.raises(usage.UsageError) as e:
        parse("--cert", str(cert))
    assert str(e.value).startswith(f"--cert: broker agent certificate {cert} "), str(e.value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_key_that_does_not_match_names_both_sources(home: PktlabHome) -> None:
    with pytest.raises(usage.UsageError) as e:
        parse("--private-key", str(home.key_path("k_ep")))
    text = str(e.value)
    assert text.startswith("--private-key: "), text
    assert "does not match" in text and "BrokerCertPath" in text, text
    # both files are there: `pktlab init` was the hint, which writes a new home (op35)
    assert "pktlab init" not in text and "a certificate of this key (pktlab ppks sign" in text


def test_delivery_linger_key(tmp_path: Path) -> None:
    from packetlab.broker.config import ConfigError, parse_config
    from packetlab.broker.registry import DELIVERY_LINGER

    assert parse_config([], "x").delivery_linger == DELIVERY_LINGER == 3600.0
    assert parse_config(["DeliveryLinger 0"], "b.conf").delivery_linger == 0.0
    assert parse_config(["DeliveryLinger\t86400"], "b.conf").delivery_linger == 86400.0
    for bad, why in (("abc", "expected seconds"), ("604801", "out of range")):
        with pytest.raises(ConfigError, match=f"b.conf:1: DeliveryLinger: .*{why}"):
            parse_config([f"DeliveryLinger {bad}"], "b.conf")


def test_the_service_gives_the_linger_and_its_clock_to_the_registry() -> None:
    from twisted.internet.task import Clock

    from packetlab.broker.service import BrokerService

    clock = Clock()
    clock.advance(7)
    svc = BrokerService(clock, parse()["credentials"], publish="tcp:0", subscribe="tcp:0",
                        delivery_linger=5.0)  # fmt: skip
    assert svc.registry.linger == 5.0 and svc.registry.clock() == 7


def test_publication_share_options_reach_the_registry() -> None:
    from twisted.internet.task import Clock

    from packetlab.broker.service import BrokerService

    o = parse("--max-publications", "50", "--max-publications-per-key", "5",
              "--max-publications-per-address", "20")  # fmt: skip
    cfg = o["broker_config"]
    svc = BrokerService(Clock(), o["credentials"], publish="tcp:0", subscribe="tcp:0",
                        max_publications=cfg.max_publications, max_per_key=cfg.max_per_key,
                        max_per_address=cfg.max_per_address)  # fmt: skip
    r = svc.registry
    assert (r.max_publications, r.max_per_key, r.max_per_address) == (50, 5, 20)
    with pytest.raises(
        usage.UsageError,
        match="--max-publications-per-key: MaxPublicationsPerKey: expected a count",
    ):
        parse("--max-publications-per-key", "0")


def test_idle_timeout_reaches_both_ports() -> None:
    from twisted.internet.task import Clock

    from packetlab.broker.service import BrokerService

    cfg = parse("--idle-timeout", "7.5")["broker_config"]
    assert cfg.idle_timeout == 7.5
    svc = BrokerService(Clock(), parse()["credentials"], publish="tcp:0", subscribe="tcp:0",
                        idle_timeout=cfg.idle_timeout)  # fmt: skip
    assert {f.idle_timeout for f in svc.factories.values()} == {7.5}
    assert svc.idle_timeout == 7.5  # the TLS handshake's deadline too
    assert parse()["broker_config"].idle_timeout == 30.0
    for bad, why in (("0", r"0.0 is out of range \[1, 3600\]"), ("soon", "expected seconds")):
        with pytest.raises(usage.UsageError, match=f"--idle-timeout: IdleTimeout: {why}"):
            parse("--idle-timeout", bad)


def test_per_address_share_option_and_key_reach_both_ports(tmp_path: Path) -> None:
    from twisted.internet.task import Clock

    from packetlab.broker.config import load_config
    from packetlab.broker.service import BrokerService

    cfg = parse("--per-address-share", "0.5")["broker_config"]
    assert cfg.per_address_share == 0.5 and parse()["broker_config"].per_address_share == 0.25
    conf = tmp_path / "broker.conf"
    conf.write_text("PerAddressShare 1\n")
    assert load_config(str(conf)).per_address_share == 1.0
    svc = BrokerService(Clock(), parse()["credentials"], publish="tcp:0", subscribe="tcp:0",
                        per_address_share=cfg.per_address_share)  # fmt: skip
    assert {f.share.fraction for f in svc.factories.values()} == {0.5}
    for bad in ("0", "2", "half"):
        with pytest.raises(usage.UsageError, match="--per-address-share: PerAddressShare: "):
            parse("--per-address-share", bad)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("BrokerCertPath ~nosuchuser9/x", "there is no user 'nosuchuser9'"),
        ("BrokerPrivKey ~\x00", "a file name cannot contain a NUL byte"),
    ],
)
def test_a_path_that_cannot_be_a_file_is_a_config_error(line: str, why: str) -> None:
    """Was a RuntimeError traceback from `Path.expanduser` (`~nosuchuser`)."""
    from packetlab.broker.config import ConfigError, parse_config

    key = line.split()[0]
    with pytest.raises(ConfigError, match=f"b.conf:1: {key}: .*{why}"):
        parse_config([line], "b.conf")


def test_listening_ports_are_said_as_host_port() -> None:
    """`pktlab broker status` and the log said `publish IPv4Address(type='TCP',
    host='0.0.0.0', port=20556)`; now `publish 0.0.0.0:20556`."""
    from twisted.internet.testing import MemoryReactorClock

    from packetlab.broker.service import BrokerService

    reactor = MemoryReactorClock()
    svc = BrokerService(reactor, parse()["credentials"], publish="tcp:20556",
                        subscribe="tcp:20557")  # fmt: skip
    svc.startService()
    assert svc.status()["listening"] == {"publish": "0.0.0.0:20556", "subscribe": "0.0.0.0:20557"}


@pytest.mark.parametrize(
    ("port", "code", "said"),
    [
        (80, 13, "cannot listen on *:80 (publish port): [Errno 13] Permission denied; "
         "below 1024: root or CAP_NET_BIND_SERVICE"),
        (20556, 98, "cannot listen on *:20556 (publish port): [Errno 98] Address already in "
         "use; another program has it (ss -ltnp shows which)"),
    ],
)  # fmt: skip
def test_a_port_that_cannot_be_bound_is_named_with_what_to_do(
    port: int, code: int, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--publish tcp:80` as a user without CAP_NET_BIND_SERVICE was `twistd pktbroker:
    cannot listen on *:80: [Errno 13] Permission denied`: not which port, nor what to do
    (session 35, op35). The proxy's ports go through the same `listen_failure`."""
    import os

    from twisted.internet.error import CannotListenError
    from twisted.internet.testing import MemoryReactorClock

    from packetlab.broker import service

    class Refusing(MemoryReactorClock):
        def listenTCP(self, port: int, *args: object, **kw: object) -> object:
            if port != 20557:
                raise CannotListenError("", port, OSError(code, os.strerror(code)))
            return super().listenTCP(port, *args, **kw)

    stopped: list[str | None] = []
    monkeypatch.setattr(service, "stop_daemon", lambda reactor, why: stopped.append(why))
    reactor = Refusing()
    svc = service.BrokerService(reactor, parse()["credentials"], publish=f"tcp:{port}",
                                subscribe="tcp:20557")  # fmt: skip
    svc.startService()
    assert stopped == [said]


def test_a_redis_store_that_does_not_answer_stops_the_broker_in_one_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`--store redis://...` with Redis down: the broker waited for it for ever, listening
    on nothing, its log saying only "Scheduling retry 3 to connect <HostnameEndpoint
    127.0.0.1:6399>". Now the first connection is tried and its failure stops the broker
    (stop_daemon: one line, exit status 1 under twistd)."""
    from twisted.internet.error import ConnectionRefusedError
    from twisted.internet.testing import MemoryReactorClock
    from twisted.python.failure import Failure

    from packetlab.broker.service import BrokerService

    reactor = MemoryReactorClock()
    reactor.running = True
    svc = BrokerService(reactor, parse()["credentials"], publish="tcp:20556",
                        subscribe="tcp:20557", store="redis://127.0.0.1:6399/0")  # fmt: skip
    svc.startService()
    (host, port, factory, _timeout, _bind) = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 6399)
    factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
    assert reactor.hasStopped and reactor.tcpServers == []  # stopped, listening on nothing


def test_broker_status_without_a_broker_says_why_in_words(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was `error: no broker status at http://127.0.0.1:20558/: <urlopen error [Errno 111]
    Connection refused> (...)`."""
    import urllib.error

    from packetlab.cli import broker

    def refused(url: str) -> object:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(broker, "fetch", refused)
    parser = __import__("argparse").ArgumentParser()
    broker.add_arguments(parser)
    assert broker.run(parser.parse_args(["status"])) == 1
    assert capsys.readouterr().err == (
        "pktlab broker status: no broker status at http://127.0.0.1:20558/: Connection refused "
        "(is twistd pktbroker running, with StatusListen set in its broker.conf?)\n"
    )


def test_a_broker_certificate_expiring_within_a_week_is_warned_about(
    home: PktlabHome, tmp_path: Path
) -> None:
    """Was silent until the day clients refused it (and then spun, reconnecting)."""
    import time

    cert = _cert(home, tmp_path, "agent", 0, int(time.time()) + 3 * 86400)
    with captured_events() as seen:
        parse("--cert", str(cert))  # starts
    (w,) = [str(e["w"]) for e in seen if "w" in e]
    assert w.startswith("--cert: certificate #0 (agent) expires at ") and "in 3 d: renew" in w, w


def test_dash_h_is_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`twistd pktbroker -h` prints the help, as `twistd pktendpoint -h` does (it was
    `option -h not recognized`, exit 1)."""
    with pytest.raises(SystemExit) as e:
        parse("-h")
    assert e.value.code == 0
    assert "--subscribe" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "url"),
    [
        ("StatusListen tcp:20600\n", "http://127.0.0.1:20600/"),
        ("StatusListen tcp:20601:interface=127.0.0.9\n", "http://127.0.0.9:20601/"),
        ("StatusListen tcp6:20602:interface=\\:\\:1\n", "http://[::1]:20602/"),
        ("# no StatusListen\n", "http://127.0.0.1:20558/"),
    ],
)
def test_broker_status_looks_where_broker_conf_puts_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str, url: str
) -> None:
    """A broker.conf with `StatusListen tcp:20600`: `pktlab broker status` looked at 20558
    and said `no broker status at http://127.0.0.1:20558/: Connection refused`."""
    from packetlab.cli import broker

    (tmp_path / "broker.conf").write_text(status)
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path))
    asked: list[str] = []

    def fetch(u: str) -> dict[str, object]:
        asked.append(u)
        return {"channels": [], "publications": []}  # (the least a broker's page has)

    monkeypatch.setattr(broker, "fetch", fetch)
    parser = __import__("argparse").ArgumentParser()
    broker.add_arguments(parser)
    assert broker.run(parser.parse_args(["status"])) == 0
    assert asked == [url]


def test_broker_status_of_a_page_that_is_not_the_brokers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another web server at --url: it said `no broker status at URL: Expecting value: line
    1 column 1 (char 0) (is twistd pktbroker running ...)`."""
    import json

    from packetlab.cli import broker

    def html(url: str) -> object:
        return json.loads("<html></html>")

    monkeypatch.setattr(broker, "fetch", html)
    parser = __import__("argparse").ArgumentParser()
    broker.add_arguments(parser)
    assert broker.run(parser.parse_args(["status", "--url", "http://127.0.0.1:8000/"])) == 1
    assert capsys.readouterr().err.startswith(
        "pktlab broker status: http://127.0.0.1:8000/ is not a broker's status page (not JSON: "
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--publish", "bogus"], "--publish: 'bogus' is not a Twisted endpoint string"),
        (["--subscribe", "tcp:99999"], "--subscribe: 'tcp:99999': port 99999"),
        (["--store", "bogus://"], "--store: 'bogus://': expected redis://"),
    ],
)
def test_a_bad_option_is_said_before_a_missing_certificate(
    args: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before `pktlab init`: the mistyped option first (it was hidden behind the missing
    broker certificate, and said only once the home was set up)."""
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "empty"))
    with pytest.raises(usage.UsageError) as e:
        parse(*args)
    assert str(e.value).startswith(said)


@pytest.mark.parametrize(
    ("args", "conf", "said"),
    [
        (["--publish", "tcp:21001:interface=::1x"], None,
         "--publish: 'tcp:21001:interface=::1x': a ':' inside a value must be written '\\:' "
         "(in a shell, in quotes): 'tcp:21001:interface=\\:\\:1x'"),
        (["--subscribe", "tcp6:21002:backlog=9:interface=::1"], None,
         "'tcp6:21002:backlog=9:interface=\\:\\:1'"),
        ([], "StatusListen tcp:21003:interface=::1\n",
         "b.conf:1: StatusListen: 'tcp:21003:interface=::1': a ':' inside a value"),
    ],
)  # fmt: skip
def test_an_unescaped_colon_in_an_endpoint_string_is_shown_escaped(
    args: list[str], conf: str | None, said: str, tmp_path: Path
) -> None:
    """`interface=::1` as an operator writes it was "not a Twisted endpoint string
    (_parseTCP() got multiple values for argument 'interface')" (session 35, op35)."""
    if conf is not None:
        (tmp_path / "b.conf").write_text(conf)
        args = ["--config", str(tmp_path / "b.conf")]
    with pytest.raises(usage.UsageError) as e:
        parse(*args)
    assert said in str(e.value)
    assert "multiple values" not in str(e.value)


def test_a_broker_conf_that_is_not_utf8_names_its_line(
    home: PktlabHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The home's own broker.conf (read without --config) with a byte that is not UTF-8:
    a UnicodeDecodeError traceback out of twistd (session 21). Now one line naming the
    file and the line, as for --config FILE (which named the byte's offset only)."""
    other = PktlabHome.at(tmp_path / "home")
    init_home(other)
    (other.root / "broker.conf").write_bytes(b"ErrorDelay 1\n\xff\n")
    monkeypatch.setenv("PKTLAB_HOME", str(other.root))
    with pytest.raises(usage.UsageError) as e:
        parse()
    assert str(e.value) == f"{other.root / 'broker.conf'}:2: not UTF-8 text (byte 0xff)"
    bad = tmp_path / "b.conf"
    bad.write_bytes(b"# a comment\nIdleTimeout 5\nErrorDelay \xe9\n")
    with pytest.raises(usage.UsageError) as e:
        parse("--config", str(bad))
    assert str(e.value) == f"{bad}:3: not UTF-8 text (byte 0xe9)"


def test_a_key_given_twice_is_a_warning_naming_the_value_that_counts() -> None:
    from packetlab.broker.config import parse_config

    cfg = parse_config(["ErrorDelay 1", "Store memory:", "ErrorDelay 2  # later"], "b.conf")
    assert cfg.error_delay == 2.0
    assert cfg.warnings == ["b.conf:3: ErrorDelay repeated (line 1); the last one wins: 2"]
    assert cfg.origin("ErrorDelay") == "b.conf:3: ErrorDelay"


def test_a_key_written_with_an_equals_sign_names_the_line_as_it_should_be() -> None:
    """`Store=memory:` was "unknown key 'Store=memory:' (did you mean Store?)", the key
    meant being the one written (session 35, op35)."""
    from packetlab.broker.config import ConfigError, parse_config

    for line in ("Store=memory:", "Store = memory:"):
        with pytest.raises(ConfigError) as e:
            parse_config(["ErrorDelay 1", line], "b.conf")
        assert str(e.value) == (
            f"b.conf:2: {line!r}: a key and its value are separated by blanks, not '=': "
            "write Store memory:"
        )


def test_log_level_from_the_config_or_the_option(tmp_path: Path) -> None:
    """LogLevel in broker.conf, --log-level over it (session 32, loglvl32)."""
    conf = tmp_path / "broker.conf"
    conf.write_text("LogLevel warn\n")
    assert parse("-c", str(conf))["log-level"] == "warn"
    assert parse("-c", str(conf), "--log-level", "debug")["log-level"] == "debug"
    conf.write_text("# levels\nLogLevel loud\n")
    with pytest.raises(usage.UsageError, match=r"broker.conf:2: LogLevel: expected one of "):
        parse("-c", str(conf))


def test_the_daemon_log_says_how_many_events_a_full_disk_lost() -> None:
    """A log file on a full disk (a 12 KiB tmpfs): each event raised OSError, Twisted's
    publisher dropped it, and once there was space the log went on as if nothing had
    been lost (session 35, op35). Now the first event written again comes after a line
    saying how many were not, from when, and why. (The three daemons' log observer.)"""
    import errno

    from packetlab.tapoptions import _Unwritten

    written: list[dict[str, object]] = []
    full = [False]

    def observer(event: dict[str, object]) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(event)

    log = _Unwritten(observer)
    log({"log_format": "a", "log_time": 0.0})
    full[0] = True
    for t in (1.0, 2.0, 3.0):
        log({"log_format": "lost", "log_time": t})
    full[0] = False
    log({"log_format": "b", "log_time": 4.0})
    log({"log_format": "c", "log_time": 5.0})
    assert [e["log_format"] for e in written] == [
        "a", "{lost} log event(s) not written from {since} on: {why}", "b", "c",
    ]  # fmt: skip
    note = written[1]
    assert (note["lost"], note["since"], note["why"]) == (
        3, "1970-01-01T00:00:01Z", "[Errno 28] No space left on device",
    )  # fmt: skip


def test_the_daemon_log_file_survives_logrotate_copytruncate(tmp_path: Path) -> None:
    """logrotate's copytruncate (broker.md's advice) empties the log under the daemon:
    twistd wrote on at its old offset, and the new log began with a hole of NUL bytes
    as long as the old one (3937 B measured; session 35, op35). Appended now; twistd's
    own rotation (SIGUSR1, 1 MB) still works. (The three daemons' --logfile.)"""
    from twisted.python.logfile import LogFile

    from packetlab.tapoptions import _appending

    path = tmp_path / "pktbroker.log"
    log = LogFile.fromFullPath(str(path))
    _appending(log)
    log.write("a" * 100 + "\n")
    path.write_bytes(b"")  # copytruncate: copied away, then emptied in place
    log.write("after\n")
    assert path.read_bytes() == b"after\n"
    log.rotate()  # kill -USR1
    log.write("rotated\n")
    assert (tmp_path / "pktbroker.log.1").read_bytes() == b"after\n"
    assert path.read_bytes() == b"rotated\n"
    log.close()


def test_a_mistyped_option_names_the_one_meant() -> None:
    """`--pubish tcp:21001` was only `option --pubish not recognized` (session 35, op35);
    the three daemons share it (tapoptions)."""
    with pytest.raises(usage.UsageError) as e:
        parse("--pubish", "tcp:21001")
    assert str(e.value) == "option --pubish not recognized (did you mean --publish?)"
    with pytest.raises(usage.UsageError) as e:
        parse("--zzzzzz")
    assert str(e.value) == "option --zzzzzz not recognized"


class _Tap(TapOptions):
    tapname = "pktbroker"


@tap_service
def _make(options: _Tap) -> str:
    return "service"


def _under_twistd(**twistd: object) -> _Tap:
    o = _Tap()
    o.parent = usage.Options()  # twistd's ServerOptions, set before its sub-command parses
    o.parent.update(twistd)
    return o


def test_a_daemon_logging_to_stdout_is_one_line_and_syslog_is_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`twistd --logfile=- pktbroker` (the systemd line without -n) said `log in ./-`,
    then twistd's `Daemons cannot log to stdout, exiting!`; `twistd --syslog pktbroker`
    said `log in ./twistd.log`, a file it never writes (session 35, op35)."""
    with pytest.raises(SystemExit) as e:
        _make(_under_twistd(nodaemon=False, logfile="-"))
    assert e.value.code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "twistd pktbroker: --logfile -: a daemon (twistd without -n) cannot log to stdout: "
        "give -n to stay in the foreground, or a file"
    )
    assert _make(_under_twistd(nodaemon=True, logfile="-")) == "service"  # the unit's line
    _make(_under_twistd(nodaemon=False, syslog=True, prefix="pktbroker", pidfile=""))
    assert "(twistd without -n): log to syslog as pktbroker, pid in none;" in (
        capsys.readouterr().err
    )
