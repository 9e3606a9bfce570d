"""An endpoint whose clock is not ours: `pktlab run ping --warts` and `run sendgap` against
a real `twistd -n pktendpoint`, with the clocks 10 min apart.

The skew is put on the controller's side (libfaketime preloaded into `pktlab run`, its
CLOCK_REALTIME 600 s behind), not the endpoint's: what matters is the difference, and an
endpoint under libfaketime would mix faked user-space reads (TIME, its timerfd deadlines)
with the kernel's unfaked packet stamps (SO_TIMESTAMPNS), which no real host does. So the
endpoint is a whole host 10 min ahead of the controller; its kernel stamps, scheduler and
TIME all agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faketime_pair import ENV, RAW_CONF, REPO, Pair, libfaketime, needs_faketime

from packetlab.measure.warts_format import OBJ_CYCLE_START, OBJ_CYCLE_STOP, OBJ_PING
from packetlab.measure.warts_read import read_warts

pytestmark = needs_faketime


def run_behind(tmp_path: Path, *argv: str, shift: str = "-600s") -> tuple[int, str, str]:
    """`pktlab run ARGV` with our clock shifted by `shift` (the endpoint, on the real
    clock, is that much ahead of us), and one endpoint for it."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(RAW_CONF)
    fake = libfaketime(shift, FAKETIME_DONT_FAKE_MONOTONIC="1")
    return Pair(*argv, fake=fake, faked="controller", config=conf).finish()


@pytest.mark.skipif(os.geteuid() != 0, reason="the endpoint's raw socket needs root")
def test_a_ping_warts_is_on_the_endpoints_clock_throughout(tmp_path: Path) -> None:
    # Before: cycle start 1796649629 (the endpoint's first request), stop 1796649030 (our
    # clock): the cycle stopped 599 s before it started.
    warts = tmp_path / "p.warts"
    before = time.time()
    rc, out, err = run_behind(tmp_path, "ping", "-c", "2", "-i", "0.2", "127.0.0.1",
                              "--warts", str(warts))  # fmt: skip
    after = time.time()
    assert rc == 0, err
    assert "2 received" in out, out
    objs = read_warts(warts.read_bytes())
    (start,) = [o.fixed["start"] for o in objs if o.kind == OBJ_CYCLE_START]
    (stop,) = [o.fixed["stop"] for o in objs if o.kind == OBJ_CYCLE_STOP]
    assert [o.kind for o in objs].count(OBJ_PING) == 1
    # the endpoint's clock is the real one (ours was 600 s behind it)
    assert int(before) <= start <= stop <= after, (before, start, stop, after)


def test_a_train_is_scheduled_on_the_endpoints_clock(tmp_path: Path) -> None:
    # Times in our clock would be 600 s in the endpoint's past (sent at once, offsets of
    # -600 s) or, the other way, 600 s in its future (nothing sent within the timeout).
    rc, out, err = run_behind(tmp_path, "sendgap", "--trains", "1", "--count", "20",
                              "--gap-us", "1000", "--json")  # fmt: skip
    assert rc == 0, err
    assert '"sent": 20' in out, out
    (train,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "sendgap"]
    assert 0 < train["lead_ms"] < 5_000, train  # not 600,000 ms
    assert train["abs_offset_us"]["p50"] < 1e6, train


def test_a_chain_refused_by_an_endpoint_10_min_behind_names_its_clock(tmp_path: Path) -> None:
    # An operator's exppriv certificate valid from now for an hour; the endpoint's clock
    # 10 min behind (libfaketime on the endpoint: its chain check reads only the
    # user-space clock). Before: "...certificate_expired (the peer refused our certificate
    # chain: a certificate has expired or is not valid yet; ...)" and no word of clocks.
    home = tmp_path / "home"
    pktlab = [sys.executable, "-m", "packetlab"]
    subprocess.run([*pktlab, "init", "--home", str(home)], env=ENV, cwd=REPO, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    now = int(time.time())
    subprocess.run(
        [*pktlab, "ppks", "sign", "exppriv", str(home / "keys/k_eop"), str(now - 5),
         str(now + 3600), str(home / "certs/exppriv_eop_exper.cert"), "-k",
         str(home / "keys/k_exper.pub")],
        env=ENV, cwd=REPO, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pair = Pair("clocksync", "-c", "2", "--timeout", "60", home=home,
                config=home / "endpt.conf", fake=libfaketime("-600s"))  # fmt: skip
    rc, _, text = pair.finish()
    assert rc == 2, text
    assert "the peer sent the TLS alert certificate_expired" in text, text
    assert "our chain is valid by this host's clock" in text, text
    assert "the endpoint's clock and ours differ (either may be wrong" in text, text
