"""
Guests in the terminal client (issue 15.5): the server marks who is a guest
(the guest flag of protocol version 2, docs/protocol.rst), and the client
never pins a guest's key and shows guests marked. Clients fed the server's
events directly; a server that does not mark guests is covered by
L{chatd.test.test_client}.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.client import chat
from chatd.client.chat import Room
from chatd.client.connection import ServerError
from chatd.client.console import Console
from chatd.client.trust import GUEST_FLAG
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.test_client import ClientTestCase, der, offlineClient

ACCOUNT = 0


class GuestFlagTests(SynchronousTestCase):
    """
    What the server says of guests decides what is pinned.
    """

    def setUp(self):
        self.client, self.ui = offlineClient(self, "alice", privateKey("alice"))
        self.client.rooms["lobby"] = Room("lobby")
        self.pins = self.client.home.knownKeys

    def say(self, text, sender="carol", key="carol"):
        blob = e2e.seal(sender, privateKey(key), ("room", "lobby"),
                        {"alice": der("alice")}, text.encode(),
                        ts=int(self.client.clock.seconds() * 1000))
        self.client._event(Op.ROOM_MSG, ("lobby", sender, 0, blob))

    def test_guestWithAnAccountsNameNotPinned(self):
        """
        A guest who took the name carol, which is not of the guest form, is
        not pinned as carol; the client still reads what it says, with the
        key the server gives, and counts it a guest.
        """
        self.client._event(Op.JOINED, ("lobby", "carol", der("mallory"), GUEST_FLAG))
        self.assertIsNone(self.pins.pinned("carol"))
        self.assertTrue(self.client.isGuest("carol"))
        self.assertEqual(self.client._state("carol", der("mallory")), "guest")
        self.say("hi, it's carol", key="mallory")
        self.assertEqual(self.ui.take("message", "notice", "keyChanged"),
                         [("message", "lobby", "carol", "hi, it's carol")])

    def test_accountAfterGuestIsFirstContact(self):
        """
        The account carol, after a guest called carol, is a first contact
        (pinned, said so), not a key change.
        """
        self.client._event(Op.JOINED, ("lobby", "carol", der("mallory"), GUEST_FLAG))
        self.client._event(Op.LEFT, ("lobby", "carol"))
        self.ui.take()
        self.client._event(Op.JOINED, ("lobby", "carol", der("carol"), ACCOUNT))
        self.assertEqual(self.pins.pinned("carol"), (der("carol"), "tofu"))
        self.assertEqual(self.ui.take("notice", "keyChanged"), [
            ("notice",
             "first contact with carol: key %s pinned" % (e2e.fingerprint(der("carol")),))])
        self.assertFalse(self.client.isGuest("carol"))

    def test_guestAfterAccountLeavesThePin(self):
        """
        A guest that the server lets take the name of an account alice pinned
        is no key change and changes no pin; the console marks it a guest.
        """
        self.client._event(Op.JOINED, ("lobby", "carol", der("carol"), ACCOUNT))
        self.ui.take()
        self.client._event(Op.JOINED, ("lobby", "carol", der("mallory"), GUEST_FLAG))
        self.assertEqual(self.ui.take("keyChanged"), [])
        self.assertEqual(self.pins.pinned("carol"), (der("carol"), "tofu"))
        self.assertNotIn("carol", self.client.blocked)

    def test_guestRenamedToAName(self):
        """
        A guest renamed (NICK) to a name not of the guest form stays a guest
        when the server says so: its key is not pinned under the new name.
        """
        self.client._event(Op.JOINED, ("lobby", "rand7", der("mallory"), GUEST_FLAG))
        self.client._event(Op.RENAMED, ("rand7", "carol", GUEST_FLAG))
        self.say("still a guest", key="mallory")
        self.assertIsNone(self.pins.pinned("carol"))
        self.assertEqual(self.ui.take("message", "keyChanged"),
                         [("message", "lobby", "carol", "still a guest")])

    def test_guestRegistersIsPinnedOnce(self):
        """
        A guest that registers is renamed as an account, and the account's
        key is pinned on its first contact, not the guest's.
        """
        self.client._event(Op.JOINED, ("lobby", "rand7", der("mallory"), GUEST_FLAG))
        self.client._event(Op.RENAMED, ("rand7", "carol", ACCOUNT))
        self.client._event(Op.KEY_CHANGED, ("carol", der("carol"), ACCOUNT))
        self.assertEqual(self.pins.pinned("carol"), (der("carol"), "tofu"))
        self.assertEqual(self.ui.take("keyChanged"), [])

    def test_memberListsCarryFlags(self):
        """
        Member lists with flags (JOIN answers, GET_KEYS, 0x09) mark guests:
        they are not pinned, the accounts are.
        """
        room = self.client.rooms["lobby"]
        self.client._setMembers(room, [("carol", der("mallory"), GUEST_FLAG),
                                       ("bob", der("bob"), ACCOUNT)])
        self.assertIsNone(self.pins.pinned("carol"))
        self.assertEqual(self.pins.pinned("bob"), (der("bob"), "tofu"))
        self.assertEqual(sorted(room.members), ["bob", "carol"])

    def test_withoutFlagsByName(self):
        """
        From a server that does not mark guests, a name of the guest form is
        a guest, and any other name is not.
        """
        self.client._event(Op.JOINED, ("lobby", "rand7", der("mallory")))
        self.client._event(Op.JOINED, ("lobby", "bob", der("bob")))
        self.assertTrue(self.client.isGuest("rand7"))
        self.assertFalse(self.client.isGuest("bob"))
        self.assertIsNone(self.pins.pinned("rand7"))
        self.assertEqual(self.pins.pinned("bob"), (der("bob"), "tofu"))


class GuestShownTests(SynchronousTestCase):
    """
    The console marks guests wherever it names a user.
    """

    def setUp(self):
        self.client, _ = offlineClient(self, "alice", privateKey("alice"))
        self.client.rooms["lobby"] = Room("lobby")
        self.transport = StringTransport()
        self.console = Console(lambda ui: self.client, self.client.clock)
        self.console.client = self.client
        self.console.makeConnection(self.transport)
        self.client._event(Op.JOINED, ("lobby", "carol", der("mallory"), GUEST_FLAG))
        self.client._event(Op.JOINED, ("lobby", "bob", der("bob"), ACCOUNT))
        self.transport.clear()

    def shown(self):
        lines = self.transport.value().decode("utf-8").splitlines()
        self.transport.clear()
        return [line.split("] ", 1)[-1] for line in lines]

    def test_marked(self):
        """
        Messages, joins and renames name a guest with C{(guest)}; accounts
        are named as they are.
        """
        self.console.messageReceived("lobby", "carol", 0, "hi")
        self.console.messageReceived("lobby", "bob", 0, "hello")
        self.console.directMessageReceived("carol", "carol", 0, "psst")
        self.console.memberJoined("lobby", "carol", e2e.fingerprint(der("mallory")))
        self.assertEqual(self.shown(), [
            "#lobby <carol (guest)> hi",
            "#lobby <bob> hello",
            "*dm* <carol (guest)> psst",
            "#lobby * carol (guest) joined (key %s)"
            % (" ".join(e2e.fingerprint(der("mallory")).split()[:4]),),
        ])


class FakeConnection:
    """
    Answers requests from a table, and records them.
    """

    version = 1

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def request(self, op, *values):
        self.requests.append((op,) + values)
        answer = self.answers[(op,) + values]
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)


class VersionTwoTests(SynchronousTestCase):
    """
    The client greets in protocol version 2, whose events say who is a guest,
    and still talks to a server that speaks only version 1; version 2's
    moderation events and JOIN answer are understood.
    """

    def setUp(self):
        self.patch(chat, "PROTOCOL_VERSIONS", (2,))
        self.client, self.ui = offlineClient(self, "alice", privateKey("alice"))

    def test_helloTwo(self):
        """
        A server that speaks version 2 takes HELLO 2; responses and events are
        then read by version 2's layouts.
        """
        connection = FakeConnection({(Op.HELLO, 2): ("rand1",)})
        d = Deferred.fromCoroutine(self.client._hello(connection))
        self.assertEqual(self.successResultOf(d), "rand1")
        self.assertEqual(connection.version, 2)

    def test_helloOne(self):
        """
        A server that refuses HELLO 2 (0x01) is greeted again with version 1.
        """
        connection = FakeConnection({(Op.HELLO, 2): ServerError(0x01, "HELLO: bad version"),
                                     (Op.HELLO,): ("rand1",)})
        d = Deferred.fromCoroutine(self.client._hello(connection))
        self.assertEqual(self.successResultOf(d), "rand1")
        self.assertEqual(connection.requests, [(Op.HELLO, 2), (Op.HELLO,)])
        self.assertEqual(connection.version, 1)

    def test_joinWithTopic(self):
        """
        Version 2's JOIN answer carries the topic after the members.
        """
        connection = FakeConnection({
            (Op.JOIN, "lobby", ""): ([("bob", der("bob"), ACCOUNT)], "welcome"),
            (Op.LIST_ROOMS,): (["lobby"],)})
        d = Deferred.fromCoroutine(self.client._joinOn(connection, "lobby", ""))
        self.assertEqual(sorted(self.successResultOf(d).members), ["bob"])

    def test_kicked(self):
        """
        A member kicked is no longer one; we, kicked or banned, are out of the
        room; a room destroyed is gone. Each is said.
        """
        for name in ("lobby", "ops", "old"):
            self.client.rooms[name] = Room(name)
            self.client.rooms[name].members = {"alice": der("alice"), "bob": der("bob")}
        self.client._event(Op.KICKED, ("lobby", "bob", "carol", 0, "spam"))
        self.client._event(Op.KICKED, ("ops", "alice", "carol", 1, ""))
        self.client._event(Op.DESTROYED, ("old", "carol"))
        self.assertEqual(list(self.client.rooms), ["lobby"])
        self.assertEqual(list(self.client.rooms["lobby"].members), ["alice"])
        self.assertEqual(self.ui.take("notice"), [
            ("notice", "bob was kicked from lobby by carol: spam"),
            ("notice", "you were banned from ops by carol"),
            ("notice", "old was closed for good by carol")])

    def test_topicAndRole(self):
        """
        Topic and role changes are said.
        """
        self.client._event(Op.TOPIC, ("lobby", "carol", "release day"))
        self.client._event(Op.TOPIC, ("lobby", "carol", ""))
        self.client._event(Op.ROLE, ("lobby", "bob", "carol", 1))
        self.assertEqual(self.ui.take("notice"), [
            ("notice", "carol set the topic of lobby: release day"),
            ("notice", "carol cleared the topic of lobby"),
            ("notice", "carol made bob an operator in lobby")])


class RealServerGuestTests(ClientTestCase):
    """
    The guest flag as the real server (core and binary door, in memory) sends
    it to a client that greets in version 2.
    """

    protocolVersions = (2,)

    def test_guestTakingANameIsNotPinned(self):
        """
        A guest who takes the name carol is marked a guest by the server: the
        others do not pin its key, and show it marked.
        """
        alice, aliceUI = self.account("alice", "lobby")
        self.assertEqual(alice.protocol.version, 2)
        guest, _ = self.client()
        self.do(guest.join("lobby"))
        self.do(guest.nick("carol"))
        self.do(guest.send("hi, I am carol"))
        self.assertTrue(alice.isGuest("carol"))
        self.assertIsNone(alice.home.knownKeys.pinned("carol"))
        self.assertEqual(aliceUI.take("message", "keyChanged"),
                         [("message", "lobby", "carol", "hi, I am carol")])
        self.assertEqual([state for user, _, state in self.do(alice.keysOf("room", "lobby"))
                          if user == "carol"], ["guest"])
