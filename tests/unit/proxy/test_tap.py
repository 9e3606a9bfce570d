"""`twistd pktproxy` options: config file, defaults from the pktlab init home, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.logs import captured_events
from twisted.python import usage

from packetlab.cli.init import init_home
from packetlab.ppks import PktlabHome
from packetlab.proxy.tap import Options


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tap") / "home"
    init_home(PktlabHome.at(root))
    return root


def parse(*args: str) -> Options:
    o = Options()
    o.parseOptions(list(args))
    return o


def test_defaults_from_the_home(home: Path) -> None:
    o = parse("--home", str(home))
    assert (o["setup"], o["endpoints"]) == ("tcp:20557", "tcp:20556")
    assert o["credentials"].leaf.cert_type.label == "agent"
    assert o["roots"] == [] and o["hello-cap"] == 16384 and o["hello-timeout"] == 10.0


def test_config_file_and_options_override_it(home: Path, tmp_path: Path) -> None:
    conf = tmp_path / "proxy.conf"
    conf.write_text(
        "# proxy\nSetupEndpoint tcp:3000\nEndpointsEndpoint tcp:3001\nHelloCap 4096\n"
        f"ManagerRootPath {home / 'keys/k_xc.pub'}\n"
    )
    o = parse("--home", str(home), "--config", str(conf), "--endpoints", "tcp:4001")
    assert (o["setup"], o["endpoints"], o["hello-cap"]) == ("tcp:3000", "tcp:4001", 4096)
    assert len(o["roots"]) == 1


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        ((), "Nope 1\n", "bad.conf:1: unknown key 'Nope' (keys: SetupEndpoint,"),
        # was "unknown key 'HelloCap=4096' (did you mean HelloCap?)" (session 35, op35)
        (
            (),
            "HelloCap=4096\n",
            "bad.conf:1: 'HelloCap=4096': a key and its value are "
            "separated by blanks, not '=': write HelloCap 4096",
        ),
        # was "... (_parseTCP() got multiple values for argument 'interface')" (op35)
        (
            ("--setup", "tcp:3000:interface=::1"),
            None,
            "--setup: 'tcp:3000:interface=::1': a "
            "':' inside a value must be written '\\:' (in a shell, in quotes): "
            "'tcp:3000:interface=\\:\\:1'",
        ),
        (
            (),
            "EndpointsEndpoint tcp6:3001:interface=fe80::1%lo\n",
            "bad.conf:1: EndpointsEndpoint: 'tcp6:3001:interface=fe80::1%lo': a ':' inside",
        ),
        # was only "option --setp not recognized" (session 35, op35)
        (("--setp", "tcp:3000"), None, "option --setp not recognized (did you mean --setup?)"),
        ((), "HelloCap\n", "bad.conf:1: HelloCap: no value"),
        ((), "\nHelloCap x\n", "bad.conf:2: HelloCap: not a number: 'x'"),
        (("--no-splice",), "Relay copy\n", "bad.conf:1: Relay copy"),
        ((), "ManagerRootPath /nonexistent.pub\n", "bad.conf:1: ManagerRootPath: /nonexistent"),
        (("--hello-cap", "x"), None, "--hello-cap: not a number"),
        (("--backlog-max", "0"), None, "--backlog-max: must be positive, got 0"),
        # 0 refused every endpoint / manager at once (a timer of 0 s), and was taken
        (("--hello-timeout", "0"), None, "--hello-timeout: must be positive, got 0"),
        ((), "SetupTimeout 0\n", "bad.conf:1: SetupTimeout: must be positive, got 0"),
        # 0 is off here, so -1 is not "positive" but "0 or more"
        (("--keepalive", "-1"), None, "--keepalive: must be 0 or more, got -1"),
        (("--manager-roots", "/nonexistent.pub"), None, "--manager-roots: /nonexistent.pub"),
        (("--relay", "zero"), None, "--relay: 'zero' is not one of copy, splice, python"),
        (("--relay", "copy", "--no-splice"), None, "--no-splice contradicts --relay copy"),
        (("--stats-file", "/nonexistent/s.json"), None, "--stats-file: no directory /nonexistent"),
        # was taken: a `cannot write it (Is a directory)` warning each interval (session 32)
        (("--stats-file", "/"), None, "--stats-file /: a directory, not a file"),
        ((), "StatsFile /\n", "bad.conf:1: StatsFile /: a directory, not a file"),
    ],
)
def test_errors(home: Path, tmp_path: Path, args: tuple[str, ...], text: str | None,
                message: str) -> None:  # fmt: skip
    extra: list[str] = []
    if text is not None:
        conf = tmp_path / "bad.conf"
        conf.write_text(text)
        extra = ["--config", str(conf)]
    with pytest.raises(usage.UsageError, match=None) as e:
        parse("--home", str(home), *extra, *args)
    assert message in str(e.value)


def test_missing_identity_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(tmp_path / "empty"))
    assert "run `pktlab init`" in str(e.value) and "--cert" in str(e.value)


def test_relay_mode_from_option_config_or_no_splice(home: Path, tmp_path: Path) -> None:
    assert parse("--home", str(home))["relay"] is None  # the Proxy picks (copy on Linux)
    assert parse("--home", str(home), "--no-splice")["relay"] == "python"
    conf = tmp_path / "proxy.conf"
    conf.write_text("Relay splice\n")
    assert parse("--home", str(home), "--config", str(conf))["relay"] == "splice"
    assert parse("--home", str(home), "--config", str(conf), "--relay", "copy")["relay"] == "copy"


def test_config_key_and_value_separated_by_tabs(home: Path, tmp_path: Path) -> None:
    conf = tmp_path / "tabs.conf"
    conf.write_text(
        "SetupEndpoint\ttcp:3000\r\n  HelloCap \t 4096  # bytes\nPendingMax\t64\nKeepAlive 0\n"
    )
    o = parse("--home", str(home), "--config", str(conf))
    assert (o["setup"], o["hello-cap"], o["pending-max"]) == ("tcp:3000", 4096, 64)
    assert o["keepalive"] == 0 and parse("--home", str(home))["keepalive"] == 60


def test_pending_max_default_fits_the_descriptor_limit(home: Path) -> None:
    from packetlab.proxy.tap import default_pending_max

    assert default_pending_max(1 << 20) == 1024
    assert default_pending_max(1024) == 128  # a usual soft limit: no EMFILE busy loop
    assert default_pending_max(64) == 16
    assert parse("--home", str(home))["pending-max"] == default_pending_max()
    assert parse("--home", str(home), "--pending-max", "5000")["pending-max"] == 5000


def test_backlogs_and_splices_fit_the_descriptor_limit() -> None:
    """Was: 4096 backlogs allowed whatever `ulimit -n` (1024 is usual): past it accept()
    failed with EMFILE and Twisted closed every new connection, real ones too."""
    from packetlab.proxy.tap import link_budget

    assert link_budget(None, 1024, "copy") is None
    # 1024: both ports' 128 pending, 64 spare, 4 descriptors a splice (2 sockets, 2 dups)
    assert link_budget(1024, 128, "copy") == 176
    assert link_budget(1024, 128, "splice") == 88  # and a pipe each way
    assert link_budget(1024, 128, "python") == 352
    assert link_budget(64, 16, "copy") == 4
    assert link_budget(16, 16, "copy") == 1


def test_per_address_share_from_option_or_config(home: Path, tmp_path: Path) -> None:
    assert parse("--home", str(home))["per-address-share"] == 0.25
    assert parse("--home", str(home), "--per-address-share", "0.5")["per-address-share"] == 0.5
    conf = tmp_path / "proxy.conf"
    conf.write_text("PerAddressShare 1\n")
    assert parse("--home", str(home), "--config", str(conf))["per-address-share"] == 1.0
    for bad in ("0", "1.5", "nan", "x"):
        with pytest.raises(usage.UsageError, match="--per-address-share: "):
            parse("--home", str(home), "--per-address-share", bad)
    conf.write_text("PerAddressShare 0\n")
    with pytest.raises(usage.UsageError, match=r"proxy.conf:1: PerAddressShare: 0 is out"):
        parse("--home", str(home), "--config", str(conf))


def test_an_expired_agent_certificate_stops_the_proxy(home: Path, tmp_path: Path) -> None:
    """Was: the proxy started with it, and every manager that checks it
    (ProxyCertRootPath) refused every registration."""
    from packetlab.ppks import issue_certificate

    h = PktlabHome.at(home)
    key = h.private_key("k_prx")
    old = tmp_path / "old.cert"
    old.write_bytes(issue_certificate("agent", key, key, 0, 100).to_pem())
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--cert", str(old))
    assert str(e.value).startswith(
        "proxy identity: --cert: certificate #0 (agent) expired at 1970-01-01T00:01:40Z: "
        "every peer refuses the chain; renew it (pktlab ppks sign agent ...)"
    ), str(e.value)


def test_dash_h_is_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`twistd pktproxy -h` prints the help, as `twistd pktendpoint -h` does (it was
    `option -h not recognized`, exit 1)."""
    with pytest.raises(SystemExit) as e:
        parse("-h")
    assert e.value.code == 0
    assert "--backlog-wait" in capsys.readouterr().out


_NUMERIC = {"hello-cap": "HelloCap", "hello-timeout": "HelloTimeout",
            "setup-timeout": "SetupTimeout", "backlog-per-snikey": "BacklogPerSNIKey",
            "backlog-max": "BacklogMax", "pending-max": "PendingMax", "keepalive": "KeepAlive",
            "backlog-wait": "BacklogWait", "stats-interval": "StatsInterval"}  # fmt: skip


@pytest.mark.parametrize("opt", sorted(_NUMERIC))
@pytest.mark.parametrize("value", ["nan", "inf", "1e12", "1_000", "\u0663", "0x10", "5s"])
def test_every_number_refuses_what_would_fail_later(
    home: Path, tmp_path: Path, opt: str, value: str
) -> None:
    # nan, inf and 1e12 were taken: then a traceback on every connection (callLater's
    # assertion, keepalive's setsockopt overflow); int() also took "1_000" and "\u0663"
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), f"--{opt}", value)
    assert str(e.value).startswith(f"--{opt}: ")
    conf = tmp_path / "n.conf"
    conf.write_text(f"{_NUMERIC[opt]} {value}\n")
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--config", str(conf))
    assert str(e.value).startswith(f"{conf}:1: {_NUMERIC[opt]}: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("opt", "top"),
    [("keepalive", "32767"), ("hello-timeout", "3600"), ("hello-cap", "16777216"),
     ("backlog-max", "1000000"), ("stats-interval", "86400"), ("backlog-wait", "0.5")],
)  # fmt: skip
def test_the_largest_numbers_are_taken(home: Path, opt: str, top: str) -> None:
    assert parse("--home", str(home), f"--{opt}", top)[opt] == float(top)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--setup", "bogus"], "--setup: 'bogus' is not a Twisted endpoint string"),
        (["--endpoints", "tcp:99999"], "--endpoints: 'tcp:99999': port 99999"),
        (["--setup", "tcp:5000", "--endpoints", "tcp:5000"], "--endpoints and --setup both"),
    ],
)
def test_a_bad_port_is_said_before_a_missing_certificate(
    args: list[str], said: str, tmp_path: Path
) -> None:
    """Before `pktlab init`: the mistyped port first, not the missing identity."""
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(tmp_path / "empty"), *args)
    assert str(e.value).startswith(said)


def test_a_config_that_is_not_utf8_names_its_line(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "p.conf"
    bad.write_bytes(b"HelloCap 4096\n\n\xffRelay copy\n")
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--config", str(bad))
    assert str(e.value) == f"{bad}:3: not UTF-8 text (byte 0xff)"


def test_a_key_given_twice_is_a_warning_naming_the_value_that_counts(
    home: Path, tmp_path: Path
) -> None:
    """Was silently the last one (broker.conf too): now one warning a key, as the
    endpoint's and the manager's configs (packetlab.paths.RepeatedKeys)."""
    conf = tmp_path / "proxy.conf"
    conf.write_text("HelloCap 4096\nSetupTimeout 5\n# again\nHelloCap 8192\nHelloCap 2048\n")
    o = parse("--home", str(home), "--config", str(conf))
    assert o["hello-cap"] == 2048
    assert o["config-warnings"] == [
        f"{conf}:5: HelloCap repeated (lines 1, 4); the last one wins: 2048"
    ]
    assert parse("--home", str(home))["config-warnings"] == []


def test_a_stats_file_that_cannot_be_written_stops_neither_the_counters_nor_the_file(
    tmp_path: Path,
) -> None:
    """After twistd's `-u` the stats file's directory may not be writable (or the disk is
    full): the write raised out of the timer (`Unhandled Error`, a traceback) and Twisted
    stopped the timer, so no counters line was logged again for the rest of the run."""
    import json

    from twisted.internet.task import Clock, LoopingCall

    from packetlab.proxy.tap import StatsReport

    class FakeProxy:
        n = 0

        def stats_line(self) -> str:
            self.n += 1
            return f"registrations={self.n}"

        def stats_json(self) -> str:
            return json.dumps({"registrations": self.n})

    stats = tmp_path / "stats.json"
    blocker = tmp_path / "stats.json.tmp"
    blocker.mkdir()  # the temporary file cannot be written: an OSError (as root too)
    clock = Clock()
    loop = LoopingCall(StatsReport(FakeProxy(), str(stats)))
    loop.clock = clock
    try:
        with captured_events() as seen:
            loop.start(60)
            clock.advance(60)
            clock.advance(60)
            blocker.rmdir()
            clock.advance(60)
            assert loop.running
    finally:
        if loop.running:
            loop.stop()
    lines = seen.lines()
    assert [t for t in lines if t.startswith("counters:")] == [
        f"counters: registrations={n}" for n in (1, 2, 3, 4)
    ]
    warnings = [t for t in lines if "cannot write it" in t]
    assert warnings == [
        f"--stats-file {stats}: cannot write it (Is a directory); the counters are still "
        "logged, and the file is tried again each time"
    ]
    assert f"--stats-file {stats}: written again" in lines
    assert json.loads(stats.read_text()) == {"registrations": 4}


def test_the_proxy_ports_are_bound_before_twistd_drops_privileges() -> None:
    """twistd calls privilegedStartService, then drops to `-u USER`, then startService:
    listening in startService made a port below 1024 fail with `Permission denied`."""
    from twisted.internet.defer import Deferred, succeed

    from packetlab.proxy.tap import ProxyService

    class Port:
        def getHost(self) -> object:
            from twisted.internet.address import IPv4Address

            return IPv4Address("TCP", "127.0.0.1", 443)

    class Endpoint:
        calls = 0

        def listen(self, factory: object) -> Deferred[Port]:
            self.calls += 1
            return succeed(Port())

    ep = Endpoint()
    svc = ProxyService(object(), [("endpoints", ep, object())])
    svc.privilegedStartService()
    assert ep.calls == 1 and "endpoints" in svc.listening
    svc.startService()
    assert ep.calls == 1


@pytest.mark.parametrize("ctype", ["exppriv", "subcmd"])
def test_a_certificate_other_than_an_agent_one_stops_the_proxy(
    home: Path, tmp_path: Path, ctype: str
) -> None:
    """Was: the proxy started with it without a word (session 28, fresh28), and every
    manager refused it in the handshake (ours check the proxy's chain in agent mode)."""
    from packetlab.ppks import issue_certificate

    h = PktlabHome.at(home)
    key = h.private_key("k_prx")
    cert = tmp_path / f"{ctype}.cert"
    cert.write_bytes(issue_certificate(ctype, key, key, 0, 2**31 - 1).to_pem())
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--cert", str(cert))
    assert str(e.value) == (
        f"--cert: proxy identity is a {ctype} certificate, not an agent certificate: every "
        "manager checks the proxy's certificate in agent mode and refuses it (`pktlab init` "
        "writes agent_prx_prx.cert)"
    )


def test_an_identity_file_there_but_unreadable_is_not_sent_to_pktlab_init(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate twistd's user cannot read (root's 0700 home, twistd started as
    another user), or a directory: `[Errno 13] Permission denied: 'PATH'` after the path,
    then `run pktlab init, which writes agent_prx_prx.cert ...`, which it had (session 32)."""
    import os

    cert = home / "certs" / "agent_prx_prx.cert"
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == cert:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home))
    assert str(e.value) == (
        f"proxy identity: certificate file {cert}: Permission denied (the user twistd starts "
        f"as (uid {os.geteuid()}) cannot read it: twistd reads it before -u drops "
        "privileges; run twistd as a user who can)"
    )
    monkeypatch.undo()
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--private-key", str(tmp_path))
    assert str(e.value) == (
        f"--private-key: proxy identity: private key file {tmp_path}: Is a directory (give "
        "the file, not its directory)"
    )


def test_log_level_from_the_config_or_the_option(home: Path, tmp_path: Path) -> None:
    """LogLevel in the proxy's config, --log-level over it (session 32, loglvl32)."""
    conf = tmp_path / "proxy.conf"
    conf.write_text("LogLevel WARN\n")
    assert parse("--home", str(home), "-c", str(conf))["log-level"] == "warn"
    assert parse("--home", str(home), "-c", str(conf), "--log-level", "debug")["log-level"] == (
        "debug"
    )
    conf.write_text("# levels\nLogLevel loud\n")
    with pytest.raises(usage.UsageError, match=r"proxy.conf:2: LogLevel: expected one of "):
        parse("--home", str(home), "-c", str(conf))


def test_a_port_that_cannot_be_bound_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--setup tcp:81` without CAP_NET_BIND_SERVICE: `cannot listen on the setup port:
    cannot listen on *:81: [Errno 13] Permission denied`, with no word of what to do
    (session 35, op35)."""
    import errno

    from twisted.internet.error import CannotListenError
    from twisted.python.failure import Failure

    from packetlab.proxy import tap

    stopped: list[str] = []
    monkeypatch.setattr(tap, "stop_daemon", lambda reactor, why: stopped.append(why))
    svc = tap.ProxyService.__new__(tap.ProxyService)  # (only _failed is used)
    e = CannotListenError("", 81, PermissionError(errno.EACCES, "Permission denied"))
    svc._failed(Failure(e), "setup")
    e = CannotListenError("127.0.0.1", 2000, OSError(errno.EACCES, "Permission denied"))
    svc._failed(Failure(e), "endpoints")  # above 1024: not a privilege matter
    assert stopped == [
        "cannot listen on *:81 (setup port): [Errno 13] Permission denied; below 1024: root "
        "or CAP_NET_BIND_SERVICE",
        "cannot listen on 127.0.0.1:2000 (endpoints port): [Errno 13] Permission denied",
    ]


def test_a_key_that_does_not_match_says_what_to_give(home: Path) -> None:
    """`--private-key` of another key: `... does not match the leaf ... (run `pktlab
    init`, which writes agent_prx_prx.cert and k_prx ...)`, though both files were there
    and init writes a new home (session 35, op35)."""
    with pytest.raises(usage.UsageError) as e:
        parse("--home", str(home), "--private-key", str(home / "keys/k_brk"))
    text = str(e.value)
    assert (
        text.startswith("--private-key: proxy identity: private key") and "does not match" in text
    )
    assert "pktlab init" not in text and "a certificate of this key: pktlab ppks sign" in text
