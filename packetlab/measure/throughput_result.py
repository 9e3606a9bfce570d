"""A timed iperf3 test's result (`TimedResult`): both sides' figures per stream and summed
as iperf3 sums them (--bidir's two roles apart), and the sender's TCP statistics
(`TcpStats`) from the endpoint's TCP_INFO samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packetlab.measure.throughput_spec import TimedSpec

__all__ = ["TcpStats", "TimedResult", "interval_sum", "side"]


@dataclass(slots=True)
class TcpStats:
    """A stream's TCP_INFO samples as iperf3's sender statistics (its -J end.streams[]
    .sender: max_snd_cwnd and max_snd_wnd in bytes, max_rtt, min_rtt, mean_rtt in µs, the
    mean an integer division as iperf3's)."""

    max_snd_cwnd: int = 0
    max_snd_wnd: int = 0
    max_rtt: int = 0
    min_rtt: int = 0
    rtt_sum: int = 0
    count: int = 0

    def add(self, info: Any) -> None:
        self.max_snd_cwnd = max(self.max_snd_cwnd, info.cwnd_bytes)
        self.max_snd_wnd = max(self.max_snd_wnd, info.snd_wnd)
        self.max_rtt = max(self.max_rtt, info.rtt)
        self.min_rtt = info.rtt if not self.count else min(self.min_rtt, info.rtt)
        self.rtt_sum += info.rtt
        self.count += 1

    def fields(self) -> dict[str, int]:
        return {"max_snd_cwnd": self.max_snd_cwnd, "max_snd_wnd": self.max_snd_wnd,
                "max_rtt": self.max_rtt, "min_rtt": self.min_rtt,
                "mean_rtt": self.rtt_sum // self.count if self.count else 0}  # fmt: skip


@dataclass(slots=True)
class TimedResult:
    spec: TimedSpec
    server: str
    port: int
    seconds: float | None = None  # the test's span (TEST_START to its end), endpoint time
    streams: list[dict[str, Any]] = field(default_factory=list)
    late: tuple[int, int, float] | None = None  # scheduled sends: (late, tagged, worst ms)
    stopped: bool = False  # ended early when asked (`stopping`: Ctrl-C)
    pcap_dropped: int = 0  # --pcap: data packets past its bound, not in the file
    server_output: str | dict[str, Any] | None = None  # --get-server-output: the server's
    remote: dict[str, Any] = field(default_factory=dict)  # its CPU figures and congestion
    error: str | None = None
    native_error: str | None = None  # iperf3 3.12's words for `error`, where it has its own

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {
            "type": "throughput",
            "direction": "bidir" if s.bidir else s.direction,
            "server": self.server,
            "port": self.port,
            "protocol": "udp" if s.udp else "tcp",
            "parallel": s.streams,
            "time": s.told_seconds,
            "bytes": s.nbytes,
            "interval": s.interval,
            "length": s.block,
        }
        if s.nbytes is not None:
            out["bytes_limit"] = s.nbytes  # -n (`bytes` becomes what was moved)
        if s.blocks is not None:
            out["blocks"] = s.blocks
        if s.rate:
            out["bitrate"] = s.rate
        if s.omit:
            out["omit"] = s.omit
        if s.cport is not None:
            out["cport"] = s.cport
        if self.error is not None:
            out["error"] = self.error
            out["iperf3_error"] = self.native_error or self.error  # -J's `error`, the text's
            if s.extra_data is not None:  # 3.12's document of a failed test has it too
                out["extra_data"] = s.extra_data
            return out
        if s.bidir:
            out["bidir"] = True
            return self._bidir_dict(out)
        ours, theirs = "receiver", "sender"
        if s.direction == "upload":
            ours, theirs = theirs, ours
        total = {side: _sum([st[side] for st in self.streams], s.udp) for side in (ours, theirs)}
        out.update(
            seconds=self.seconds,
            bytes=total[ours]["bytes"],
            mbit_s=total["receiver"]["mbit_s"],
            method="ndata-stamps" if s.direction == "download" else "iperf3-server",
            server_bytes=total[theirs]["bytes"],
            server_seconds=total[theirs]["seconds"],
            server_mbit_s=total[theirs]["mbit_s"],
            endpoint=ours,
            streams=self.streams,
            sum=total,
        )
        if s.direction == "upload":
            out["sender_mbit_s"] = total["sender"]["mbit_s"]
        return self._ending(out)

    def _ending(self, out: dict[str, Any]) -> dict[str, Any]:
        """`out` with how the test ended: stopped early, and timed sends that left late."""
        if self.stopped:
            out["stopped"] = True
        if self.pcap_dropped:
            out["pcap_dropped"] = self.pcap_dropped
        if isinstance(self.server_output, str):
            out["server_output_text"] = self.server_output
        elif self.server_output is not None:
            out["server_output_json"] = self.server_output
        if self.spec.extra_data is not None:
            out["extra_data"] = self.spec.extra_data
        if self.remote:
            out["server_info"] = self.remote
        if self.late is not None:
            out.update(late_sends=self.late[0], tagged_sends=self.late[1],
                       late_max_ms=self.late[2])  # fmt: skip
        return out

    def _bidir_dict(self, out: dict[str, Any]) -> dict[str, Any]:
        """--bidir: the sending streams (TX-C: the endpoint's ntags, the server's receiver
        figure) and the receiving ones (RX-C: the endpoint's stamps, the server's sender
        figure) summed apart, as iperf3's sum_sent/sum_received and their _bidir_reverse."""
        udp = self.spec.udp
        tx = [st for st in self.streams if st["role"] == "TX-C"]
        rx = [st for st in self.streams if st["role"] == "RX-C"]
        sums = {role: {side: _sum([st[side] for st in group], udp)
                       for side in ("sender", "receiver")}
                for role, group in (("TX-C", tx), ("RX-C", rx))}  # fmt: skip
        out.update(
            seconds=self.seconds,
            bytes=sums["TX-C"]["sender"]["bytes"],  # what the endpoint sent
            mbit_s=sums["TX-C"]["receiver"]["mbit_s"],  # the server's figure for it
            bytes_reverse=sums["RX-C"]["receiver"]["bytes"],  # what the endpoint received
            mbit_s_reverse=sums["RX-C"]["receiver"]["mbit_s"],  # the endpoint's stamps
            method="bidir",
            endpoint="TX-C sender, RX-C receiver",
            streams=self.streams,
            sum=sums["TX-C"],
            sum_reverse=sums["RX-C"],
        )
        return self._ending(out)


def _sum(sides: list[dict[str, Any]], udp: bool) -> dict[str, Any]:
    nbytes = sum(x["bytes"] for x in sides)
    seconds = max((x["seconds"] for x in sides), default=0.0)
    out: dict[str, Any] = {
        "bytes": nbytes,
        "seconds": seconds,
        "mbit_s": nbytes * 8 / seconds / 1e6 if seconds > 0 else None,
    }
    if sides and all("retransmits" in x for x in sides):
        out["retransmits"] = sum(x["retransmits"] for x in sides)
    if udp:
        out["packets"] = sum(x.get("packets", 0) for x in sides)
        if all("lost" in x for x in sides):
            out["lost"] = sum(x["lost"] for x in sides)
            out["jitter_ms"] = sum(x["jitter_ms"] for x in sides) / max(len(sides), 1)
    return out


def interval_sum(streams: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    nbytes = sum(st["bytes"] for st in streams)
    return {"bytes": nbytes, "packets": sum(st["packets"] for st in streams),
            "bits_per_second": nbytes * 8 / seconds if seconds > 0 else 0.0}  # fmt: skip


def side(nbytes: int, seconds: float, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bytes": nbytes,
        "seconds": round(seconds, 6),
        "mbit_s": nbytes * 8 / seconds / 1e6 if seconds > 0 else None,
    }
    out.update(extra)
    return out
