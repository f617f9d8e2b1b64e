"""
Tests for L{chatd.protocols.outbox}: the per-connection send queue, the send
budget all connections share, and ciphertext shared between readers' queues.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.cut import Cut
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.protocols.outbox import Outbox, SendBudget, budgetOf, chain
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
