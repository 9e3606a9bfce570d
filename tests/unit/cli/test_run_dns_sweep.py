"""`pktlab run dns` where session 18 (dig18) found it apart from dig 9.18.49, side by side
(tests/integration/test_dns_sweep_dig.py): +tls with +https, +notls, +tries=0/+time=0, -p
alone (resolv.conf's servers), +short +noshort, an unusable client certificate with
--dig-exit-codes, ANY over TCP, -6 with IPv4 servers, -q, -u, -x of a non-address, the
remarks +nocomments hides, a TCP retry's server cookie, dig's banner without words.
Through the scripted endpoint (ctl_fakes.Rig); the expected texts are dig's."""

from __future__ import annotations

import argparse
import io
import struct
import sys
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig
from twisted.internet.defer import Deferred

import packetlab.cli as cli
from packetlab.cli import run_dns, run_dns_dig, run_dns_exits, run_dns_switches, run_dns_words
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, begun, measure
from packetlab.controller.stop import StopSignal
from packetlab.wire import Nopen, Nsend, Proto

PORT = 48002
COOKIE = bytes.fromhex("0100000069a5c3d20123456789abcdef")  # the server's part


def parse(*argv: str) -> argparse.Namespace:
    a = cli.parse(["run", "dns", *argv])
    a.cmdline = list(argv)
    run_dns_words.dig_style(a)
    return a


def answer(query: bytes, tc: bool = False, records: int = 2) -> bytes:
    """dns_zone_server.py's way: the question's name with A records (none when `tc`),
    AA, its client cookie echoed with a fixed server cookie."""
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA | (dns.flags.TC if tc else 0)
    sent = [o for o in q.options if o.otype == dns.edns.OptionType.COOKIE]
    if sent:
        mine = sent[0].to_wire()[:8]
        r.use_edns(
            0, 0, 1232, options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, mine + COOKIE)]
        )
    if not tc:
        for i in range(records):
            r.answer.append(
                dns.rrset.from_text(q.question[0].name, 300, "IN", "A", f"192.0.2.{i + 1}")
            )
    return r.to_wire()


def framed(query: bytes) -> list[bytes]:
    r = answer(query[2:])
    return [struct.pack(">H", len(r)) + r]


def run(rig: Rig, *argv: str) -> tuple[str, list[dict[str, Any]]]:
    """What `pktlab run dns ARGV` prints through the rig, and the records emitted."""
    args = cli.parse(["run", "dns", *argv])
    args.cmdline = list(argv)
    out = io.StringIO()
    records: list[dict[str, Any]] = []

    async def link(reactor: object, a: argparse.Namespace, emit: Any, p: Progress) -> None:
        def keep(r: dict[str, Any]) -> None:
            records.append(r)
            emit(r)

        await begun(a._command.experiment(a, keep, p), p)(rig.session)

    rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), out, run=link)))
    return out.getvalue(), records


def opened(rig: Rig) -> list[tuple[int, int | None]]:
    """Each socket the endpoint opened: (protocol, remote port)."""
    return [(m.proto, m.rport) for m in rig.endpoint.received if isinstance(m, Nopen)]


def test_tls_wins_over_https_as_dig() -> None:
    """dig 9.18.49: +tls with +https (either order) asks over DoT, port 853 (ours asked
    over DoH, 443); +notls (and +notls-ca, ...) after +https is plain DNS over UDP
    unless +tcp was given."""
    refused = ";; Connection to 127.0.0.1#853(127.0.0.1) for a.test failed: connection refused.\n"
    for words in (["+tls", "+https"], ["+https", "+tls"], ["+tls", "+http-plain"]):
        rig = Rig()
        out, _ = run(rig, "@127.0.0.1", "+tries=1", *words, "a.test")
        assert out == refused + ";; no servers could be reached\n", words
        assert opened(rig) == [(Proto.TCP, 853)]
    for words in (["+https", "+notls"], ["+https", "+notls-ca"], ["+tls", "+notls-hostname"]):
        a = parse("@127.0.0.1", *words, "a.test")
        assert (a.tls, a.doh) == (False, None), words
    a = parse("@127.0.0.1", "+https", "+tcp", "+notls", "a.test")
    assert (a.tls, a.doh) == (False, "https")  # dig: DoH all the same
    for words in (["+tls", "+notcp"], ["+notcp", "+https"], ["+tls-ca", "+notcp"]):
        rig = Rig()  # +notcp, before or after: plain DNS over UDP to port 53, as dig
        run(rig, "@127.0.0.1", "+tries=1", *words, "a.test")
        sent = [(m.proto, m.rport) for m in rig.endpoint.received if isinstance(m, Nsend)]
        assert sent == [(Proto.UDP, 53)], words


def test_zero_tries_and_time_are_one_as_dig() -> None:
    a = parse("@127.0.0.1", "+tries=0", "+time=0", "a.test")
    assert (a.tries, a.wait) == (1, 1.0)
    assert parse("@127.0.0.1", "+timeout=0", "+retry=0", "a.test").wait == 1.0
    for word in ("+tries=-1", "+retry=-1", "+time=-1"):  # dig: Couldn't parse, exit 10
        with pytest.raises(RunError) as e:
            parse("@127.0.0.1", word, "a.test")
        assert getattr(e.value, "dig_status", None) == 10, word


def test_a_port_alone_asks_resolv_confs_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-p PORT without a server: resolv.conf's nameservers at that port, in order (was
    refused); PKTLAB_RESOLV_CONF names another resolv.conf; none in it: ::1 and
    127.0.0.1, as BIND's resolver."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("search x.test\nnameserver 127.0.0.2\nnameserver ::1\nnameserver 127.0.0.1\n")
    monkeypatch.setenv(run_dns_switches.RESOLV_CONF_ENV, str(conf))
    assert parse("-p", str(PORT), "a.test").servers == ["127.0.0.2", "::1", "127.0.0.1"]
    assert parse("-4", "-p", str(PORT), "a.test").servers == ["127.0.0.2", "127.0.0.1"]
    assert parse("-6", "-p", str(PORT), "a.test").servers == ["::1"]
    conf.write_text("# none\n")
    assert parse("-p", str(PORT), "a.test").servers == ["::1", "127.0.0.1"]
    conf.write_text("nameserver 127.0.0.2\n")  # none of -6's family: ::1, as dig
    assert parse("-6", "-p", str(PORT), "a.test").servers == ["::1"]
    conf.write_text("nameserver 127.0.0.1\n")
    rig = Rig()
    rig.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q)]
    out, _ = run(rig, "-p", str(PORT), "a.test")
    assert out.startswith(f"\n; <<>> pktlab {_version()} <<>> -p {PORT} a.test\n;; global options")
    assert f";; SERVER: 127.0.0.1#{PORT}(127.0.0.1) (UDP)\n" in out  # (no "server found")


def _version() -> str:
    from packetlab import __version__

    return __version__


def test_short_then_noshort_leaves_the_answer_section_as_dig() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q)]
    out, _ = run(rig, "@127.0.0.1", "-p", str(PORT), "+short", "+noshort", "a.test")
    assert out == "a.test.\t\t\t300\tIN\tA\t192.0.2.1\na.test.\t\t\t300\tIN\tA\t192.0.2.2\n"
    a = parse("@127.0.0.1", "+short", "+noshort", "+comments", "a.test")
    assert not a.short and [k for k, on in a.show.items() if on] == ["comments", "answer"]


def test_an_unusable_client_certificate_with_dig_exit_codes(tmp_path: Path) -> None:
    """dig 9.18.49: `;; TLS context cannot be created` for each TLS lookup, the exit
    status as it was (0); ours without --dig-exit-codes: an error, nothing sent."""
    bad, key = tmp_path / "bad.pem", tmp_path / "key.pem"
    bad.write_text("not a certificate\n")
    key.write_text("not a key\n")
    words = ["@127.0.0.1", f"+tls-certfile={bad}", f"+tls-keyfile={key}", "a.test", "b.test"]
    rig = Rig()
    out, records = run(rig, "--dig-exit-codes", *words)
    assert out == ";; TLS context cannot be created\n" * 2 and opened(rig) == []
    args = parse("--dig-exit-codes", *words)
    assert run_dns_exits.status(args, records, 1) == 0
    with pytest.raises(RunError, match="cannot be used"):
        run_dns.experiment(parse(*words), lambda r: None, Progress())


def test_any_is_asked_over_tcp_as_dig() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[("127.0.0.1", PORT)] = framed
    rig.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q)]
    out, _ = run(rig, "@127.0.0.1", "-p", str(PORT), "a.test", "ANY", "b.test")
    assert "(127.0.0.1) (TCP)\n" in out and "(127.0.0.1) (UDP)\n" in out
    assert [p for p, _ in opened(rig)] == [Proto.TCP, Proto.UDP]  # b.test: A, over UDP
    rig = Rig()
    rig.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q)]
    run(rig, "@127.0.0.1", "-p", str(PORT), "+notcp", "a.test", "ANY")
    assert [p for p, _ in opened(rig)] == [Proto.UDP]


def test_dash_6_skips_ipv4_servers_as_dig() -> None:
    """-6 @127.0.0.1 @::1: dig's `Skipping mapped address` line before each lookup and
    the answer from ::1 (was an error, nothing asked); -6 with IPv4 servers only: that
    line and `No acceptable nameservers`, exit 0 with --dig-exit-codes."""
    rig = Rig()
    rig.endpoint.udp_servers[("::1", PORT)] = lambda q: [answer(q)]
    out, _ = run(rig, "-6", "@127.0.0.1", "@::1", "-p", str(PORT), "+short", "a.test", "b.test")
    skip = ";; Skipping mapped address '::ffff:127.0.0.1'\n"
    assert out == (skip + "192.0.2.1\n192.0.2.2\n") * 2
    out, records = run(Rig(), "--dig-exit-codes", "-6", "@127.0.0.1", "a.test")
    assert out == skip + ";; No acceptable nameservers\n"
    assert run_dns_exits.status(parse("--dig-exit-codes", "a.test"), records, 1) == 0
    with pytest.raises(RunError, match="-4: the server ::1 is not an IPv4 address"):
        run_dns.experiment(parse("-4", "@::1", "a.test"), lambda r: None, Progress())


def test_dash_q_u_r_m_i_as_dig() -> None:
    a = parse("-q", "MX", "-q", "mx.test", "MX", "-r", "-m", "-i")
    assert [(n, t) for n, t, _, _ in a.plan] == [("MX", None), ("mx.test", ["MX"])]
    rig = Rig()
    rig.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q)]
    out, _ = run(rig, "@127.0.0.1", "-p", str(PORT), "-u", "a.test")
    assert ";; Query time: 0 usec\n" in out
    out, _ = run(rig, "@127.0.0.1", "-p", str(PORT), "-u", "+short", "+identify", "a.test")
    assert (
        out
        == "192.0.2.1 from server 127.0.0.1 in 0 us.\n192.0.2.2 from server 127.0.0.1 in 0 us.\n"
    )
    with pytest.raises(RunError, match=r"^-b 127\.0\.0\.1: not built"):
        parse("-b", "127.0.0.1", "a.test")


def test_reverse_of_a_non_address_as_dig() -> None:
    for value, name in (
        ("192.0.2.300", "300.2.0.192.in-addr.arpa."),
        ("foo.bar", "bar.foo.in-addr.arpa."),
        ("10", "10.in-addr.arpa."),
    ):
        assert parse("-x", value).plan[0][0] == name


def test_truncated_retry_as_dig() -> None:
    """A truncated reply: `;; Truncated, retrying in TCP mode.` only with +comments (not
    with +short, +nocomments, +noall); the TCP query carries the server's cookie (dig's
    own cookie; a +cookie=HEX stays)."""

    def rig() -> Rig:
        r = Rig()
        r.endpoint.udp_servers[("127.0.0.1", PORT)] = lambda q: [answer(q, tc=True)]
        r.endpoint.tcp_servers[("127.0.0.1", PORT)] = framed
        return r

    at = ["@127.0.0.1", "-p", str(PORT)]
    assert run(rig(), *at, "+short", "a.test")[0] == "192.0.2.1\n192.0.2.2\n"
    assert run(rig(), *at, "+noall", "+answer", "a.test")[0].startswith("a.test.")
    assert run(rig(), *at, "a.test")[0].startswith(";; Truncated, retrying in TCP mode.\n\n")
    for words, cookie in (([], COOKIE), (["+cookie=0123456789abcdef"], b"")):
        r = rig()
        run(r, *at, *words, "a.test")
        udp, tcp = [m.data for m in r.endpoint.received if isinstance(m, Nsend)]
        cookies = [[o.to_wire() for o in dns.message.from_wire(w).options] for w in (udp, tcp[2:])]
        assert cookies[1] == [cookies[0][0] + cookie], words


def test_a_banner_without_words_ends_as_digs() -> None:
    a = parse("@127.0.0.1", "a.test")
    a.cmdline = []
    line = run_dns_dig.DigText(a).banner()[1]
    assert line == f"; <<>> pktlab {_version()} <<>>"  # (had a space after it)
