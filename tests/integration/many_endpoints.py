"""N endpoints in one process: `twistd pktendpoint`'s own service (NoSub, TLS), N times in
one reactor, so that a test can have many arrive at once without N interpreters starting.

    python many_endpoints.py ENDPT_CONF ADDR:PORT N [SNIKEY]

Endpoint i has HostID `ep<i>`; each runs one session and then waits (reconnect delay one
hour), so every endpoint arrives exactly once. Runs until killed."""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from packetlab.endpoint import tap


def main() -> None:
    conf, address, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    snikey = ["--snikey", sys.argv[4]] if len(sys.argv) > 4 else []
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    services = []
    for i in range(count):
        options = tap.Options()
        options.parseOptions(["-c", conf, "--host-id", f"ep{i}", "--reconnect-delay", "3600",
                              *snikey, address])  # fmt: skip
        services.append(tap.makeService(options))
    for s in services:
        s.startService()
    print(f"{count} endpoints started", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
