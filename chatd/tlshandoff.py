# -*- test-case-name: chatd.test.test_tlshandoff -*-
"""
TLS listeners that let OpenSSL do the handshake and then carry TLS 1.3
records themselves (L{chatd.tlsrecord}), so that an idle connection holds no
OpenSSL state.

The protocol is Twisted's own TLS protocol (it relies on that protocol's
private attributes, as tested with the Twisted chatd installs) with four
changes:

 - Until the handshake is done, received bytes reach OpenSSL one record at a
   time. So when the client's Finished has been read, no later record is in
   OpenSSL's buffers: the client's first application record, at sequence
   number 0, is still here.
 - OpenSSL gives each connection's application traffic secrets to the
   context's key-log callback (the only way out for them), which keeps them
   on the connection's protocol until the handshake is done.
 - When the handshake is done, before anything else can write, the records
   OpenSSL has just sealed (its session tickets) are sent, and counted by
   opening them with the server's application keys; the count is the
   sequence number of the next record. Then the C{SSL.Connection} is
   replaced by a L{RecordLayer} and freed.
 - From then on each write is sealed at once (see
   L{HandingOffTLS._writeAtOnce}).

A connection stays with OpenSSL, as before, when it is TLS 1.2, when its
suite is not one L{chatd.tlsrecord.SUITES} knows, or when the count cannot be
trusted (a record that does not open after one that did); nothing is lost
but the memory.
"""

from typing import Any, Dict, Optional

from OpenSSL import SSL
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, _NullAggregator
from twisted.python.failure import Failure

from chatd.tlsrecord import (
    APPLICATION_DATA,
    HEADER,
    SUITES,
    Ciphers,
    Direction,
    RecordLayer,
    splitRecords,
)

CLIENT_SECRET = b"CLIENT_TRAFFIC_SECRET_0"
SERVER_SECRET = b"SERVER_TRAFFIC_SECRET_0"


def keyLogged(connection: SSL.Connection, line: bytes) -> None:
    """
    The key-log callback of every chatd listener's context: a secret OpenSSL
    has just derived, for the L{HandingOffTLS} that owns C{connection}.
    """
    owner = connection.get_app_data()
    if isinstance(owner, HandingOffTLS):
        owner.secretLogged(line)


def drain(connection: SSL.Connection) -> bytes:
    """
    Everything OpenSSL has written for the network and not yet given out.
    """
    pieces = []
    while True:
        try:
            pieces.append(connection.bio_read(2 ** 16))
        except SSL.WantReadError:
            return b"".join(pieces)


def countSealed(direction: Direction, sent: bytes) -> bool:
    """
    Advance C{direction} past every record in C{sent} sealed with it.

    @return: whether the count can be trusted: every record after the first
        that opened opened too, and C{sent} ends with a whole record.
    """
    records = splitRecords(sent)
    if sum(HEADER + len(body) for _, body in records) != len(sent):
        return False
    opened = False
    for header, body in records:
        if header[0] == APPLICATION_DATA and direction.open(header, body) is not None:
            opened = True
        elif opened:
            return False
    return True


class HandingOffTLS(BufferingTLSTransport):
    """
    Twisted's TLS protocol, handing TLS 1.3 connections to a L{RecordLayer}
    after the handshake (see the module's docstring).
    """

    factory: "HandingOffTLSFactory"
    _secrets: Optional[Dict[bytes, bytes]] = None
    # Of the record OpenSSL is reading during the handshake: its header so
    # far, then how many bytes of its body are still to come.
    _header = b""
    _left = 0

    def makeConnection(self, transport: Any) -> None:
        self._secrets = {}
        super().makeConnection(transport)
        if self._tlsConnection is not None and not self._handshakeDone:
            self._tlsConnection.set_app_data(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        layer = self._tlsConnection
        super().connectionLost(reason)
        if isinstance(layer, RecordLayer):
            layer.forget()

    def secretLogged(self, line: bytes) -> None:
        """
        Keep the application traffic secrets of a key-log line; the others
        (the handshake's, the exporter's) are not needed.
        """
        label, _, secret = line.rpartition(b" ")
        label = label.split(b" ", 1)[0]
        if self._secrets is not None and label in (CLIENT_SECRET, SERVER_SECRET):
            self._secrets[label] = bytes.fromhex(secret.decode("ascii"))

    def dataReceived(self, data: bytes) -> None:
        while data and not self._handshakeDone and not self._lostTLSConnection:
            taken = self._toRecordEnd(data)
            super().dataReceived(data[:taken])
            data = data[taken:]
            if self._handshakeDone and isinstance(self._tlsConnection, RecordLayer):
                self._writeAtOnce()
        if data and not self._lostTLSConnection:
            super().dataReceived(data)

    def _writeAtOnce(self) -> None:
        """
        From now on, seal each write at once, without Twisted's gathering of
        small writes until the next turn of the reactor.

        That gathering saves OpenSSL calls; a record here costs no more than
        its cipher, and chatd's doors gather a turn's frames themselves and
        write them together at the turn's end (L{chatd.protocols.outbox}),
        so it would only cost a delayed call per write and hold each one a
        turn longer. What it holds is sent first.
        """
        self._aggregator.close()
        self._aggregator = _NullAggregator()
        del self.write

    def writeSequence(self, sequence: Any) -> None:
        self.write(b"".join(sequence))

    def _toRecordEnd(self, data: bytes) -> int:
        """
        How many bytes of C{data} reach the end of the record in progress (or
        all of them, if it does not end in them).
        """
        taken = 0
        while taken < len(data):
            if self._left:
                step = min(self._left, len(data) - taken)
                self._left -= step
                taken += step
                if not self._left:
                    return taken
            else:
                needed = HEADER - len(self._header)
                self._header += data[taken:taken + needed]
                taken += min(needed, len(data) - taken)
                if len(self._header) == HEADER:
                    self._left = int.from_bytes(self._header[3:], "big")
                    self._header = b""
                    if not self._left:
                        return taken
        return taken

    def _checkHandshakeStatus(self) -> None:
        # Twisted's, but the connection is handed off before the protocol
        # hears of the handshake or any write is made with the new keys.
        if self._aborted:
            return
        try:
            self._tlsConnection.do_handshake()
        except SSL.WantReadError:
            self._flushSendBIO()
        except SSL.Error:
            self._tlsShutdownFinished(Failure())
        else:
            self._handOff()
            self._handshakeDone = True
            if IHandshakeListener.providedBy(self.wrappedProtocol):
                self.wrappedProtocol.handshakeCompleted()

    def _handOff(self) -> None:
        """
        Replace OpenSSL's connection with a L{RecordLayer} if it can be.
        """
        connection = self._tlsConnection
        secrets, self._secrets = self._secrets or {}, None
        connection.set_app_data(None)
        sent = drain(connection)
        suite = SUITES.get(connection.get_cipher_name() or "")
        if (suite is not None and connection.get_protocol_version_name() == "TLSv1.3"
                and CLIENT_SECRET in secrets and SERVER_SECRET in secrets):
            ciphers = self.factory.ciphers
            write = Direction(suite, secrets[SERVER_SECRET], ciphers)
            if countSealed(write, sent):
                # The protocol calls the same methods on either.
                layer: Any = RecordLayer(Direction(suite, secrets[CLIENT_SECRET], ciphers), write,
                                         connection.get_alpn_proto_negotiated())
                self._tlsConnection = layer
        if sent:
            self.transport.write(sent)  # type: ignore[union-attr]


class HandingOffTLSFactory(TLSMemoryBIOFactory):
    """
    A server's L{TLSMemoryBIOFactory} whose connections are L{HandingOffTLS}.

    @ivar contextFactory: what the connections' contexts come from.
    @ivar ciphers: the ciphers its connections keep made (see L{Ciphers}).
    """

    protocol = HandingOffTLS

    def __init__(self, contextFactory: Any, wrappedFactory: Any, clock: Any = None) -> None:
        """
        @param clock: when small writes are sent (as Twisted's factory takes
            it); the global reactor by default.
        """
        super().__init__(contextFactory, False, wrappedFactory, clock)
        self.contextFactory = contextFactory
        self.ciphers = Ciphers()
