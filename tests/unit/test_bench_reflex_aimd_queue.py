"""bench_reflex_aimd's tbf queue summary counts only the samples while the sender keeps the
queue busy: not a stray packet's second before the first data packet, nor the drain while
the endpoint exits (which set the half-full share by their length: test_reflex_aimd's
flake)."""

from __future__ import annotations

from benchmarks.bench_reflex_aimd import queue_summary, sending

PKT = 1042  # 1000 bytes of payload + UDP/IP/Ethernet headers


def sample(backlog: int, packets: int, drops: int = 0) -> dict[str, float]:
    return {"t": 0.0, "backlog": backlog, "qlen": backlog // PKT, "drops": drops,
            "packets": packets, "limit": 7500}  # fmt: skip


def test_only_the_busy_samples_count() -> None:
    stray = [sample(0, 0), sample(0, 3), sample(0, 3)]  # e.g. ARP before the first data
    run = [sample(7 * PKT, 10), sample(4 * PKT, 20, 1), sample(0, 25, 1), sample(6 * PKT, 30, 1)]
    drain = [sample(PKT, 33, 1), sample(0, 34, 1), sample(0, 34, 1)]
    samples = stray + run + drain
    assert sending(samples) == run + drain[:1]
    q = queue_summary(samples, PKT)
    assert q["samples"] == 5
    assert q["half_full"] == 3 / 5  # 7, 4 and 6 packets of the 7.2 that fit
    assert q["full"] == 1 / 5  # only 7 packets leave no room for one more
    assert (q["packets"], q["drops"]) == (34, 1)  # counted over the whole run


def test_a_queue_never_used_has_no_samples() -> None:
    assert queue_summary([sample(0, 0), sample(0, 5)], PKT) == {"samples": 0}
