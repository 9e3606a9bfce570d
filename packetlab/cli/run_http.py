"""``pktlab run http URL...``: HTTP(S) GET from the endpoint, TLS at the controller
(packetlab.measure.http)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run http https://example.com/            # certificate checked, like curl
  pktlab run http --cacert ca.pem https://10.77.3.2:8443/page/1
  pktlab run http --insecure https://10.77.3.2/   # no certificate check
  pktlab run http --connect-to 10.77.3.2 https://www.test/ --json

Host names are resolved through the endpoint's DNS server unless --connect-to gives the
address (the name still goes into SNI, the Host header and the certificate check).
Times are endpoint stamps from the start (TIME read before the nopen), like curl's
time_connect, time_appconnect, time_starttransfer and time_total.
Exit status: 0 all fetched (any HTTP status, as curl; with -f one of 400 or more fails),
1 some fetch failed (its record has "error"), 2 error.
See docs/http.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        help="http:// or https:// URLs (no scheme: http://, as curl)",
    )
    p.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    p.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server certificate"
    )
    p.add_argument(
        "--connect-to",
        metavar="ADDR",
        help="connect to ADDR instead of resolving the URL's host",
    )
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="resolve to IPv4")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="resolve to IPv6")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    p.add_argument(
        "-f", "--fail", action="store_true",
        help="an HTTP status of 400 or more is a failure (exit status 1), as curl -f",
    )  # fmt: skip
    pcapout.add_option(p)
    p.add_argument(
        "--max-time",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds per URL after the connect [default: 30]",
    )


def _headers(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise RunError(f"--header {item!r}: expected 'NAME: VALUE'")
        out.append((name.strip(), value.strip()))
    return out


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.http import http_get, parse_url

    for url in args.urls:
        parse_url(url)  # a bad URL is an error before anything starts
    headers = _headers(args.header)
    if args.cacert is not None:
        try:
            open(args.cacert, "rb").close()
        except OSError as e:
            raise RunError(f"--cacert {args.cacert}: {e.strerror or e}") from None

    recorder = pcapout.recorder_for(args)

    async def run(session: Any) -> None:
        for i, url in enumerate(args.urls, 1):
            if progress.stopping:  # Ctrl-C: no new URL
                return
            progress(f"http {i}/{len(args.urls)}: {url}")
            result = await http_get(
                session,
                url,
                connect_to=args.connect_to,
                family=args.family,
                cafile=args.cacert,
                insecure=args.insecure,
                timeout=args.max_time,
                headers=headers,
                recorder=recorder,
            )
            record = result.to_dict()
            if args.fail and result.status is not None and result.status >= 400:
                record["error"] = f"the server answered {result.status} {result.reason} (--fail)"
            emit(record)

    return pcapout.recording(args, recorder, run)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:.3f}"


def row(r: Record) -> str | None:
    if r["type"] == "summary":
        return f"# {r['fetched']} of {r['urls']} fetched, {r['bytes']} body bytes"
    if "error" in r and r.get("status") is not None:  # --fail: a response, but >= 400
        return f"{_fetched(r)}  {r['error']}"
    if "error" in r:
        return (  # the columns of a fetched URL, "-" where not reached
            f"{'ERR':>4}  {'-':>9}  {_ms(r.get('connect_us')):>8}  {_ms(r.get('tls_us')):>8}  "
            f"{'-':>8}  {'-':>8}  {r['url']}  {r['error']}"
        )
    return _fetched(r)


def _fetched(r: Record) -> str:
    return (
        f"{r['status']:>4}  {r['body_len']:>9}  {_ms(r.get('connect_us')):>8}  "
        f"{_ms(r.get('tls_us')):>8}  {_ms(r.get('first_byte_us')):>8}  "
        f"{_ms(r.get('total_us')):>8}  {r['url']}"
    )


HEADER = "  ".join(
    [f"{'code':>4}", f"{'bytes':>9}", *(f"{h:>8}" for h in ("conn ms", "tls ms", "ttfb ms")),
     f"{'total ms':>8}", "url"]
)  # fmt: skip


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "http"]
    ok = [r for r in got if "error" not in r]
    return {"urls": len(got), "fetched": len(ok), "bytes": sum(r["body_len"] for r in ok)}


def budget(args: argparse.Namespace) -> float:
    return len(args.urls) * (args.max_time + 15)


COMMAND = Command(
    name="http",
    help="HTTP and HTTPS GET (TLS at the controller)",
    description="GET each URL through an endpoint TCP socket. HTTPS runs TLS at the "
    "controller over that socket, with certificate and name verification (system store, "
    "or --cacert) and SNI. Prints status, body size and endpoint-stamped timings.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    split="urls",
    header=HEADER,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
