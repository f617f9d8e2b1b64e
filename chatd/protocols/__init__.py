"""
chatd's front doors: one module per wire format, each adapting to the core.
"""

from twisted.internet.protocol import Factory


def noDelay(transport):
    """
    Send small frames at once. The doors often write an answer and, right
    after, an event or the next chunk; with Nagle's algorithm the second waits
    for the peer's delayed acknowledgement (up to 40 ms on Linux), which caps a
    stop-and-wait file transfer at a few dozen chunks a second. A TLS
    transport passes the call to the TCP connection beneath it; a transport
    without the option (a UNIX socket, a test's) is left as it is.
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is not None:
        try:
            setTcpNoDelay(True)
        except OSError:
            pass


class DoorFactory(Factory):
    """
    Builds one protocol of a door per connection, all on one core.

    @cvar protocol: the door's protocol class, made with the core.
    """

    def __init__(self, service):
        self.service = service

    def buildProtocol(self, addr):
        protocol = self.protocol(self.service)
        protocol.factory = self
        return protocol
