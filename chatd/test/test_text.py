"""
Tests for L{chatd.protocols.text}: line exchanges over StringTransport.
"""

import base64
import json
from typing import Any, Dict

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from chatd import e2e, loginsig
from chatd.config import Settings
from chatd.core.service import ChatService
from chatd.credentials import Credentials
from chatd.interfaces import IChatClient, IFileClient
from chatd.protocols import jsonwire
from chatd.protocols.text import TextFactory, TextProtocol, ownWords
from chatd.store.memory import MemoryStore
from chatd.test.fakes import makeService, privateKey, publicDer, testKeys


def b64(data):
    return base64.b64encode(data).decode("ascii")


class LineClient:
    """
    One client connection to a L{TextProtocol} over a L{StringTransport}.

    @ivar events: the C{EVT::} objects read so far and not yet taken.
    """

    def __init__(self, factory, host="10.0.0.1"):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.protocol.makeConnection(self.transport)
        self.events = []
        self.welcome = self.lines()[0]

    def send(self, line, ending=b"\n"):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.protocol.dataReceived(line + ending)

    def lines(self):
        """
        Every line written since the last call, without its LF.
        """
        data = self.transport.value()
        self.transport.clear()
        assert data.endswith(b"\n") or not data, data
        return data.split(b"\n")[:-1]

    def replies(self):
        """
        The C{OK::} and C{ERR::} lines written since the last call; events are
        kept in C{self.events}.
        """
        out = []
        for line in self.lines():
            if line.startswith(b"EVT::"):
                self.events.append(json.loads(line[5:]))
            else:
                out.append(line)
        return out

    def request(self, line):
        """
        Send one line and return its one reply line.
        """
        self.send(line)
        replies = self.replies()
        assert len(replies) == 1, replies
        return replies[0]

    def ok(self, line):
        """
        Send one line, check it was answered C{OK::}, and return the object.
        """
        reply = self.request(line)
        assert reply.startswith(b"OK::"), reply
        return json.loads(reply[4:])

    def status(self, line):
        """
        Send one line and return its reply's status: 0 for OK, else the ERR code.
        """
        reply = self.request(line)
        return 0 if reply.startswith(b"OK::") else int(reply[5:7], 16)

    def takeEvents(self, kind=None):
        self.replies()
        taken = [e for e in self.events if kind is None or e["type"] == kind]
        self.events = [e for e in self.events if e not in taken]
        return taken


class TextTestCase(SynchronousTestCase):
    """
    Common set-up: a core on an in-memory store and a text factory.
    """

    settings: Dict[str, Any] = {}

    def setUp(self):
        self.service = makeService(**self.settings)
        self.clock = self.service.clock
        self.factory = TextFactory(self.service)

    def connect(self, host="10.0.0.1"):
        return LineClient(self.factory, host)

    def guest(self, name):
        """
        A text-door guest renamed to C{name}, its key published.
        """
        client = self.connect()
        assert client.ok("CMD::/nick " + name)["new"] == name
        assert client.ok("CMD::/key " + b64(publicDer(name))) == {"type": "key_set"}
        client.name = name
        return client

    def seal(self, sender, to, members, text):
        return e2e.seal(sender, privateKey(sender), to, members, text.encode(),
                        ts=int(self.clock.seconds() * 1000))

    def now(self):
        return jsonwire.formatTimestamp(int(self.clock.seconds() * 1000))


class GreetingAndFramingTests(TextTestCase):
    """
    The welcome line, reply forms, and what the line reader refuses.
    """

    settings = {"maxFrame": 1024, "sendQueue": 4096}

    def test_providesIChatClient(self):
        """
        The protocol is an L{IChatClient}, and not an L{IFileClient}: the text
        door takes no files.
        """
        protocol = self.factory.buildProtocol(None)
        self.assertTrue(verifyObject(IChatClient, protocol))
        self.assertFalse(IFileClient.providedBy(protocol))

    def test_welcomeBeforeReading(self):
        """
        On connect the server greets with the guest name before reading
        anything, and each connection gets the next name.
        """
        self.assertEqual(self.connect().welcome,
                         b'OK::{"type":"welcome","name":"rand0","protocol":1}')
        self.assertEqual(self.connect().welcome,
                         b'OK::{"type":"welcome","name":"rand1","protocol":1}')

    def test_okLines(self):
        """
        Replies are C{OK::} and one compact JSON object ending in LF; a CR before
        the LF is ignored.
        """
        client = self.connect()
        client.send("CMD::/ping")
        self.assertEqual(self.connect().transport.value(), b"")
        self.assertEqual(client.transport.value(), b'OK::{"type":"pong"}\n')
        client.transport.clear()
        client.send("CMD::/rooms", ending=b"\r\n")
        self.assertEqual(client.transport.value(), b'OK::{"type":"rooms","rooms":[]}\n')

    def test_errLines(self):
        """
        Refusals are C{ERR::}, two lowercase hex digits, C{::} and a message.
        """
        client = self.connect()
        self.assertEqual(client.request("CMD::/switch #nowhere"),
                         b"ERR::06::no such room: #nowhere")
        self.assertEqual(client.request("CMD::/nick rand7"),
                         b"ERR::07::names like rand7 are reserved for guests")

    def test_malformedLinesKeepTheConnection(self):
        """
        Invalid UTF-8, an empty line, an unknown prefix, a bare C{CMD::}, an
        unknown command, wrong argument counts, doubled or trailing spaces and
        stray CRs each get C{ERR::01::} with a message, and the connection stays.
        """
        client = self.connect()
        for line in [b"CMD::/join \xff\xfe", b"", b"\r", b"HELLO", b"cmd::/rooms", b"CMD::",
                     b"CMD:: /rooms", b"CMD::/dance", b"CMD::rooms", b"CMD::/rooms now",
                     b"CMD::/join", b"CMD::/join #a b c", b"CMD::/join  #a", b"CMD::/join #a ",
                     b"CMD::/join\t#a", b"CMD::/join #a\rb", b"CMD::/keys group #a",
                     b"CMD::/history #a x", b"CMD::/history #a 5 yesterday",
                     b"CMD::/pm bob", b"CMD::/pm bob "]:
            reply = client.request(line)
            self.assertTrue(reply.startswith(b"ERR::01::") and len(reply) > 9, (line, reply))
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(client.ok("CMD::/ping"), {"type": "pong"})

    def test_longestLineIsRead(self):
        """
        A line of exactly the maximum, without its CR LF, is read and answered.
        """
        client = self.connect()
        line = b"CMD::/" + b"x" * (1024 - 6)
        self.assertEqual(client.request(line + b"\r"),
                         b"ERR::01::unknown command /" + b"x" * 39
                         + b"; CMD::/help lists the commands")
        self.assertFalse(client.transport.disconnecting)

    def test_overlongLineCloses(self):
        """
        A line one byte over the maximum gets C{ERR::08::} and the connection
        closes, and nothing after it is read.
        """
        client = self.connect()
        client.send(b"x" * 1025 + b"\nCMD::/ping")
        self.assertEqual(client.lines(), [b"ERR::08::line longer than 1024 bytes"])
        self.assertTrue(client.transport.disconnecting)

    def test_overlongLineClosesBeforeItEnds(self):
        """
        Bytes past the maximum without a line end are refused with
        C{ERR::08::} without waiting for the end of the line.
        """
        client = self.connect()
        client.protocol.dataReceived(b"MSG::" + b"x" * 1100)
        self.assertEqual(client.lines(), [b"ERR::08::line longer than 1024 bytes"])
        self.assertTrue(client.transport.disconnecting)

    def test_exitSaysByeAndCloses(self):
        """
        C{/exit} gets C{bye}, then the connection closes; lines after it in the
        same read are not answered.
        """
        client = self.connect()
        client.send(b"CMD::/exit\nCMD::/ping")
        self.assertEqual(client.lines(), [b'OK::{"type":"bye"}'])
        self.assertTrue(client.transport.disconnecting)

    def test_closeUnregistersTheOutbox(self):
        """
        Closing unregisters the send queue from the transport first, because a
        TLS transport does not shut down while a producer is registered.
        """
        client = self.connect()
        self.assertIs(client.transport.producer, client.protocol.outbox)
        client.send("CMD::/exit")
        self.assertIsNone(client.transport.producer)
        self.assertTrue(client.transport.disconnecting)

    def test_slowReaderAborted(self):
        """
        A client that stops reading while events pile up past the send queue is
        aborted, and the others see it leave.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        alice.ok("CMD::/join #r")
        bob.ok("CMD::/join #r")
        alice.takeEvents()
        bob.transport.producer.pauseProducing()
        for i in range(10):
            carol = self.guest("carol%d" % i)
            carol.ok("CMD::/join #r")
            carol.protocol.connectionLost(None)
        # StringTransport marks an abort, unlike a graceful close, as disconnected.
        self.assertTrue(bob.transport.disconnected)
        bob.protocol.connectionLost(None)
        self.assertIn({"type": "user_left", "userId": "bob", "roomId": "#r"},
                      alice.takeEvents("user_left"))


class IdleTests(TextTestCase):
    """
    The idle warning and disconnect.
    """

    def test_warningThenClose(self):
        """
        Twenty seconds without a byte bring an C{EVT::} warning; thirty close
        the connection; any line in between starts the count again.
        """
        client = self.connect()
        self.clock.advance(19)
        client.ok("CMD::/ping")
        self.clock.advance(19)
        self.assertEqual(client.lines(), [])
        self.clock.advance(1)
        [line] = client.lines()
        self.assertTrue(line.startswith(b'EVT::{"type":"warning","code":3,"message":"idle for'))
        self.clock.advance(9)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(client.transport.disconnecting)


class RoomTests(TextTestCase):
    """
    Joining, the active room, MSG:: and /switch.
    """

    def setUp(self):
        TextTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}

    def test_joinAnswersWithMembers(self):
        """
        C{/join} answers with the room's members and PEM keys, and the others
        get a C{user_joined} event; both say these guests are guests.
        """
        self.assertEqual(self.alice.request("CMD::/join #a"), b"OK::" + jsonwire.joined(
            "#a", [("alice", publicDer("alice"))], guests={"alice"}))
        self.assertEqual(self.bob.ok("CMD::/join #a")["members"], [
            {"userId": "alice", "publicKey": jsonwire.derToPem(publicDer("alice")),
             "guest": True},
            {"userId": "bob", "publicKey": jsonwire.derToPem(publicDer("bob")), "guest": True}])
        self.assertEqual(self.alice.takeEvents(), [
            {"type": "user_joined", "userId": "bob", "roomId": "#a",
             "publicKey": jsonwire.derToPem(publicDer("bob")), "guest": True}])

    def test_messageToTheActiveRoom(self):
        """
        C{MSG::} posts to the active room and answers C{sent}; the other member
        gets the event with the envelope cut to its own entry, byte for byte.
        """
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #a")
        blob = self.seal("alice", ("room", "#a"), self.keys, "hello")
        self.bob.lines()
        self.assertEqual(self.alice.ok(b"MSG::" + blob),
                         {"type": "sent", "roomId": "#a", "timestamp": self.now()})
        [line] = self.bob.lines()
        cut = e2e.Envelope.parse(blob).cutFor("bob")
        self.assertEqual(line, b"EVT::" + jsonwire.chatMessage(
            "#a", "alice", int(self.clock.seconds() * 1000), cut))
        self.assertEqual(e2e.openEnvelope(cut, "bob", privateKey("bob"), publicDer("alice")),
                         b"hello")

    def test_activeRoomUsesTheRoomsOwnName(self):
        """
        Joining an existing room under another case makes the active room the
        room's own name, which the envelope must then use.
        """
        self.alice.ok("CMD::/join #Room")
        self.assertEqual(self.bob.ok("CMD::/join #ROOM")["roomId"], "#Room")
        blob = self.seal("bob", ("room", "#Room"), self.keys, "hi")
        self.assertEqual(self.bob.ok(b"MSG::" + blob)["roomId"], "#Room")

    def test_messageRules(self):
        """
        C{MSG::} without an active room gets 01; an envelope addressed to another
        room than the active one gets 01 and is not delivered; a malformed one
        gets 01.
        """
        blob = self.seal("alice", ("room", "#a"), self.keys, "x")
        self.assertEqual(self.alice.request(b"MSG::" + blob),
                         b"ERR::01::no active room: /join or /switch to one first")
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #a")
        self.alice.ok("CMD::/join #b")
        self.bob.ok("CMD::/join #b")
        self.assertTrue(self.alice.request(b"MSG::" + blob).startswith(
            b"ERR::01::envelope is addressed to room:#a, not room:#b"))
        self.assertEqual(self.alice.status(b"MSG::{}"), 1)
        self.assertEqual(self.alice.status(b"MSG::" + blob[:-1] + b"\r}"), 1)
        self.assertEqual(self.bob.takeEvents("chat_message"), [])

    def test_staleRecipientsAsJSON(self):
        """
        Status 09 carries a JSON object with the message and the members to
        re-encrypt for.
        """
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #a")
        blob = self.seal("alice", ("room", "#a"), {"alice": publicDer("alice")}, "x")
        self.assertEqual(self.alice.request(b"MSG::" + blob), b"ERR::09::" + jsonwire.dumps({
            "message": "envelope recipients do not match the current members and keys",
            "members": [{"userId": n, "publicKey": jsonwire.derToPem(k), "guest": True}
                        for n, k in sorted(self.keys.items())]}))

    def test_switch(self):
        """
        C{/switch} needs membership (01) of an existing room (06); it changes
        where C{MSG::} goes and nothing else.
        """
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #b")
        self.assertEqual(self.alice.status("CMD::/switch #nowhere"), 6)
        self.assertEqual(self.alice.request("CMD::/switch #b"),
                         b"ERR::01::not a member of #b; /join it first")
        self.alice.ok("CMD::/join #c")
        self.assertEqual(self.alice.request("CMD::/switch #A"),
                         b'OK::{"type":"switched","roomId":"#a"}')
        blob = self.seal("alice", ("room", "#a"), {"alice": publicDer("alice")}, "x")
        self.assertEqual(self.alice.ok(b"MSG::" + blob)["roomId"], "#a")
        self.assertEqual(self.bob.takeEvents(), [])

    def test_leavingTheActiveRoomClearsIt(self):
        """
        Leaving the active room answers C{left} and clears it, so C{MSG::} then
        gets 01; leaving another room keeps it.
        """
        self.alice.ok("CMD::/join #a")
        self.alice.ok("CMD::/join #b")
        self.assertEqual(self.alice.ok("CMD::/leave #a"), {"type": "left", "roomId": "#a"})
        blob = self.seal("alice", ("room", "#b"), {"alice": publicDer("alice")}, "x")
        self.assertEqual(self.alice.status(b"MSG::" + blob), 0)
        self.alice.ok("CMD::/leave #b")
        blob = self.seal("alice", ("room", "#b"), {"alice": publicDer("alice")}, "y")
        self.assertEqual(self.alice.request(b"MSG::" + blob),
                         b"ERR::01::no active room: /join or /switch to one first")
        self.assertEqual(self.alice.request("CMD::/leave #b"), b"ERR::01::not a member of #b")

    def test_directMessage(self):
        """
        C{/pm} takes the rest of the line as the envelope, answers C{sent} and
        delivers a C{dm} event cut to the recipient.
        """
        blob = self.seal("alice", ("user", "bob"), self.keys, "psst")
        spaced = json.dumps(json.loads(blob), indent=None, separators=(", ", ": "))
        self.assertEqual(self.alice.ok("CMD::/pm bob " + spaced),
                         {"type": "sent", "to": "bob", "timestamp": self.now()})
        [event] = self.bob.takeEvents()
        self.assertEqual((event["type"], event["userId"], set(event["envelope"]["key_ids"])),
                         ("dm", "alice", {"bob"}))
        self.assertEqual(e2e.openEnvelope(json.dumps(event["envelope"]).encode(), "bob",
                                          privateKey("bob"), publicDer("alice")), b"psst")
        self.assertEqual(self.alice.status("CMD::/pm nobody " + spaced), 6)

    def test_history(self):
        """
        C{/history} returns the messages oldest first with ISO timestamps; N
        limits them and BEFORE, in milliseconds or ISO, pages back.
        """
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #a")
        stamps = []
        for text in ("one", "two", "three"):
            self.alice.ok(b"MSG::" + self.seal("alice", ("room", "#a"), self.keys, text))
            stamps.append(int(self.clock.seconds() * 1000))
            self.clock.advance(1)
        page = self.bob.ok("CMD::/history #a")
        self.assertEqual([m["timestamp"] for m in page["messages"]],
                         [jsonwire.formatTimestamp(t) for t in stamps])
        self.assertEqual([e2e.openEnvelope(json.dumps(m["envelope"]).encode(), "bob",
                                           privateKey("bob"), publicDer("alice"))
                          for m in page["messages"]], [b"one", b"two", b"three"])
        self.assertEqual(len(self.bob.ok("CMD::/history #a 2")["messages"]), 2)
        older = self.bob.ok("CMD::/history #a 0 %d" % stamps[2])["messages"]
        self.assertEqual([m["timestamp"] for m in older],
                         [jsonwire.formatTimestamp(t) for t in stamps[:2]])
        older = self.bob.ok("CMD::/history #a 1 " + jsonwire.formatTimestamp(stamps[2]))
        self.assertEqual([m["timestamp"] for m in older["messages"]],
                         [jsonwire.formatTimestamp(stamps[1])])

    def test_disconnectTellsTheOthers(self):
        """
        When a text client goes, the members of its rooms get C{user_left}.
        """
        self.alice.ok("CMD::/join #a")
        self.bob.ok("CMD::/join #a")
        self.alice.takeEvents()
        self.bob.protocol.connectionLost(None)
        self.assertEqual(self.alice.takeEvents(),
                         [{"type": "user_left", "userId": "bob", "roomId": "#a"}])


class CommandTests(TextTestCase):
    """
    Accounts, names, keys, rooms and lists.
    """

    def test_registerThenLoginElsewhere(self):
        """
        C{/register} creates an account and logs in; C{/login} on another
        connection logs in as it; a wrong password gets 05.
        """
        client = self.connect()
        self.assertEqual(client.ok("CMD::/register alice secret123 " + b64(publicDer("alice"))),
                         {"type": "registered", "userId": "alice"})
        other = self.connect()
        self.assertEqual(other.status("CMD::/login alice wrongpass"), 5)
        self.assertEqual(other.ok("CMD::/login ALICE secret123"),
                         {"type": "authenticated", "userId": "alice"})
        self.assertEqual(other.status("CMD::/login alice secret123"), 7)
        self.assertEqual(client.status("CMD::/register bob secret123 not-base64"), 1)

    def test_challengeLogin(self):
        """
        C{/challenge} gives 32 random bytes; C{/auth} with a signature over them
        logs in; a replayed signature is refused.
        """
        client = self.connect()
        client.ok("CMD::/register alice secret123 " + b64(publicDer("alice")))
        other = self.connect()
        challenge = base64.b64decode(other.ok("CMD::/challenge")["challenge"])
        self.assertEqual(len(challenge), 32)
        signature = b64(loginsig.signAuth(privateKey("alice"), challenge, "alice"))
        self.assertEqual(other.ok("CMD::/auth alice " + signature),
                         {"type": "authenticated", "userId": "alice"})
        third = self.connect()
        third.ok("CMD::/challenge")
        self.assertEqual(third.status("CMD::/auth alice " + signature), 5)

    def test_nickAndKey(self):
        """
        C{/nick} answers C{renamed} with old and new names; C{/key} answers
        C{key_set} and tells co-members with C{key_changed}.
        """
        alice = self.connect()
        self.assertEqual(alice.request("CMD::/nick alice"),
                         b'OK::{"type":"renamed","old":"rand0","new":"alice","guest":true}')
        alice.ok("CMD::/key " + b64(publicDer("alice")))
        bob = self.guest("bob")
        alice.ok("CMD::/join #a")
        bob.ok("CMD::/join #a")
        alice.takeEvents()
        self.assertEqual(alice.request("CMD::/key " + b64(publicDer("alice2"))),
                         b'OK::{"type":"key_set"}')
        self.assertEqual(bob.takeEvents("key_changed"), [
            {"type": "key_changed", "userId": "alice",
             "publicKey": jsonwire.derToPem(publicDer("alice2")), "guest": True}])
        self.assertEqual(alice.status("CMD::/key AAAA"), 1)

    def test_createUsersRoomsKeys(self):
        """
        C{/create} answers C{created} without joining; C{/users}, C{/rooms} and
        C{/keys} list what the core knows.
        """
        alice = self.guest("alice")
        self.assertEqual(alice.ok("CMD::/create #quiet"), {"type": "created", "roomId": "#quiet"})
        self.assertEqual(alice.ok("CMD::/users #quiet"),
                         {"type": "users", "users": [], "guests": []})
        self.assertEqual(alice.status("CMD::/create #quiet"), 7)
        alice.ok("CMD::/join #a")
        self.assertEqual(alice.ok("CMD::/rooms"), {"type": "rooms", "rooms": ["#a", "#quiet"]})
        self.assertEqual(alice.ok("CMD::/users"),
                         {"type": "users", "users": ["alice"], "guests": ["alice"]})
        self.assertEqual(alice.ok("CMD::/users #a"),
                         {"type": "users", "users": ["alice"], "guests": ["alice"]})
        member = {"userId": "alice", "publicKey": jsonwire.derToPem(publicDer("alice")),
                  "guest": True}
        self.assertEqual(alice.ok("CMD::/keys room #a"), {"type": "keys", "members": [member]})
        self.assertEqual(alice.ok("CMD::/keys user alice"), {"type": "keys", "members": [member]})
        self.assertEqual(alice.status("CMD::/keys user nobody"), 6)

    def test_passwordRoom(self):
        """
        A room created with a password needs it to join (05 otherwise), and its
        member list is for members only; a guest may not create one.
        """
        alice, bob = self.connect(), self.guest("bob")
        alice.ok("CMD::/register alice secret123 " + b64(publicDer("alice")))
        self.assertEqual(bob.status("CMD::/create #other hunter2"), 5)
        alice.ok("CMD::/create #club hunter2")
        self.assertEqual(bob.status("CMD::/join #club"), 5)
        self.assertEqual(bob.status("CMD::/users #club"), 5)
        self.assertEqual(bob.ok("CMD::/join #club hunter2")["roomId"], "#club")


class NoGuestsTests(TextTestCase):
    """
    A server that allows no guests.
    """

    settings = {"allowGuests": False}

    def test_welcomeWithoutName(self):
        """
        The welcome names nobody; everything but logging in needs an account
        (04) until C{/register} or C{/login} succeeds.
        """
        client = self.connect()
        self.assertEqual(client.welcome, b'OK::{"type":"welcome","name":null,"protocol":1}')
        for line in ["CMD::/rooms", "CMD::/nick bob", "CMD::/join #a", "CMD::/switch #a"]:
            self.assertEqual(client.status(line), 4, line)
        self.assertEqual(client.request("CMD::/rooms"),
                         b"ERR::04::authentication required: CMD::/register or CMD::/login first")
        client.ok("CMD::/register alice secret123 " + b64(publicDer("alice")))
        self.assertEqual(client.ok("CMD::/join #a")["roomId"], "#a")


class JoinLimitTests(TextTestCase):
    """
    A server whose join limit is one a minute.
    """

    settings = {"joinLimit": (1, 60.0)}

    def test_joinLimitNamesJoin(self):
        """
        The join limit's refusal names C{CMD::/join}, not the binary JOIN.
        """
        client = self.guest("carol")
        client.ok("CMD::/join #a")
        reply = client.request("CMD::/join #b")
        self.assertTrue(reply.startswith(b"ERR::02::"), reply)
        self.assertIn(b"CMD::/join requests", reply)
        self.assertNotIn(b"JOIN", reply)


class OrderingTests(SynchronousTestCase):
    """
    Replies in request order when the core answers later.
    """

    def test_pipelinedLinesAnsweredInOrder(self):
        """
        Lines sent while a slow request (bcrypt in a thread) runs wait for it:
        the replies come in request order, and reading pauses meanwhile.
        """
        clock = Clock()
        clock.advance(1_700_000_000)
        slow = Credentials(cost=4, runInThread=lambda f, *a: deferLater(clock, 1, f, *a))
        service = ChatService(MemoryStore(testKeys()), Settings(bcryptCost=4), clock,
                              credentials=slow)
        service.startService()
        client = LineClient(TextFactory(service))
        client.protocol.dataReceived(
            b"CMD::/register alice secret123 " + b64(publicDer("alice")).encode()
            + b"\nCMD::/ping\nCMD::/rooms\n")
        self.assertEqual(client.lines(), [])
        self.assertEqual(client.transport.producerState, "paused")
        clock.advance(1)
        self.assertEqual(client.lines(), [b'OK::{"type":"registered","userId":"alice"}',
                                          b'OK::{"type":"pong"}',
                                          b'OK::{"type":"rooms","rooms":[]}'])
        self.assertEqual(client.transport.producerState, "producing")


class HelpTests(TextTestCase):
    """
    The text door helps a person typing by hand.
    """

    def test_helpListsTheCommands(self):
        """
        C{CMD::/help} lists every command with its usage and what it does, and
        C{MSG::}.
        """
        client = self.connect()
        answer = client.ok("CMD::/help")
        self.assertEqual(answer["type"], "help")
        usages = [entry["usage"] for entry in answer["commands"]]
        self.assertIn("CMD::/join ROOM [PASSWORD]", usages)
        self.assertIn("CMD::/help", usages)
        self.assertIn("MSG::ENVELOPE", usages)
        self.assertEqual(len(usages), len(TextProtocol._commands) + 1)
        self.assertTrue(all(entry["what"] for entry in answer["commands"]))

    def test_errorsPointAtHelp(self):
        """
        An unknown command or a line that is no command says C{CMD::/help} lists
        the commands.
        """
        client = self.connect()
        self.assertEqual(client.request("CMD::/dance"),
                         b"ERR::01::unknown command /dance; CMD::/help lists the commands")
        self.assertEqual(client.request("hello"),
                         b"ERR::01::a line starts with CMD:: or MSG::; "
                         b"CMD::/help lists the commands")

    def test_errorsNameTextCommands(self):
        """
        A refusal names the text door's own command (C{/key}), not a binary
        request (C{SET_KEY}).
        """
        client = self.connect()
        client.ok("CMD::/nick carol")
        self.assertEqual(client.request("CMD::/join #a"),
                         b"ERR::01::publish a public key first (CMD::/key KEY)")

    def test_errorsNameLoginCommands(self):
        """
        A guest told to register or log in is told the commands that do it.
        """
        client = self.guest("carol")
        self.assertEqual(client.request("CMD::/join #secret pw"),
                         b"ERR::05::guests cannot create rooms with a password; "
                         b"CMD::/register or CMD::/login")

    def test_ownWordsForEitherSpelling(self):
        """
        The core's refusals are put in the text door's words whether they name
        a binary request or say it in plain words.
        """
        for core, own in [
                ("say HELLO first", "wait for the server's OK::welcome line"),
                ("say hello first", "wait for the server's OK::welcome line"),
                ("publish a public key first (SET_KEY)",
                 "publish a public key first (CMD::/key KEY)"),
                ("publish a key first", "publish a public key first (CMD::/key KEY)"),
                ("more than 60 JOIN requests in 60 s", "more than 60 CMD::/join requests in 60 s"),
                ("more than 60 join requests in 60 s", "more than 60 CMD::/join requests in 60 s"),
                ("authentication required: register or log in first",
                 "authentication required: CMD::/register or CMD::/login first"),
                ("two\nlines", "two lines")]:
            self.assertEqual(ownWords(core), own)
