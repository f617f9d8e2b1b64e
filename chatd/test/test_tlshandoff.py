"""
Tests for L{chatd.tlshandoff}: chatd's TLS listeners against OpenSSL clients
of two versions, in memory.
"""

import gc
import os
import weakref
from typing import Any, Dict, cast

from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.datadir import prepare
from chatd.endpoints import defaultTLSEndpoint
from chatd.test.mixin import TestCaseMixin
from chatd.test.tlspeers import SYSTEM, PeerError, PyOpenSSLClient, SystemClient
from chatd.tls import RestrictedTLSReactor
from chatd.tlshandoff import HandingOffTLSFactory, countSealed
from chatd.tlsrecord import SUITES, Ciphers, Direction, RecordLayer

_contexts: Dict[str, Any] = {}


def contextFactory(testCase):
    """
    The context factory of a real C{ssl:} listener made through
    L{RestrictedTLSReactor}, made once for the whole module (its key takes a
    while).
    """
    if "context" not in _contexts:
        reactor = MemoryReactor()
        dataDir = os.path.join(testCase.mktemp(), "data")
        prepare(dataDir)
        endpoint = serverFromString(RestrictedTLSReactor(reactor),
                                    defaultTLSEndpoint(dataDir, 4017))
        endpoint.listen(Factory.forProtocol(Protocol))
        [(_, listening, _, _)] = reactor.tcpServers
        _contexts["context"] = cast(HandingOffTLSFactory, listening).contextFactory
    return _contexts["context"]


class Recorder(Protocol):
    """
    The application behind the TLS: keeps what it gets.
    """

    def __init__(self):
        self.received = []
        self.lost = None

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class Connected:
    """
    A client and chatd's TLS protocol, their bytes carried by L{pump}.
    """

    def __init__(self, testCase, client):
        self.clock = Clock()
        factory = HandingOffTLSFactory(contextFactory(testCase), Factory.forProtocol(Recorder),
                                       self.clock)
        self.tls = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4444))
        self.transport = StringTransport()
        self.tls.makeConnection(self.transport)
        self.app = cast(Recorder, self.tls.wrappedProtocol)
        self.client = client
        testCase.addCleanup(client.close)

    def toServer(self):
        """
        Give the server what the client has written; whether there was any.
        """
        data = self.client.outgoing()
        if data:
            self.tls.dataReceived(data)
        return bool(data)

    def toClient(self):
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        self.client.receive(data)
        return bool(data)

    def pump(self):
        """
        Carry bytes both ways until neither side has more.
        """
        handshaking = True
        for _ in range(20):
            if handshaking:
                handshaking = not self.client.handshake()
            if not self.toServer() and not self.toClient() and not handshaking:
                return
        raise AssertionError("the bytes kept coming")

    def layer(self):
        return self.tls._tlsConnection


class HandOffMixin(TestCaseMixin):
    """
    Tests for one kind of client (L{makeClient}).
    """

    makeClient: Any

    def connected(self, **options):
        return Connected(self, self.makeClient(**options))

    def test_handedOff(self):
        """
        After a TLS 1.3 handshake the connection is a L{RecordLayer}, and
        bytes go both ways.
        """
        connection = self.connected()
        connection.pump()
        self.assertIsInstance(connection.layer(), RecordLayer)
        connection.client.write(b"hello")
        connection.pump()
        self.assertEqual(b"".join(connection.app.received), b"hello")
        connection.tls.write(b"welcome")
        connection.pump()
        self.assertEqual(connection.client.read(), b"welcome")

    def test_dataWithFinished(self):
        """
        Application data that comes in the same read as the client's Finished
        reaches the application.
        """
        connection = self.connected()
        connection.client.handshake()
        connection.toServer()
        connection.toClient()
        self.assertTrue(connection.client.handshake())
        connection.client.write(b"at once")
        connection.toServer()
        self.assertIsInstance(connection.layer(), RecordLayer)
        self.assertEqual(b"".join(connection.app.received), b"at once")

    def test_writesInOrder(self):
        """
        What the application wrote during the handshake (buffered by
        Twisted, or still gathered for the next turn) goes first, in order;
        after the hand-off each write is sealed at once.
        """
        connection = self.connected()
        connection.client.handshake()
        connection.toServer()
        connection.tls.write(b"one ")
        connection.toClient()
        connection.tls.writeSequence([b"two", b" "])
        self.assertTrue(connection.client.handshake())
        connection.toServer()
        connection.tls.write(b"three")
        self.assertEqual(connection.clock.getDelayedCalls(), [])
        connection.client.receive(connection.transport.value())
        self.assertEqual(connection.client.read(), b"one two three")

    def test_openSSLFreed(self):
        """
        OpenSSL's connection is let go after the hand-off.
        """
        connection = self.connected()
        openSSL = weakref.ref(connection.layer())
        connection.pump()
        gc.collect()
        self.assertIsNone(openSSL())

    def test_large(self):
        """
        Writes larger than a record are split into records and joined again.
        """
        connection = self.connected()
        connection.pump()
        upward = os.urandom(100000)
        downward = os.urandom(70000)
        connection.client.write(upward)
        connection.tls.write(downward)
        connection.pump()
        self.assertEqual(b"".join(connection.app.received), upward)
        self.assertEqual(connection.client.read(), downward)

    def test_suites(self):
        """
        Each TLS 1.3 suite is handed off and carries bytes.
        """
        for name in SUITES:
            connection = self.connected(suites=name.encode())
            connection.pump()
            self.assertIsInstance(connection.layer(), RecordLayer)
            connection.client.write(name.encode())
            connection.tls.write(name.encode()[::-1])
            connection.pump()
            self.assertEqual(b"".join(connection.app.received), name.encode())
            self.assertEqual(connection.client.read(), name.encode()[::-1])

    def test_tls12StaysWithOpenSSL(self):
        """
        A TLS 1.2 connection is left to OpenSSL, and works.
        """
        connection = self.connected(tls12=True)
        connection.pump()
        self.assertIsInstance(connection.layer(), SSL.Connection)
        connection.client.write(b"older")
        connection.tls.write(b"still")
        connection.pump()
        self.assertEqual(b"".join(connection.app.received), b"older")
        self.assertEqual(connection.client.read(), b"still")

    def test_serverCloses(self):
        """
        The application's C{loseConnection} sends close_notify after what
        was written, and the connection closes when the client answers.
        """
        connection = self.connected()
        connection.pump()
        connection.tls.write(b"bye")
        connection.tls.loseConnection()
        connection.pump()
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(connection.client.read(), b"bye")
        self.assertTrue(connection.client.closed)
        connection.client.shutdown()
        connection.pump()
        self.assertTrue(connection.transport.disconnecting)

    def test_clientCloses(self):
        """
        The client's close_notify ends the connection cleanly.
        """
        connection = self.connected()
        connection.pump()
        connection.client.write(b"last")
        connection.client.shutdown()
        connection.pump()
        self.assertTrue(connection.transport.disconnecting)
        connection.tls.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(b"".join(connection.app.received), b"last")
        connection.app.lost.trap(ConnectionDone)

    def test_cutOff(self):
        """
        A connection that ends without close_notify is lost, not done.
        """
        connection = self.connected()
        connection.pump()
        connection.tls.connectionLost(Failure(ConnectionDone()))
        connection.app.lost.trap(ConnectionLost)

    def test_forged(self):
        """
        A record changed on the way is refused with an alert, and the
        connection fails.
        """
        connection = self.connected()
        connection.pump()
        connection.client.write(b"x" * 40)
        record = bytearray(connection.client.outgoing())
        record[10] ^= 1
        connection.tls.dataReceived(bytes(record))
        self.assertEqual(connection.app.received, [])
        self.assertTrue(connection.transport.disconnecting)
        connection.tls.connectionLost(Failure(ConnectionDone()))
        connection.app.lost.trap(SSL.Error)
        connection.toClient()
        self.assertRaises(PeerError, connection.client.read)


class SystemClientTests(HandOffMixin, SynchronousTestCase):
    """
    A client with the system's OpenSSL, which is another version than the
    server's.
    """

    if SYSTEM is None:
        skip = "the system has no libssl with SSL_key_update"

    makeClient = SystemClient

    def test_keyUpdate(self):
        """
        The client's KeyUpdate changes the keys it sends with; one that asks
        for it makes the server update its own too.
        """
        connection = self.connected()
        connection.pump()
        connection.client.keyUpdate(requested=False)
        connection.client.write(b"one")
        connection.pump()
        self.assertEqual(b"".join(connection.app.received), b"one")
        before = connection.layer()._write
        connection.client.keyUpdate(requested=True)
        connection.client.write(b"two")
        connection.pump()
        self.assertIsNot(connection.layer()._write, before)
        connection.tls.write(b"three")
        connection.pump()
        self.assertEqual(connection.client.read(), b"three")
        self.assertEqual(b"".join(connection.app.received), b"onetwo")


class PyOpenSSLClientTests(HandOffMixin, SynchronousTestCase):
    """
    A client with the OpenSSL chatd's own client has, which agrees the
    hybrid group.
    """

    makeClient = PyOpenSSLClient

    def test_hybrid(self):
        """
        The hybrid key exchange is handed off like any other.
        """
        connection = self.connected()
        connection.pump()
        self.assertEqual(connection.client.group(), "X25519MLKEM768")
        self.assertIsInstance(connection.layer(), RecordLayer)


class CiphersKeptTests(SynchronousTestCase):
    """
    The connections of one L{HandingOffTLSFactory} share its L{Ciphers}.
    """

    def test_kept(self):
        """
        A connection's two ciphers are kept while it is open, and let go when
        it closes.
        """
        connection = Connected(self, PyOpenSSLClient())
        connection.pump()
        connection.client.write(b"in")
        connection.tls.write(b"out")
        connection.pump()
        ciphers = cast(HandingOffTLSFactory, connection.tls.factory).ciphers
        self.assertEqual(len(ciphers), 2)
        connection.tls.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(ciphers), 0)


class CountSealedTests(SynchronousTestCase):
    """
    L{countSealed} finds the sequence number after the records OpenSSL sealed.
    """

    suite = SUITES["TLS_AES_128_GCM_SHA256"]

    def sealed(self, direction, count):
        layer = RecordLayer(Direction(self.suite, b"r" * 32, Ciphers()), direction, b"")
        for _ in range(count):
            layer.send(b"ticket")
        return layer.bio_read(1 << 20)

    def test_counts(self):
        """
        Records sealed with the keys are counted; others before them are not.
        """
        sent = self.sealed(Direction(self.suite, b"s" * 32, Ciphers()), 2)
        other = self.sealed(Direction(self.suite, b"o" * 32, Ciphers()), 1)
        direction = Direction(self.suite, b"s" * 32, Ciphers())
        self.assertTrue(countSealed(direction, other + sent))
        self.assertEqual(direction.sequence, 2)

    def test_untrusted(self):
        """
        A record that does not open after one that did, or a broken record,
        makes the count untrusted.
        """
        sent = self.sealed(Direction(self.suite, b"s" * 32, Ciphers()), 1)
        other = self.sealed(Direction(self.suite, b"o" * 32, Ciphers()), 1)
        self.assertFalse(countSealed(Direction(self.suite, b"s" * 32, Ciphers()), sent + other))
        self.assertFalse(countSealed(Direction(self.suite, b"s" * 32, Ciphers()), sent[:-1]))
