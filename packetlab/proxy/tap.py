"""twistd pktproxy: placeholder until the proxy role lands."""

from twisted.application.service import IService
from twisted.python import usage

from packetlab._tapstub import unimplemented_options, unimplemented_service

Options = unimplemented_options("pktproxy")


def makeService(options: usage.Options) -> IService:
    return unimplemented_service("pktproxy")
