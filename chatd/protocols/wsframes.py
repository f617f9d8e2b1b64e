# -*- test-case-name: chatd.test.test_websocket -*-
"""
The WebSocket connection under the WebSocket door: its close codes, the guard
that counts each incoming message's size as its pieces arrive, and the
L{chatd.protocols.outbox.Outbox}'s view of the socket as text frames.

Its own module because it is about frames, not requests: the door
(L{chatd.protocols.websocket}) speaks JSON and the core; this stands between it
and Twisted's and wsproto's connection.
"""

from wsproto.events import BytesMessage, CloseConnection, Message

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013


class MessageSizeGuard:
    """
    Counts each incoming message's bytes as its pieces arrive, and stops
    delivering once a message passes the limit.

    Twisted's websocket support buffers a whole message before handing it on
    and has no size limit, so a client could make it hold any amount of data.
    wsproto, below it, yields each piece of a frame as soon as it is read, and
    Twisted pulls those pieces from its connection's C{events()}. This guard
    stands in for that connection (Twisted's private C{_wsconn}; there is no
    public hook) and sees every piece first: at most the limit plus one read is
    ever buffered. Everything else is passed through unchanged.

    @ivar stopped: once set, no further event is delivered; set when a message
        is over the limit and when the door closes the connection itself.
    """

    def __init__(self, connection, limit, received, tooLarge, peerClosed):
        self._connection = connection
        self._limit = limit
        self._received = received
        self._tooLarge = tooLarge
        self._peerClosed = peerClosed
        self._size = 0
        self.stopped = False

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def receive_data(self, data):
        if data:
            self._received()
        self._connection.receive_data(data)

    def events(self):
        for event in self._connection.events():
            if self.stopped:
                continue
            if isinstance(event, Message):
                data = event.data
                if isinstance(event, BytesMessage) or data.isascii():
                    self._size += len(data)
                else:
                    self._size += len(data.encode("utf-8"))
                if self._size > self._limit:
                    self.stopped = True
                    self._tooLarge()
                    continue
                if event.message_finished:
                    self._size = 0
            elif isinstance(event, CloseConnection):
                self._peerClosed()
            yield event


class TextFrames:
    """
    The L{Outbox}'s view of a WebSocket: each write is one text message.
    """

    def __init__(self, wire):
        self.wire = wire

    def write(self, data):
        self.wire.sendTextMessage(data.decode("utf-8"))

    def writeSequence(self, pieces):
        self.write(b"".join(pieces))
