"""The run of `pktlab run http`: its transfers one after another or in parallel (-Z),
each through `packetlab.measure.http`, with curl's output, retries and exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import IO, Any

from packetlab.cli import pcapout
from packetlab.cli import run_http_etag as etag
from packetlab.cli.curl_output import Output, RemoteName, is_stdout
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Emit, Experiment, Progress
from packetlab.cli.run_http_args import (
    CONNECT_TIMEOUT,
    GLOBAL,
    PARALLEL_LIMIT,
    PARALLEL_MAX,
    USER_AGENT,
)
from packetlab.cli.run_http_body import (
    _headers,
    _url_query,
    bodies,
    cookie_options,
    is_json,
    json_fields,
    request_body,
    stdin_owner,
    user_password,
    with_query,
)
from packetlab.cli.run_http_files import _check_output, _save, transfers
from packetlab.cli.run_http_opts import (
    CURL_PROTOCOLS,
    REDIR_PROTOCOLS,
    HeaderDump,
    byte_range,
    connect_to_entries,
    curl_warning,
    custom_request_note,
    protocols,
    referer,
    resolve_entries,
    time_cond,
)
from packetlab.cli.run_http_retry import Retry
from packetlab.cli.run_http_writeout import (
    _TOKEN,
    format_warnings,
    write_out,
    write_out_format,
    write_out_values,
)
from packetlab.clockstep import steady

TRUNCATE = "Failed to truncate file"  # curl's (23) when --retry cannot empty the -o file


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    """The run: each -:/--next group of options (`args.next_groups`) in turn, its URLs
    with its options, the global ones the same for all (curl's), over one connection
    cache; every group checked before anything is sent."""
    from packetlab.measure.http import Connections

    groups = [args, *getattr(args, "next_groups", [])]
    if any(g.write_out is not None for g in groups):  # curl's output: also without -w
        for group in groups:
            group.write_out = "" if group.write_out is None else group.write_out
    for group in groups[1:]:  # curl's global options: one value for all, the last given
        for name in GLOBAL:
            if name == "trace_opts":
                args.trace_opts = [*args.trace_opts, *group.trace_opts]
            elif getattr(group, name, None) not in (None, False, [], PARALLEL_MAX):
                setattr(args, name, getattr(group, name))
    shared: dict[str, Any] = {"recorder": pcapout.recorder_for(args), "failed": []}
    runs = [_group(args, emit, progress, shared)]  # (its --stderr FILE opened: once)
    for group in groups[1:]:
        for name in GLOBAL:
            setattr(group, name, getattr(args, name, None))
        group.stderr = None
        for name in ("_stdout", "_stderr"):  # (a test's streams)
            if hasattr(args, name):
                setattr(group, name, getattr(args, name))
        runs.append(_group(group, emit, progress, shared))

    async def run(session: Any) -> None:
        # kept open from URL to URL (and group to group), as curl's connection cache
        pool = Connections(pipewait=not args.parallel_immediate)
        shared["failed"].clear()
        try:
            for each in runs:
                if progress.stopping or (args.fail_early and shared["failed"]):
                    return
                await each(session, pool)
        finally:
            await pool.close()

    return pcapout.recording(args, shared["recorder"], run)


def _group(args: argparse.Namespace, emit: Emit, progress: Progress,
           shared: dict[str, Any]) -> Any:  # fmt: skip
    """One group's transfers (all of them without --next): checked now, run by the
    coroutine function returned, over the run's connection cache."""
    from dataclasses import replace

    from packetlab.measure.http import HttpResult, WriteError, http_get, parse_url
    from packetlab.measure.upload_body import Upload, UploadError
    from packetlab.measure.upload_multipart import multipart

    if args.continue_at is not None and "-" in args.upload_file:
        raise RunError("-C/--continue-at with -T -: an upload resumed from stdin is not built")
    if args.fail and args.fail_with_body:  # curl: 2, its words
        raise RunError("-f/--fail and --fail-with-body: You must select either --fail or "
                       "--fail-with-body, not both.")  # fmt: skip
    if args.remote_header_name and (args.include or args.head):  # curl: 2, as ours
        raise RunError(f"{'-I/--head' if args.head else '-i/--include'} and "
                       "-J/--remote-header-name: showing headers and --remote-header-name "
                       "cannot be combined (curl's words)")  # fmt: skip
    if args.stderr is not None:
        _redirect_stderr(args)
    # -G: -d is the query, no body; -d read after -F is checked (stdin: see stdin_owner)
    forms, uploads, form_stdin = bodies(args, b"" if args.data and not args.get else None)
    owner = stdin_owner(args, form_stdin, uploads)  # stdin is read once, as curl's
    stderr = getattr(args, "_stderr", None) or sys.stderr

    def warn(text: str) -> None:  # curl's warnings in its form (-s: none, as curl's)
        if not args.silent:
            print(curl_warning(text), end="", file=stderr, flush=True)

    data = request_body(args.data, owner[1] if owner and owner[0] == "data" else None, warn)
    query = _url_query(args, owner, warn)
    asked = _asked(args, warn)
    if args.dump_header is not None:
        _check_output(args.dump_header, "--dump-header")
    etag.check(args.etag_compare, args.etag_save)
    # curl 7.88 adds each URL's If-None-Match to its -H list: a later URL sends the
    # earlier ones' too (copied, so the requests compare)
    compared: list[tuple[str, str]] = []
    read_early: set[int] = set()  # -Z: the transfers whose file curl read before any sent
    # curl: a warning after the last transfer, the extra ones unused (this refused the
    # run until session 24)
    extra_outputs = len(args.output) > len(args.urls)
    # the transfers, in curl's order: (number, URL, its -T upload or None), each -o file
    urlnums: list[int] = []  # curl's %{urlnum} of each transfer
    jobs, outputs = transfers(args, uploads, stdin=owner == ("upload", 0), urlnums=urlnums)
    try:  # a form for each transfer (its own boundary, as curl's), its files looked at now
        posts = [multipart(forms, stdin=owner == ("form", 0) and not i)
                 for i in range(len(jobs))] if forms else []  # fmt: skip
    except UploadError as e:
        raise RunError(f"-F/--form {e}") from None
    if not 1 <= args.parallel_max <= PARALLEL_LIMIT:
        raise RunError(f"--parallel-max {args.parallel_max}: 1..{PARALLEL_LIMIT}")
    if args.get and data is not None:  # curl -G: the data is the query, no body
        jobs = [(i, with_query(url, data), up) for i, url, up in jobs]
        data = None  # (--url-query then unused: curl 7.88 appends one or the other)
    elif query is not None:
        jobs = [(i, with_query(url, query.encode(), "--url-query"), up) for i, url, up in jobs]
    for _, url, _ in jobs:
        parse_url(url)  # a bad URL is an error before anything starts
    auth = None if args.user is None else user_password(args.user)
    if args.include and all(p is None for p in outputs) and args.write_out is None:
        raise RunError("-i/--include: the headers go where the body goes, and the table shows "
                       "no body: add -o FILE (-o - for stdout) or -w")  # fmt: skip
    headers = _headers(args.header, warn)
    if is_json(args.data):  # curl's --json DATA
        headers = json_fields(headers)
    jar, cookie = cookie_options(args.cookie, args.cookie_jar, stdin=owner == ("cookie", 0),
                                 junk=args.junk_session_cookies)  # fmt: skip
    if args.cacert is not None:
        try:
            open(args.cacert, "rb").close()
        except OSError as e:
            raise RunError(f"--cacert {args.cacert}: {e.strerror or e}") from None
    if args.head and data is not None:  # curl: "You can only select one HTTP request method!"
        raise RunError("-I/--head and -d/--data: one request method only (HEAD or POST)")
    if args.max_redirs < -1:
        raise RunError(f"--max-redirs {args.max_redirs}: -1 (no limit) or more")
    if args.output_dir and not args.create_dirs and not os.path.isdir(args.output_dir):
        raise RunError(f"--output-dir {args.output_dir}: no such directory (--create-dirs "
                       "makes it; curl: 23 for each URL, after fetching it)")  # fmt: skip
    for path in dict.fromkeys(p for p in outputs if p is not None):
        # --no-clobber or -J: the file may be another than `path`; its directory matters
        named = args.clobber is False or (args.remote_header_name and isinstance(path, RemoteName))
        _check_output(path, create_dirs=args.create_dirs, replaced=not named)
    fmt = None
    if args.write_out is not None:  # the last -w (the one kept) reads stdin if it is first
        last = sum(k == "write_out" for k, _ in getattr(args, "stdin_order", [])) - 1
        fmt = write_out_format(args.write_out, stdin=owner in (None, ("write_out", last)))
    if fmt is not None and args.json:
        raise RunError("-w/--write-out and --json: choose one output")
    if fmt is not None and re.search(r"%\{(local_ip|local_port|json)\}", fmt):
        asked = replace(asked, local_address=True)  # one more read a connection: if asked
    for warning in format_warnings(fmt or ""):  # curl warns at each use; we once
        print(f"pktlab run http: {warning}", file=stderr)
    method = args.request
    if method is not None and not _TOKEN.fullmatch(method):
        raise RunError(f"-X/--request {method!r}: not an HTTP method (a token: letters, "
                       "digits, !#$%&'*+-.^_`|~)")  # fmt: skip
    recorder = shared["recorder"]
    # curl 7.88 -Z draws its parallel meter on stderr (also off a terminal) unless -s,
    # --no-progress-meter, or a body goes to stdout on a terminal; ours with -w, where the
    # output is curl's (the table keeps its progress line, drawn between its rows)
    to_stdout = any(is_stdout(path) for path in outputs)
    stdout_tty = getattr(getattr(args, "_stdout", None) or sys.stdout, "isatty", bool)()
    meter_wanted = (args.parallel and fmt is not None and not args.silent
                    and not args.no_progress_meter and not (to_stdout and stdout_tty))  # fmt: skip

    stdout: IO[bytes] = getattr(args, "_stdout", None) or sys.stdout.buffer
    dump = None if args.dump_header is None else HeaderDump(args.dump_header, stdout)
    from packetlab.cli.curl_trace import tracer

    if "trace" not in shared:  # -v, --trace: one for the run (its groups share it)
        shared["trace"] = tracer(args, stdout, stderr, warn, to_stdout and stdout_tty,
                                 progress.clock.now)  # fmt: skip
    trace = shared["trace"]

    async def run(session: Any, pool: Any) -> None:
        try:
            await fetch_all(session, pool)
        finally:
            if dump is not None:
                dump.close()

    ended_badly: list[int] = shared["failed"]  # the transfers that failed (--fail-early)

    async def fetch_all(session: Any, pool: Any) -> None:
        if fmt is not None or "-" in args.output:
            progress.clear()  # curl's bytes on stdout: no progress line drawn between them
        if not args.parallel:
            for n, job in enumerate(jobs, 1):
                if progress.stopping or (args.fail_early and ended_badly):  # Ctrl-C: no new URL
                    return
                progress(f"http {n}/{len(jobs)}: {job[1]}")
                await fetch(session, pool, *job)
            if extra_outputs:
                warn("Got more output options than URLs")
            return
        # curl -Z: every URL at once, at most --parallel-max of them; each one's row (or
        # write-out) when it ends, so in the order they end
        from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

        gate = DeferredSemaphore(args.parallel_max)
        unread = [i for i, _, _ in jobs]

        def made(count: int) -> None:
            """curl -Z makes a transfer (and reads its --etag-compare file) ahead of its
            send: twice --parallel-max of them at first, one more as each ends; each
            sends the fields of all made so far (their -H list is one)."""
            while args.etag_compare is not None and count > 0 and unread:
                compared.extend(_headers([etag.compare_field(args.etag_compare)]))
                read_early.add(unread.pop(0))
                count -= 1

        made(2 * args.parallel_max)
        done = [0]
        meter, stop = None, None
        if meter_wanted:  # curl's own parallel progress meter on stderr (see curl_meter)
            from packetlab.cli import curl_meter

            meter, stop = curl_meter.start(session.reactor, stderr)

        async def parallel(i: int, url: str, up: Any) -> None:
            if progress.stopping or (args.fail_early and ended_badly):
                return
            xfer = None
            if meter is not None:
                xfer = _transfer(posts[i - 1] if forms else up if up is not None else data)
                meter.add(xfer)
            try:
                await fetch(session, pool, i, url, up, xfer)
            finally:
                made(1)
                if meter is not None and xfer is not None:
                    meter.done(xfer)
            done[0] += 1
            progress(f"http -Z: {done[0]}/{len(jobs)} done")

        def start(job: tuple[int, str, Any]) -> Any:
            return Deferred.fromCoroutine(parallel(*job))

        try:
            await gatherResults([gate.run(start, job) for job in jobs], consumeErrors=True)
        finally:
            if stop is not None:
                stop()
        if extra_outputs:
            warn("Got more output options than URLs")

    async def fetch(session: Any, pool: Any, i: int, url: str, up: Any, xfer: Any = None) -> None:
        path = outputs[i - 1]
        body: Any = posts[i - 1] if forms else up if up is not None else data
        inferred = "HEAD" if args.head else "PUT" if up is not None else (
            "POST" if body is not None else "GET")  # fmt: skip
        said = custom_request_note(method, inferred)
        if said is not None and not args.silent and (said[0] == "Warning: " or trace):
            print(curl_warning(said[1], said[0]), end="", file=stderr, flush=True)
        sink: Output | None = None
        if path is not None or fmt is not None:
            honor = args.remote_header_name and isinstance(path, RemoteName)  # curl: -J with -O
            sink = Output(path, stdout, args.clobber, honor, args.output_dir or None)
        offset = _resume_offset(args.continue_at, path)
        unopened, failed_upload = None, 23
        if sink is not None and offset:
            try:
                sink.resume(offset)  # curl: the -o file opened to append now
            except WriteError as e:  # curl: 23 for this URL
                unopened = str(e)
        on_body = None if sink is None or args.head else sink.write
        on_headers: Any = None if sink is None or not args.include or args.head else sink.write
        if sink is not None and sink.honor:  # -J (never with -i or -I)
            on_headers = sink.headers
        if dump is not None:  # -D: first, as curl's header callback
            dump.start()
            on_headers = _both(dump.write, on_headers)
        fields = headers
        if args.etag_compare is not None:  # read as each transfer starts, as curl's
            if i not in read_early:
                compared.extend(_headers([etag.compare_field(args.etag_compare)]))
            fields = [*headers, *compared]
        saved = None if args.etag_save is None else etag.EtagSave(args.etag_save, stdout)
        if saved is not None:
            on_headers = _both(saved.headers, on_headers)
        stamp = etag.RemoteTime() if args.remote_time else None
        if stamp is not None:
            on_headers = _both(stamp.headers, on_headers)
        failing = _Failing(on_body) if args.fail else None
        if failing is not None:  # curl -f: the headers of a status >= 400 out, no body
            on_headers, on_body = _both(failing.headers, on_headers), failing.body
        retry = Retry(args.retry, args.retry_delay, args.retry_max_time, steady(session.reactor))
        if isinstance(body, bytes) and body is data and offset:  # -C with -d
            body, unopened, failed_upload = _resumed_post(body, offset, unopened)
        elif isinstance(up, Upload) and body is up and args.continue_at is not None:
            try:  # curl -C with -T: the file from the offset (-C -: all), a Content-Range
                body = up.resumed_at(-1 if args.continue_at == "-" else int(args.continue_at))
            except (ValueError, UploadError) as e:  # curl: 18 (nothing left), ours 26
                unopened = unopened or str(e)
                failed_upload = 18 if isinstance(e, ValueError) else 26
        while True:  # --retry: the transfer again while curl would
            if unopened is not None:
                result = HttpResult(url, error=unopened, exitcode=failed_upload)
                break
            try:
                result = await attempt(session, pool, url, body, on_body, on_headers, xfer,
                                       offset, fields)  # fmt: skip
            except BaseException:
                if saved is not None:
                    saved.close()
                raise
            if sink is not None and args.head:  # curl -I: the headers are the output
                try:
                    sink.write(b"".join(result.raw_headers))
                except OSError as e:
                    result.error = result.error or f"writing {path}: {e.strerror or e}"
            if not await again(session, retry, result, sink, url):
                break
        failed = failing is not None and failing.failed and result.error is None
        # curl makes an empty -o file for an empty body, never for a 304 (a -z condition
        # unmet too): `-z page -o page` keeps the page it has (ours emptied it until
        # session 27)
        create = result.error is None and not failed and result.status != 304
        why = None if sink is None else sink.close(create)
        if why is not None and result.error is None:
            result.error, result.exitcode = why, 23
        if saved is not None:
            saved.close()
        kept = not failed and not (args.fail_with_body and (result.status or 0) >= 400)
        if stamp is not None and result.error is None and kept and sink is not None:
            told = stamp.apply(sink.written)  # curl: after the file is closed, success only
            if told is not None:
                warn(told)
        record = result.to_dict()
        if path and not is_stdout(
            path
        ):  # the file written (-J, --no-clobber: another); -J: none yet
            output = (sink.written or sink.effective) if sink is not None else path
            if output:
                record["output"] = output
        fails = args.fail or args.fail_with_body
        if fails and result.status is not None and result.status >= 400 and not result.error:
            answer = f"{result.status} {result.reason or ''}".strip()  # HTTP/2: no reason
            record["error"] = f"the server answered {answer} (--fail)"
            record["exitcode"] = 22
        if fmt is not None:  # no table: the experiment writes curl's output
            record["_quiet"] = True
        if "error" in record:  # (--fail-early: no new transfer after it, as curl's)
            ended_badly.append(i)
        emit(record)
        if fmt is not None:
            error = record.get("error")
            if error is not None and (not args.silent or args.show_error):
                print(f"pktlab run http: {url}: {error}", file=stderr)
            name = sink.effective if sink is not None else path  # curl's: null for stdout
            values = write_out_values(result, url, name, record.get("exitcode", 0), error,
                                      urlnums[i - 1])  # fmt: skip
            if failed:  # curl -f stops before the body
                values["size_download"] = values["speed_download"] = 0
            if record.get("exitcode") == 22 and (result.status or 0) >= 400:  # curl's words
                values["errormsg"] = (
                    "HTTP response code said error"
                    if args.fail_with_body
                    else f"The requested URL returned error: {result.status}"
                )
            # curl 7.88.1: a --retry that could not truncate its file ends the transfer
            # before its write-out (none for that URL)
            untruncated = (error or "").startswith(TRUNCATE)
            for stream, text in [] if untruncated else write_out(fmt, values, result.headers):
                if stream == "stdout":
                    stdout.write(text.encode("utf-8", "surrogateescape"))  # a name as sent
                    stdout.flush()
                else:
                    print(text, end="", file=stderr, flush=True)
        if jar is not None and args.cookie_jar is not None:  # curl: after each URL
            _save(jar.dump(), args.cookie_jar, args, stderr)

    async def attempt(session: Any, pool: Any, url: str, body: Any, on_body: Any,
                      on_headers: Any, xfer: Any, offset: int, fields: Any) -> Any:  # fmt: skip
        return await http_get(
            session,
            url,
            family=args.family,
            cafile=args.cacert,
            insecure=args.insecure,
            timeout=args.max_time,
            connect_timeout=args.connect_timeout or CONNECT_TIMEOUT,
            asked=replace(asked, resume_from=offset),
            headers=fields,
            recorder=recorder,
            method=method,
            data=body,
            head=args.head,
            follow=args.location or args.location_trusted,
            max_redirs=args.max_redirs,
            post30x=frozenset(args.post30x),
            on_body=on_body,
            connections=pool,
            auth=auth,
            compressed=args.compressed,
            on_headers=on_headers,
            cookies=jar,
            cookie=cookie,
            http_version=args.http_version,
            on_hop=None if xfer is None else xfer.follow,
            trace=trace,
            fail=args.fail,
        )

    async def again(session: Any, retry: Any, result: Any, sink: Output | None,
                    url: str) -> bool:  # fmt: skip
        """--retry: whether to fetch the URL again, after curl's warning and wait (a
        file's bytes thrown away, as curl's; stdout's stay). A try that failed and is
        repeated gets its error line first (with -w, as the last try's), as curl prints
        each try's `curl: (N) ...` before its warning."""
        from twisted.internet.task import deferLater

        from packetlab.cli.run_http_retry import retry_after, transient

        fails = args.fail or args.fail_with_body
        failed = fails and result.status is not None and result.status >= 400
        code = 22 if failed and result.exitcode == 0 else result.exitcode
        why = transient(code, result.status, result.error, args.retry_connrefused,
                        args.retry_all_errors)  # fmt: skip
        now = steady(session.reactor)
        wait, text = retry.next(why, retry_after(result.headers, time.time()), now)
        error = result.error
        if error is None and failed:
            answer = f"{result.status} {result.reason or ''}".strip()
            error = f"the server answered {answer} (--fail)"
        told = fmt is not None and (not args.silent or args.show_error)  # (as the last's)
        if wait is not None and error is not None and told:
            print(f"pktlab run http: {url}: {error}", file=stderr, flush=True)
        if text is not None and not args.silent:  # curl's words (-s: none, as curl's)
            print(curl_warning(text), end="", file=stderr, flush=True)
        if wait is None or progress.stopping:
            return False
        if sink is not None and sink.file is not None and sink.file.tell():
            if not args.silent:
                print(f"Throwing away {sink.file.tell()} bytes", file=stderr, flush=True)
            try:
                sink.file.truncate(sink.append)  # to where it started (-C: its offset)
                sink.file.seek(0, os.SEEK_END)
            except OSError as e:  # /dev/null: curl's "(23) Failed to truncate file"
                result.error = f"{TRUNCATE} {sink.written}: {e.strerror or e}"
                result.exitcode = 23
                return False
        end = steady(session.reactor) + wait
        while not progress.stopping and steady(session.reactor) < end:  # Ctrl-C: at once
            await deferLater(session.reactor, min(0.1, end - steady(session.reactor)))
        return not progress.stopping

    return run


def cert_parameter(text: str) -> tuple[str, str | None]:
    """--cert FILE[:PASSWORD] as curl 7.88's tool reads it (parse_cert_parameter): the
    first colon not escaped splits; `\\:` is a colon of FILE, `\\\\` a backslash, another
    backslash stays."""
    name, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1 : i + 2] in (":", "\\"):
            name.append(text[i + 1])
            i += 2
            continue
        if c == ":":  # (an empty PASSWORD: none, as curl)
            return "".join(name), text[i + 1 :] or None
        name.append(c)
        i += 1
    return "".join(name), None


def _client_cert(args: argparse.Namespace) -> tuple[str, str | None, bytes | None] | None:
    """--cert, --key and --pass, loaded once now: one that cannot be used is a one-line
    error in curl's words before anything is sent (curl: 58 when the transfer starts)."""
    if args.cert is None:
        if args.key is not None:  # curl: the key alone is not used
            raise RunError("--key without --cert/-E: no client certificate to use it with")
        return None
    from OpenSSL import SSL

    cert, password = cert_parameter(args.cert)
    if getattr(args, "key_pass", None) is not None:
        password = args.key_pass
    phrase = None if password is None else password.encode()
    from packetlab.measure.http_tls import use_private_key

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    key = args.key or cert
    for step, why, name in (
        (ctx.use_certificate_chain_file, "could not load PEM client certificate", cert),
        (lambda n: use_private_key(ctx, n, phrase), "unable to set private key file", key),
        (lambda _: ctx.check_privatekey(), "Private key does not match the certificate "
         "public key", key),
    ):  # fmt: skip
        try:
            open(name, "rb").close()
            step(name)
        except (OSError, SSL.Error, ValueError, TypeError) as e:  # (a wrong passphrase:
            detail = getattr(e, "strerror", None) or "not PEM, or not its key"  # ValueError)
            raise RunError(f"--cert {cert}: {why} '{name}' ({detail}; curl: "
                           "58)") from None  # fmt: skip
    return cert, args.key, phrase


def _resumed_post(data: bytes, offset: int, unopened: str | None) -> tuple[Any, str | None, int]:
    """-C OFFSET with -d as curl 7.88.1 sends it: the data's FIRST len-OFFSET bytes (its
    postfields are not seeked, only their size cut) under `Content-Range: bytes
    OFFSET-(len-1)/len`. curl seeks its input instead, stdin: where stdin cannot seek
    (a pipe, a terminal) OFFSET bytes are read from it and dropped, fewer: 26; nothing
    left: 18, "File already completely uploaded". (body, the transfer's error, its exit
    code)."""
    from packetlab.measure.http_message import FORM
    from packetlab.measure.upload_body import Upload

    short = _skip_stdin(offset)
    if short is not None:
        return data, unopened or short, 26
    if offset >= len(data):
        return data, unopened or "File already completely uploaded", 18
    body = Upload.of(data[: len(data) - offset], FORM)
    body.resumed = (offset, len(data))
    return body, unopened, 23


def _skip_stdin(offset: int) -> str | None:
    """curl's resumed upload over stdin (its read callback's default input): seeked to
    `offset`, else that many bytes read and dropped (blocking, as curl's fread); None, or
    curl's words when stdin ended first."""
    try:
        os.lseek(0, offset, os.SEEK_SET)
        return None
    except OSError:
        pass
    passed = 0
    while passed < offset:
        try:
            got = len(os.read(0, min(offset - passed, 1 << 16)))
        except OSError:
            got = 0
        if not got:
            return f"Could only read {passed} bytes from the input"
        passed += got
    return None


def _resume_offset(continue_at: str | None, path: str | None) -> int:
    """-C's offset for a transfer to `path`: N, or with "-" the size of the -o file
    (0: none yet, or stdout), as curl's stat of it."""
    if continue_at is None:
        return 0
    if continue_at != "-":
        return int(continue_at)
    if path is None or is_stdout(path):
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _redirect_stderr(args: argparse.Namespace) -> None:
    """--stderr FILE: every line for stderr (warnings, errors, -Z's meter) to FILE, made
    empty first ("-": stdout), as curl's. A caller's own stream (`args._stderr`: tests)
    is replaced; else the process's."""
    if args.stderr == "-":
        target: Any = sys.stdout
    else:
        try:
            target = open(args.stderr, "w")  # noqa: SIM115 (the process's stderr from now)
        except OSError as e:
            raise RunError(f"--stderr {args.stderr}: {e.strerror or e}") from None
    if getattr(args, "_stderr", None) is not None:
        args._stderr = target
    else:
        sys.stderr = target


def _asked(args: argparse.Namespace, warn: Any) -> Any:
    """-A, -e and -r as measure.http.Asked (run_http_opts reads them as curl)."""
    from packetlab.measure.http import Asked

    ref, auto = referer(args.referer)
    r = None if args.byte_range is None else byte_range(args.byte_range, warn)
    ua = USER_AGENT if args.user_agent is None else args.user_agent
    return Asked(user_agent=ua, referer=ref, auto_referer=auto, byte_range=r,
                 max_filesize=args.max_filesize or 0,
                 resolve=resolve_entries(args.resolve, args.family),
                 connect=connect_to_entries(args.connect_to), limit_rate=args.limit_rate,
                 trusted=args.location_trusted,
                 expect_wait=args.expect100_timeout, client_cert=_client_cert(args),
                 time_cond=None if args.time_cond is None else time_cond(args.time_cond,
                                                                         warn),
                 path_as_is=args.path_as_is, bearer=args.oauth2_bearer,
                 bearer_waits=bool(args.auth_schemes),
                 request_target=args.request_target,
                 auth_scheme=auth_scheme(args.auth_schemes),
                 tr_encoding=args.tr_encoding, netrc=_netrc(args),
                 protocols=None if args.proto is None else protocols(
                     args.proto, CURL_PROTOCOLS, warn),
                 redir_protocols=None if args.proto_redir is None else protocols(
                     args.proto_redir, REDIR_PROTOCOLS, warn, "--proto-redir"),
                 speed_limit=_speed_limit(args))  # fmt: skip


def _speed_limit(args: argparse.Namespace) -> tuple[int, int] | None:
    """curl's -Y/-y as (bytes per second, seconds), None for no check: -Y alone checks
    over 30 s, -y alone at 1 byte/s (curl's tool sets the one not given; libcurl checks
    when both are above 0)."""
    limit = args.speed_limit or (1 if args.speed_time else 0)
    seconds = args.speed_time or (30 if args.speed_limit else 0)
    return (limit, seconds) if limit and seconds else None


def _netrc(args: argparse.Namespace) -> Any:
    """curl's --netrc, --netrc-file FILE, --netrc-optional as one http_netrc.Netrc (None:
    none of them). -u wins over it (measure.http looks the file up without -u only)."""
    from packetlab.measure.http_netrc import Netrc

    if not (args.netrc or args.netrc_optional or args.netrc_file is not None):
        return None
    return Netrc(args.netrc_file, optional=args.netrc_optional)


def auth_scheme(given: list[str]) -> str:
    """-u's scheme from --basic, --digest, --anyauth as curl adds them up (none: Basic;
    Digest and Basic both: either, as --anyauth); --ntlm and --negotiate refused in one
    line, before anything is sent."""
    if "ntlm" in given:
        raise RunError(
            "--ntlm: NTLM authorization is not built (curl does it: a handshake "
            "bound to one connection, over MD4 and DES); use --digest or --basic"
        )
    if "negotiate" in given:
        raise RunError(
            "--negotiate: SPNEGO/Kerberos authorization is not built (curl does "
            "it with GSS-API and a Kerberos ticket); use --digest or --basic"
        )
    schemes = set(given) or {"basic"}
    if "anyauth" in schemes or len(schemes) > 1:
        return "anyauth"
    return schemes.pop()


class _Failing:
    """curl -f: a final response of 400 or more ends the transfer after its headers
    (-i and -D have them), its body not written (-o makes no file)."""

    def __init__(self, on_body: Any) -> None:
        self.on_body, self.failed = on_body, False

    def headers(self, raw: bytes) -> None:
        code = raw.split(b" ", 2)[1:2]
        self.failed = bool(code) and code[0].isdigit() and int(code[0]) >= 400

    def body(self, data: bytes) -> None:
        if not self.failed and self.on_body is not None:
            self.on_body(data)


def _both(first: Any, then: Any) -> Any:
    """Two header-block callbacks in turn (the second may be None)."""

    def call(raw: bytes) -> None:
        first(raw)
        if then is not None:
            then(raw)

    return call


def _transfer(body: Any) -> Any:
    """A -Z transfer for curl's meter, its upload's size known beforehand (0: none, or
    unknown: stdin, quoted-printable)."""
    from packetlab.cli.curl_meter import Transfer

    size = len(body) if isinstance(body, bytes) else getattr(body, "length", None) or 0
    return Transfer(size)
