"""A twistd plugin for a role whose implementation has not landed yet.

It exists so that `twistd --help` already lists every role and so that running one
says plainly that it is missing (a one-line usage error), instead of failing on an import.
"""

from twisted.application.service import IService
from twisted.python import usage


def unimplemented_options(role: str) -> type[usage.Options]:
    class Options(usage.Options):
        longdesc = f"{role}: not implemented yet in this version of packetlab."

        def postOptions(self) -> None:
            raise usage.UsageError(f"{role} is not implemented yet in this version of packetlab")

    return Options


def unimplemented_service(role: str) -> IService:
    raise usage.UsageError(f"{role} is not implemented yet in this version of packetlab")
