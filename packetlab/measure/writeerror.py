"""`WriteError`, apart from `packetlab.measure.http` so that the writers of what a fetch
brings (`packetlab.cli.curl_output`) can raise it without loading the HTTP client and its
TLS stack while `pktlab run http`'s command line is parsed (docs/performance.md)."""

from __future__ import annotations


class WriteError(Exception):
    """Raised by an `on_body` or `on_headers` callback that cannot take what came (the
    file it writes could not be made): the fetch ends there, its message the result's
    `error`, curl's exit code 23 (the response's status kept, as curl's %{http_code}).
    From `on_headers`, `header_bytes` says how much of the header block was taken (the
    lines before the refused one, as curl counts its size_header), None: all of it."""

    def __init__(self, message: str, header_bytes: int | None = None) -> None:
        super().__init__(message)
        self.header_bytes = header_bytes
