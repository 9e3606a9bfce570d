"""Where `pktlab run http` writes: -o/-O/--remote-name-all file names as curl makes
them, --output-dir and --create-dirs, -T's URL, and the list of transfers a run's URLs
and globs make."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import IO, Any
from urllib.parse import quote

from packetlab.cli.curl_output import RemoteName, is_stdout
from packetlab.cli.run import RunError
from packetlab.cli.run_http_args import NO_REMOTE, REMOTE


def _save(text: str, path: str, args: argparse.Namespace, stderr: Any) -> None:
    """-c FILE at the end of the run (curl writes it at exit too); a failure warned."""
    data = text.encode("utf-8", "surrogateescape")  # a cookie's bytes as they came
    try:
        if path == "-":
            out: IO[bytes] = getattr(args, "_stdout", None) or sys.stdout.buffer
            out.write(data)
            out.flush()
            return
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        print(f"pktlab run http: --cookie-jar {path}: cookies not saved: {e.strerror or e}",
              file=stderr)  # fmt: skip


def _check_output(path: str, option: str = "--output", create_dirs: bool = False,
                  replaced: bool = True) -> None:  # fmt: skip
    """An output file's directory (made with `create_dirs`) and, when `path` is the file
    opened (not so with --no-clobber or -J), the file itself: refused before the run
    when they cannot be written."""
    if is_stdout(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if replaced and os.path.isdir(path):
        raise RunError(f"{option} {path}: is a directory")
    if create_dirs and not os.path.isdir(parent):  # --create-dirs: made now, as curl's
        _create_dirs(parent, option, path)
    if not os.path.isdir(parent):
        raise RunError(f"{option} {path}: no such directory {parent}")
    if not os.access(path if replaced and os.path.exists(path) else parent, os.W_OK):
        raise RunError(f"{option} {path}: permission denied")


def _output_of(args: argparse.Namespace, i: int) -> str | None:
    """The Nth URL's -o FILE or -O (REMOTE), curl's pairing: the Nth of the -o, -O and
    --no-remote-name options (None: no file), else -O if --remote-name-all came before
    that URL, else None."""
    if i <= len(args.output):
        return None if args.output[i - 1] == NO_REMOTE else str(args.output[i - 1])
    on = [o for seen, o in getattr(args, "remote_name_all", []) if seen < i]
    return REMOTE if on and on[-1] else None


def remote_name(url: str) -> str:
    """curl 7.88's -O file name (get_url_file_name): the URL's path as curl parses it (no
    query, no fragment, its . and .. segments removed) after its last / (and after a \\
    in that), as written: not decoded (`a%2F..%2Fb` is the name of a file here, not a
    path). "" for a path that ends in / (curl: "Remote file name has no length!", 23)."""
    rest = url.partition("://")[2] if "://" in url else url
    at = re.search(r"[/?#]", rest)
    path = rest[at.start() :] if at else ""
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    from packetlab.measure.http_url import remove_dot_segments

    name = remove_dot_segments(path or "/").rsplit("/", 1)[-1]
    return name.rsplit("\\", 1)[-1]


def upload_url(url: str, path: str) -> str:
    """curl -T: a URL without a file name (its path empty or ending in /) gets the
    file's name appended (not for stdin), percent-encoded as curl 7.88 writes it (%5b:
    its hex digits in lower case)."""
    if path == "-":
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, slash, tail = rest.partition("/")
    where, q, query = tail.partition("?")
    if slash and where and not where.endswith("/"):
        return url
    base = path.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]  # after the last / or \, as curl
    name = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(base, safe=""))
    return f"{scheme}{sep}{host}/{where}{name}{q}{query}"


def _create_dirs(parent: str, option: str, path: str) -> None:
    """curl's --create-dirs: each missing directory of `parent` made with mode 0750
    (less the umask), as curl 7.88's create_dir_hierarchy."""
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o750)
        except FileExistsError:
            if not os.path.isdir(d):
                raise RunError(f"{option} {path}: {d} is not a directory") from None
        except OSError as e:  # curl: "Failed to create the directory D: ..." (23)
            raise RunError(f"{option} {path}: cannot create the directory {d}: "
                           f"{e.strerror or e} (--create-dirs)") from None  # fmt: skip


def transfers(args: argparse.Namespace, uploads: list[Any], stdin: bool = True,
              urlnums: list[int] | None = None) -> tuple[
    list[tuple[int, str, Any]], list[str | None]
]:  # fmt: skip
    """curl 7.88's transfers in its order, numbered from 1: (number, URL, its -T upload
    or None), and each one's -o file (None: stdout). Each URL is globbed unless -g
    (`{a,b}`, `[1-3]`: urlglob, curl's errors), each of its -T's files going to every
    URL of the glob (the files the outer loop, as curl); its -o (the Nth for the Nth
    URL) gets #N filled with what the URL's Nth glob matched, its -O the file name of
    each URL of the glob (the URL before -T's file name is added, as curl); each file
    in --output-dir if given. At most MAX_NAMES. Stdin is read once (curl's): by the
    first transfer of a -T - when `stdin`, the others (all without `stdin`: another use
    read it) an empty chunked PUT. `urlnums` gets each transfer's URL's place (curl's
    %{urlnum}: 0 first, a glob's URLs sharing theirs)."""
    from packetlab.measure.upload_body import file_upload
    from packetlab.measure.urlglob import MAX_NAMES, GlobError, glob_urls, output_name

    jobs: list[tuple[int, str, Any]] = []
    outputs: list[str | None] = []
    for i, url in enumerate(args.urls, 1):
        try:
            matches = [None] if args.globoff else glob_urls(url)
        except GlobError as e:
            hint = "; -g/--globoff takes { } [ ] as written" if e.pos else ""
            raise RunError(f"URL {url!r}: {e}{hint}") from None
        files = uploads[i - 1] if i <= len(uploads) else [(None, None)]
        if len(jobs) + len(files) * len(matches) > MAX_NAMES:
            raise RunError(f"over {MAX_NAMES} transfers (URL globs and -T files; each is "
                           "listed before anything is sent; curl has no such limit)")  # fmt: skip
        out = _output_of(args, i)
        for name, up in files:
            for m in matches:
                if name == "-":
                    up = up if stdin else file_upload("-", spent=True)
                    stdin = False
                target = url if m is None else m.url
                if out == REMOTE:
                    path: str | None = RemoteName(remote_name(target))
                    # -J: the server may name it (curl fetches it; none: 23 then)
                    if path == "" and not getattr(args, "remote_header_name", False):
                        raise RunError(f"-O/--remote-name: {target} has no file name (nothing "
                                       "after its last / or \\; curl: 23, after the URLs before "
                                       "it, and no URL after it is fetched)")  # fmt: skip
                else:
                    path = out if m is None or out in (None, "-") else output_name(out, m)
                    if path == "":  # curl: "output glob produces empty string" (23)
                        raise RunError(f"-o/--output {out!r}: empty for {target}")
                if (
                    path is not None and not is_stdout(path) and args.output_dir
                ):  # as curl: "DIR/FILE"
                    path = type(path)(f"{args.output_dir}/{path}")
                jobs.append(
                    (len(jobs) + 1, target if name is None else upload_url(target, name), up)
                )
                outputs.append(path)
                if urlnums is not None:
                    urlnums.append(i - 1)
    return jobs, outputs
