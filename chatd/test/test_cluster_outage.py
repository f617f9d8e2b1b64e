"""
A cluster through Redis outages, on the fake Redis and a fake clock
(L{chatd.test.test_fanout}): room messages keep their order and all reach
everyone, direct messages are not lost, a dead node's rooms go, and events from
other nodes are checked as a client's requests are.
"""

from twisted.trial.unittest import TestCase

from chatd import e2e
from chatd.fanout.delivered import Delivered, envelopeKey
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.test_binary import OK
from chatd.test.test_fanout import RECONNECTED, FakeMode, skip


class OutageTests(FakeMode, TestCase):
    """
    Room messages and direct messages while Redis is away.
    """

    skip = skip

    async def test_oneAccountOnTwoNodes(self):
        """
        One account posting from two nodes in the same millisecond while Redis
        is away gets two timestamps, and each message reaches every other
        session on both nodes once it is back, none of them twice.
        """
        a, b = await self.node("A"), await self.node("B")
        alice1 = await self.account(a, "alice")
        alice2 = await self.account(b, "alice", register=False)
        bob, carol = await self.guest(a, "bob"), await self.guest(b, "carol")
        await self.request(alice1, Op.JOIN, "#r", "")
        await self.seesRoom(carol, "#r")
        for wire in (bob, carol):
            await self.request(wire, Op.JOIN, "#r", "")
        await self.advance(1)
        members = {name: publicDer(name) for name in ("alice", "bob", "carol")}
        for wire in (alice1, alice2, bob, carol):
            wire.takeEvents()
        self.redis.restart(down=True)
        await self.quiet()
        stamps = {}
        for wire in (alice1, alice2):
            blob = self.seal("alice", ("room", "#r"), members, "from " + wire.protocol.factory
                             .service.fanout.nodeId)
            status, (stamps[wire],) = await self.request(wire, Op.ROOM_MSG, "#r", blob)
            self.assertEqual(status, OK)
        self.assertNotEqual(stamps[alice1], stamps[alice2])
        self.redis.up()
        await self.advance(RECONNECTED)
        await self.advance(10)
        for wire, expected in [(bob, ["from A", "from B"]), (carol, ["from A", "from B"]),
                               (alice1, ["from B"]), (alice2, ["from A"])]:
            texts = sorted(
                e2e.openEnvelope(envelope, wire.name, privateKey(wire.name),
                                 publicDer(sender)).decode()
                for _, (_, sender, _, envelope) in wire.takeEvents(Op.ROOM_MSG))
            self.assertEqual(texts, expected, wire.name)


class DeliveredTests(TestCase):
    """
    L{Delivered} knows messages by sender and envelope id.
    """

    def test_sameTimestampTwoMessages(self):
        """
        Two messages of one sender with one timestamp are two messages; the
        same envelope again is not, whatever its timestamp; old ones are forgotten.
        """
        delivered = Delivered()
        envelope = self.envelope()
        first, second = envelopeKey("Alice", envelope), envelopeKey("Alice", self.envelope())
        self.assertEqual([delivered.add(100, first), delivered.add(100, second),
                          delivered.add(101, first)], [True, True, False])
        self.assertEqual(envelopeKey("ALICE", e2e.Envelope.parse(envelope)), first)
        delivered.prune(101)
        self.assertTrue(delivered.add(102, first))

    @staticmethod
    def envelope():
        return e2e.seal("Alice", privateKey("Alice"), ("room", "#r"),
                        {"Alice": publicDer("Alice")}, b"x", ts=0)
