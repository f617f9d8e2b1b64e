# -*- test-case-name: chatd.test.test_website -*-
"""
Listeners behind a proxy that speaks the PROXY protocol: C{haproxy:} in front
of an endpoint string (C{--binary haproxy:tcp:4017}).

Twisted parses the PROXY header (v1 and v2) for such endpoints
(L{twisted.protocols.haproxy}), and once it is read the transport's
C{getPeer()} is the client's address. But Twisted starts the protocol it
wraps as soon as the proxy connects, before the header has arrived, when
C{getPeer()} still names the proxy (Twisted issue 12501); and when the header
arrives on its own, the protocol hears nothing of it. chatd's doors take the
client's address when they start, for the per-address limits, and the text
door speaks first; so here a door is started only once the header has been
read, and from then on the connection is Twisted's.

A connection whose first bytes are not a PROXY header is closed, as Twisted
does, without the door ever seeing it.
"""

from typing import Type, cast

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

PREFIX = "haproxy:"


class _Early(Protocol):
    """
    Stands in for the door while the header is parsed, keeping the bytes that
    came with it.
    """

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class _StartAfterHeader(HAProxyProtocolWrapper):
    """
    Twisted's PROXY protocol wrapper, except that the wrapped protocol is
    started (C{makeConnection}) only once the header has been read.
    """

    _started = False

    def makeConnection(self, transport):
        # ProtocolWrapper.makeConnection, short of starting the wrapped protocol.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def dataReceived(self, data):
        if self._started:
            self.wrappedProtocol.dataReceived(data)
            return
        door, early = self.wrappedProtocol, _Early()
        self.wrappedProtocol = early
        try:
            HAProxyProtocolWrapper.dataReceived(self, data)
        finally:
            self.wrappedProtocol = door
        if self._proxyInfo is None or self.disconnecting:
            return
        self._started = True
        # The wrapper is the door's transport (it provides what its own does).
        door.makeConnection(cast(ITransport, self))
        if early.data:
            door.dataReceived(early.data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._started:
            HAProxyProtocolWrapper.connectionLost(self, reason)
        else:
            self.factory.unregisterProtocol(self)


class _Factory(HAProxyWrappingFactory):
    protocol: Type[HAProxyProtocolWrapper] = _StartAfterHeader


@implementer(IStreamServerEndpoint)
class ProxiedEndpoint:
    """
    An endpoint whose connections start with a PROXY header, read before the
    protocol is started.
    """

    def __init__(self, inner):
        self._inner = inner

    def listen(self, factory):
        return self._inner.listen(_Factory(factory))


def serverEndpoint(reactor, description: str) -> IStreamServerEndpoint:
    """
    L{serverFromString}, but with L{ProxiedEndpoint} for C{haproxy:}
    descriptions.
    """
    if description.startswith(PREFIX):
        return ProxiedEndpoint(serverEndpoint(reactor, description[len(PREFIX):]))
    return serverFromString(reactor, description)
