"""
chatd's front doors: one module per wire format, each adapting to the core.
"""

from typing import Any

from twisted.internet.protocol import Factory


def noDelay(transport):
    """
    Send small frames at once, on both ends of chatd's connections. A door often
    writes an answer and, right after, an event or the next chunk, and a client
    a request right after a request; with Nagle's algorithm the second frame
    waits for the peer's delayed acknowledgement (up to 40 ms on Linux), which
    caps a stop-and-wait file transfer at a few dozen chunks a second. Frames are
    written whole, so nothing is gained by waiting. The option is looked for on
    C{transport} and the transports it wraps (TLS); a transport without it (a
    UNIX socket, a test's) is left as it is.
    """
    for _ in range(4):
        if transport is None:
            return
        setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            try:
                setTcpNoDelay(True)
            except OSError:
                pass
            return
        transport = getattr(transport, "transport", None)


class DoorFactory(Factory):
    """
    Builds one protocol of a door per connection, all on one core.

    @cvar protocol: the door's protocol class, made with the core.
    """

    def __init__(self, service):
        self.service = service

    def buildProtocol(self, addr):
        # Factory declares a class made without arguments; a door's takes the core.
        door: Any = self.protocol
        protocol = door(self.service)
        protocol.factory = self
        return protocol
