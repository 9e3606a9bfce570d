"""Session 30 (wrap30): `pktlab wrap` leftovers of session 29 (docs/usability.md "Session
29 (wrap29)"). Each test runs a program natively and wrapped (in-process endpoint) and
failed on the code before its fix (its docstring says how)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_wrap_s29 import _compile
from test_wrap_sockets25 import _proxychains

# A user and network namespace of the test's own in which 10.99.0.2 swallows SYNs: its
# frames go out of a veth to a MAC address nobody has (no iptables needed), so a connect
# to it times out natively as to a blackholed address on the Internet; 10.99.0.3 has no
# neighbour entry, and its ARP requests go unanswered (no host: EHOSTUNREACH).
_BLACKHOLE = """\
ip link set lo up && ip link add w30a type veth peer name w30b && ip link set w30a up &&
ip link set w30b up && ip addr add 10.99.0.1/24 dev w30a &&
ip neigh add 10.99.0.2 lladdr 02:00:00:00:30:99 dev w30a nud permanent || exit 99
for run in $RUNS; do "$EXE" $(echo $run | tr , " "); done
echo ---
for run in $RUNS; do  # the endpoint's connect gives up at 1 s, or after the ARP's 3 s
  t=1; case $run in *,n) t=10;; esac
  "$PY" -m packetlab wrap --connect-timeout $t -- "$EXE" $(echo $run | tr , " ")
done
"""


def _in_blackhole_namespace(exe: Path, runs: list[str]) -> tuple[list[str], list[str]]:
    """The probe's lines natively and wrapped, each run (its arguments, comma-separated)
    its own connect."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip")
    _proxychains()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "EXE": str(exe), "PY": sys.executable,
           "RUNS": " ".join(runs), "HOME": str(exe.parent)}  # fmt: skip
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", _BLACKHOLE],
        capture_output=True, timeout=240, cwd=REPO, env=env,
    )  # fmt: skip
    if done.returncode == 99 or b"unshare:" in done.stderr:
        pytest.skip(f"no network namespace with a veth here: {done.stderr[-200:]!r}")
    native, wrapped = done.stdout.decode().split("---\n")
    return native.splitlines(), wrapped.splitlines()


def test_reads_and_sends_after_a_timed_out_connect_fail_as_natively(tmp_path: Path) -> None:
    """A non-blocking connect to a blackholed address that times out: natively the first
    read(), recv(), write() or send() after it fails ETIMEDOUT (then EOF / EPIPE, and
    SO_ERROR 0); EHOSTUNREACH after a connect to an address no host answers ARP for.
    Wrapped they failed ECONNREFUSED (the kernel error the shim puts on the socket is a
    loopback port's reset); SO_ERROR, poll and a second connect() were already as
    natively, and are compared too."""
    exe = _compile(tmp_path, "timedout_connect")
    runs = [f"10.99.0.2,80,{order}" for order in ("prwep", "pwrep", "pRSe", "perwp", "pcp")]
    # No TCP_SYNCNT (it does not reach the endpoint). Natively POLLERR stays after this
    # error was read; wrapped it goes (docs/wrap.md): not compared.
    runs.append("10.99.0.3,80,prwe,n")
    # The number closed and given to a unix socket: its own ECONNREFUSED is not the
    # connect's error (the shim does not see close())
    runs.append("10.99.0.2,80,pu")
    native, wrapped = _in_blackhole_namespace(exe, runs)
    assert len(native) == 7, native
    # what the native run shows, so the comparison means something
    assert "read ETIMEDOUT write EPIPE SO_ERROR 0" in native[0]
    assert "write ETIMEDOUT read EOF" in native[1]
    assert "recv ETIMEDOUT send EPIPE" in native[2]
    assert "SO_ERROR ETIMEDOUT read EOF write EPIPE" in native[3]
    assert "poll 1 revents IN OUT ERR HUP connect ETIMEDOUT" in native[4]
    assert "read EHOSTUNREACH write EPIPE SO_ERROR 0" in native[5]
    assert "unix send ECONNREFUSED" in native[6]
    # connect() itself blocks while the endpoint connects (docs/wrap.md): not compared
    assert [line.replace(" blocked ", " at-once ") for line in wrapped] == native
