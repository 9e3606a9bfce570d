"""`pktlab run dns|http|throughput`: argument parsing, early errors, the text and JSON
forms of records and summaries, and the in-process endpoint's options. The measurements
run end to end in tests/integration/test_measure_*.py."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from packetlab.cli import run_dns, run_dns_words, run_http, run_http_body, run_throughput
from packetlab.cli.run import RunError, build_parser
from packetlab.cli.run_command import Progress, in_process_options, render, resolv_conf_servers


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_registered_beside_traceroute_and_ping(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    for name in ("traceroute", "ping", "dns", "http", "throughput"):
        assert name in out


@pytest.mark.parametrize("name", ["dns", "http", "throughput"])
def test_help_has_link_options_and_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(name, "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--listen" in out and "--json" in out and "examples:" in out


def test_dns_options() -> None:
    a = parse("dns", "-t", "aaaa", "-t", "MX", "--tcp", "--server", "[::1]:5353", "x.test")
    assert (a.names, a.types, a.tcp, a.server, a.json) == (
        ["x.test"],
        ["aaaa", "MX"],
        True,
        "[::1]:5353",
        False,
    )
    assert run_dns_words.split_server("[::1]:5353") == ("::1", 5353)
    assert run_dns_words.split_server("192.0.2.1") == ("192.0.2.1", None)
    assert run_dns_words.split_server("192.0.2.1:53") == ("192.0.2.1", 53)
    assert run_dns_words.split_server("2001:db8::1") == ("2001:db8::1", None)
    # a name, as dig's @ns.example, resolved on this host (localhost: /etc/hosts)
    assert run_dns_words.split_server("localhost:5353") in (("127.0.0.1", 5353), ("::1", 5353))
    for bad in ("a..b", "192.0.2.1:0", "[::1", ":53"):
        with pytest.raises(RunError):
            run_dns_words.split_server(bad)


@pytest.mark.parametrize(
    ("name", "why"),
    [("a..test", "empty label"), ("a" * 64, "label too long"),
     (".".join(["a" * 63] * 4), "ran out of space"), ("a\\256.test", "bad escape")],
)  # fmt: skip
def test_dns_bad_names_in_digs_words(name: str, why: str) -> None:
    """dig 9.18.49's line for each: the name as typed, BIND's reason in parentheses."""
    a = parse("dns", name)
    with pytest.raises(RunError) as e:
        run_dns.experiment(a, lambda r: None, Progress())
    assert str(e.value) == f"'{name}' is not a legal name ({why})"


def test_dns_bad_name_is_an_error_in_its_turn() -> None:
    # dig 9.18.49 asks a.test, then says "'a..b' is not a legal name" (exit 10) at a..b's
    # lookup (setup_lookup). This test said "before a.test is asked", which dig does not
    # do (session 26, odds26: checked beside dig, tests/integration/test_dns_batch_stop_dig.py);
    # a bad first name is still an error before anything is sent (above)
    # (the run itself: tests/unit/cli/test_run_dns_batch_stop.py)
    a = parse("dns", "a.test", "a..b")
    run_dns.experiment(a, lambda r: None, Progress())  # no error yet


def test_dns_bad_type_is_an_early_error() -> None:
    # --type is ours (dig has no such option): strict; dig's -t BOGUS warns and asks A
    # (tests/unit/test_cli_dns.py)
    import packetlab.cli as cli

    a = cli.parse(["run", "dns", "--type", "BOGUS", "x.test"])
    with pytest.raises(RunError, match="--type BOGUS: unknown record type 'BOGUS'"):
        run_dns.experiment(a, lambda r: None, Progress())


def test_dns_rows() -> None:
    rec = {
        "type": "dns", "qname": "a.test.", "qtype": "A", "server": "192.0.2.53", "port": 53,
        "proto": "udp", "rcode": "NOERROR", "rtt_us": 412.4,
        "answers": [{"name": "a.test.", "type": "A", "ttl": 60, "data": "192.0.2.1"}],
    }  # fmt: skip
    assert run_dns.row(rec) == (
        ";; a.test. A @192.0.2.53#53 (udp): NOERROR, 412 us\na.test.\t60\tIN\tA\t192.0.2.1"
    )
    err = {**rec, "error": "no answer"}
    assert run_dns.row(err) == ";; a.test. A @192.0.2.53#53 (udp): no answer"
    s = run_dns.summary([rec, err])
    assert (s["queries"], s["answered"], s["answers"], s["rtt_us_median"]) == (2, 1, 1, 412.4)


def test_http_options_and_rows() -> None:
    a = parse("http", "-k", "-H", "X-A: b", "--connect-to", "10.0.0.1", "https://x.test/")
    assert (a.insecure, a.header, a.connect_to, a.urls) == (
        True,
        ["X-A: b"],
        ["10.0.0.1"],
        ["https://x.test/"],
    )
    assert run_http_body._headers(["X-A: b", "Y:c"]) == [("X-A", "b"), ("Y", "c")]
    # no colon: not sent, as curl 7.88.1 (exit 0), told once (ours refused it until s26)
    told: list[str] = []
    assert run_http_body._headers(["nocolon", "Y:c"], told.append) == [("Y", "c")]
    assert told == ["-H/--header 'nocolon': no 'NAME: VALUE', not sent (as curl)"]
    ok = {
        "type": "http", "url": "https://x.test/", "status": 200, "body_len": 5,
        "connect_us": 100.0, "tls_us": 900.0, "first_byte_us": 1500.0, "total_us": 1600.0,
    }  # fmt: skip
    assert run_http.row(ok) == (
        " 200          5     0.100     0.900     1.500     1.600  https://x.test/"
    )
    bad = {"type": "http", "url": "https://x.test/", "error": "TLS: certificate verify failed"}
    assert run_http.row(bad).endswith("https://x.test/  TLS: certificate verify failed")  # type: ignore[union-attr]
    # the URL in the url column, as on the rows fetched
    assert run_http.row(bad).index("https://") == run_http.row(ok).index("https://")  # type: ignore[union-attr]
    assert run_http.summary([ok, bad]) == {"urls": 2, "fetched": 1, "bytes": 5}


def test_http_bad_url_and_cacert_are_early_errors(tmp_path: Path) -> None:
    from packetlab.measure.http import HttpError

    with pytest.raises(HttpError):
        run_http.experiment(parse("http", "ftp://x/"), lambda r: None, Progress())
    a = parse("http", "--cacert", str(tmp_path / "missing.pem"), "https://x.test/")
    with pytest.raises(RunError, match="--cacert"):
        run_http.experiment(a, lambda r: None, Progress())


def test_throughput_options() -> None:
    a = parse("throughput", "--server", "10.0.0.2:5202", "--direction", "upload", "--bytes", "8M")
    assert (a.direction, a.bytes, a.runs) == ("upload", 8 << 20, 1)
    assert parse("throughput", "--server", "10.0.0.2").bytes == 25 << 20
    assert run_throughput.split_host_port("10.0.0.2:5202", 5201) == ("10.0.0.2", 5202)
    assert run_throughput.split_host_port("[::1]", 5201) == ("::1", 5201)
    assert run_throughput.COMMAND.target(a) == "10.0.0.2"
    for bad in ("x", "5G"):  # (`0` until session 29: iperf3 3.12 reads -n 0 as no -n)
        with pytest.raises(SystemExit):
            parse("throughput", "--server", "10.0.0.2", "--bytes", bad)
    assert run_throughput.timed(parse("throughput", "--server", "10.0.0.2", "--bytes", "0"))
    small = parse("throughput", "--server", "10.0.0.2", "--bytes", "1K")  # iperf3's test
    assert small.bytes == 1024 and run_throughput.timed(small)
    with pytest.raises(SystemExit):
        parse("throughput")  # --server is required
    with pytest.raises(RunError, match=r"cannot resolve 'a\.\.b'"):
        run_throughput.split_host_port("a..b", 5201)


def test_throughput_takes_iperf3s_names() -> None:
    # `iperf3 -c localhost -p 5202 -n 8M -R`: a name (iperf3 takes one), its -p, -n and -R
    a = parse("throughput", "-c", "localhost", "-p", "5202", "-n", "8M", "-R")
    assert (a.server, a.port, a.bytes, a.direction) == ("localhost", 5202, 8 << 20, "download")
    assert run_throughput.split_host_port(a.server, 5201, a.port) in (
        ("127.0.0.1", 5202),
        ("::1", 5202),
    )
    assert run_throughput.split_host_port("10.0.0.2:5203", 5201, 5202) == ("10.0.0.2", 5202)


def test_throughput_rows() -> None:
    r = {"type": "throughput", "direction": "download", "bytes": 26214400, "seconds": 2.1,
         "mbit_s": 95.6, "method": "ndata-stamps", "server_mbit_s": 95.1}  # fmt: skip
    assert "95.6 Mbit/s" in (run_throughput.row(r) or "")
    s = run_throughput.summary([r, {**r, "mbit_s": 97.6}, {"type": "throughput", "error": "x"}])
    assert (s["runs"], s["ok"], s["mbit_s_mean"]) == (3, 2, pytest.approx(96.6))
    assert run_throughput.row({"type": "summary", **s}) == "# 2 of 3 runs, mean 96.6 Mbit/s"


def test_json_render_sorts_keys() -> None:
    line = render(run_dns.COMMAND, {"type": "summary", "b": 1, "a": 2}, True)
    assert line == json.dumps({"a": 2, "b": 1, "type": "summary"})


def test_resolv_conf_feeds_the_in_process_endpoint(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.53\nnameserver fd00::53\nnameserver fe80::1%eth0\n")
    assert resolv_conf_servers(conf) == (["10.0.0.53"], ["fd00::53"])
    opts = in_process_options(conf)
    assert opts[opts.index("--dns-ipv4") + 1] == "10.0.0.53"
    assert opts[opts.index("--dns-ipv6") + 1] == "fd00::53"
    assert "--buf-max" in opts
    assert "--dns-ipv4" not in in_process_options(tmp_path / "missing")


def test_progress_before_start_only_remembers() -> None:
    out = io.StringIO()
    p = Progress()
    p("working")
    p.write("a record", out)
    p.clear()
    assert (p.text, out.getvalue()) == ("working", "a record\n")


def _interrupted_dns_run(names: list[str]) -> tuple[str, int, int, float]:
    """`pktlab run dns --json --server 192.0.2.53 NAMES` over the scripted endpoint, whose
    server answers the first query only; Ctrl-C (the stop signal) 0.5 s into the second.
    (output, exit status, queries sent, seconds from the stop to the end)."""
    import dns.message
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    from packetlab.cli.run_command import begun, measure
    from packetlab.controller.stop import StopSignal
    from packetlab.wire import Nsend

    rig = Rig()
    asked: list[bytes] = []

    def server(query: bytes) -> list[bytes]:
        asked.append(query)
        if len(asked) > 1:
            return []  # silent from the second query on
        q = dns.message.from_wire(query)
        return [dns.message.make_response(q).to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    args = parse("dns", "--json", "--server", "192.0.2.53", *names)

    async def link(
        reactor: object, args: argparse.Namespace, emit: object, progress: Progress
    ) -> None:
        await begun(args._command.experiment(args, emit, progress), progress)(rig.session)

    out, stop = io.StringIO(), StopSignal()
    d = Deferred.fromCoroutine(measure(rig.clock, args, stop, out, run=link))

    def step() -> None:
        rig.pump.flush()
        rig.clock.advance(0.001)

    while len(asked) < 2:
        step()
    for _ in range(500):  # the second query 0.5 s in flight
        step()
    stopped_at = rig.clock.seconds()
    stop.request("interrupted")
    code = rig.run(d, limit=stopped_at + 30)
    sent = len([m for m in rig.endpoint.received if isinstance(m, Nsend)])
    return out.getvalue(), code, sent, rig.clock.seconds() - stopped_at


def test_ctrl_c_ends_a_dns_run_with_what_it_gathered_and_the_summary() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from packetlab.cli.run_command import GRACE_S

    out, code, sent, took = _interrupted_dns_run(["a.test", "b.test", "c.test", "d.test"])
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["type"] for r in records] == ["dns", "summary"], out  # a.test, then the summary
    assert records[0]["qname"] == "a.test." and records[0]["rcode"] == "NOERROR"
    s = records[1]
    assert s["stop_reason"] == "INTERRUPTED" and s["tool"] == "packetlab"
    assert (s["queries"], s["answered"]) == (1, 1)
    assert s["start_time"] <= s["stop_time"]
    assert sent == 2  # b.test (in flight, cut after the grace); c.test and d.test never asked
    assert GRACE_S - 0.01 <= took <= GRACE_S + 0.1
    assert code == 0  # the exit status (130) is run_reactor's, from the stop's reason


def _main_args(*argv: str) -> argparse.Namespace:
    """What `pktlab ARGV` would run (packetlab.cli.main's parsing)."""
    import packetlab.cli as cli

    return cli.parse(argv)


def test_dns_takes_digs_words() -> None:
    # `dig @127.0.0.1 -p 5353 a.test MX +tcp +norec +time=1 +tries=4`, word for word
    a = _main_args("run", "dns", "@127.0.0.1", "-p", "5353", "a.test", "MX", "+tcp", "+norec",
                   "+time=1", "+tries=4", "b.test", "aaaa")  # fmt: skip
    run_dns_words.dig_style(a)
    assert (a.names, a.server, a.port) == (["a.test", "b.test"], "127.0.0.1", 5353)
    assert [e[:2] for e in a.plan] == [
        ("a.test", ["MX"]),
        ("b.test", ["aaaa"]),
    ]  # a type: the name before it
    o = a.plan[0][3]  # as dig: the options after a.test are its query's, +time all's
    assert (o.tcp, o.norecurse, o.wait, o.tries) == (True, True, 1.0, 4)
    assert (a.tcp, a.norecurse, a.wait, a.tries) == (False, False, 1.0, 3) and a.plan[1][3] is None
    # `dig MX a.test b.test -t TXT c.test NS`, as dig: a type before any name is every
    # name's, -t after a name that name's, and after a -t a type word is a name
    a = _main_args("run", "dns", "MX", "a.test", "b.test", "-t", "TXT", "c.test", "NS", "+short")
    run_dns_words.dig_style(a)
    assert [e[:2] for e in a.plan] == [
        ("a.test", ["MX"]), ("b.test", ["TXT"]), ("c.test", ["MX"]), ("NS", ["MX"])
    ]  # fmt: skip
    assert a.short and run_dns.COMMAND.budget(a) == 4 * (3 + 1) * 5.0
    a = parse("dns", "--server", "::1", "-p", "53", "x.test", "+retry=0")
    run_dns_words.dig_style(a)
    assert (a.server, a.port, a.plan[0][:3], a.plan[0][3].tries) == (
        "::1", 53, ("x.test", None, None), 1
    )  # fmt: skip
    a = parse("dns", "-x", "192.0.2.1", "-x", "2001:db8::1")
    run_dns_words.dig_style(a)
    assert a.names[0] == "1.2.0.192.in-addr.arpa." and a.names[1].endswith(".ip6.arpa.")
    assert [e[1] for e in a.plan] == [["PTR"], ["PTR"]]
    for argv, message in [
        (["+dns64prefix", "x.test"], r"\+dns64prefix: dig option not supported here"),
        (["+time=soon", "x.test"], r"\+time=soon: Couldn't parse timeout \(not a valid number\)"),
    ]:
        with pytest.raises(RunError, match=message):
            run_dns_words.dig_style(parse("dns", *argv))
    a = parse("dns", "-x", "nope")  # since session 18, as dig: its words reversed
    run_dns_words.dig_style(a)
    assert a.plan[0][0] == "nope.in-addr.arpa."


def test_dns_short_prints_only_the_data_as_dig() -> None:
    a = parse("dns", "+short", "x.test")
    run_dns_words.dig_style(a)
    rows = run_dns.COMMAND.row_for(a)  # type: ignore[misc]
    ok = {"type": "dns", "qname": "x.test.", "qtype": "A", "rcode": "NOERROR", "answers": [
        {"name": "x.test.", "type": "CNAME", "ttl": 1, "data": "y.test."},
        {"name": "y.test.", "type": "A", "ttl": 1, "data": "192.0.2.1"}]}  # fmt: skip
    assert rows(ok) == "y.test.\n192.0.2.1"
    assert rows({**ok, "answers": []}) is None  # NXDOMAIN, NODATA: nothing, as dig
    lost = {"type": "dns", "qname": "x.test.", "qtype": "A", "server": "192.0.2.53", "port": 53,
            "tries": 2, "error": "no answer from ...", "error_kind": "timeout"}  # fmt: skip
    assert rows(lost) == (  # as dig +short
        ";; communications error to 192.0.2.53#53: timed out\n" * 2
        + ";; no servers could be reached"
    )
    assert rows({"type": "summary", "queries": 1}) is None
    compact = parse("dns", "--compact", "x.test")
    assert run_dns.COMMAND.row_for(compact) is run_dns.compact_row  # type: ignore[misc]


def test_operands_after_options_join_the_list() -> None:
    # dig, curl and ping take operands anywhere; argparse alone refused the later ones
    a = _main_args("run", "http", "--json", "http://a.test/", "-k", "http://b.test/")
    assert a.urls == ["http://a.test/", "http://b.test/"] and a.insecure
    with pytest.raises(SystemExit):
        _main_args("run", "http", "http://a.test/", "-k", "http://b.test/", "--bogus")


def test_a_run_failing_under_way_still_prints_its_summary() -> None:
    # --timeout reached (or the endpoint gone) after some answers: they and the summary
    # are printed, then the error is the command's (run_reactor: one line, status 2)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from packetlab.cli.link import LinkError
    from packetlab.cli.run_command import measure
    from packetlab.controller.stop import StopSignal

    async def link(
        reactor: object, args: argparse.Namespace, emit: Any, progress: Progress
    ) -> None:
        progress.begin()
        emit({"type": "dns", "qname": "a.test.", "qtype": "A", "server": "192.0.2.53",
              "port": 53, "proto": "udp", "rcode": "NOERROR", "answers": [],
              "rtt_us": 1.0})  # fmt: skip
        raise LinkError("no result within 3 s: the experiment did not end")

    out = io.StringIO()
    args = parse("dns", "--json", "a.test", "b.test")
    d = Deferred.fromCoroutine(measure(Clock(), args, StopSignal(), out, run=link))
    failures: list[Any] = []
    d.addErrback(failures.append)  # the error goes on to run_reactor
    assert isinstance(failures[0].value, LinkError)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in records] == ["dns", "summary"]
    assert records[1]["stop_reason"] == "ERROR" and records[1]["queries"] == 1
    assert records[1]["error"] == "no result within 3 s: the experiment did not end"


def test_alias_summary_cut_short_is_not_read_as_no_aliases() -> None:
    from packetlab.cli import run_alias

    done = {"type": "summary", "pairs": 0, "stop_reason": "COMPLETED"}
    assert run_alias.row(done) == "# 0 alias pairs"
    for reason in ("INTERRUPTED", "ERROR"):
        line = run_alias.row({**done, "stop_reason": reason})
        assert line == "# 0 alias pairs (run cut short: the stage in flight was dropped)"


def test_http_fail_makes_a_4xx_a_failure_as_curl_f() -> None:
    # `curl -f`: exit 22 for a status of 400 or more; ours: that URL's error, exit 1
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "measure"))
    from stream_fakes import Peer, StreamRig

    class NotFound(Peer):
        def received(self, data: bytes) -> None:
            super().received(data)
            if b"\r\n\r\n" in self.got:
                self.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
                self.close()

    def fetch(*options: str) -> tuple[list[dict[str, Any]], int]:
        from twisted.internet.defer import Deferred

        from packetlab.cli.run_command import begun, measure
        from packetlab.controller.stop import StopSignal

        rig = StreamRig()
        rig.endpoint.peers[("192.0.2.80", 80)] = NotFound
        args = parse("http", "--json", *options, "http://192.0.2.80/x")

        async def link(reactor: object, a: argparse.Namespace, emit: Any, p: Progress) -> None:
            await begun(a._command.experiment(a, emit, p), p)(rig.session)

        out = io.StringIO()
        code = rig.run(
            Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), out, run=link))
        )
        return [json.loads(line) for line in out.getvalue().splitlines()], code

    records, code = fetch()
    assert code == 0 and records[0]["status"] == 404 and "error" not in records[0]
    records, code = fetch("-f")
    assert code == 1 and records[0]["status"] == 404
    assert records[0]["error"] == "the server answered 404 Not Found (--fail)"
    assert (records[1]["fetched"], records[1]["errors"]) == (0, 1)
    # (since session 19 the body is not read, as curl -f's: 0 bytes, its size_download)
    assert run_http.row(records[0]).startswith(" 404          0")  # type: ignore[union-attr]


def test_alias_method_option_and_row() -> None:
    from packetlab.cli import run_alias

    args = parse("alias", "--method", "tcp", "10.0.0.1", "10.0.0.2")
    with pytest.raises(RunError, match=r"^--method: unknown probe method 'tcp'; valid: auto, "
                       r"icmp-echo, tcp-ack, udp, indirect, tcp-ack-sport, tcp-syn-sport, "
                       r"udp-dport$"):  # fmt: skip
        run_alias.experiment(args, lambda r: None, Progress())
    # indirect: each address it probes given as ADDR@DST:TTL; not in auto
    for argv, error in [
        (("--method", "indirect", "10.0.0.1", "10.0.0.2"),
         r"^--method indirect: give each address to probe indirectly as ADDR@DST:TTL "
         r"\(e\.g\. 10\.0\.0\.1@DST:TTL\)$"),
        (("--method", "indirect", "10.0.0.1@10.0.9.9:2", "10.0.0.2"),
         r"^--method indirect: 10\.0\.0\.2 has no destination and TTL to be probed through "
         r"\(give it as 10\.0\.0\.2@DST:TTL\)$"),
        (("10.0.0.1@10.0.9.9:2", "10.0.0.2"),
         r"^10\.0\.0\.1@10\.0\.9\.9:2: DST:TTL is for the indirect method, which --method "
         r"auto leaves out \(--method auto,indirect adds it\)$"),
        (("--method", "indirect", "10.0.0.1@10.0.9.9:256", "10.0.0.2@10.0.9.9:2"),
         r"^10\.0\.0\.1@10\.0\.9\.9:256: expected ADDR@DST:TTL, the TTL 1\.\.255$"),
        (("--method", "indirect", "10.0.0.1@nine:2", "10.0.0.2@10.0.9.9:2"),
         r"^10\.0\.0\.1@nine:2: 'nine' is not an IP address$"),
        (("--method", "indirect", "10.0.0.1@10.0.9.9:2", "10.0.0.1@10.0.9.9:3"),
         r"^10\.0\.0\.1 given twice, with different DST:TTL$"),
    ]:  # fmt: skip
        with pytest.raises(RunError, match=error):
            run_alias.experiment(parse("alias", *argv), lambda r: None, Progress())
    assert parse("alias", "10.0.0.1", "10.0.0.2").method == "auto"
    row = {"type": "ipid-series", "addr": "10.0.0.1", "samples": 10, "endpoints": 1,
           "usable": True, "ids_per_s": 300.0, "method": "udp",
           "methods": {"icmp-echo": None, "tcp-ack": 120.4, "udp": 300.0}}  # fmt: skip
    assert run_alias.row(row) == (
        "# 10.0.0.1: 10 samples from 1 endpoint(s), 300 IDs/s by udp (icmp-echo none, tcp-ack 120)"
    )
    one = {k: v for k, v in row.items() if k != "methods"}  # --method udp: as before
    assert run_alias.row(one) == "# 10.0.0.1: 10 samples from 1 endpoint(s), 300 IDs/s"
