"""`pktlab broker status`: what a running `twistd pktbroker` holds (its HTTP/JSON status
page, `StatusListen` in broker.conf; docs/broker.md)."""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from packetlab.cli.exits import EXIT_ERROR

DEFAULT_URL = "http://127.0.0.1:20558/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show a running broker's channels (subscriber and publication counts), its live "
        "publications and its connections, from its status page (StatusListen in "
        "broker.conf; pktlab init sets tcp:20558 on loopback)."
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    st = sub.add_parser("status", help="print the broker's status")
    st.add_argument(
        "--url",
        help="status page, http://HOST:PORT/ or HOST:PORT (default: where StatusListen of "
        f"the home's broker.conf puts it, else {DEFAULT_URL})",
    )
    st.add_argument("--json", action="store_true", help="print the raw JSON")


def home_listens() -> dict[str, str | None]:
    """The home broker.conf's `PublishListen`, `SubscribeListen`, `StatusListen` (None
    when unset); {} without a readable broker.conf."""
    from packetlab.broker.config import DEFAULT_CONFIG_NAME, load_config
    from packetlab.ppks import PktlabHome

    try:
        if not (PktlabHome.at().root / DEFAULT_CONFIG_NAME).is_file():
            return {}
        c = load_config(None)
    except (ValueError, OSError, KeyError, TypeError):
        return {}
    return {"PublishListen": c.publish, "SubscribeListen": c.subscribe, "StatusListen": c.status}


def default_url() -> str:
    """The page StatusListen of the pktlab home's broker.conf puts up (the broker reads
    that file too), else `DEFAULT_URL`: a broker.conf with `StatusListen tcp:20600` made
    `pktlab broker status` look at 20558 and say no broker was there."""
    return status_url(home_listens()) or DEFAULT_URL


def status_url(listens: dict[str, str | None]) -> str | None:
    from packetlab.cli.broker_probe import listen_at

    at = listen_at(listens.get("StatusListen"))
    return None if at is None else f"http://{at[0]}:{at[1]}/"


def page_url(given: str) -> str:
    """The status page's URL from `--url`: `HOST:PORT` is `http://HOST:PORT/`, as curl
    reads it. ValueError for what no broker serves (urllib said `unknown url type` or,
    for ftp://, `Name or service not known`, then asked whether the broker was running)."""
    url = given if "://" in given else f"http://{given}"
    if "://" not in given and given.count(":") > 1 and "[" not in given:
        # urllib said `Port could not be cast to integer value as ':1:20558'`
        raise ValueError(f"--url {given!r}: an IPv6 address goes in brackets, [ADDR]:PORT")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError past 65535 (it was looked up as a service name)
    except ValueError as e:
        raise ValueError(f"--url {given!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url {given!r}: not an http:// URL (StatusListen serves HTTP)")
    if not parts.hostname or any(c.isspace() for c in parts.netloc):
        raise ValueError(f"--url {given!r}: no host name (http://HOST:PORT/)")
    if port == 0:
        raise ValueError(f"--url {given!r}: port 0")
    if "%" not in parts.netloc:  # (hostname is lower-cased: a zone's case is lost)
        from packetlab.hostport import zone_problem

        problem = zone_problem(parts.hostname)
        if problem is not None:  # urlopen said `Invalid argument (is twistd pktbroker ...`
            raise ValueError(f"--url {given!r}: {problem}")
    return url if parts.path else f"{url}/"


def page_problem(st: dict[str, Any]) -> str | None:
    """Why a JSON object is not a broker's status page (`registry.status` always has these
    two lists), else None: another service's JSON printed an empty status, exit 0, and a
    wrong type in it a traceback."""
    for key in ("channels", "publications"):
        if not isinstance(st.get(key), list):
            return f'no "{key}" list'
    return None


# Above any broker's page: 10,000 live publications (MaxPublications' default) of a 4 KiB
# xdescr whose every byte JSON escapes (\ufffd) is ~250 MB.
MAX_PAGE = 512 << 20
PAGE_SECONDS = 60.0  # for the whole page (`timeout` is each read's)


class NotAPage(ValueError):
    """What came from the URL is no broker's status page; the message says why."""


def fetch(url: str, timeout: float = 5.0) -> Any:
    """The JSON of the page at `url`. An endless page was read into memory until a
    MemoryError, one sent a byte at a time was waited for forever, JSON nested deep was
    a RecursionError traceback: NotAPage, each."""
    import time

    deadline, data = time.monotonic() + PAGE_SECONDS, bytearray()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        while chunk := r.read1(1 << 16):
            data += chunk
            if len(data) > MAX_PAGE:
                raise NotAPage(f"over {MAX_PAGE >> 20} MiB")
            if time.monotonic() > deadline:
                raise NotAPage(f"not whole after {PAGE_SECONDS:.0f} s")
    try:
        return json.loads(data)
    except RecursionError:
        raise NotAPage("not JSON: nested too deeply") from None
    except ValueError as e:
        if "integer string conversion" in str(e):  # (and then sys.set_int_max_str_digits)
            raise NotAPage("not JSON: a number of more than 4300 digits") from None
        raise NotAPage(f"not JSON: {e}") from None


def render(st: dict[str, Any]) -> str:
    conns = st.get("connections", {})
    cap = st.get("link_max") or {}  # from the descriptor limit (session 30)
    share = st.get("address_share") or {}  # one address's part of it (session 31)
    site = st.get("site_share") or {}  # one IPv6 /48's (session 33)
    refused = {p: (c or {}).get("refused_share", 0) for p, c in st.get("counters", {}).items()}

    def most(port: str) -> str:
        if not cap.get(port):
            return ""
        one = f", {share[port]} from one address" if share.get(port) else ""
        if share.get(port) and share[port] < site.get(port, 0) < cap[port]:  # (else no news)
            one += f", {site[port]} from one IPv6 /48"
        gone = f", {refused[port]} refused for it" if refused.get(port) else ""
        return f" (at most {cap[port]} past the handshake{one}{gone})"

    lines = [
        f"listening: {', '.join(f'{k} {v}' for k, v in st.get('listening', {}).items())}",
        f"connections: {conns.get('publish', 0)} publisher(s){most('publish')}, "
        f"{conns.get('subscribe', 0)} subscriber(s){most('subscribe')}; "
        f"{st.get('endpoints', 0)} endpoint key(s) subscribed; "
        f"{st.get('notified', 0)} notification(s) sent",
        "",
        f"{'CHANNEL':<66} {'KIND':<8} {'SUBS':>6} {'PUBS':>6}",
    ]
    for ch in st.get("channels", []):
        kind = "private" if ch["private"] else "public"
        lines.append(
            f"{ch['channel']:<66} {kind:<8} {ch['subscribers']:>6} {ch['publications']:>6}"
        )
    pubs = st.get("publications", [])
    lines += ["", f"{len(pubs)} live publication(s)"]
    for p in pubs:
        lines.append(
            f"  #{p['id']} prio {p['priority']} delivered {p['delivered']} "
            f"from {p['publisher']}: {p['xdescr']}"
        )
    counters = st.get("counters")
    if isinstance(counters, dict):  # a broker before session 26 has none
        lines += ["", f"since {st.get('since', 'start')}:"]
        for port, c in counters.items():
            lines.append(f"  {port} port: {_counts_text(c)}")
    return "\n".join(lines)


def _counts_text(c: dict[str, Any]) -> str:
    """`links 12, xsub 10, refused ESUBBADCHN 2, closed idle 1`: what a port did."""
    parts = [f"links {c.get('links', 0)}"]
    parts += [f"{k} {n}" for k, n in c.get("taken", {}).items()]
    for name in ("refused", "closed", "publications_ended"):
        parts += [f"{name.replace('_', ' ')} {k} {n}" for k, n in c.get(name, {}).items()]
    if c.get("cut_frames"):
        parts.append(f"cut frames {c['cut_frames']}")
    if c.get("refused_share"):  # (also in `refused`, by status)
        parts.append(f"refused for the address share {c['refused_share']}")
    return ", ".join(parts)


def _unreachable(url: str, given: str | None, e: Exception, why: object) -> str:
    """The error line's text for a page that did not come: what answered instead when a
    server did (a TLS port, a plain HTTP server), else the reason and what to check."""
    from packetlab.cli.broker_probe import what_answered

    listens = home_listens()
    reason = getattr(e, "reason", e)
    # A TLS port closes on the plain request, and its certificate is no web CA's (a silent
    # port, refused or unknown host: not probed, no wait); a plain server at https:// was
    # told before the fetch
    if url.startswith("https:"):
        odd = isinstance(reason, ssl.SSLCertVerificationError)
    else:
        odd = isinstance(reason, ConnectionResetError | http.client.HTTPException)
    if odd:
        found = what_answered(url, listens, status_url(listens))
        if found is not None:
            return f"{url}: {found}"
    if given is None and listens and listens.get("StatusListen") is None:
        return (
            f"no broker status at {url}: {why} (StatusListen is not set in the home's "
            "broker.conf: the broker serves no status page; pktlab init sets "
            "tcp:20558:interface=127.0.0.1)"
        )
    return (
        f"no broker status at {url}: {why} (is twistd pktbroker running, with "
        "StatusListen set in its broker.conf?)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        url = page_url(args.url) if args.url else default_url()
    except ValueError as e:
        print(f"pktlab broker status: {e}", file=sys.stderr)
        return EXIT_ERROR
    from packetlab.cli.broker_probe import plain_http_at

    if (plain := plain_http_at(url)) is not None:  # else the handshake's 5 s timeout
        print(f"pktlab broker status: {url}: {plain}", file=sys.stderr)
        return 1
    try:
        st = fetch(url)
        if not isinstance(st, dict):
            raise NotAPage("JSON, but not an object")
    except (json.JSONDecodeError, NotAPage) as e:  # was "Expecting value: line 1 ..."
        said = e if isinstance(e, NotAPage) else f"not JSON: {e}"
        print(
            f"pktlab broker status: {url} is not a broker's status page ({said}); "
            "StatusListen in broker.conf says where it is",
            file=sys.stderr,
        )
        return 1
    except (urllib.error.URLError, OSError, ValueError) as e:
        # "<urlopen error [Errno 111] Connection refused>": the reason, in words
        reason = getattr(e, "reason", None)
        why = getattr(reason, "strerror", None) or reason or e
        print(f"pktlab broker status: {_unreachable(url, args.url, e, why)}", file=sys.stderr)
        return 1
    problem, text = page_problem(st), ""
    if problem is None:
        try:
            text = json.dumps(st, indent=2) if args.json else render(st)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            problem = f"no {e} in an entry" if isinstance(e, KeyError) else str(e)
    if problem is not None:
        print(
            f"pktlab broker status: {url} is not a broker's status page ({problem}); "
            "StatusListen in broker.conf says where it is",
            file=sys.stderr,
        )
        return 1
    print(text)
    return 0
