"""
Room moderation on the wire: the binary door (versions 1 and 2), the text door
and the WebSocket door, and a ban that holds across every door
(L{chatd.protocols.moderationdoor}, the moderation opcodes of
L{chatd.protocols.binary}).
"""

import base64

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd.protocols import jsonwire
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService, publicDer
from chatd.test.test_binary import CONFLICT, OK, Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket

ERR, FORBIDDEN = 0x01, 0x05


class WireV2(Wire):
    """
    A binary client that says protocol version 2, and decodes by it.
    """

    def hello(self, version=2):
        return Wire.hello(self, version)


class DoorsTestCase(SynchronousTestCase):
    """
    One core, the three doors, and accounts on them.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor)
        self.binary = BinaryFactory(self.service)

    def wire(self, name, version=2):
        wire = (WireV2 if version == 2 else Wire)(self.binary)
        wire.hello()
        status, _ = wire.request(Op.REGISTER, name, "password-" + name, publicDer(name))
        assert status == OK, status
        return wire

    def text(self, name):
        client = LineClient(TextFactory(self.service))
        client.ok("CMD::/register %s password-%s %s" % (
            name, name, base64.b64encode(publicDer(name)).decode()))
        return client

    def web(self, name):
        client = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        client.ok("register", userId=name, publicKey=jsonwire.derToPem(publicDer(name)),
                  password="password-" + name)
        return client


class BinaryModerationTests(DoorsTestCase):
    """
    The moderation opcodes, and what versions 1 and 2 hear.
    """

    def test_kickAndEvents(self):
        """
        An owner kicks: a version-2 member hears KICKED, a version-1 member
        LEFT naming the kicked user, the kicked version-1 session LEFT naming
        itself.
        """
        owner, two, one = self.wire("owner"), self.wire("two"), self.wire("one", 1)
        for wire in (owner, two, one):
            self.assertEqual(wire.request(Op.JOIN, "#r", "")[0], OK)
        two.takeEvents()
        one.takeEvents()
        self.assertEqual(owner.request(Op.KICK, "#r", "one", "bye"), (OK, ()))
        self.assertEqual(two.takeEvents(), [(Op.KICKED, ("#r", "one", "owner", 0, "bye"))])
        self.assertEqual(one.takeEvents(), [(Op.LEFT, ("#r", "one"))])
        self.assertEqual(owner.request(Op.BAN, "#r", "two", ""), (OK, ()))
        self.assertEqual(two.takeEvents(), [(Op.KICKED, ("#r", "two", "owner", 1, ""))])
        self.assertEqual(two.request(Op.JOIN, "#r", "")[0], FORBIDDEN)
        self.assertEqual(owner.request(Op.UNBAN, "#r", "two"), (OK, ()))
        self.assertEqual(two.request(Op.JOIN, "#r", "")[0], OK)

    def test_topicRolesInfo(self):
        """
        SET_TOPIC reaches version-2 members as TOPIC and version-2 JOINs carry
        it; SET_ROLE gives ROLE; ROOM_INFO lists it all; a role code past 2 is
        malformed.
        """
        owner, bob, old = self.wire("owner"), self.wire("bob"), self.wire("old", 1)
        self.assertEqual(owner.request(Op.JOIN, "#r", ""),
                         (OK, ([("owner", publicDer("owner"), 0)], "")))
        self.assertEqual(owner.request(Op.SET_TOPIC, "#r", "hi \u2713"), (OK, ()))
        status, (members, topic) = bob.request(Op.JOIN, "#r", "")
        self.assertEqual((status, topic), (OK, "hi \u2713"))
        self.assertEqual(old.request(Op.JOIN, "#r", "")[0], OK)
        owner.takeEvents()
        bob.takeEvents()
        self.assertEqual(owner.request(Op.SET_ROLE, "#r", "bob", 1), (OK, ()))
        self.assertEqual(bob.takeEvents(), [(Op.ROLE, ("#r", "bob", "owner", 1))])
        self.assertEqual(old.takeEvents(Op.ROLE), [])
        self.assertEqual(owner.request(Op.SET_ROLE, "#r", "bob", 1)[0], CONFLICT)
        self.assertEqual(owner.request(Op.SET_ROLE, "#r", "bob", 3)[0], ERR)
        self.assertEqual(bob.request(Op.BAN, "#r", "eve", ""), (OK, ()))
        self.assertEqual(bob.request(Op.ROOM_INFO, "#r"),
                         (OK, ("hi \u2713", ["owner"], ["bob"], ["eve"])))
        self.assertEqual(old.request(Op.ROOM_INFO, "#r"),
                         (OK, ("hi \u2713", ["owner"], ["bob"], [])))

    def test_passwordAndDestroy(self):
        """
        SET_PASSWORD holds newcomers out without the password; DESTROY gives
        version-2 members DESTROYED and version-1 members LEFT naming
        themselves.
        """
        owner, two, one = self.wire("owner"), self.wire("two"), self.wire("one", 1)
        for wire in (owner, two, one):
            self.assertEqual(wire.request(Op.JOIN, "#r", "")[0], OK)
        self.assertEqual(owner.request(Op.SET_PASSWORD, "#r", "sesame"), (OK, ()))
        late = self.wire("late")
        self.assertEqual(late.request(Op.JOIN, "#r", "")[0], FORBIDDEN)
        two.takeEvents()
        one.takeEvents()
        self.assertEqual(two.request(Op.DESTROY, "#r")[0], FORBIDDEN)
        self.assertEqual(owner.request(Op.DESTROY, "#r"), (OK, ()))
        self.assertEqual(two.takeEvents(), [(Op.DESTROYED, ("#r", "owner"))])
        self.assertEqual(one.takeEvents(), [(Op.LEFT, ("#r", "one"))])
        self.assertEqual(owner.request(Op.LIST_ROOMS), (OK, ([],)))


class JSONModerationTests(DoorsTestCase):
    """
    The text commands and WebSocket requests.
    """

    def test_textCommands(self):
        """
        The text door's commands answer with the JSON objects; a reason and
        a topic are the rest of the line; the kicked session hears
        user_kicked; a role word other than the three is a usage error.
        """
        owner, bob = self.text("owner"), self.text("bob")
        owner.ok("CMD::/join #r")
        bob.ok("CMD::/join #r")
        owner.takeEvents()
        self.assertEqual(owner.ok("CMD::/topic #R be nice, all"),
                         {"type": "topic_set", "roomId": "#r", "topic": "be nice, all"})
        self.assertEqual(bob.takeEvents(), [{"type": "topic_changed", "roomId": "#r",
                                             "by": "owner", "topic": "be nice, all"}])
        self.assertEqual(owner.ok("CMD::/role #r BOB operator"),
                         {"type": "role_set", "roomId": "#r", "userId": "bob",
                          "role": "operator"})
        self.assertEqual(owner.status("CMD::/role #r bob god"), ERR)
        self.assertEqual(owner.ok("CMD::/info #r"),
                         {"type": "room_info", "roomId": "#r", "topic": "be nice, all",
                          "owners": ["owner"], "operators": ["bob"], "banned": []})
        self.assertEqual(owner.ok("CMD::/kick #r bob too loud, sorry"),
                         {"type": "kicked", "roomId": "#r", "userId": "bob"})
        self.assertEqual(bob.takeEvents("user_kicked"),
                         [{"type": "user_kicked", "roomId": "#r", "userId": "bob",
                           "by": "owner", "reason": "too loud, sorry"}])
        self.assertTrue(bob.request("MSG::{}").startswith(b"ERR::01::no active room"))
        self.assertEqual(owner.ok("CMD::/password #r sesame")["type"], "password_set")
        self.assertEqual(owner.ok("CMD::/destroy #r"), {"type": "destroyed", "roomId": "#r"})

    def test_webRequests(self):
        """
        The WebSocket requests answer with their objects, with the id; the
        joined answer carries the topic.
        """
        owner, carol = self.web("owner"), self.web("carol")
        owner.ok("join", roomId="#r")
        self.assertEqual(owner.ok("set_topic", roomId="#r", topic="hello"),
                         {"type": "topic_set", "roomId": "#r", "topic": "hello"})
        self.assertEqual(carol.ok("join", roomId="#r")["topic"], "hello")
        owner.take()
        self.assertEqual(owner.ok("ban", roomId="#r", userId="carol", reason="spam"),
                         {"type": "banned", "roomId": "#r", "userId": "carol"})
        self.assertEqual([m for m in carol.take() if m["type"] == "user_banned"],
                         [{"type": "user_banned", "roomId": "#r", "userId": "carol",
                           "by": "owner", "reason": "spam"}])
        self.assertEqual(carol.request("join", roomId="#r")["code"], "forbidden")
        self.assertEqual(owner.ok("unban", roomId="#r", userId="carol")["type"], "unbanned")
        self.assertEqual(owner.ok("set_role", roomId="#r", userId="carol", role="owner")["role"],
                         "owner")
        self.assertEqual(owner.ok("room_info", roomId="#r")["owners"], ["carol", "owner"])
        self.assertEqual(owner.ok("destroy_room", roomId="#r")["type"], "destroyed")


class EveryDoorTests(DoorsTestCase):
    """
    A ban made on one door holds on every door.
    """

    def test_bannedOnEveryDoor(self):
        """
        Banned on the binary door, an account is refused by JOIN there, on a
        second binary connection, on the text door and on the WebSocket
        door, and none of them puts it back in the room.
        """
        owner, eve = self.wire("owner"), self.wire("eve")
        owner.request(Op.JOIN, "#r", "")
        eve.request(Op.JOIN, "#r", "")
        self.assertEqual(owner.request(Op.BAN, "#r", "eve", "")[0], OK)
        second = WireV2(self.binary)
        second.hello()
        self.assertEqual(second.request(Op.LOGIN, "eve", "password-eve")[0], OK)
        self.assertEqual(second.takeEvents(Op.JOINED), [])
        self.assertEqual(second.request(Op.JOIN, "#r", "")[0], FORBIDDEN)
        text = LineClient(TextFactory(self.service))
        text.ok("CMD::/login eve password-eve")
        self.assertEqual(text.request("CMD::/join #r"),
                         b"ERR::05::you are banned from #r")
        web = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        web.ok("login", userId="eve", password="password-eve")
        self.assertEqual(web.request("join", roomId="#r"),
                         {"type": "error", "code": "forbidden",
                          "message": "you are banned from #r"})
        self.assertEqual(owner.request(Op.LIST_USERS, "#r"), (OK, ([("owner", 0)],)))
