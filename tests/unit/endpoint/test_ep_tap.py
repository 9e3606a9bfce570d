"""`twistd pktendpoint` options: the reference command line, overrides, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage
from wasmtime import wat2wasm

from packetlab.endpoint.service import ControllerAddress, NoSubService
from packetlab.endpoint.tap import Options, makeService
from packetlab.monitor.template import monitor_wat


def parse(*argv: str) -> Options:
    opts = Options()
    opts.parseOptions(list(argv))
    return opts


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    opts = parse("--insecure-plaintext")
    assert opts["address"] == ControllerAddress("127.0.0.1", 20556)
    assert opts["endpoint_config"].buf_max == 8388608
    assert opts["reconnect-delay"] == 1.0 and opts["retry-delay"] == 5.0
    assert opts["sessions"] == 0


def test_config_file_and_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("BufMax 1000\nHostID from-file\nTransprotoSup udp\n")
    opts = parse(
        "-c", str(conf), "--host-id", "from-option", "--set", "BufMax=2000",
        "--ipv6", "::1", "--insecure-plaintext", "[::1]:9000",
    )  # fmt: skip
    cfg = opts["endpoint_config"]
    assert (cfg.buf_max, cfg.host_id, cfg.transproto_sup) == (2000, "from-option", {"udp"})
    assert [str(a) for a in cfg.ipv6] == ["::1"]
    assert opts["address"] == ControllerAddress("::1", 9000)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "TLS to the controller needs ControllerCertChainPath"),
        (["--insecure-plaintext", "192.0.2.1:20556"], "only talks to loopback controllers"),
        (["--insecure-plaintext", "example.org"], "only talks to loopback controllers"),
        (["--insecure-plaintext", "[::1"], "bad controller address"),
        (["--insecure-plaintext", "--set", "BufMax"], "--set wants KEY=VALUE"),
        (
            ["--insecure-plaintext", "--set", "BufMax=x"],
            "--set BufMax: BufMax: expected an integer",
        ),
        (["--insecure-plaintext", "--buf-max", "-1"], "--buf-max: BufMax: -1 is out of range"),
        (["--insecure-plaintext", "-c", "/nonexistent/endpt.conf"], "cannot read configuration"),
        (["--insecure-plaintext", "--reconnect-delay", "soon"], "--reconnect-delay: expected"),
        (["--insecure-plaintext", "--retry-delay", "-1"], "--retry-delay: expected seconds"),
        (["--insecure-plaintext", "--sessions", "-2"], "--sessions: expected a count"),
        (["--insecure-plaintext", "a", "b"], "at most one controller address"),
        # A misspelled key on the command line is a mistake (a file may hold the
        # reference's keys we do not know: those stay warnings).
        (
            ["--insecure-plaintext", "--set", "NoSubMod=1"],
            r"--set NoSubMod: unknown config key \(did you mean NoSubMode\?\)",
        ),
        (["--insecure-plaintext", "--set", "Zzz=1"], "--set Zzz: unknown config key$"),
        # The port named as what is wrong (was: "'127.0.0.1:abc' is not an IPv6 address").
        (["--insecure-plaintext", "127.0.0.1:abc"], "port must be 1..65535, got 'abc'"),
        (["--insecure-plaintext", "localhost:"], "port must be 1..65535, got ''"),
        # was the bare `bad controller address ':20556'` (session 35, op35)
        (["--insecure-plaintext", ":20556"], "':20556': no host before the port$"),
        (["--broker", "bad_host!:5"], "'bad_host!' is neither an IP address nor a host name$"),
    ],
)
def test_refusals(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a HOME of its own: a ~/.pktlab on the machine (`pktlab run` makes one) gives TLS
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(usage.UsageError, match=message.replace("[", r"\[")):
        parse(*argv)


def test_bad_config_line_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("# ok\nVMemLocalAddrStrIPv4 999.0.0.1\n")
    with pytest.raises(usage.UsageError, match=r"endpt.conf:2: VMemLocalAddrStrIPv4: "):
        parse("-c", str(conf), "--insecure-plaintext")


@pytest.mark.parametrize(
    ("argv", "where"),
    [(["--host-id", "ep\udcff"], "--host-id"), (["--set", "HostID=\udcff"], "--set HostID")],
    ids=["option", "set"],
)
def test_a_host_id_of_bytes_not_utf8_is_a_usage_error(
    argv: list[str], where: str, tmp_path: Path
) -> None:
    """`--host-id $'ep\\xff'`: Python holds argv's non-UTF-8 bytes as surrogates, and
    HostID's length check encoded them: a UnicodeEncodeError out of option parsing, a
    traceback (fuzz27's config target, the value of each known key)."""
    conf = tmp_path / "endpt.conf"
    conf.write_text("")
    want = f"^{where}: HostID: not UTF-8 text \\(byte 0xff\\)$"
    with pytest.raises(usage.UsageError, match=want):
        parse("-c", str(conf), "--insecure-plaintext", *argv)


def test_aux_monitors_are_checked_at_startup(tmp_path: Path) -> None:
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(b"\0asm")
    with pytest.raises(usage.UsageError, match="no such file"):
        parse("-m", str(tmp_path / "missing.wasm"), "--insecure-plaintext")
    with pytest.raises(usage.UsageError, match="a directory, not a file"):  # was "no such file"
        parse("-m", str(tmp_path), "--insecure-plaintext")
    with pytest.raises(usage.UsageError, match="at most 16"):
        parse(*["-m", str(wasm)] * 17, "--insecure-plaintext")
    # A module that cannot load does not stop the daemon: every start answers ECTLMONUKN
    # (§1.3, §8.5; tests/unit/endpoint/test_monitor_gate.py).
    bad = parse("--monitor", str(wasm), "--insecure-plaintext")["monitor_host"].aux[0]
    assert "not a valid WebAssembly module" in str(bad.compiled)
    good = tmp_path / "ok.wasm"
    good.write_bytes(wat2wasm(monitor_wat({"nsend": "(i32.const 0)"})))
    opts = parse("-m", str(good), "-m", str(good), "--insecure-plaintext")
    assert [a.path for a in opts["monitor_host"].aux] == [str(good)] * 2


def test_make_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    svc = makeService(parse("--insecure-plaintext", "--sessions", "1", "127.0.0.1:5555"))
    assert isinstance(svc, NoSubService)
    assert svc.address == ControllerAddress("127.0.0.1", 5555)
    assert svc.max_sessions == 1
    session = svc.make_session()
    assert session.config.host_id == "pktendpt"
    assert svc.scheduler is not None
    svc.scheduler.stop()


@pytest.mark.parametrize(
    ("where", "origin"), [("file", "endpt.conf:2: "), ("--set", "--set CpuLatencyUs: ")]
)
def test_an_unopenable_cpu_latency_device_names_where_the_key_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, origin: str
) -> None:
    """`CpuLatencyUs` set, the device not writable: the line names the file and line (or
    the option), as every other config error (was the key alone)."""
    from packetlab.endpoint import cpulatency

    real_open = cpulatency.open_device

    def unopenable(path: str = cpulatency.DEVICE) -> cpulatency.Device:
        return real_open(str(tmp_path / "no-such-device"))  # the real refusal

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(cpulatency, "open_device", unopenable)
    conf = tmp_path / "endpt.conf"
    conf.write_text("BufMax 100000\nCpuLatencyUs 0\n" if where == "file" else "")
    argv = ["-c", str(conf), "--insecure-plaintext", "127.0.0.1:5555"]
    opts = parse(*(argv if where == "file" else ["--set", "CpuLatencyUs=0", *argv]))
    with pytest.raises(usage.UsageError) as e:
        makeService(opts)
    assert str(e.value).startswith(f"{tmp_path / origin}" if where == "file" else origin)
    assert "CpuLatencyUs needs" in str(e.value)


def test_help_text_is_one_paragraph_per_option() -> None:
    """No run of spaces from a docstring's line break inside an option's help."""
    assert "  repeatable" not in " ".join(str(Options()).split("\n"))


def test_help_text_mentions_the_essentials() -> None:
    text = str(Options())
    for needle in ("--insecure-plaintext", "--config", "--monitor", "--set", "ADDR[:PORT]"):
        assert needle in text


def test_help_text_points_where_the_options_are() -> None:
    """twistd prints the options first and the description after them: the description
    said "the named options below"."""
    text = " ".join(str(Options()).split())
    assert text.index("--transproto") < text.index("the named options above")
    assert "options below" not in text


def test_reference_short_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """§7.4: `pktendpt [-h] [-c EP_CONF_PATH] [-m MONITOR_PATH]... [ADDR[:PORT]]`: each short
    option is taken (-h was "option -h not recognized")."""
    with pytest.raises(SystemExit) as e:
        parse("-h")
    assert e.value.code == 0
    assert "--insecure-plaintext" in capsys.readouterr().out
    conf = tmp_path / "endpt.conf"
    conf.write_text("HostID from-c\n")
    opts = parse("-c", str(conf), "--insecure-plaintext", "127.0.0.1:20999")
    assert opts["endpoint_config"].host_id == "from-c"
    assert opts["address"] == ControllerAddress("127.0.0.1", 20999)
    assert "-m" in str(Options()) and "-c" in str(Options())


@pytest.mark.parametrize(
    ("argv", "conf", "said"),
    [
        (["--broker", "127.0.0.1:abc"], "", "--broker: BrokerAddr: "),
        ([], "NoSubMode 0\nBrokerAddr 127.0.0.1:abc\n", "endpt.conf:2: BrokerAddr: "),
    ],
)
def test_a_bad_broker_address_names_where_it_was_given(
    argv: list[str], conf: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said `BrokerAddr: ...` alone for `--broker 127.0.0.1:abc` (session 20, cli20)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "endpt.conf"
    path.write_text(conf)
    with pytest.raises(usage.UsageError) as e:
        parse("-c", str(path), *argv)
    assert str(e.value).startswith(said if argv else f"{path.parent}/{said}")
    assert "port must be 1..65535" in str(e.value)


def test_log_level_from_the_config_or_the_option(tmp_path: Path) -> None:
    """LogLevel in endpt.conf (or --set), --log-level over it (session 32, loglvl32)."""
    conf = tmp_path / "endpt.conf"
    conf.write_text("LogLevel warn\n")
    assert parse("-c", str(conf), "--insecure-plaintext")["log-level"] == "warn"
    assert parse("-c", str(conf), "--log-level", "debug", "--insecure-plaintext")["log-level"] == (
        "debug"
    )
    assert parse("--set", "LogLevel=Error", "--insecure-plaintext")["log-level"] == "error"
    conf.write_text("# levels\nLogLevel loud\n")
    with pytest.raises(usage.UsageError, match=r"endpt.conf:2: LogLevel: expected one of debug, "):
        parse("-c", str(conf), "--insecure-plaintext")
