# -*- test-case-name: chatd.test.test_ownkey -*-
"""
A lying server for the client tests: a binary-protocol stream rewriter that
sits between a client and a real server and gives one user another key in
what the server says (JOIN answers, GET_KEYS, 0x09 member lists, JOINED and
KEY_CHANGED), and records the envelopes the client sends.

L{Liar} is sans-IO, so that the same lie is told in memory (L{LyingFactory},
for trial tests over L{twisted.test.iosim}) and over real TCP
(L{LyingProxyFactory}, between a real C{twistd chatd} and a real
C{python -m chatd.client}).
"""

from collections import deque
from typing import Deque, Optional

from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from chatd import e2e
from chatd.names import fold
from chatd.protocols import devicewire, opcodes
from chatd.protocols.opcodes import Op

_U32 = 4

# Where the server names a user's key; a L{Liar} lies in those it is told to.
JOIN, GET_KEYS, STALE, JOINED, KEY_CHANGED = "join", "get_keys", "stale", "joined", "key_changed"
EVERYWHERE = frozenset({JOIN, GET_KEYS, STALE, JOINED, KEY_CHANGED})


def readable(blob, reader, key):
    """
    Whether the holder of private key C{key} can read envelope C{blob} as
    C{reader}: its entry unwraps and the message decrypts (who signed it does
    not matter to a reader).
    """
    try:
        e2e.decrypt(e2e.Envelope.parse(blob), reader, key)
    except e2e.EnvelopeError:
        return False
    return True


class _Frames:
    """
    Whole frames out of a byte stream.
    """

    def __init__(self):
        self._buffer = b""

    def feed(self, data):
        self._buffer += data
        while len(self._buffer) >= _U32:
            length = int.from_bytes(self._buffer[:_U32], "big")
            if len(self._buffer) < _U32 + length:
                return
            body, self._buffer = self._buffer[_U32:_U32 + length], self._buffer[_U32 + length:]
            yield opcodes.parseBody(body)


class Liar:
    """
    Rewrites a server's stream so that C{user} has key C{claimed} wherever the
    server names its key (in the places C{where} lists), and keeps every
    envelope the client sends.

    @ivar envelopes: the envelopes of the client's ROOM_MSG and DM requests.
    @ivar lies: how many times a key was replaced.
    """

    def __init__(self, user, claimed, where=EVERYWHERE):
        self.user = user
        self.claimed = claimed
        self.where = where
        self.envelopes = []
        self.lies = 0
        self._requests: Deque[int] = deque()
        self.version = 1
        self._fromClient = _Frames()
        self._fromServer = _Frames()

    def fromClient(self, data):
        """
        Bytes the client sent: learn which requests the responses answer.
        """
        for op, payload in self._fromClient.feed(data):
            if op == Op.HEARTBEAT:
                continue
            if op == Op.HELLO:
                # The server speaks every version a chatd client asks for:
                # its frames are read and rewritten by that version's layouts.
                self.version = opcodes.decodeHello(payload)
            self._requests.append(op)
            if op in (Op.ROOM_MSG, Op.DM):
                self.envelopes.append(opcodes.decodeRequest(op, payload)[1])
        return data

    def fromServer(self, data):
        """
        Bytes the server sent, with the lies told.
        """
        return b"".join(self._rewrite(op, payload) for op, payload in self._fromServer.feed(data))

    def _lie(self, where, members):
        if where not in self.where:
            return members
        told = []
        for entry in members:
            # Version 3's members are (name, flags, key, list); the others
            # (name, key[, flags]).
            at = 2 if len(entry) == 4 and isinstance(entry[1], int) else 1
            if fold(entry[0]) == fold(self.user):
                entry = entry[:at] + (self.claimed,) + tuple(entry[at + 1:])
                self.lies += 1
            told.append(tuple(entry))
        return told

    def _rewrite(self, op, payload):
        if op == Op.RESPONSE:
            request = self._requests.popleft()
            version = self.version
            if version >= devicewire.VERSION:
                status, values = devicewire.decodeResponse(request, payload)
            else:
                status, values = opcodes.decodeResponse(request, payload, version=version)
            if status == 0 and request in (Op.JOIN, Op.GET_KEYS):
                where = JOIN if request == Op.JOIN else GET_KEYS
                told = (self._lie(where, values[0]),) + tuple(values[1:])
                if version >= devicewire.VERSION:
                    return devicewire.okResponse(request, *told)
                return opcodes.okResponse(request, *told, version=version)
            if status == opcodes.STALE_RECIPIENTS:
                if version >= devicewire.VERSION:
                    return devicewire.staleResponse(self._lie(STALE, values[0]))
                return opcodes.errorResponse(status, "", self._lie(STALE, values[0]),
                                             version=version)
            return opcodes.frame(op, payload)
        if op in (Op.JOINED, Op.KEY_CHANGED):
            values = self._decodeEvent(op, payload)
            at = 1 if op == Op.JOINED else 0
            [entry] = self._lie(JOINED if op == Op.JOINED else KEY_CHANGED, [values[at:]])
            return self._event(op, *(values[:at] + entry))
        return opcodes.frame(op, payload)

    def _decodeEvent(self, op, payload):
        if self.version >= devicewire.VERSION:
            return devicewire.decodeEvent(op, payload)
        return opcodes.decodeEvent(op, payload, version=self.version)

    def _event(self, op, *values):
        if self.version >= devicewire.VERSION:
            return devicewire.event(op, *values)
        return opcodes.event(op, *values, version=self.version)


class _LyingServerSide(ProtocolWrapper):
    """
    A real server protocol whose every word passes through a L{Liar}.
    """

    transport: ITransport

    def write(self, data):
        self.transport.write(self.factory.liar.fromServer(data))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def dataReceived(self, data):
        ProtocolWrapper.dataReceived(self, self.factory.liar.fromClient(data))


class LyingFactory(WrappingFactory):
    """
    Wraps a server factory so that what its protocols say passes through one
    L{Liar}, for clients connected in memory.
    """

    protocol = _LyingServerSide

    def __init__(self, wrappedFactory, liar):
        super().__init__(wrappedFactory)
        self.liar = liar


class _Upstream(Protocol):
    transport: ITransport

    def __init__(self, downstream):
        self.downstream = downstream

    def connectionMade(self):
        self.downstream.upstreamReady(self)

    def dataReceived(self, data):
        self.downstream.transport.write(self.downstream.liar.fromServer(data))

    def connectionLost(self, reason=connectionDone):
        self.downstream.transport.loseConnection()


class _Downstream(Protocol):
    """
    The client's connection to the proxy; what arrives before the connection
    to the server is up waits.
    """

    transport: ITransport

    def connectionMade(self):
        self.liar = self.factory.liar
        self.upstream: Optional[_Upstream] = None
        IPushProducer(self.transport).pauseProducing()
        connectProtocol(self.factory.server, _Upstream(self)).addErrback(
            lambda _: self.transport.loseConnection())

    def upstreamReady(self, upstream):
        self.upstream = upstream
        IPushProducer(self.transport).resumeProducing()

    def dataReceived(self, data):
        # Reading is paused until the upstream connection is ready.
        assert self.upstream is not None
        self.upstream.transport.write(self.liar.fromClient(data))

    def connectionLost(self, reason=connectionDone):
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class LyingProxyFactory(ServerFactory):
    """
    A TCP proxy to the server at endpoint C{server} that lies through C{liar};
    one client connection at a time shares the one L{Liar}.
    """

    protocol = _Downstream

    def __init__(self, server, liar):
        self.server = server
        self.liar = liar


def serverEvent(protocol, op, *values):
    """
    An event frame as a server sends it to the client connection C{protocol}:
    laid out by the protocol version it took in HELLO, with flags 0 (not a
    guest) where version 2 has them and the values leave them out.
    """
    version = protocol.version
    layout = (opcodes.EVENT_LAYOUTS_V2 if version >= 2 else opcodes.EVENTS)[op]
    if len(values) < len(layout):
        values += (0,)
    return opcodes.event(op, *values, version=version)
