"""An endpoint in broker mode stopped (SIGTERM, as `systemctl stop` and `restart` send)
closes its broker link cleanly: the broker's line for it is `unsubscribe ...
reason=Connection was closed cleanly.`, as for an endpoint that ends its subscription,
not `... lost in a non-clean fashion` (session 35, op35: the reactor stopped before the
TLS close_notify and the FIN left). Real `twistd -n pktbroker` and `twistd -n
pktendpoint --broker` processes of a `pktlab init` home, on loopback."""

from __future__ import annotations

from pathlib import Path

import broker_world
from broker_world import BrokerProcess
from testkit.poll import poll_until
from tls_world import TLSEndpoint, home_fixture

from packetlab.ppks import PktlabHome

home = home_fixture(scope="module")


broker = broker_world.broker_per_test


def test_sigterm_closes_the_broker_link_cleanly(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    ep = TLSEndpoint(home, f"--broker=127.0.0.1:{broker.sub_port}", tmp_path)
    try:
        broker.wait_log("subscribe peer=127.0.0.1", timeout=60)
        mark = len(broker.output())
        ep.stop()  # SIGTERM, then a wait for the exit
        assert ep.proc.returncode == 0, ep.output()[-2000:]
        poll_until(lambda: "unsubscribe peer=" in broker.output()[mark:], timeout=30)
        line = next(ln for ln in broker.output()[mark:].splitlines() if "unsubscribe peer=" in ln)
        assert line.endswith("reason=Connection was closed cleanly."), line
    finally:
        ep.stop()
