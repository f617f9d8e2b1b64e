"""
Tests for L{chatd.protocols.outbox}: the per-connection send queue, the send
budget all connections share, and ciphertext shared between readers' queues.
"""

import socket
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd import e2e
from chatd.cut import Cut
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.protocols.outbox import GATHER_LIMIT, Outbox, SendBudget, budgetOf, chain
from chatd.protocols.text import TextFactory
from chatd.test.fakes import privateKey
from chatd.test.test_binary import OK, ProtocolTestCase


class OutboxTests(SynchronousTestCase):
    """
    One outbox and its share of the budget.
    """

    def outbox(self, budget, limit=100):
        transport = StringTransport()
        overflows = []
        outbox = Outbox(transport, limit, lambda: overflows.append(True), budget)
        outbox.pauseProducing()
        return outbox, transport, overflows

    def test_budgetAcrossConnections(self):
        """
        Two outboxes each under their own limit overflow together past the
        budget: the one whose frame does not fit is dropped and gives its bytes
        back; the other keeps its frames.
        """
        budget = SendBudget(150)
        first, _, firstOverflows = self.outbox(budget)
        second, _, secondOverflows = self.outbox(budget)
        first.write(b"a" * 80)
        second.write(b"b" * 60)
        self.assertEqual(budget.used, 140)
        second.write(b"c" * 20)
        self.assertEqual((firstOverflows, secondOverflows), ([], [True]))
        self.assertEqual((budget.used, first.size, second.size), (80, 80, 0))

    def test_resumeGivesBack(self):
        """
        Frames handed to the transport no longer count; pieces are written as
        a sequence, in order.
        """
        budget = SendBudget(1000)
        outbox, transport, _ = self.outbox(budget)
        outbox.write(b"one;")
        outbox.write((b"two", b";"))
        self.assertEqual((budget.used, transport.value()), (8, b""))
        outbox.resumeProducing()
        self.assertEqual((budget.used, transport.value()), (0, b"one;two;"))
        outbox.write((b"three",))
        self.assertEqual(transport.value(), b"one;two;three")

    def test_stopGivesBack(self):
        """
        A connection that goes with frames waiting gives their bytes back.
        """
        budget = SendBudget(1000)
        outbox, _, _ = self.outbox(budget)
        outbox.write(b"x" * 30)
        outbox.stopProducing()
        self.assertEqual(budget.used, 0)

    def test_splicedWhilePaused(self):
        """
        A spliced frame that must wait is queued whole: one L{bytes} for a
        small message; for a large one, pieces that keep the message's
        shared part as it is.
        """
        budget = SendBudget(1000)
        outbox, transport, _ = self.outbox(budget, limit=1000)
        shared = b"common"
        outbox.writeSpliced(b"pre;", b"tail;")
        outbox.writeSpliced((b"head;", shared), b";tail")
        [(small, _), (large, _)] = outbox._queue
        self.assertEqual(small, b"pre;tail;")
        self.assertEqual(large, (b"head;", shared, b";tail"))
        self.assertIs(large[1], shared)
        self.assertEqual(budget.used, 25)
        outbox.resumeProducing()
        self.assertEqual(transport.value(), b"pre;tail;head;common;tail")

    def test_chain(self):
        """
        L{chain} joins L{bytes} and keeps the pieces of anything else.
        """
        shared = b"shared"
        self.assertEqual(chain(b"a", b"b"), b"ab")
        frame = chain(b"a", Cut((shared, b"b")), b"c")
        self.assertEqual(frame, (b"a", b"shared", b"b", b"c"))
        self.assertIs(frame[1], shared)


class SharedCiphertextTests(ProtocolTestCase):
    """
    A room message waiting for slow readers is held once.
    """

    settings = dict(rateLimit=(1000, 1.0))

    def test_readersShareTheCiphertext(self):
        """
        Two readers whose transports are full queue the same ciphertext object,
        and each still receives exactly the cut the protocol promises.
        """
        alice, bob, carol = self.guest("alice"), self.guest("bob"), self.guest("carol")
        members = self.room("#r", alice, bob, carol)
        for wire in (bob, carol):
            wire.protocol.outbox.pauseProducing()
        blob = e2e.seal("alice", privateKey("alice"), ("room", "#r"), members, b"x" * 5000,
                        ts=int(self.clock.seconds() * 1000))
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", blob)[0], OK)
        [(bobFrame, _)] = bob.protocol.outbox._queue
        [(carolFrame, _)] = carol.protocol.outbox._queue
        [ciphertext] = [p for p in bobFrame if len(p) > 5000]
        self.assertTrue(any(p is ciphertext for p in carolFrame))
        for wire in (bob, carol):
            wire.protocol.outbox.resumeProducing()
            [(op, payload)] = wire.frames()
            envelope = opcodes.decodeEvent(op, payload)[3]
            self.assertEqual(envelope, e2e.Envelope.parse(blob).cutFor(wire.name))

    def test_oneBudgetForEveryDoor(self):
        """
        The binary and text doors of one server draw on one budget, of
        send-budget bytes.
        """
        self.service.settings = self.service.settings.__class__(sendBudget=5_000_000)
        binary = self.connect()
        text = TextFactory(self.service).buildProtocol(None)
        text.makeConnection(StringTransport())
        self.assertIs(binary.protocol.outbox.budget, text.outbox.budget)
        self.assertIs(text.outbox.budget, budgetOf(self.service))
        self.assertEqual(budgetOf(self.service).limit, 5_000_000)


class _Collector(Protocol):
    """
    One end of a socket pair: keeps what it reads, and says when it has read
    C{expected} bytes and when it is closed.
    """

    def __init__(self, expected=0):
        self.expected = expected
        self.received = b""
        self.enough: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.expected and not self.enough.called:
            self.enough.callback(self.received)

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)


class _Recording:
    """
    A socket that keeps what is sent through it.
    """

    def __init__(self, sock):
        self.sock = sock
        self.sent = []

    def send(self, data):
        count = self.sock.send(data)
        self.sent.append(bytes(data[:count]))
        return count


class TurnEndTests(TestCase):
    """
    An outbox over an idle TCP-like transport gathers a turn's frames and
    sends them together, straight on the socket, keeping the order of
    everything Twisted holds for it. The transports are Twisted's, over a
    UNIX socket pair: no network.
    """

    def adopt(self, sock: socket.socket, protocol: _Collector) -> Any:
        """
        Hand C{sock} to the reactor with C{protocol}; the test ends once the
        connection has closed.

        @return: the reactor's transport for it.
        """
        factory: Any = ServerFactory.forProtocol(lambda: protocol)
        cast(IReactorSocket, reactor).adoptStreamConnection(sock.fileno(), socket.AF_UNIX,
                                                            factory)
        sock.close()  # the reactor holds its own copy
        transport: Any = protocol.transport
        self.addCleanup(lambda: protocol.closed)
        self.addCleanup(transport.loseConnection)
        return transport

    def pair(self, expected, sendBuffer=None):
        """
        An outbox on one end of a socket pair whose sends are recorded, and a
        reader of C{expected} bytes on the other.
        """
        ours, theirs = socket.socketpair()
        if sendBuffer:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sendBuffer)
        outbox = Outbox(self.adopt(ours, _Collector()), 10_000_000, lambda: None,
                        SendBudget(10_000_000))
        outbox._socket = _Recording(outbox._socket)
        reader = _Collector(expected)
        self.adopt(theirs, reader)
        return outbox, reader

    def test_oneSendAtTheTurnsEnd(self):
        """
        Frames written in one turn go in one send once the turn ends, and the
        transport is never registered for writing.
        """
        outbox, reader = self.pair(len(b"one;two"))
        outbox.write(b"one;")
        outbox.write((b"tw", b"o"))
        self.assertEqual(outbox._socket.sent, [])
        self.assertNotIn(outbox.transport, reactor.getWriters())

        def arrived(received):
            self.assertEqual(received, b"one;two")
            self.assertEqual(outbox._socket.sent, [b"one;two"])
            self.assertNotIn(outbox.transport, reactor.getWriters())
        return reader.enough.addCallback(arrived)

    def test_splicedGatheredAsPieces(self):
        """
        Spliced frames join the turn's other frames as their pieces, the
        shared prefix not copied, and go in the same one send.
        """
        outbox, reader = self.pair(len(b"one;pre;tail;head;common;tail"))
        prefix, shared = b"pre;", b"common"
        outbox.write(b"one;")
        outbox.writeSpliced(prefix, b"tail;")
        outbox.writeSpliced((b"head;", shared), b";tail")
        gathered = outbox._gathered
        self.assertEqual(gathered, [b"one;", prefix, b"tail;", b"head;", shared, b";tail"])
        self.assertIs(gathered[1], prefix)
        self.assertIs(gathered[4], shared)

        def arrived(received):
            self.assertEqual(received, b"one;pre;tail;head;common;tail")
            self.assertEqual(len(outbox._socket.sent), 1)
        return reader.enough.addCallback(arrived)

    def test_queuesBehindWaitingBytes(self):
        """
        While the transport holds bytes of its own, a frame goes behind them.
        """
        outbox, reader = self.pair(len(b"first;second"))
        outbox.transport.write(b"first;")
        outbox.write(b"second")
        self.assertIn(outbox.transport, reactor.getWriters())
        return reader.enough.addCallback(self.assertEqual, b"first;second")

    def test_largeFrameAtOnce(self):
        """
        A frame of L{GATHER_LIMIT} bytes is sent at once; what the socket does
        not take is handed to the transport, and the next frame goes behind
        it: the reader gets both whole, in order.
        """
        big = bytes(range(256)) * (GATHER_LIMIT // 64)
        outbox, reader = self.pair(len(big) + 4, sendBuffer=4096)
        outbox.write(big)
        [sent] = outbox._socket.sent
        self.assertTrue(0 < len(sent) < len(big))
        self.assertEqual(outbox.transport._tempDataBuffer, [big[len(sent):]])
        outbox.write(b"tail")
        return reader.enough.addCallback(self.assertEqual, big + b"tail")

    def test_closingSendsWhatWasGathered(self):
        """
        A door closing the connection the turn it wrote (resume, unregister,
        lose, as L{chatd.protocols.door.Door} does) still sends the frame.
        """
        outbox, reader = self.pair(len(b"goodbye"))
        outbox.write(b"goodbye")
        outbox.resumeProducing()
        outbox.transport.unregisterProducer()
        outbox.transport.loseConnection()
        return reader.closed.addCallback(lambda _: self.assertEqual(reader.received,
                                                                    b"goodbye"))

    def test_brokenSocketClosesTheConnection(self):
        """
        A socket whose peer is gone fails the send; the transport is told, and
        the connection closes rather than the error reaching the caller.
        """
        ours, theirs = socket.socketpair()
        protocol = _Collector()
        transport = self.adopt(ours, protocol)
        outbox = Outbox(transport, 100, lambda: None, SendBudget(100))
        transport.stopReading()  # only the failed write may notice
        theirs.close()
        outbox.write(b"lost")
        outbox.flush()
        self.assertIn(outbox.transport, reactor.getWriters())
        return protocol.closed


class TLSGatheringTests(SynchronousTestCase):
    """
    An outbox over a TLS transport on TCP gathers a turn's frames too, and
    writes them to the TLS transport together at the turn's end: one record.
    """

    def test_oneWriteAtTheTurnsEnd(self):
        clock = Clock()
        tcp: Any = Connection.__new__(Connection)
        tcp.reactor = clock
        tls: Any = TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)
        tls.transport = tcp
        written: "list[bytes]" = []
        tls.write = written.append
        outbox = Outbox(tls, 10_000_000, lambda: None, SendBudget(10_000_000))
        outbox.write(b"one;")
        outbox.write((b"tw", b"o;"))
        outbox.writeSpliced(b"pre;", b"tail")
        self.assertEqual(written, [])
        clock.advance(0)
        self.assertEqual(written, [b"one;two;pre;tail"])
        outbox.write(b"next")
        clock.advance(0)
        self.assertEqual(written, [b"one;two;pre;tail", b"next"])
