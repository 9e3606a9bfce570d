"""`pktlab run ARGV --listen 127.0.0.1:0` and one real `twistd -n pktendpoint` connecting
to it, with one side's clock under libfaketime (`Pair`): what the clock tests launch
(test_clocksync_faketime, test_skew33_clock, test_clock34_summary).

libfaketime is preloaded directly (LD_PRELOAD, FAKETIME=SPEC, as `faketime -f SPEC` runs
a program): the `faketime` wrapper does not pass SIGTERM on, and its endpoint outlived a
test. It shifts user-space clock reads only: the kernel's packet stamps (SO_TIMESTAMPNS)
and a CLOCK_REALTIME timerfd stay on the real clock. So an endpoint under it is right for
what reads TIME only (clocksync, a certificate check); for packet stamps shift the
controller instead (the endpoint is then a whole host ahead or behind: its stamps,
scheduler and TIME agree)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import readline, stop_process, twistd

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
#: the library `faketime` preloads (Debian's path); None when it is not installed
LIBFAKETIME = next(
    (p for p in Path("/usr/lib").glob("*/faketime/libfaketime.so.1") if p.exists()), None
)
needs_faketime = pytest.mark.skipif(
    LIBFAKETIME is None, reason="libfaketime.so.1 not found (apt-get install faketime)"
)
#: an endpoint that can send raw (ping, traceroute) from 127.0.0.1
RAW_CONF = "BufMax 8388608\nTransprotoSup tcp,udp,raw\nVMemLocalAddrStrIPv4 127.0.0.1/8\n"


def libfaketime(spec: str | None = None, **more: str) -> dict[str, str]:
    """The environment that runs a program under libfaketime: FAKETIME=`spec` (none: the
    real clock, or what `more` says, e.g. FAKETIME_TIMESTAMP_FILE) and `more` of its
    variables (FAKETIME_DONT_FAKE_MONOTONIC="1": the monotonic clock left alone)."""
    assert LIBFAKETIME is not None
    env = {"LD_PRELOAD": str(LIBFAKETIME), **more}
    if spec is not None:
        env["FAKETIME"] = spec
    return env


def stepped_endpoint(
    tmp_path: Path, port: int, reconnect_delay: float
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """A NoSub `twistd -n pktendpoint` connecting in plaintext to 127.0.0.1:`port`, its
    wall clock under libfaketime, stepped by writing the returned stamp file (`+0`,
    `-60`: re-read at each clock read; the monotonic clock left alone, as a real step
    leaves it); and its log file. The caller stops it (`stop_process`)."""
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    log = tmp_path / "ep.log"
    log.touch()
    fake = libfaketime(
        FAKETIME_TIMESTAMP_FILE=str(stamp), FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1"
    )
    conf = tmp_path / "endpt.conf"
    conf.write_text("NoSubMode 1\n")
    ep = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint", "--config",
         str(conf), "--reconnect-delay", str(reconnect_delay), "--insecure-plaintext",
         f"127.0.0.1:{port}"],
        env={**ENV, **fake}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return ep, stamp, log


class Pair:
    """`pktlab run ARGV --listen 127.0.0.1:0` (plaintext; with `home`, TLS with its
    certificates) and one endpoint that connects to it once it listens (`config`: its
    configuration file). `fake` (libfaketime's environment, `libfaketime()`) is put on
    the `faked` side, "endpoint" or "controller"."""

    def __init__(
        self,
        *argv: str,
        fake: Mapping[str, str] | None = None,
        faked: Literal["endpoint", "controller"] = "endpoint",
        home: Path | None = None,
        config: str | Path = os.devnull,
    ) -> None:
        fake = fake or {}
        ctl_fake, ep_fake = (fake, {}) if faked == "controller" else ({}, fake)
        link = ["--insecure-plaintext"] if home is None else ["--home", str(home)]
        self.ep: subprocess.Popen[bytes] | None = None
        self.ctl = subprocess.Popen(
            [sys.executable, "-m", "packetlab", "run", *argv, "--listen", "127.0.0.1:0", *link],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**ENV, **ctl_fake}, cwd=REPO,
        )  # fmt: skip
        try:
            assert self.ctl.stderr is not None
            said = readline(self.ctl.stderr)
            port = re.search(r"127\.0\.0\.1:(\d+)", said)
            assert port, said
            self.ep = subprocess.Popen(
                [*twistd(), "-n", "--pidfile=", "pktendpoint",
                 *(["--insecure-plaintext"] if home is None else []), "--config", str(config),
                 "--reconnect-delay", "60", f"127.0.0.1:{port.group(1)}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**ENV, **ep_fake}, cwd=REPO,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        """Wait for the run (at most `timeout` s), stop both: its status, stdout, stderr."""
        try:
            out, err = self.ctl.communicate(timeout=timeout)
        finally:
            self.stop()
        return self.ctl.returncode, out.decode(), err.decode()

    def records(self) -> list[dict[str, Any]]:
        """The run's JSON lines (it must end with status 0)."""
        rc, out, err = self.finish()
        assert rc == 0, err
        return [json.loads(x) for x in out.splitlines()]

    def stop(self) -> None:
        for p in (self.ctl, self.ep):
            if p is not None:
                stop_process(p)
