"""Request bodies as curl 7.88 sends them: -F's multipart/form-data (its boundary, part
headers and content types byte for byte), -T's PUT (a file read in chunks, stdin sent
chunked), and `Expect: 100-continue` over HTTP/1.1 (the body after the 100, after 1 s
without an answer, never after a final answer), over the scripted endpoint; HTTP/2
bodies (no Expect) to the h2 server."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ctl_fakes import result_of
from http_fake import H2Server, TlsPeer, serve
from stream_fakes import StreamFakeEndpoint, StreamRig
from twisted.internet.defer import CancelledError
from web_pki import make_pki

from packetlab.measure import upload_body, upload_form
from packetlab.measure.http import http_get
from packetlab.measure.upload_body import Upload, UploadError, file_upload
from packetlab.measure.upload_form import FormPart, parse_form
from packetlab.measure.upload_multipart import multipart
from packetlab.wire import Nsend, Status

B = "-" * 24 + "0af91582baf97f12"


def test_multipart_is_curls_byte_for_byte(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello\n")
    parts = [parse_form("a=b"), parse_form(f"f=@{small};type=text/foo;filename=z.txt"),
             parse_form(f"g=<{small}"), parse_form(f"h=@{small}")]  # fmt: skip
    body = multipart(parts, B)
    # what curl 7.88.1 sent for -F a=b -F 'f=@small.txt;type=text/foo;filename=z.txt'
    # -F 'g=<small.txt' -F h=@small.txt (its boundary put in)
    expected = (
        f'--{B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n'
        f'--{B}\r\nContent-Disposition: form-data; name="f"; filename="z.txt"\r\n'
        f"Content-Type: text/foo\r\n\r\nhello\n\r\n"
        f'--{B}\r\nContent-Disposition: form-data; name="g"\r\n\r\nhello\n\r\n'
        f'--{B}\r\nContent-Disposition: form-data; name="h"; filename="small.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\n\r\n--{B}--\r\n"
    ).encode()
    assert b"".join(body.chunks()) == expected
    assert body.length == len(expected) == 515  # curl's Content-Length
    assert body.content_type == f"multipart/form-data; boundary={B}"
    assert body.method == "POST" and not body.expects()
    # a new boundary each time: 24 dashes and 16 hex digits, as curl's
    assert re.fullmatch(r"-{24}[0-9a-f]{16}", str(multipart(parts).content_type).split("=")[1])


def test_form_arguments_as_curl(tmp_path: Path) -> None:
    f = tmp_path / "s.JPG"
    f.write_bytes(b"x")
    # curl: "quoted" values with \ escapes; ;type= on a text part; " in names escaped
    assert parse_form('a="x\\"y";type=text/q') == FormPart("a", b'x"y', type="text/q")
    assert parse_form('b=c;filename=f"g') == FormPart("b", b"c", filename='f"g')
    body = b"".join(multipart([parse_form('n"m=v'), parse_form("b=c;filename=f\"g"),
                               parse_form(f"f=@{f}")], B).chunks())  # fmt: skip
    assert b'name="n%22m"' in body and b'filename="f%22g"' in body
    assert b'filename="s.JPG"\r\nContent-Type: image/jpeg\r\n' in body
    assert upload_form.content_type_for("x.html") == "text/html"
    assert upload_form.content_type_for("noext") == "application/octet-stream"
    warnings: list[str] = []  # curl 7.88.1 sent "1" and warned
    assert parse_form("a=1;2", warnings=warnings) == FormPart("a", b"1")
    assert warnings == ["skip unknown form field: 2"]
    with pytest.raises(UploadError, match="expected NAME=VALUE"):
        parse_form("noequals")
    with pytest.raises(UploadError, match=r"nosuch: No such file"):
        parse_form(f"f=@{tmp_path / 'nosuch'}")
    with pytest.raises(UploadError, match=r";headers=@.*nosuch: No such file"):
        parse_form(f"f=@{f};headers=@{tmp_path / 'nosuch'}")


def test_a_file_is_read_in_chunks_and_checked(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"z" * (3 * upload_body.CHUNK + 5))
    up = file_upload(str(f))
    assert (up.method, up.length, up.content_type) == ("PUT", 3 * upload_body.CHUNK + 5, None)
    assert [len(c) for c in up.chunks()] == [upload_body.CHUNK] * 3 + [5]
    f.write_bytes(b"z")  # changed since its size was taken
    with pytest.raises(UploadError, match="changed size while sent"):
        list(up.chunks())
    with pytest.raises(UploadError, match="Is a directory"):
        file_upload(str(tmp_path))
    # curl's Expect rules: a PUT with any body, a POST over 1 MiB or of unknown length
    assert file_upload(str(f)).expects()
    assert not Upload.of(b"x" * (1 << 20)).expects() and Upload.of(b"x" * ((1 << 20) + 1)).expects()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not file_upload(str(empty)).expects()


class UploadServer(TlsPeer):
    """An HTTP/1.1 server for uploads: it answers `Expect: 100-continue` as `mode` says
    ("100": a 100 Continue; "silent": nothing; "final": 417 at once, the body not
    read), reads a Content-Length or chunked body and answers 200 with its SHA-256."""

    def __init__(self, mode: str = "100") -> None:
        super().__init__()
        self.mode = mode
        self.head: dict[str, str] | None = None
        self.request_line = ""
        self.body = bytearray()
        self.answered = False
        self.sizes: list[int] = []  # each nsend's bytes

    def received(self, data: bytes) -> None:
        self.sizes.append(len(data))
        super().received(data)

    def arrived(self) -> None:
        if self.answered:
            self.body += self.got
            self.got.clear()
            return
        if self.head is None:
            head, sep, rest = bytes(self.got).partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            self.request_line = lines[0]
            self.head = {k.strip().lower(): v.strip()
                         for k, _, v in (x.partition(":") for x in lines[1:])}  # fmt: skip
            self.got[:] = rest
            if self.head.get("expect") == "100-continue":
                if self.mode == "100":
                    self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                elif self.mode == "final":
                    self.answered = True
                    self.body += self.got
                    self.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
                    return
        if self.head.get("transfer-encoding") == "chunked":
            data = bytes(self.got)
            if not data.endswith(b"0\r\n\r\n"):
                return
            body, pos = bytearray(), 0
            while True:
                size_end = data.index(b"\r\n", pos)
                size = int(data[pos:size_end], 16)
                if size == 0:
                    break
                body += data[size_end + 2 : size_end + 2 + size]
                pos = size_end + 4 + size
            self.body = body
        else:
            if len(self.got) < int(self.head.get("content-length", 0)):
                return
            self.body = bytearray(self.got)
        self.got.clear()
        self.answered = True
        digest = hashlib.sha256(self.body).hexdigest().encode()
        self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(digest), digest))


def put(mode: str, data: Any, **kw: Any) -> tuple[Any, UploadServer, float]:
    rig, made = serve(lambda _: UploadServer(mode))
    start = rig.clock.seconds()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/up", data=data, keep_body=True, **kw))
    return r, made[0], rig.clock.seconds() - start


def test_put_a_file_with_expect_100_continue(tmp_path: Path) -> None:
    f = tmp_path / "file.bin"
    content = bytes(range(256)) * 4100  # 1,049,600 bytes: 17 reads
    f.write_bytes(content)
    r, server, took = put("100", file_upload(str(f)))
    assert r.error is None and r.status == 200 and r.method == "PUT"
    assert server.request_line == "PUT /up HTTP/1.1"
    assert server.head is not None and server.head["expect"] == "100-continue"
    assert server.head["content-length"] == str(len(content)) and "content-type" not in server.head
    assert bytes(server.body) == content and r.body == hashlib.sha256(content).hexdigest().encode()
    assert r.upload_size == len(content) and took < 1.0  # the body went at the 100
    assert max(server.sizes) <= upload_body.CHUNK + 16  # read and sent in chunks
    assert b"HTTP/1.1 100 Continue\r\n\r\n" in r.raw_headers[0]  # counted as curl's
    assert r.request_size < 200  # the head only (curl's size_request for a PUT)


def test_expect_without_an_answer_sends_after_a_second_and_a_final_answer_stops_it(
    tmp_path: Path,
) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc" * 10)
    r, server, took = put("silent", file_upload(str(f)))
    assert r.status == 200 and bytes(server.body) == b"abc" * 10
    assert took >= 1.0  # curl: CURLOPT_EXPECT_100_TIMEOUT_MS, 1000
    r, server, _ = put("final", file_upload(str(f)))
    # curl: "HTTP error before end of send, stop sending"; size_upload 0
    assert r.status == 417 and r.error is None and server.body == b"" and r.upload_size == 0


def test_put_from_stdin_is_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"x" * (upload_body.CHUNK + 7)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    r, server, _ = put("100", file_upload("-"))
    assert server.head is not None and server.head["transfer-encoding"] == "chunked"
    assert "content-length" not in server.head and server.head["expect"] == "100-continue"
    assert bytes(server.body) == data
    # curl's chunks (65,524 bytes: its upload buffer less the framing's room), their
    # framing counted in size_upload: fff4\r\n...\r\n 13\r\n...\r\n 0\r\n\r\n
    assert server.sizes[-3:] == [6 + 65524 + 2, 4 + 19 + 2, 5]
    assert r.upload_size == len(data) + 8 + 6 + 5


class Pipe(io.RawIOBase):
    """A pipe's read end as the writer fills it: each read() gives one write."""

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.writes.pop(0) if self.writes else b""
        buf[: len(data)] = data
        return len(data)


def test_put_from_a_slow_pipe_sends_each_read_as_curl(monkeypatch: pytest.MonkeyPatch) -> None:
    # (echo a; sleep 1; echo b) | curl -T - : two chunks, size_upload 19 (1\r\na\n\r\n
    # twice, 0\r\n\r\n); ours waited for 65,524 bytes or the end: one chunk, 14
    stdin = io.TextIOWrapper(io.BufferedReader(Pipe([b"a\n", b"b\n"])))
    monkeypatch.setattr(sys, "stdin", stdin)
    r, server, _ = put("100", file_upload("-"))
    assert bytes(server.body) == b"a\nb\n" and r.upload_size == 19


def test_a_fifo_or_device_is_not_opened_when_looked_at_and_goes_chunked(
    tmp_path: Path,
) -> None:
    # curl 7.88 -T FIFO / -F a=@FIFO / -T /dev/null: its size unknown (not a regular
    # file), read to its end when sent, chunked. Ours opened it when looking at it: a
    # FIFO's open waited for a writer (SIGTERM could not stop it) and took its size as
    # 0, the writer's bytes lost when it was closed
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)
    # a writer already there (so that the old open did not wait: it took 0 bytes)
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    early = os.open(fifo, os.O_WRONLY)
    try:
        up = file_upload(str(fifo))
        form = multipart([parse_form(f"a=@{fifo}")], "-" * 24 + "b2f4eece0da3bd5f")
    finally:
        os.close(early)
        os.close(held)
    assert up.length is None and form.length is None and up.expects() and not up.rewindable

    def write() -> None:  # opens when the upload opens it to read
        with open(fifo, "wb") as w:
            w.write(b"fifo-data\n" * 10000)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert b"".join(up.chunks()) == b"fifo-data\n" * 10000
    finally:
        writer.join()
    with pytest.raises(UploadError, match=r"the upload from \S*ff cannot be sent again"):
        list(up.chunks())
    null = file_upload("/dev/null")  # a character device: curl's chunked PUT of nothing
    assert null.length is None and list(null.chunks()) == []


def test_a_post_over_1_mib_asks_expect_and_a_small_one_goes_with_the_head() -> None:
    big = b"q" * ((1 << 20) + 1)
    r, server, _ = put("100", big)
    assert server.head is not None and server.head["expect"] == "100-continue"
    assert bytes(server.body) == big and r.upload_size == len(big)
    assert r.request_size < 300  # curl counts the body only when it goes with the head
    r, server, _ = put("100", b"a=1")
    assert server.head is not None and "expect" not in server.head
    assert r.request_size > 3 and bytes(server.body) == b"a=1"
    # -H 'Expect:' removes it, as curl
    r, server, _ = put("100", big, headers=[("Expect", "")])
    assert server.head is not None and "expect" not in server.head
    assert bytes(server.body) == big


def test_a_form_from_files_over_http(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"data\n" * 50000)  # 250,000 bytes: read in chunks
    body = multipart([parse_form("x=1"), parse_form(f"f=@{f}")], B)
    r, server, _ = put("100", body)
    assert server.head is not None and "expect" not in server.head  # under 1 MiB
    assert server.head["content-type"] == f"multipart/form-data; boundary={B}"
    assert bytes(server.body) == b"".join(body.chunks()) and r.upload_size == body.length


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_http2_uploads_without_expect(tmp_path: Path, pki: dict[str, Path]) -> None:
    f = tmp_path / "f.bin"
    content = bytes(range(256)) * 2000  # past the 65,535-byte windows
    f.write_bytes(content)
    rig, made = serve(lambda _: H2Server(pki=pki), (443,))
    url = "https://www.test/up/"
    tls: dict[str, Any] = {"cafile": str(pki["ca"]), "connect_to": "192.0.2.80"}
    r = rig.run(http_get(rig.session, url, data=file_upload(str(f)), keep_body=True, **tls))
    assert r.error is None and r.http_version == "2" and r.body == b"ok PUT /up/ 512000"
    fields, got = made[0].requests[0]
    assert got == content and "expect" not in fields and fields["content-length"] == "512000"
    assert r.upload_size == len(content)
    body = multipart([parse_form(f"f=@{f}")], B)
    r = rig.run(http_get(rig.session, url, data=body, keep_body=True, **tls))
    assert made[1].requests[0][1] == b"".join(body.chunks())
    assert made[1].requests[0][0]["content-type"] == body.content_type


class Windowed(StreamFakeEndpoint):
    """An endpoint whose send window (a certificate's max_burst_rate_byte, or the
    built-in 10 Mb/s) allows `allowed` bytes: later nsends are refused ESKTPKTDENY."""

    allowed = 300_000

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.sent_bytes = 0

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nsend) and msg.sktid in self.live:
            self.sent_bytes += len(msg.data)
            if self.sent_bytes > self.allowed:
                self.result(int(Status.ESKTPKTDENY))
                return
        super().handle(msg)


def test_a_send_the_endpoint_refuses_is_the_urls_error_in_one_line(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"u" * 1_000_000)
    rig = StreamRig(Windowed)
    rig.endpoint.peers[("192.0.2.80", 80)] = lambda: UploadServer("100")
    r = rig.run(http_get(rig.session, "http://192.0.2.80/up", data=file_upload(str(f))))
    assert r.exitcode == 55 and r.status is None  # curl's "Failed sending data to the peer"
    assert re.fullmatch(
        r"upload: the endpoint refused a send \(ESKTPKTDENY; \d+ of 1000000 body bytes "
        r"queued\): over its send window \(.*12,500,000 bytes per 10 s.*\)",
        r.error or "",
    ), r.error


class ThreadCalls:
    """A fake reactor's callFromThread: what the pipe's reader thread asks is queued,
    and run on the test's thread when it drives the rig."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Any, tuple[Any, ...]]] = queue.SimpleQueue()

    def __call__(self, f: Any, *a: Any) -> None:
        self.calls.put((f, a))

    def run(self, wait: float) -> None:
        try:  # waiting for the reader thread (its read and put), not a timed assert
            f, a = self.calls.get(timeout=wait)
        except queue.Empty:
            return
        f(*a)

    def drive(self, rig: Any, d: Any) -> None:
        """Until `d` fires (at most 5,000 steps): the reader thread's calls, the rig's
        bytes both ways, 1 ms of its clock."""
        for _ in range(5000):
            if d.called:
                return
            self.run(0.01)
            rig.pump.flush()
            rig.clock.advance(0.001)


@contextlib.contextmanager
def blocked_read_fails() -> Iterator[None]:
    """A read that waits on the test's thread (the bug) raises after 20 s: the test
    fails rather than hangs."""

    def alarm(*_: Any) -> None:
        raise AssertionError("the upload read the silent pipe on the reactor's thread")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def silent_stdin(monkeypatch: pytest.MonkeyPatch) -> int:
    """stdin a pipe whose writer (returned) has written nothing yet."""
    r, w = os.pipe()
    stdin = os.fdopen(r, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    return w


@dataclasses.dataclass
class SilentPipe:
    """stdin a pipe that has given nothing yet (`w`, its writer), a rig whose endpoint
    reaches the servers made (`made`), the pipe's reader thread's calls to the reactor
    queued in `calls` (run when the test drives the rig)."""

    w: int
    rig: Any
    made: list[Any]
    calls: ThreadCalls
    closed: bool = False

    def runs_on(self, fetch: Callable[[], Any], seconds: float = 5.0) -> Any:
        """`fetch()`'s Deferred, after `seconds` of the rig's clock in which the reactor
        ran on (a timer set for 3 s fired) and the fetch did not end; a read of the
        pipe on this thread (the bug) fails the test."""
        ticks: list[float] = []
        self.rig.clock.callLater(3.0, lambda: ticks.append(self.rig.clock.seconds()))
        with blocked_read_fails():
            d = fetch()
            start = self.rig.clock.seconds()
            while self.rig.clock.seconds() < start + seconds:
                self.rig.pump.flush()
                self.rig.clock.advance(0.01)
        assert ticks and not d.called
        return d

    def close(self, data: bytes = b"") -> None:
        """The pipe gives `data` (written later) and ends."""
        if data:
            os.write(self.w, data)
        if not self.closed:
            os.close(self.w)
            self.closed = True

    def give(self, data: bytes, d: Any) -> Any:
        """The pipe gives `data` and ends; `d`'s result once the rig ran it to its end."""
        self.close(data)
        self.calls.drive(self.rig, d)
        return result_of(d)


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SilentPipe]]:
    """`silent(make=an UploadServer answering 100, ports=(80,))`: a SilentPipe."""
    pipes: list[SilentPipe] = []

    def make(
        server: Any = lambda _: UploadServer("100"), ports: tuple[int, ...] = (80,)
    ) -> SilentPipe:
        w = silent_stdin(monkeypatch)
        rig, made = serve(server, ports)
        calls = ThreadCalls()
        rig.clock.callFromThread = calls  # type: ignore[attr-defined]
        pipes.append(SilentPipe(w, rig, made, calls))
        return pipes[-1]

    yield make
    for pipe in pipes:
        pipe.close()


def test_a_silent_pipe_does_not_stop_the_reactor(silent: Callable[..., SilentPipe]) -> None:
    # pktlab run http -T - URL with a pipe that gives nothing (yet): ours read it with a
    # blocking read() on the reactor's thread, which stood still (Ctrl-C, SIGTERM and
    # the time limits acted only once bytes came or the pipe closed)
    pipe = silent()
    url = "http://192.0.2.80/up"
    d = pipe.runs_on(
        lambda: http_get(pipe.rig.session, url, data=file_upload("-"), keep_body=True, timeout=30.0)
    )
    server = pipe.made[0]
    assert server.head is not None and server.head["transfer-encoding"] == "chunked"
    r = pipe.give(b"late\n", d)  # data arriving later is sent, as it comes
    assert r.error is None and r.status == 200 and bytes(server.body) == b"late\n"
    assert r.upload_size == len(b"5\r\nlate\n\r\n0\r\n\r\n")  # curl's size_upload


def test_a_silent_pipe_times_out_with_the_time_limit(silent: Callable[..., SilentPipe]) -> None:
    rig = silent().rig
    with blocked_read_fails():
        r = rig.run(http_get(rig.session, "http://192.0.2.80/up", data=file_upload("-"),
                             timeout=4.0))  # fmt: skip
    assert r.exitcode == 28 and r.error is not None and r.error.startswith("timed out"), r.error


def test_a_pipe_upload_never_reads_on_the_callers_thread(tmp_path: Path) -> None:
    # Upload.chunks(wake): a FIFO with no writer (its open waits) is opened and read by a
    # thread; the caller gets b"" (nothing yet) and `wake` when there is something
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)
    woken = threading.Event()
    up = file_upload(str(fifo))
    with blocked_read_fails():
        chunks = up.chunks(woken.set)
        assert next(chunks) == b"" and next(chunks) == b""
    with open(fifo, "wb") as w:  # the reader's open is waiting: this one does not
        w.write(b"abc")
    got = b""
    while True:
        try:
            piece = next(chunks)
        except StopIteration:
            break
        if not piece:
            assert woken.wait(30)  # the reader thread's read, not a timed assert
            woken.clear()
        got += piece
    assert got == b"abc"


def test_http2_a_silent_pipe_is_framed_when_it_gives(
    silent: Callable[..., SilentPipe], pki: dict[str, Path]
) -> None:
    # HTTP/2's pump is synchronous: the pipe's "nothing yet" ends its turn, and the
    # reader thread's wake frames what came (ours read the pipe inside the pump)
    pipe = silent(lambda _: H2Server(pki=pki), (443,))
    tls: dict[str, Any] = {"cafile": str(pki["ca"]), "connect_to": "192.0.2.80"}
    d = pipe.runs_on(lambda: http_get(pipe.rig.session, "https://www.test/up/",
                                      data=file_upload("-"), keep_body=True, timeout=30.0,
                                      **tls))  # fmt: skip
    r = pipe.give(b"late\n", d)
    assert r.error is None and r.http_version == "2" and r.body == b"ok PUT /up/ 5"
    assert pipe.made[0].requests[0][1] == b"late\n" and r.upload_size == 5


def test_a_form_part_from_a_silent_pipe_does_not_stop_the_reactor(
    silent: Callable[..., SilentPipe],
) -> None:
    # pktlab run http -F a=@- URL with a pipe that gives nothing (yet): ours read it
    # whole (curl's Content-Length) with blocking reads on the reactor's thread while
    # the request was built, so Ctrl-C, SIGTERM and the time limits stood still
    pipe = silent()
    with blocked_read_fails():
        body = multipart([parse_form("a=@-")], B)
    assert body.length is None  # not read yet
    d = pipe.runs_on(lambda: http_get(pipe.rig.session, "http://192.0.2.80/up", data=body,
                                      keep_body=True, timeout=1.0))  # fmt: skip
    assert not pipe.made  # nothing sent: the part is read first
    r = pipe.give(b"from a pipe\n", d)
    server = pipe.made[0]
    # curl 7.88.1: `printf 'from a pipe\n' | curl -F a=@-`: Content-Length 162, the -m
    # time limit (1 s here) counted from after the read, as curl's
    assert r.error is None and r.status == 200, r.error
    assert server.head is not None and server.head["content-length"] == "162"
    assert (
        bytes(server.body)
        == (
            f'--{B}\r\nContent-Disposition: form-data; name="a"; filename="-"\r\n\r\n'
            f"from a pipe\n\r\n--{B}--\r\n"
        ).encode()
    )
    assert body.rewindable  # all in memory: a 307 sends it again


def test_a_form_part_from_a_silent_pipe_is_cancelled_at_once(
    silent: Callable[..., SilentPipe], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C (the run's Deferred cancelled) while the pipe is silent: at once, no error
    # logged; then past STDIN_BUFFER: those bytes, then the rest chunked
    pipe = silent()
    with blocked_read_fails():
        d = http_get(pipe.rig.session, "http://192.0.2.80/up",
                     data=multipart([parse_form("a=@-")]))  # fmt: skip
        pipe.rig.pump.flush()
        d.cancel()
    failures: list[Any] = []
    d.addErrback(failures.append)
    pipe.close()
    assert failures and failures[0].check(CancelledError) and not pipe.made
    pipe = silent()
    monkeypatch.setattr(upload_body, "STDIN_BUFFER", 4)
    with blocked_read_fails():
        body = multipart([parse_form("a=<-;encoder=base64")], B)
        d = http_get(pipe.rig.session, "http://192.0.2.80/up", data=body, keep_body=True)
    r = pipe.give(b"0123456789", d)
    assert r.error is None and body.length is None and not body.rewindable
    made = pipe.made
    assert made[0].head is not None and made[0].head["transfer-encoding"] == "chunked"
    assert bytes(made[0].body).endswith(b"\r\n\r\nMDEyMzQ1Njc4OQ==\r\n--" + B.encode() + b"--\r\n")
