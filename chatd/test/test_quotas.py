"""
Tests for L{chatd.quotas}: the create, join and connection limits, the HELLO
deadline and the bounded replay cache, on the core with a L{Clock} and on the
doors over L{StringTransport}.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatd.core.replay import ReplayCache
from chatd.errors import Forbidden, RateLimited, Status
from chatd.protocols import jsonwire, opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.quotas import WARNING_NO_HELLO
from chatd.test.test_binary import Wire
from chatd.test.test_service import NO_IDLE, CoreTestCase
from chatd.test.test_websocket import WebSocketTestCase


class CreateLimitTests(CoreTestCase):
    """
    CREATE (and a JOIN that creates) is counted per user and per address.
    """

    settings = dict(NO_IDLE, createLimit=(3, 60.0), createAddressLimit=(5, 60.0))

    def test_perUser(self):
        """
        A user's fourth new room within a minute is RateLimited, whether by
        CREATE or by JOIN; a minute later it may create again.
        """
        alice = self.account("alice")
        self.result(alice.create, "#a", "")
        self.result(alice.join, "#b", "")
        self.result(alice.create, "#c", "")
        error = self.refusal(alice.create, "#d", "")
        self.assertIsInstance(error, RateLimited)
        self.assertIn("more than 3 rooms created in 60 s", error.message)
        self.assertIsInstance(self.refusal(alice.join, "#d", ""), RateLimited)
        self.clock.advance(60)
        self.result(alice.create, "#d", "")

    def test_perAddress(self):
        """
        Accounts sharing an address share its limit; another address is not
        concerned, and joining an existing room is no CREATE.
        """
        alice, bob = self.account("alice"), self.account("bob")
        for name in ("#a", "#b", "#c"):
            self.result(alice.create, name, "")
        self.result(bob.create, "#d", "")
        self.result(bob.create, "#e", "")
        error = self.refusal(bob.create, "#f", "")
        self.assertIsInstance(error, RateLimited)
        self.assertIn("from your address", error.message)
        self.result(bob.join, "#a", "")
        carol = self.account("carol", address="10.0.0.2")
        self.result(carol.create, "#f", "")


class JoinLimitTests(CoreTestCase):
    """
    JOIN requests are counted per user and per address.
    """

    settings = dict(NO_IDLE, joinLimit=(3, 60.0), joinAddressLimit=(4, 60.0))

    def test_perUserAndAddress(self):
        """
        A user's fourth JOIN within a minute is RateLimited, so is the fifth
        from one address; refused JOINs do not count.
        """
        alice = self.account("alice")
        for name in ("#a", "#b", "#c"):
            self.result(alice.join, name, "")
        self.assertIsInstance(self.refusal(alice.join, "#d", ""), RateLimited)
        bob = self.account("bob")
        self.result(bob.join, "#a", "")
        error = self.refusal(bob.join, "#b", "")
        self.assertIsInstance(error, RateLimited)
        self.assertIn("join requests from your address", error.message)
        carol = self.account("carol", address="10.0.0.2")
        self.result(carol.join, "#b", "")
        self.clock.advance(60)
        self.result(alice.join, "#d", "")


class GuestRoomTests(CoreTestCase):
    """
    Guests create few rooms and none with a password.
    """

    settings = dict(NO_IDLE, guestRooms=2)

    def test_noPasswordRooms(self):
        """
        A guest's CREATE or JOIN of a new room with a password is Forbidden
        before any bcrypt work; an account's is not.
        """
        gus = self.guest("gus")
        for method in (gus.create, gus.join):
            error = self.refusal(method, "#p", "sesame")
            self.assertIsInstance(error, Forbidden)
            self.assertIn("guests cannot create rooms with a password", error.message)
        self.assertEqual(self.result(gus.listRooms), [])
        alice = self.account("alice")
        self.result(alice.create, "#p", "sesame")
        self.result(gus.join, "#p", "sesame")

    def test_capPerGuest(self):
        """
        A guest creates at most guest-rooms rooms, even once they are gone; a
        new guest has its own share.
        """
        gus = self.guest("gus")
        self.result(gus.create, "#a", "")
        self.result(gus.join, "#b", "")
        self.result(gus.leave, "#b")
        error = self.refusal(gus.join, "#c", "")
        self.assertIsInstance(error, Forbidden)
        self.assertIn("at most 2 rooms", error.message)
        self.result(self.guest("guy").create, "#c", "")


class ConnectionCapTests(CoreTestCase):
    """
    An address holds at most address-connections connections.
    """

    settings = dict(NO_IDLE, addressConnections=2)

    def test_cap(self):
        """
        The third connection from an address is RateLimited; another address
        is not; a closed connection frees its place.
        """
        first, _ = self.connect(), self.connect()
        error = self.assertRaises(RateLimited, self.connect)
        self.assertIn("too many connections from your address (at most 2)", error.message)
        self.connect("10.0.0.2")
        first.closed()
        first.closed()
        self.connect()
        self.assertRaises(RateLimited, self.connect)

    def test_binaryDoorRefuses(self):
        """
        The binary door answers a connection over the cap with status 0x02 and
        its reason, and closes it.
        """
        factory = BinaryFactory(self.service)
        Wire(factory), Wire(factory)
        wire = Wire(factory)
        [(op, payload)] = wire.frames()
        self.assertEqual(op, Op.RESPONSE)
        self.assertEqual(payload[0], Status.RATE_LIMITED)
        self.assertIn(b"too many connections", payload)
        self.assertTrue(wire.transport.disconnecting)

    def test_textDoorRefuses(self):
        """
        The text door answers a connection over the cap with C{ERR::02} and
        closes it.
        """
        factory = TextFactory(self.service)
        transports = []
        for _ in range(3):
            transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 4000))
            factory.buildProtocol(None).makeConnection(transport)
            transports.append(transport)
        self.assertTrue(transports[2].value().startswith(b"ERR::02::too many connections"))
        self.assertTrue(transports[2].disconnecting)
        self.assertFalse(transports[1].disconnecting)


class WebSocketConnectionCapTests(WebSocketTestCase):
    """
    The WebSocket door counts the client address its site gives.
    """

    settings = dict(addressConnections=1)

    def test_refused(self):
        """
        A WebSocket over the cap gets an C{error} message with code
        C{rate_limited} and close code 1013; another address is let in.
        """
        self.connect()
        client = self.connect()
        [message] = client.take()
        self.assertEqual((message["type"], message["code"]), ("error", "rate_limited"))
        self.assertIn("too many connections", message["message"])
        self.assertEqual(client.closeCode, 1013)
        self.assertEqual(self.connect("10.0.0.2").take(), [])


class HelloDeadlineTests(CoreTestCase):
    """
    A connection that never says HELLO is closed with a warning.
    """

    settings = dict(NO_IDLE, helloTimeout=10.0)

    def test_closedWithoutHello(self):
        """
        Ten seconds without HELLO bring WARNING 0x05 and a disconnect; a
        session that greeted in time stays.
        """
        silent, greeted = self.connect(), self.connect()
        self.clock.advance(9)
        greeted.hello(1)
        self.assertEqual(silent.client.take(), [])
        self.clock.advance(1)
        [(name, (code, message))] = silent.client.take()
        self.assertEqual((name, code), ("warning", WARNING_NO_HELLO))
        self.assertEqual(message, "no hello within 10 s; closing the connection")
        self.assertTrue(silent.client.disconnected)
        self.clock.advance(100)
        self.assertFalse(greeted.client.disconnected)

    def test_helloReadBeforeClosing(self):
        """
        A HELLO that arrives on the reactor turn the deadline fires in (a
        server too busy to run for the whole deadline runs timers first) is
        still read in time.
        """
        session = self.connect()
        self.clock.advance(9.5)
        [deadline] = [call for call in self.clock.getDelayedCalls()
                      if call.getTime() == self.clock.seconds() + 0.5]
        self.clock.calls.remove(deadline)
        self.clock.rightNow += 0.5
        deadline.func(*deadline.args)
        session.hello(1)
        self.clock.advance(0)
        self.assertEqual(session.client.take(), [])
        self.assertFalse(session.client.disconnected)

    def test_binaryDoor(self):
        """
        On the binary door the warning is a WARNING event, then the close.
        """
        wire = Wire(BinaryFactory(self.service))
        self.clock.advance(10)
        [(op, payload)] = wire.frames()
        self.assertEqual(op, Op.WARNING)
        self.assertEqual(opcodes.decodeEvent(op, payload)[0], WARNING_NO_HELLO)
        self.assertTrue(wire.transport.disconnecting)

    def test_textDoorGreetsAtOnce(self):
        """
        The text door greets on connecting, so its connections have no
        deadline to meet.
        """
        transport = StringTransport()
        TextFactory(self.service).buildProtocol(None).makeConnection(transport)
        self.clock.advance(60)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"OK::" + jsonwire.welcome("rand0") + b"\n")


class ReplayCacheTests(CoreTestCase):
    """
    The replay cache is bounded in entries as well as in time.
    """

    def test_capacity(self):
        """
        Past its capacity the oldest ids go first; the newest stay.
        """
        cache = ReplayCache(Clock(), 600, 3)
        for key in "abcd":
            cache.add(key)
        self.assertEqual(len(cache), 3)
        self.assertNotIn("a", cache)
        self.assertTrue(all(key in cache for key in "bcd"))

    def test_configured(self):
        """
        The core's cache takes replay-entries as its capacity.
        """
        service = self.buildService()
        self.assertEqual(service.replays.capacity, 200000)
