"""What `pktlab run throughput -t/-n/-k/-P/-u/-b/-i` takes (`TimedSpec`): native
`iperf3 -c`'s options for a test `throughput_timed` runs, and the ones iperf3 refuses
refused here with its words."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from packetlab.measure import iperf3

__all__ = ["FOREVER_S", "TimedSpec"]

# -t 0, iperf3's test without an end (until Ctrl-C): here the longest -t, whose end the
# endpoint is told, as every -t test's (a test without one is not built)
FOREVER_S = 86400.0


@dataclass(slots=True)
class TimedSpec:
    """What native `iperf3 -c` takes: `seconds` (-t), `nbytes` (-n, all streams
    together) or `blocks` (-k: blocks of `length` sent or received, all streams together;
    --bidir: per direction, the first to reach it ends the test), `streams`
    (-P), `udp` (-u), `bitrate` (-b, bit/s per stream; UDP default 1048576, TCP unlimited),
    `interval` (-i; 0: one, the whole test), `length` (-l), `omit` (-O: that many whole
    seconds of pre-test before the T seconds counted), `cport` (--cport: stream k binds local port
    cport + k at the endpoint, as iperf3 3.12), `bidir` (--bidir: the endpoint sends on
    `streams` streams and receives on as many, at once; `direction` is then not used)."""

    direction: str = "download"
    seconds: float | None = None
    nbytes: int | None = None
    blocks: int | None = None  # -k
    streams: int = 1
    udp: bool = False
    bitrate: float | None = None
    interval: float = 0.0
    length: int | None = None
    wide: bool = False  # --udp-counters-64bit
    omit: int = 0  # -O: seconds of pre-test first, reported "(omitted)" and not counted
    cport: int | None = None  # --cport: the data streams' local ports at the endpoint, from it
    bidir: bool = False  # --bidir: `streams` sending and as many receiving, at once
    extra_data: str | None = None  # --extra-data: told the server (its JSON shows it)
    server_output: bool = False  # --get-server-output: the server's own report, in the result
    title: str | None = None  # -T: told the server too (its lines start with it), as native
    repeating_payload: bool = False  # --repeating-payload: "0123..." blocks both ways
    bind: str | None = None  # -B: the endpoint's local address for every connection
    connect_timeout: float | None = None  # --connect-timeout (s): the control connection's
    authtoken: str | None = None  # --username: iperf3's encrypted credentials
    file: str | None = None  # -F: blocks read from it (sending), what came written to it
    # iperf3 labels a stream with its socket's descriptor: one more with --logfile (the
    # log file opened before them: `[  6]`, `[  8]`), as 3.12 prints and puts in -J
    fd_offset: int = 0
    forever: bool = False  # -t 0: until Ctrl-C, as iperf3 (`seconds` is then FOREVER_S)
    # -b RATE/BURST: paced sends go `burst` blocks back to back, a burst every `burst`
    # blocks' time at the rate, as iperf3's multisend; the server is told (its -R sends)
    burst: int = 0
    # --pacing-timer (µs): told the server, which paces its -R sends with it; the
    # endpoint's own sends go at their scheduled times whatever it says
    pacing_timer: int = iperf3.DEFAULT_PACING_TIMER
    # --rcv-timeout (s): receiving (-R, --bidir), a running test with no data for that
    # long fails with iperf3 3.12's `idle timeout for receiving data` (native's default
    # 120 s; here, without it, --max-time bounds the test)
    rcv_timeout: float | None = None
    # -d: told each control state and JSON message, a line each (ours, not iperf3's
    # debug lines)
    debug: Callable[[str], None] | None = None
    # -N, --fq-rate, -C, -Z, --dont-fragment: told the server, as native tells it; only
    # where it alone sends (-R), since the endpoint's sockets take no option (`check`)
    server_sockopts: iperf3.ServerSockopts = field(default_factory=iperf3.ServerSockopts)

    def check(self) -> None:
        if self.direction not in ("download", "upload"):
            raise ValueError(f"direction must be download or upload, got {self.direction!r}")
        ends = [x for x in (self.seconds, self.nbytes, self.blocks) if x is not None]
        if len(ends) > 1:
            raise ValueError("only one test end condition (-t, -n, -k) may be specified")
        if not ends and self.file is not None and self.direction == "upload" and not self.bidir:
            try:  # iperf3 3.12: -F alone is -n of the file's size (a missing file: the test's
                self.nbytes = os.stat(self.file).st_size or None  # error, when it opens it)
            except OSError:
                pass
        if not ends and self.nbytes is None:
            self.seconds = iperf3.DEFAULT_TIME
        if not 0 <= self.omit <= iperf3.MAX_OMIT:
            raise ValueError(f"-O must be 0..{iperf3.MAX_OMIT} s (iperf3's bound), got {self.omit}")
        if self.omit and self.counted:
            raise ValueError(
                "-O with -n or -k is not built here (-O omits the first seconds of a -t test)"
            )
        if self.cport is not None and not 1 <= self.cport <= 65536 - self.sockets:
            raise ValueError(
                f"--cport must be 1..65535 with room for the {self.sockets} streams' ports "
                f"(cport + 0..{self.sockets - 1}), got {self.cport}"
            )
        if self.server_sockopts.any() and (self.direction == "upload" or self.bidir):
            raise ValueError(
                "-N, --fq-rate, -C, -Z, --dont-fragment: only with -R (the server the only "
                "sender, told as iperf3 tells it): PacketLab cannot set them on the "
                "endpoint's sockets"
            )
        if self.seconds == 0:  # iperf3 -t 0: no end of its own, Ctrl-C ends it
            self.forever, self.seconds = True, FOREVER_S
        if self.seconds is not None and not 0 < self.seconds <= FOREVER_S:
            raise ValueError(
                f"-t must be 0 (until Ctrl-C, as iperf3) or 0 < T <= 86400 s, got {self.seconds:g}"
            )
        if self.nbytes is not None and self.nbytes <= 0:
            raise ValueError(f"-n must be positive, got {self.nbytes}")
        if self.blocks is not None and self.blocks <= 0:
            raise ValueError(f"-k must be positive, got {self.blocks}")
        if not 1 <= self.streams <= iperf3.MAX_STREAMS:
            raise ValueError(
                f"-P must be 1..{iperf3.MAX_STREAMS} (iperf3's maximum), got {self.streams}"
            )
        if self.interval and not iperf3.MIN_INTERVAL <= self.interval <= iperf3.MAX_INTERVAL:
            raise ValueError(
                f"-i must be 0 or {iperf3.MIN_INTERVAL:g}..{iperf3.MAX_INTERVAL:g} s "
                f"(iperf3's bounds), got {self.interval:g}"
            )
        if self.bitrate is not None and self.bitrate < 0:
            raise ValueError(f"-b must not be negative, got {self.bitrate:g}")
        if not 0 <= self.burst <= iperf3.MAX_BURST:
            raise ValueError(f"invalid burst count (maximum = {iperf3.MAX_BURST}), as iperf3")
        if not 0 <= self.pacing_timer <= iperf3.MAX_PACING_TIMER:
            raise ValueError(
                f"--pacing-timer must be 0..{iperf3.MAX_PACING_TIMER} µs, got {self.pacing_timer}"
            )
        if self.rcv_timeout is not None:
            if not iperf3.MIN_RCV_TIMEOUT <= self.rcv_timeout <= iperf3.MAX_RCV_TIMEOUT:
                raise ValueError(
                    f"--rcv-timeout {self.rcv_timeout * 1e3:g}: receive timeout value is "
                    "incorrect or not in range (100..86400000 ms), as iperf3"
                )
            if self.direction != "download" and not self.bidir:
                raise ValueError(
                    "--rcv-timeout: client receive timeout is valid only in receiving mode "
                    "(-R, --bidir), as iperf3"
                )
        if self.length == 0:  # iperf3 3.12: -l 0 is the default block
            self.length = None
        self.check_length()
        if self.file is not None and self.bidir:
            raise ValueError(
                "-F with --bidir is not built: iperf3 3.12 opens the file for writing, "
                "emptying it, for its receiving streams while its sending streams read it "
                "(it sent nothing of a 1 MB file, and left 128 KiB of what came in it)"
            )
        if self.connect_timeout is not None and not 0 < self.connect_timeout <= 3600:
            raise ValueError(
                f"--connect-timeout must be 1..3600000 ms, got {self.connect_timeout * 1e3:g}"
            )

    @property
    def told_seconds(self) -> float | None:
        """-t as given (0: until Ctrl-C), as the server is told and the output says."""
        return 0.0 if self.forever else self.seconds

    def progress(self, done: float) -> str:
        """The progress line's time: `3.0/10 s`, `3.0 s (until Ctrl-C)` for -t 0."""
        if self.forever or self.seconds is None:
            return f"{done:.1f} s (until Ctrl-C)"
        return f"{min(done, self.seconds):.1f}/{self.seconds:g} s"

    def check_length(self) -> None:
        """-l in iperf3 3.12's bounds and words (iperf_api.c: IEBLOCKSIZE for TCP,
        IEUDPBLOCKSIZE for UDP)."""
        n = self.length
        if n is None:
            return
        if not 0 < n <= iperf3.MAX_BLOCK:
            raise ValueError(f"-l {n}: block size too large (maximum = {iperf3.MAX_BLOCK} "
                             "bytes), as iperf3")  # fmt: skip
        if self.udp and not iperf3.MIN_UDP_BLOCK <= n <= iperf3.MAX_UDP_BLOCK:
            raise ValueError(
                f"-l {n}: block size invalid (minimum = {iperf3.MIN_UDP_BLOCK} bytes, "
                f"maximum = {iperf3.MAX_UDP_BLOCK} bytes), as iperf3"
            )

    @property
    def counted(self) -> bool:
        """The test ends on a count (-n or -k), not a time."""
        return self.nbytes is not None or self.blocks is not None

    @property
    def sockets(self) -> int:
        """Data connections: `streams`, twice that with --bidir."""
        return 2 * self.streams if self.bidir else self.streams

    def direction_of(self, k: int) -> str:
        """The direction of data stream k (from 0): --bidir's first half sends (iperf3's
        TX-C), the second receives (RX-C)."""
        if self.bidir:
            return "upload" if k < self.streams else "download"
        return self.direction

    @property
    def block(self) -> int:
        if self.length:
            return self.length
        return iperf3.DEFAULT_UDP_BLOCK if self.udp else iperf3.BLOCK

    @property
    def rate(self) -> float | None:
        """bit/s per stream, None: as fast as it goes."""
        if self.bitrate:
            return self.bitrate
        return float(iperf3.DEFAULT_UDP_RATE) if self.udp and self.bitrate is None else None
