"""
Tests for the fan-out's two ways into a door: an L{ISplicingClient} is given
the parsed envelope and the reader's entry and makes the frame itself; any
other L{IChatClient} is given the reader's L{chatd.cut.Cut}.
"""

import sys

from zope.interface import implementer

from chatd import e2e
from chatd.interfaces import ISplicingClient
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryProtocol
from chatd.protocols.opcodes import Op
from chatd.test.fakes import FakeChatClient, privateKey, publicDer
from chatd.test.test_binary import OK, ProtocolTestCase
from chatd.test.test_service import NO_IDLE, CoreTestCase, cut, keys
from chatd.test.test_splice import referenceCut


@implementer(ISplicingClient)
class SplicingClient(FakeChatClient):
    """
    Records L{ISplicingClient} calls, with the cut they stand for; once
    C{broken}, raises instead.
    """

    broken = False

    @staticmethod
    def roomMessagesFor(clients, entries, fields, envelope, failed):
        SplicingClient._spliced("roomMessagesFor", clients, entries, fields, envelope, failed)

    @staticmethod
    def directMessagesFor(clients, entries, fields, envelope, failed):
        SplicingClient._spliced("directMessagesFor", clients, entries, fields, envelope, failed)

    @staticmethod
    def _spliced(name, clients, entries, fields, envelope, failed):
        for client, entry in zip(clients, entries):
            try:
                if client.broken:
                    raise RuntimeError("this client is broken")
                client.events.append(
                    (name, fields + (envelope.common + envelope.tailFor(entry),)))
            except Exception:
                failed(client)


class OtherDoorClient(SplicingClient):
    """
    A splicing client of another door class: its readers are a batch of
    their own.
    """

    @staticmethod
    def roomMessagesFor(clients, entries, fields, envelope, failed):
        SplicingClient._spliced("otherRoomMessagesFor", clients, entries, fields, envelope,
                                failed)


@implementer(ISplicingClient)
class BrokenDoorClient(FakeChatClient):
    """
    A splicing client whose class's loop breaks before it gives anyone
    anything.
    """

    @staticmethod
    def roomMessagesFor(clients, entries, fields, envelope, failed):
        raise RuntimeError("this door is broken")

    directMessagesFor = roomMessagesFor


class CoreSplicingTests(CoreTestCase):
    """
    The core picks each session's way by its client's class.
    """

    settings = NO_IDLE

    def splicing(self, name, client=None):
        session = self.connect(client=client or SplicingClient())
        session.hello(1)
        self.result(session.nick, name)
        self.result(session.setKey, publicDer(name))
        return session

    def test_roomMessage(self):
        """
        In one room, a splicing client gets the fields, the envelope and its
        entry, which make its cut; a plain one gets the cut.
        """
        alice, bob, carol = self.guest("alice"), self.splicing("bob"), self.guest("carol")
        self.joinAll("#r", alice, bob, carol)
        blob = self.seal("alice", ("room", "#r"), keys("alice", "bob", "carol"))
        timestamp = self.result(alice.roomMessage, "#r", blob)
        self.assertEqual(bob.client.take(),
                         [("roomMessagesFor", ("#r", "alice", timestamp, cut(blob, "bob")))])
        self.assertEqual(carol.client.take(),
                         [("roomMessage", ("#r", "alice", timestamp, cut(blob, "carol")))])
        self.assertEqual(alice.client.take(), [])

    def test_doorsInTurn(self):
        """
        Members of two splicing door classes, in turn in the room, each get
        their own cut once, from their own door's loop.
        """
        alice = self.guest("alice")
        bob, erin = self.splicing("bob"), self.splicing("erin")
        dan, fay = (self.splicing(name, OtherDoorClient()) for name in ("dan", "fay"))
        self.joinAll("#r", alice, bob, dan, erin, fay)
        blob = self.seal("alice", ("room", "#r"), keys("alice", "bob", "dan", "erin", "fay"))
        timestamp = self.result(alice.roomMessage, "#r", blob)
        for session, name in [(bob, "roomMessagesFor"), (dan, "otherRoomMessagesFor"),
                              (erin, "roomMessagesFor"), (fay, "otherRoomMessagesFor")]:
            reader = session.user.name
            self.assertEqual(session.client.take(),
                             [(name, ("#r", "alice", timestamp, cut(blob, reader)))])

    def test_directMessage(self):
        """
        A direct message to a splicing client goes the same way.
        """
        alice, bob = self.guest("alice"), self.splicing("bob")
        blob = self.seal("alice", ("user", "bob"), keys("alice", "bob"))
        timestamp = self.result(alice.directMessage, "bob", blob)
        self.assertEqual(bob.client.take(),
                         [("directMessagesFor", ("alice", timestamp, cut(blob, "bob")))])

    def test_failingSplicer(self):
        """
        A splicing client that raises is logged and disconnected; the members
        after it still get the message.
        """
        alice, bob, carol = self.guest("alice"), self.splicing("bob"), self.guest("carol")
        self.joinAll("#r", alice, bob, carol)
        bob.client.broken = True
        timestamp = self.post(alice, "#r")
        self.assertTrue(bob.client.disconnected)
        self.assertEqual([event[0] for event in carol.client.take()], ["roomMessage"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertGreater(timestamp, 0)

    def test_brokenDoor(self):
        """
        A door class whose loop raises has each of its readers logged and
        disconnected; the other doors' readers still get the message, and the
        sender's answer is the timestamp.
        """
        alice, carol = self.guest("alice"), self.guest("carol")
        bob, dan = (self.splicing(name, BrokenDoorClient()) for name in ("bob", "dan"))
        self.joinAll("#r", alice, bob, carol, dan)
        timestamp = self.post(alice, "#r")
        self.assertTrue(bob.client.disconnected and dan.client.disconnected)
        self.assertEqual([event[0] for event in carol.client.take()], ["roomMessage"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertGreater(timestamp, 0)


class DoorSplicingTests(ProtocolTestCase):
    """
    The binary door's L{BinaryProtocol.roomMessagesFor} writes, for every
    reader, the frame the event encoder makes of the reader's cut, also when
    it takes the frame's start from the prefix kept for an earlier reader.
    """

    settings = dict(rateLimit=(1000, 1.0))

    def test_readersOfOneSize(self):
        """
        Readers whose names are as long share the frame's start; each still
        gets its own entries, message after message.
        """
        alice = self.guest("alice")
        readers = [self.guest(name) for name in ("bob", "dan", "eve", "carol")]
        members = self.room("#r", alice, *readers)
        for text in (b"one", b"two"):
            blob = e2e.seal("alice", privateKey("alice"), ("room", "#r"), members, text,
                            ts=int(self.clock.seconds() * 1000))
            status, (timestamp,) = alice.request(Op.ROOM_MSG, "#r", blob)
            self.assertEqual(status, OK)
            for wire in readers:
                self.assertEqual(wire.transport.value(), opcodes.event(
                    Op.ROOM_MSG, "#r", "alice", timestamp, referenceCut(blob, wire.name)))
                wire.transport.clear()

    def test_closingWritesNothing(self):
        """
        A connection on its way out is given nothing more.
        """
        wire = self.guest("bob")
        protocol: BinaryProtocol = wire.protocol
        envelope = e2e.Envelope.parse(e2e.seal(
            "alice", privateKey("alice"), ("room", "#r"), {"bob": publicDer("bob")}, b"x"))
        before = wire.transport.value()
        protocol._closing = True
        BinaryProtocol.roomMessagesFor([protocol], ["bob"], ("#r", "alice", 1), envelope,
                                       self.fail)
        self.assertEqual(wire.transport.value(), before)

    def test_failingReader(self):
        """
        A reader whose outbox raises is handed to C{failed}, in the
        C{except} clause; the readers after it still get their frames.
        """
        bob, carol = self.guest("bob"), self.guest("carol")
        envelope = e2e.Envelope.parse(e2e.seal(
            "alice", privateKey("alice"), ("room", "#r"),
            {"bob": publicDer("bob"), "carol": publicDer("carol")}, b"x"))

        def broken(prefix, tail):
            raise RuntimeError("this outbox is broken")
        bob.protocol.outbox.writeSpliced = broken
        failures = []
        BinaryProtocol.roomMessagesFor(
            [bob.protocol, carol.protocol], ["bob", "carol"], ("#r", "alice", 1), envelope,
            lambda protocol: failures.append((protocol, sys.exc_info()[0])))
        self.assertEqual(failures, [(bob.protocol, RuntimeError)])
        self.assertTrue(carol.transport.value().endswith(opcodes.event(
            Op.ROOM_MSG, "#r", "alice", 1, envelope.cutFor("carol"))))

