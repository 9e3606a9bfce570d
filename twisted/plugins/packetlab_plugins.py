# One line per role so that `twistd --help` imports nothing heavy (STYLE.md).
from twisted.application.service import ServiceMaker

pktendpoint = ServiceMaker(
    "pktendpoint", "packetlab.endpoint.tap", "PacketLab measurement endpoint", "pktendpoint"
)
pktbroker = ServiceMaker(
    "pktbroker", "packetlab.broker.tap", "PacketLab broker (rendezvous)", "pktbroker"
)
pktproxy = ServiceMaker(
    "pktproxy", "packetlab.proxy.tap", "PacketLab SNI-routing proxy", "pktproxy"
)
