"""Type aliases for Twisted's zope interfaces in the TLS layer's signatures."""

from collections.abc import Callable
from typing import Any

# zope interfaces are not types to mypy without the mypy-zope plugin, so a `Factory` or a
# `TCP4ClientEndpoint` would not type-check as its interface; these aliases name the
# interface expected and accept any object.
AnyProtocol = Any  # IProtocol provider
AnyProtocolFactory = Any  # IProtocolFactory provider
AnyClientEndpoint = Any  # IStreamClientEndpoint provider
AnyServerEndpoint = Any  # IStreamServerEndpoint provider
AnyListeningPort = Any  # IListeningPort provider
AnyReactorTime = Any  # IReactorTime provider
RefusalDelay = tuple[Callable[[str], float], AnyReactorTime]  # (seconds for a host, clock)
