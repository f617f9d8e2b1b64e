"""
Tests for L{chatd.protocols.outbox} and the doors' close over Twisted's own
transports (a UNIX socket pair adopted by the reactor: no network), where
Twisted pauses and resumes the outbox as its buffer fills and drains: what
L{twisted.internet.testing.StringTransport}, which never pauses, cannot show.
"""

import json
import socket
from typing import Any, cast

from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import ServerFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test import __file__ as twistedTests
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.outbox import GATHER_LIMIT, Outbox, SendBudget
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService
from chatd.test.test_outbox import _Collector
from chatd.test.test_websocket import WebSocketClient


def adopt(sock: socket.socket, factory: Any,
          family: socket.AddressFamily = socket.AF_UNIX) -> None:
    """
    Hand C{sock} (of address C{family}) to the reactor, its protocol made by
    C{factory}.
    """
    cast(IReactorSocket, reactor).adoptStreamConnection(sock.fileno(), family, factory)
    sock.close()  # the reactor holds its own copy


class WireTestCase(TestCase):
    """
    A reactor transport over one end of a socket pair whose other end is read,
    or not, by a L{_Collector}.
    """

    def adopt(self, sock: socket.socket, protocol: Any, tls: Any = None) -> Any:
        """
        Hand C{sock} to the reactor with C{protocol}, as a TLS client with
        C{tls} options if given; the test ends once the connection has closed.

        @return: C{protocol}'s transport.
        """
        factory: Any = ServerFactory.forProtocol(lambda: protocol)
        if tls is not None:
            factory = TLSMemoryBIOFactory(tls, True, factory)
        closed = protocol.closed if isinstance(protocol, _Collector) else None
        adopt(sock, factory)
        transport: Any = protocol.transport
        if closed is not None:
            self.addCleanup(lambda: closed)
        self.addCleanup(transport.abortConnection)
        return transport

    def sockets(self):
        """
        A socket pair with small send and receive buffers, so that Twisted's
        own buffer fills after a few kilobytes.
        """
        ours, theirs = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return ours, theirs

    def silentReader(self, sock, expected=0):
        """
        A reader on C{sock} that reads nothing until resumed.
        """
        reader = _Collector(expected)
        self.adopt(sock, reader).pauseProducing()
        return reader


class OrderTests(WireTestCase):
    """
    A frame never goes onto the socket ahead of bytes Twisted holds.
    """

    def test_behindThePartlySentBuffer(self):
        """
        Once Twisted's write has sent part of a frame, the rest waits in its
        C{dataBuffer}: a frame written then goes behind it, even when the
        reader has since made room on the socket.
        """
        ours, theirs = self.sockets()
        transport = self.adopt(ours, _Collector())
        outbox = Outbox(transport, 10_000_000, lambda: None, SendBudget(10_000_000))
        head = bytes(range(256)) * 256
        transport.write(head)
        transport.doWrite()
        self.assertTrue(transport.dataBuffer)
        self.assertFalse(transport._tempDataBuffer)
        received = theirs.recv(len(head))
        outbox.write(b"tail")
        outbox.flush()
        theirs.setblocking(False)
        while len(received) < len(head) + 4:
            transport.doWrite()
            try:
                received += theirs.recv(len(head))
            except BlockingIOError:
                pass
        self.assertEqual(received, head + b"tail")
        theirs.close()


class LimitTests(WireTestCase):
    """
    Gathering does not loosen the send queue: a reader that never reads is
    still dropped, and holds no more meanwhile.
    """

    def test_burstToSilentReader(self):
        """
        A burst written in one turn to a reader that reads nothing overflows
        the send queue within that turn; until then Twisted holds at most its
        buffer and one turn's gathered frames, and the outbox at most its
        limit.
        """
        ours, theirs = self.sockets()
        transport = self.adopt(ours, _Collector())
        overflows = []
        outbox = Outbox(transport, 200_000, lambda: overflows.append(True),
                        SendBudget(10_000_000))
        transport.registerProducer(outbox, True)
        self.silentReader(theirs)
        frame = b"x" * 5000
        held = queued = 0
        for _ in range(2000):
            outbox.write(frame)
            if overflows:
                break
            held = max(held, len(transport.dataBuffer) + transport._tempDataLen)
            queued = max(queued, outbox.size)
        self.assertEqual(overflows, [True])
        self.assertLessEqual(held, transport.bufferSize + GATHER_LIMIT)
        self.assertLessEqual(queued, 200_000)


class DoorCloseTests(WireTestCase):
    """
    A door that closes while its outbox holds more than Twisted's buffer
    takes still sends everything it holds, and keeps it counted meanwhile.
    """

    def door(self):
        """
        A binary door over a socket pair whose other end reads nothing yet,
        with a reader of everything the door writes.
        """
        service = makeService()
        ours, theirs = self.sockets()
        protocol = BinaryFactory(service).buildProtocol(None)
        self.adopt(ours, protocol)
        return protocol, self.silentReader(theirs)

    def test_closeSendsEverythingQueued(self):
        """
        Warnings queued past Twisted's buffer, then a close (as the core asks
        on a kick or an idle timeout): the reader gets every warning, the last
        one too, and then the connection closes.
        """
        protocol, reader = self.door()
        texts = [chr(65 + i % 26) * 10_000 for i in range(40)]
        for text in texts:
            protocol.warning(1, text)
        expected = b"".join(opcodes.event(Op.WARNING, 1, text) for text in texts)
        self.assertGreater(protocol.outbox.size, 0)
        protocol.disconnect()
        reader.transport.resumeProducing()

        def closed(_):
            self.assertEqual(len(reader.received), len(expected))
            self.assertEqual(reader.received, expected)
        return reader.closed.addCallback(closed)

    def test_closingKeepsTheQueueCounted(self):
        """
        While a closing connection's reader reads nothing, what waits for it
        stays in its outbox, under the send queue and the budget, rather than
        being moved to Twisted's buffer where neither bounds it.
        """
        protocol, reader = self.door()
        # Over twice what the door's transport buffers (BUFFER_SIZE).
        for _ in range(80):
            protocol.warning(1, "w" * 10_000)
        waiting = protocol.outbox.size
        protocol.disconnect()
        transport = protocol.transport
        self.assertGreater(protocol.outbox.size, 0)
        self.assertEqual(protocol.outbox.budget.used, protocol.outbox.size)
        self.assertLessEqual(len(transport.dataBuffer) + transport._tempDataLen,
                             transport.bufferSize + GATHER_LIMIT)
        self.assertGreater(waiting, transport.bufferSize)
        reader.transport.resumeProducing()
        return reader.closed


class _WebSocketReader(WebSocketClient):
    """
    A WebSocket client that says when it is upgraded and when it is closed.
    """

    def __init__(self) -> None:
        WebSocketClient.__init__(self)
        self.upgraded: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data):
        WebSocketClient.dataReceived(self, data)
        if self.accepted and not self.upgraded.called:
            self.upgraded.callback(None)

    def connectionLost(self, reason: object = None) -> None:
        WebSocketClient.connectionLost(self)
        self.closed.callback(None)


class WebSocketCloseTests(WireTestCase):
    """
    The WebSocket door's close, over the connection Twisted's WebSocket runs
    on, hands over what waits too.
    """

    def test_closeSendsEverythingQueued(self):
        """
        Warnings queued past Twisted's buffer, then a close: the reader gets
        every warning, then the close frame.
        """
        service = makeService()
        site: Any = Site(makeWebResource(service))
        ours, theirs = self.sockets()
        adopt(ours, site)  # the server's end closes when the door hangs up
        reader = _WebSocketReader()
        transport = self.adopt(theirs, reader)
        self.addCleanup(lambda: reader.closed)

        def upgraded(_):
            [session] = service.sessions._live
            transport.pauseProducing()
            for i in range(40):
                session.client.warning(1, "%d;" % i + "w" * 10_000)
            self.assertGreater(session.client.outbox.size, 0)
            session.client.disconnect()
            transport.resumeProducing()
            return reader.closed

        def closed(_):
            self.assertEqual([m["message"][:3] for m in reader.messages],
                             ["%d;w" % i for i in range(10)] + ["%d;" % i for i in range(10, 40)])
            self.assertEqual(reader.closeCode, 1000)
        return reader.upgraded.addCallback(upgraded).addCallback(closed)


class TLSCloseTests(WireTestCase):
    """
    Over TLS, whose transport is not paused twice, a closing door's outbox
    still waits to be resumed.
    """

    def test_closingKeepsTheQueueCounted(self):
        """
        Warnings queued for a TLS reader that reads nothing, then a close:
        they stay counted in the outbox until the reader reads, then all
        arrive, in order, and the connection closes.
        """
        service = makeService()
        ours, theirs = self.sockets()
        pem = FilePath(twistedTests).sibling("server.pem").getContent()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        adopt(ours, TLSMemoryBIOFactory(options, False, TextFactory(service)))
        reader = _Collector(1)
        transport = self.adopt(theirs, reader, tls=ssl.CertificateOptions())

        def welcomed(_):
            [session] = service.sessions._live
            door = session.client
            transport.transport.pauseProducing()
            for i in range(40):
                door.warning(1, "%d;" % i + "w" * 10_000)
            self.assertGreater(door.outbox.size, 0)
            door.disconnect()
            self.assertGreater(door.outbox.size, transport.transport.bufferSize)
            self.assertEqual(door.outbox.budget.used, door.outbox.size)
            transport.transport.resumeProducing()
            return reader.closed

        def closed(_):
            welcome, *lines, last = reader.received.split(b"\n")
            events = [json.loads(line.removeprefix(b"EVT::")) for line in lines]
            self.assertEqual([(e["type"], e["message"].split(";")[0]) for e in events],
                             [("warning", str(i)) for i in range(40)])
            self.assertEqual(last, b"")
        return reader.enough.addCallback(welcomed).addCallback(closed)
