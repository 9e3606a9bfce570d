"""twistd pktbroker: placeholder until the broker role lands."""

from twisted.application.service import IService
from twisted.python import usage

from packetlab._tapstub import unimplemented_options, unimplemented_service

Options = unimplemented_options("pktbroker")


def makeService(options: usage.Options) -> IService:
    return unimplemented_service("pktbroker")
