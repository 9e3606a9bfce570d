"""Session 29 (trace29): `pktlab run traceroute` beside traceroute 2.1.2 on a 3-router
chain whose r2-r3 link has an MTU of 1400, packetlen over it without `-F`. Traceroute's
probes leave one by one (a socket and a send each, ~50 µs apart), so its kernel has r2's
"packet too big" before the next probe and fragments it: IPv6 `3  r2  X ms !F-1400 r3  X
ms  X ms`. Ours left back to back, all answered "too big" (`!F-1400` three times); now the
ones answered so after the first go again in fragments of the MTU it named. IPv4 (no DF:
r2 fragments) was the same already and stays so. `--sequential` (traceroute -N 1) did
the same; and with `-F` over the endpoint's MTU it failed the run (`could not send a
2000 byte probe`, exit 2), as did `-F` with `--listen` (the controller does not know a
remote endpoint's MTU): now traceroute's `*  0.000 ms !F-1500` line, `!F` with --listen.

Every node's route cache is flushed before each tool: a path MTU one run taught a kernel
would be the next run's start. (`-I` gives the same lines, by hand; beside the other
helpers' suites native `-I -6` lost the answers to the second and third probe of each
hop in 2 runs of 4, `1  r1  X ms * *`: left out here.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pktlab_run import RUN, listen_and_endpoint, pktlab_run
from test_pmtu_like_native import flushed, narrow
from test_run_like_native import beside_native, masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"mtu29{os.getpid() % 10000}-", home=False)


@pytest.mark.parametrize(
    ("family", "extra", "size"),
    [(6, [], "1450"), (6, [], "2000"), (4, [], "1450")],
    ids=["ipv6-udp-1450", "ipv6-udp-2000", "ipv4-udp-1450"],
)
def test_probes_over_a_narrower_link_without_df_as_traceroute(
    testbed_factory: Callable[..., Testbed], family: int, extra: list[str], size: str
) -> None:
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", *extra, tg, size]
    flushed(tb)
    theirs = native("traceroute", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("traceroute", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stderr == theirs.stderr == ""
    assert masked(ours.stdout) == masked(theirs.stdout), (ours.stdout, theirs.stdout)
    if family == 6:
        r2, r3 = tb.addr("r2", 6), tb.addr("r3", 6)
        assert masked(ours.stdout)[-1] == f" 3  {r2}  R ms !F-1400 {r3}  R ms  R ms"
    else:
        assert len(masked(ours.stdout)) == 5  # the header and 4 hops: r2 fragments


@pytest.mark.parametrize(
    ("family", "extra", "size"),
    [(4, ["-F"], "2000"), (6, ["-F"], "2000"), (6, ["-F"], "1450"), (6, [], "1450")],
    ids=["ipv4-df-2000", "ipv6-df-2000", "ipv6-df-1450", "ipv6-1450"],
)
def test_sequential_as_traceroute_n_1(
    testbed_factory: Callable[..., Testbed], family: int, extra: list[str], size: str
) -> None:
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", *extra, tg, size]
    flushed(tb)
    theirs = native("traceroute", "-N", "1", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("traceroute", "--sequential", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stderr == theirs.stderr == ""
    assert masked(ours.stdout) == masked(theirs.stdout), (ours.stdout, theirs.stdout)


def run_with_listen(tb: Testbed, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    """`pktlab run ARGV... --listen` in ep with an external endpoint there (its IPv4
    address exported): the run's status, stdout and stderr."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(f"TransprotoSup raw,tcp,udp\nVMemLocalAddrStrIPv4 {tb.addr('ep', 4)}\n")
    tool, *rest = argv
    return listen_and_endpoint(
        tmp_path, [*RUN, tool, "--insecure-plaintext"],
        ["-c", str(conf), "--insecure-plaintext"], after=rest, netns=tb.netns_name("ep"),
    )  # fmt: skip


@pytest.mark.parametrize("sequential", [False, True], ids=["paced", "sequential"])
def test_df_over_a_listen_endpoints_mtu_is_a_refused_hop(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, sequential: bool
) -> None:
    """`--listen`, an external endpoint in ep, `-F TARGET 2000`: traceroute's line for a
    probe its kernel refused, the MTU not known to the controller (`!F`), exit 0."""
    tb = narrow(testbed_factory)
    tg = str(tb.addr("tg", 4))
    argv = ["-n", "-F", *(["--sequential"] if sequential else []), tg, "2000"]
    status, out, err = run_with_listen(tb, tmp_path, "traceroute", *argv)
    assert status == 0, err
    assert masked(out)[1:] == [" 1  *  R ms !F *  R ms !F *  R ms !F"]
    assert "could not send" not in err


def test_ping_pmtudisc_do_over_a_listen_endpoints_mtu_as_iputils(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    """`ping -M do -s 1500 -c 2` over a --listen endpoint: iputils' local error for each
    request (its MTU not known here, so said so), `+2 errors`, exit 1; the run failed
    (`could not send a 1528 byte echo request`, exit 2)."""
    tb = narrow(testbed_factory)
    argv = ["-n", "-M", "do", "-s", "1500", "-c", "2", "-i", "0.2", str(tb.addr("tg", 4))]
    theirs = native("ping", *argv, netns=tb.netns_name("ep"))
    status, out, err = run_with_listen(tb, tmp_path, "ping", *argv)
    assert status == theirs.returncode == 1, err
    assert masked(out) == masked(theirs.stdout)
    assert "2 packets transmitted, 0 received, +2 errors" in out
    mine = [x for x in err.splitlines() if "waiting for an endpoint" not in x]
    assert mine == ["pktlab run ping: local error: message too long (the endpoint's MTU is "
                    "not known here)"] * 2  # fmt: skip
    assert theirs.stderr.splitlines() == ["ping: local error: message too long, mtu=1500"] * 2
