"""Fuzz targets for the parsing code session 28's first round added (fuzz28): DNS record
data (`dnsparse.rdata_fault`), `run http`'s option values (--proto, the dash-leading
grouping, -Y/-y) and its speed check, `run throughput`'s sizes, rates and --server, and
broker mode's files (endpt.conf's keys, `tls.agent_leaf_error`). The invariants are in
each target's docstring; `fuzz_decoders` lists them. Nothing of packetlab is imported at
the top (stress/fuzz.py instruments it first)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------- DNS rdata


def fuzz_rdata(data: bytes) -> None:
    """Any bytes as a DNS message: `rdata_fault` is None or (kind, start, data start,
    records read whole per section) with the kind one of three, 12 <= start < data start
    <= the message's length and each count within its header's; `_best_effort` (the
    record paths around it: what BIND keeps of a message cut short) then gives the
    message or None, nothing else."""
    from packetlab.measure import dnsparse

    if len(data) < 12:
        return
    try:
        fault = dnsparse.rdata_fault(data)
    except dnsparse._Malformed:  # (the walk's own refusal, as _parse's)
        fault = None
    if fault is not None:
        kind, start, at, before = fault
        assert kind in ("short", "long", "formerr"), fault
        assert 12 <= start < at <= len(data), fault
        counts = struct.unpack(">4H", data[4:12])
        assert all(0 <= b <= c for b, c in zip(before, counts, strict=True)), (fault, counts)
    out = dnsparse._best_effort(data)
    assert out is None or isinstance(out, dnsparse.dns.message.Message)


def _rdata_seeds() -> list[bytes]:
    import dns.message
    import dns.rrset

    m = dns.message.make_response(dns.message.make_query("example.com.", "A"))
    m.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "A", "192.0.2.1"))
    m.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "TXT", '"hello" "x"'))
    m.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "SOA",
                                           "ns. host. 1 2 3 4 5"))  # fmt: skip
    m.additional.append(dns.rrset.from_text("example.com.", 60, "IN", "SSHFP", "1 1 " + "ab" * 20))
    whole = m.to_wire()
    short = whole[:-3]  # the SSHFP's fingerprint cut inside its RDLENGTH's reach
    return [whole, short, whole[:40]]


# --------------------------------------------------------------------- run http options


def _words(data: bytes, n: int = 8) -> list[str]:
    """The input as up to `n` argv words (split at NUL), surrogates for non-UTF-8."""
    return data.decode("utf-8", "surrogateescape").split("\x00")[:n]


def fuzz_http_opts(data: bytes) -> None:
    """Any text as --proto/--proto-redir (`protocols`): a subset of curl's protocols or a
    RunError; as argv (`_groups` over run http's own parser): a word list that keeps
    every word's text in order (a joined `--opt=-v` / `-d-x` stands for two; a --next
    before a URL dropped), and
    argparse then parses it or exits 2 (SystemExit), nothing else; -Y/-y (`_count`), the
    sizes (`_size`, `_rate`): a whole number >= 0 or ArgumentTypeError; the speed check
    fed the input as (time step, bytes) pairs raises TooSlow only after `time` s below
    the limit, and its next check is not before now."""
    import argparse

    from packetlab.cli.run import RunError
    from packetlab.cli.run_http_args import _count, _groups, _size, _takes_value
    from packetlab.cli.run_http_opts import CURL_PROTOCOLS, protocols
    from packetlab.measure.http_speed import LowSpeed, TooSlow

    text = data.decode("utf-8", "surrogateescape")
    try:
        got = protocols(text, frozenset(CURL_PROTOCOLS), lambda _: None)
        assert got <= CURL_PROTOCOLS
    except RunError as e:
        assert "--proto" in str(e)
    for parse in (_count, _size):
        try:
            n = parse(text)
        except argparse.ArgumentTypeError as e:
            assert str(e)
        else:
            assert isinstance(n, int) and n >= 0, (text, n)
    parser = _http_parser()
    words = _words(data)
    out = _groups(words, _takes_value(parser))
    _same_words(words, out)
    try:
        parser.parse_args(out)
    except (SystemExit, argparse.ArgumentError):  # (exit_on_error=False: a value's error)
        pass
    # the speed check: limit and time from the first bytes, then steps of 0..2.55 s
    if len(data) >= 2:
        total = [0]
        check = LowSpeed(limit=data[0] * 10, time=data[1] % 8, count=lambda: total[0])
        now = 0.0
        for i in range(2, len(data) - 1, 2):
            now += data[i] / 100
            total[0] += data[i + 1] * 7
            try:
                check.check(now)
            except TooSlow:
                assert check.below is not None and now - check.below >= check.time
                break
            # (>=: start + k can round to now itself, one extra wake-up: not a defect)
            assert check.next_check(now) >= now, (now, check)


def _same_words(words: list[str], out: list[str]) -> None:
    """`out` is `words` in order, a word and its dash-leading value joined (`--opt=-v`,
    `-d-x`), a -:/--next standing alone before a URL dropped; nothing else changed."""
    j = 0
    for o in out:
        while j < len(words) and o != words[j] and words[j] in ("-:", "--next"):
            if j + 1 < len(words) and o in (words[j] + words[j + 1], f"{words[j]}={words[j + 1]}"):
                break
            j += 1  # (dropped: no URL before it)
        pair = (words[j] + words[j + 1], f"{words[j]}={words[j + 1]}") if j + 1 < len(words) else ()
        if j < len(words) and o == words[j]:
            j += 1
        elif o in pair:
            j += 2
        else:
            raise AssertionError(f"{out} is not {words} grouped")
    assert all(w in ("-:", "--next") for w in words[j:]), (words, out)


_PARSER: Any = None


def _http_parser() -> Any:
    global _PARSER
    if _PARSER is None:
        from packetlab.cli import _Parser
        from packetlab.cli.run_http_args import configure

        p = _Parser(prog="pktlab run http", exit_on_error=False)  # (the command's class)
        configure(p)
        # (the words grouped by the target itself: read_words would also read -K files,
        # `-K -` stdin)
        p.read_words = None  # type: ignore[attr-defined]
        _PARSER = p
    return _PARSER


def _http_opts_seeds() -> list[bytes]:
    return [
        b"-all,http",
        b"=https,+http,-ftp",
        b"all,-http,gopher,unknown",
        b"++",
        b"--proto\x00-all,http\x00http://x/",
        b"-d\x00-x\x00--next\x00http://a/\x00-:\x00-Y\x00100",
        b"\xff\x03\x01\x10\x00\x20\x00\x05\x00\x50\x00",
        b"10K",
        b"12",
    ]


# ----------------------------------------------------------------- run throughput values


def fuzz_throughput_opts(data: bytes) -> None:
    """Any text as run throughput's values: the sizes (`size`, `nbytes`, `length`,
    `count`, `pacing_timer`, `rcv_timeout`) an int in their range or
    ArgumentTypeError; -b (`rate`, `parse_rate_burst`) a finite rate >= 0 or
    ArgumentTypeError / ValueError; --server (`split_host_port`, names never looked up
    here) an (address, 1..65535) or RunError; nothing else."""
    import argparse
    import math

    from packetlab.cli import run as run_mod
    from packetlab.cli import run_throughput as rt
    from packetlab.cli.run import RunError
    from packetlab.measure.iperf3 import parse_rate_burst

    text = data.decode("utf-8", "surrogateescape")
    for parse in (rt.size_of, rt.size, rt.nbytes, rt.length, rt.count, rt.pacing_timer,
                  rt.rcv_timeout):  # fmt: skip
        try:
            n = parse(text)
        except argparse.ArgumentTypeError as e:
            assert str(e)
        else:
            assert isinstance(n, int), (parse, text, n)
    for read in (rt.rate, lambda t: parse_rate_burst(t)[0]):
        try:
            r = read(text)
        except (argparse.ArgumentTypeError, ValueError) as e:
            assert str(e)
        else:
            assert math.isfinite(r) and r >= 0, (text, r)

    def no_lookup(target: str, family: int | None, like: str | None = None) -> Any:
        raise RunError(f"cannot resolve {target!r}: Name or service not known")

    saved = run_mod.resolve_target
    run_mod.resolve_target = no_lookup
    try:
        host, port = rt.split_host_port(text, 5201)
    except RunError as e:
        assert str(e).startswith("--server ")
    else:
        assert host and 1 <= port <= 65535, (text, host, port)
    finally:
        run_mod.resolve_target = saved


def _throughput_seeds() -> list[bytes]:
    return [
        b"25M",
        b"1.5GiB",
        b"128K",
        b"10M/5",
        b"127.0.0.1:5201",
        b"[::1]:5202",
        b"1e3",
        b"inf",
        b"1e308T",
        b"10.0.0.2:\xc2\xb2",
    ]  # (the findings: test_fuzz.py)


# ------------------------------------------------------------------- broker mode's files


_HOME: list[Any] = []
_FILES = ("agent.cert", "agent.key", "root.pub", "eop.pub", "sub.cert")


def _home() -> tuple[Path, str]:
    """A home made once per process (init_home), its broker-mode files copied to a
    scratch directory the target overwrites one of; endpt.conf's text pointing at them."""
    if not _HOME:
        import atexit
        import shutil

        from packetlab.cli.init import init_home
        from packetlab.endpoint.config import load_config
        from packetlab.ppks import PktlabHome

        scratch = Path(tempfile.mkdtemp(prefix="fuzz28-broker-"))
        atexit.register(shutil.rmtree, scratch, True)  # (the CI slice's too: none left)
        home = PktlabHome.at(scratch / "home")
        init_home(home)
        cfg = load_config(home.root / "endpt.conf")
        assert cfg.agent_cert and cfg.private_key
        sources = [cfg.agent_cert, cfg.private_key, cfg.broker_roots[0],
                   cfg.eop_pubkeys[0], cfg.subpriv_chain[0]]  # fmt: skip
        originals = [Path(p).read_bytes() for p in sources]
        text = (home.root / "endpt.conf").read_text()
        text += "".join(
            f"{key} {scratch / name}\n"
            for key, name in zip(
                ("EndpointAgentCertPath", "EndpointPrivKey", "BrokerChainRootPath",
                 "EndpointOpPubKeyPath", "SubPrivCertChainPath"),
                _FILES,
                strict=True,
            )
        )  # fmt: skip
        _HOME.extend([scratch, text, originals])
    return _HOME[0], _HOME[1]


def fuzz_broker_files(data: bytes) -> None:
    """Any bytes as one of broker mode's files (a first byte under 0x80 picks which: our
    agent certificate, its key, a broker root key, an operator key, the subscription
    chain; the others valid): `BrokerSettings.from_config` gives settings or a
    ConfigError that starts `broker mode: ` and names the key, nothing else. The bytes
    as a certificate that parses: `agent_leaf_error` None for an agent one, else a line
    naming it. A first byte of 0x80 or more: one more key line (`_broker_key_line`)."""
    from packetlab.endpoint.config import ConfigError, parse_config
    from packetlab.endpoint.subscriber import BrokerSettings
    from packetlab.ppks import CertificateError, load_certificates
    from packetlab.tls import agent_leaf_error

    if not data:
        return
    scratch, text = _home()
    if data[0] >= 0x80 and len(data) >= 2:
        _broker_key_line(data, text)
        return
    which = data[0] % len(_FILES)
    for i, (name, original) in enumerate(zip(_FILES, _HOME[2], strict=True)):
        (scratch / name).write_bytes(data[1:] if i == which else original)
    cfg = parse_config(text.splitlines(), "endpt.conf")
    try:
        BrokerSettings.from_config(cfg)
    except ConfigError as e:
        said = str(e)
        assert said.startswith("broker mode: "), said
        assert "\n" not in said and "Traceback" not in said, said
    try:
        certs = load_certificates(data[1:])
    except CertificateError:
        return
    for c in certs:
        wrong = agent_leaf_error(c, "EndpointAgentCertPath", "broker")
        assert (wrong is None) == (c.cert_type.label == "agent"), (wrong, c.cert_type)


_BROKER_KEYS = ("BrokerAddr", "BrokerChannel", "AutoExtractChannel", "EndpointAttr",
                "BrokerChainRootPath", "EndpointOpPubKeyPath", "SubPrivCertChainPath",
                "EndpointAgentCertPath", "NoSubMode")  # fmt: skip


def _broker_key_line(data: bytes, text: str) -> None:
    """One more endpt.conf line (a broker-mode key, picked by the second byte; the rest
    its value) after the valid files' keys: a ConfigError naming the file and line, or
    from the settings one starting `broker mode` or naming the key; nothing else."""
    from packetlab.endpoint.config import ConfigError, parse_config
    from packetlab.endpoint.subscriber import BrokerSettings

    for name, original in zip(_FILES, _HOME[2], strict=True):
        (_HOME[0] / name).write_bytes(original)
    key = _BROKER_KEYS[data[1] % len(_BROKER_KEYS)]
    value = data[2:].decode("utf-8", "surrogateescape")
    lines = [*text.splitlines(), f"{key} {value}"]
    try:
        cfg = parse_config(lines, "endpt.conf")
    except ConfigError as e:
        assert str(e).startswith("endpt.conf:"), str(e)
        return
    try:
        BrokerSettings.from_config(cfg)
    except ConfigError as e:
        said = str(e)
        assert said.startswith(("broker mode", "endpt.conf:")) or key in said, said


def _broker_file_seeds() -> list[bytes]:
    _home()
    keys = [b"\x80\x00127.0.0.1:20557", b"\x80\x01ab,,00ff", b"\x80\x02 1", b"\x80\x03k=v",
            b"\x80\x04/nonexistent/root.pub", b"\x80\x08 1"]  # fmt: skip
    return [bytes([i]) + original for i, original in enumerate(_HOME[2])] + keys
