"""
chatd's front doors: one module per wire format, each adapting to the core.
"""

from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory

# How much one read of a connection's socket may take, and so (Twisted's
# bufferSize means both) how much a transport buffers before it pauses its
# producer, the connection's outbox. See L{tuneSocket}.
BUFFER_SIZE = 1 << 18


def tuneSocket(transport: object) -> None:
    """
    Set up the socket of a new connection, on either end, for chatd's frames.
    The socket is looked for on C{transport} and the transports it wraps (TLS,
    WebSocket); a transport without one (a test's) is left as it is.

      - Small frames go at once (C{TCP_NODELAY}). A door often writes an
        answer and, right after, an event or the next chunk, and a client a
        request right after a request; with Nagle's algorithm the second
        frame waits for the peer's delayed acknowledgement (up to 40 ms on
        Linux), which caps a stop-and-wait file transfer at a few dozen
        chunks a second. Frames are written whole, so nothing is gained by
        waiting.
      - Reads take up to L{BUFFER_SIZE} (256 KiB) rather than Twisted's 64
        KiB. Twisted reads a ready socket once a reactor turn, and a room
        message to 200 members is a 72 KB envelope: a busy sender's queue
        came in less than a message a turn, so every turn's end wrote a
        message or two to each reader. Reading more lets one turn take
        several queued messages of each sender, which the outboxes then send
        to each reader together: a quarter of the sends, and 8 to 29 % less
        server CPU a delivery under load (bench/README.rst, "Reading more a
        turn"). A socket with less waiting gives what it has, so a quiet
        connection waits no longer.

    Twisted's transport pauses its producer (the outbox) once it buffers more
    than the same size, so a slow reader's transport holds up to 256 KiB
    before frames wait in the outbox, counted under C{send-queue}; the
    kernel's own send buffer holds more than that.
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
        if isinstance(transport, FileDescriptor):
            transport.bufferSize = BUFFER_SIZE
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
