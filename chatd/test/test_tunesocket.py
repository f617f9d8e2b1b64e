"""
Tests for L{chatd.protocols.tuneSocket}: each door sets up the socket under
its transport, through TLS and WebSocket layers too, and a tuned socket
gives what waits on it in larger reads. (The client calls the same function
on its transport.)
"""

import socket
from typing import Any

from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test import __file__ as twistedTests
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from chatd.protocols import BUFFER_SIZE, tuneSocket
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService
from chatd.test.test_outbox_wire import WireTestCase, _WebSocketReader, adopt


def _noDelay(transport: Any) -> int:
    return transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class NoSocketTests(SynchronousTestCase):
    """
    A transport with no socket under it is left as it is.
    """

    def test_stringTransport(self):
        transport = StringTransport()
        tuneSocket(transport)
        self.assertFalse(hasattr(transport, "bufferSize"))

    def test_noTransport(self):
        """
        A wrapper whose C{transport} is gone (a closed TLS layer) is no error.
        """
        wrapper = Protocol()
        tuneSocket(wrapper)
        self.assertIsNone(wrapper.transport)


class DoorSocketTests(WireTestCase):
    """
    Each door's transport reads L{BUFFER_SIZE} at a time; over TCP it sends
    small frames at once.
    """

    def serveTCP(self, protocol, wrap=lambda factory: factory):
        """
        Serve C{protocol} (through C{wrap}, for TLS) on one end of a loopback
        TCP connection whose other end says nothing; the test ends once the
        server's end is closed.
        """
        listener = socket.create_server(("127.0.0.1", 0))
        peer = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
        listener.close()
        self.addCleanup(peer.close)
        lost: "Deferred[None]" = Deferred()
        connectionLost = protocol.connectionLost

        def noteLost(reason):
            connectionLost(reason)
            lost.callback(None)
        protocol.connectionLost = noteLost
        adopt(sock, wrap(ServerFactory.forProtocol(lambda: protocol)), socket.AF_INET)
        self.addCleanup(lambda: lost)
        self.addCleanup(protocol.transport.abortConnection)

    def test_binaryOverTCP(self):
        """
        The binary door over TCP: Nagle off, reads of L{BUFFER_SIZE}.
        """
        protocol = BinaryFactory(makeService()).buildProtocol(None)
        self.serveTCP(protocol)
        self.assertEqual(protocol.transport.bufferSize, BUFFER_SIZE)
        self.assertTrue(_noDelay(protocol.transport))
        self.assertEqual(BUFFER_SIZE, 1 << 18)

    def test_textOverTLS(self):
        """
        Through the TLS layer, the TCP transport under it is set up.
        """
        pem = FilePath(twistedTests).sibling("server.pem").getContent()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        protocol = TextFactory(makeService()).buildProtocol(None)
        self.serveTCP(protocol, lambda factory: TLSMemoryBIOFactory(options, False, factory))
        under = protocol.transport.transport
        self.assertEqual(under.bufferSize, BUFFER_SIZE)
        self.assertTrue(_noDelay(under))

    def test_webSocket(self):
        """
        The WebSocket door sets up the connection it was upgraded from.
        """
        service = makeService()
        site: Any = Site(makeWebResource(service))
        ours, theirs = self.sockets()
        # A UNIX socket pair: no Nagle to turn off, but reads as large.
        adopt(ours, site)
        reader = _WebSocketReader()
        self.adopt(theirs, reader)

        def upgraded(_):
            [session] = service.sessions._live
            door = session.client
            self.assertEqual(door.wire.transport.bufferSize, BUFFER_SIZE)
            door.wire.transport.abortConnection()
            return reader.closed
        return reader.upgraded.addCallback(upgraded)


class ReadSizeTests(TestCase):
    """
    What the larger reads are for: a peer's queue of big frames comes in
    larger bites, so one reactor turn sees several.
    """

    def test_oneRead(self):
        """
        150 KB waiting on a tuned UNIX socket comes in one read, where
        Twisted's default would take three.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        theirs.setblocking(False)
        theirs.sendall(b"x" * 150_000)
        reads: "list[int]" = []
        allRead: "Deferred[None]" = Deferred()

        class Reader(Protocol):
            def connectionMade(self):
                tuneSocket(self.transport)

            def dataReceived(self, data):
                reads.append(len(data))
                if sum(reads) == 150_000:
                    allRead.callback(None)

        reader = Reader()
        adopt(ours, ServerFactory.forProtocol(lambda: reader))
        transport: Any = reader.transport
        self.addCleanup(transport.abortConnection)
        return allRead.addCallback(lambda _: self.assertEqual(reads, [150_000]))
