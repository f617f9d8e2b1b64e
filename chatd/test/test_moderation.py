"""
Tests for L{chatd.core.moderation}: room owners and operators, kicks, bans,
topics, room passwords and destroying rooms, driven through the core's
sessions (the doors' tests show the same on the wire).
"""

from typing import Any, Dict, List, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.core.directory import ROOM
from chatd.errors import StaleRecipients, Status
from chatd.fanout.checks import InvalidEvent, checkEvent
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.test.fakes import FakeChatClient, FakeHub, makeService, publicDer, testKeys
from chatd.test.test_fanout import FakeMode, RealMode
from chatd.test.test_service import CoreTestCase

OK, ERR, FORBIDDEN, NOT_FOUND, CONFLICT = (Status.OK, Status.ERROR, Status.FORBIDDEN,
                                           Status.NOT_FOUND, Status.CONFLICT)


class ModerationTestCase(CoreTestCase):
    """
    A room C{#r} that C{owner} created, with C{op} its operator and C{bob} a
    member, all accounts.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        self.owner = self.account("owner")
        self.op = self.account("op")
        self.bob = self.account("bob")
        self.joinAll("#r", self.owner, self.op, self.bob)
        self.result(self.owner.setRole, "#r", "op", "operator")
        for session in self.sessions:
            session.client.take()

    def members(self, room="#r"):
        return sorted(self.service.directory.rooms[room.lower()].members)

    def info(self, room="#r"):
        return self.successResultOf(self.store.moderation(room))


class RoleTests(ModerationTestCase):
    """
    Who holds which role, and who may give them.
    """

    def test_creatorOwns(self):
        """
        The account that creates a room owns it, by JOIN or by CREATE; a
        guest's room has no owner.
        """
        self.assertEqual(self.info().owners, ("owner",))
        self.result(self.bob.create, "#made", "")
        self.assertEqual(self.info("#made").owners, ("bob",))
        guest = self.guest("guesty")
        self.result(guest.join, "#guests", "")
        self.assertEqual(self.info("#guests").owners, ())

    def test_ownerMakesOperators(self):
        """
        An owner makes and removes operators; the members hear ROLE, not the
        owner's own session.
        """
        self.assertEqual(self.info().operators, ("op",))
        self.result(self.owner.setRole, "#r", "bob", "operator")
        self.assertEqual(self.bob.client.take(),
                         [("roleChanged", ("#r", "bob", "owner", "operator"))])
        self.assertEqual(self.owner.client.take(), [])
        self.result(self.owner.setRole, "#r", "BOB", None)
        self.assertEqual(self.info().operators, ("op",))
        self.assertEqual(self.op.client.take()[-1], ("roleChanged", ("#r", "bob", "owner", None)))

    def test_onlyOwnersGiveRoles(self):
        """
        An operator, a member and a guest may not give roles (0x05).
        """
        guest = self.guest("guesty")
        for session in (self.op, self.bob, guest):
            self.assertEqual(self.status(session.setRole, "#r", "bob", "operator"), FORBIDDEN)
        self.assertEqual(self.info().operators, ("op",))

    def test_roleRefusals(self):
        """
        A role given to no account is 0x06, a role held already 0x07, a role
        that is not one 0x01, an unknown room 0x06.
        """
        self.assertEqual(self.status(self.owner.setRole, "#r", "nobody", "operator"), NOT_FOUND)
        self.assertEqual(self.status(self.owner.setRole, "#r", "op", "operator"), CONFLICT)
        self.assertEqual(self.status(self.owner.setRole, "#r", "bob", "admin"), ERR)
        self.assertEqual(self.status(self.owner.setRole, "#nope", "bob", "operator"), NOT_FOUND)

    def test_lastOwnerStays(self):
        """
        The last owner cannot step down; with another owner it can.
        """
        self.assertEqual(self.status(self.owner.setRole, "#r", "owner", None), FORBIDDEN)
        self.assertEqual(self.status(self.owner.setRole, "#r", "owner", "operator"), FORBIDDEN)
        self.result(self.owner.setRole, "#r", "bob", "owner")
        self.result(self.owner.setRole, "#r", "owner", None)
        self.assertEqual((self.info().owners, self.info().operators), (("bob",), ("op",)))

    def test_roomInfo(self):
        """
        ROOM_INFO gives anyone the topic, owners and operators; the banned
        names only to operators and owners.
        """
        self.result(self.op.ban, "#r", "eve", "")
        self.result(self.op.setTopic, "#r", "be nice")
        self.assertEqual(self.result(self.bob.roomInfo, "#r"),
                         ("be nice", ["owner"], ["op"], []))
        self.assertEqual(self.result(self.op.roomInfo, "#r"),
                         ("be nice", ["owner"], ["op"], ["eve"]))


class KickTests(ModerationTestCase):
    """
    Operators and owners take members out of a room.
    """

    def test_kick(self):
        """
        A kicked member is out at once: every member's session and its own
        hear KICKED (not the kicking session), its stored membership is gone,
        and it may come back.
        """
        self.result(self.op.kick, "#r", "Bob", "calm down")
        event = ("kicked", ("#r", "bob", "op", False, "calm down"))
        self.assertEqual(self.owner.client.take(), [event])
        self.assertEqual(self.bob.client.take(), [event])
        self.assertEqual(self.op.client.take(), [])
        self.assertEqual(self.members(), ["op", "owner"])
        self.assertEqual(self.successResultOf(self.store.roomsOf("bob")), [])
        self.assertEqual(self.status(self.bob.join, "#r", ""), OK)

    def test_nextEnvelopeLeavesTheKickedOut(self):
        """
        After a kick, an envelope that still names the kicked member is
        refused (0x09, listing the members without it), and the next message
        reaches the kicked member's sessions no more.
        """
        stale = dict(self.result(self.owner.getKeys, ROOM, "#r"))
        other = self.login("bob")
        other.client.take()
        self.result(self.op.kick, "#r", "bob", "")
        blob = self.seal("owner", ("room", "#r"), stale)
        refusal = self.refusal(self.owner.roomMessage, "#r", blob)
        self.assertIsInstance(refusal, StaleRecipients)
        self.assertEqual([name for name, _ in refusal.members], ["op", "owner"])
        self.bob.client.take()
        other.client.take()
        self.post(self.owner, "#r")
        self.assertEqual(self.bob.client.take() + other.client.take(), [])

    def test_kickRefusals(self):
        """
        A member may not kick (0x05), nor an operator an owner (0x05); nobody
        kicks themselves (0x01); kicking someone not in the room is 0x06;
        names are checked first (0x01).
        """
        self.assertEqual(self.status(self.bob.kick, "#r", "op", ""), FORBIDDEN)
        self.assertEqual(self.status(self.op.kick, "#r", "owner", ""), FORBIDDEN)
        self.assertEqual(self.status(self.op.kick, "#r", "op", ""), ERR)
        self.assertEqual(self.status(self.op.kick, "#r", "nobody", ""), NOT_FOUND)
        self.assertEqual(self.status(self.op.kick, "#r", "bad name", ""), ERR)
        self.assertEqual(self.status(self.op.kick, "#r", "bob", "x" * 513), ERR)
        self.assertEqual(self.status(self.op.kick, "#nope", "bob", ""), NOT_FOUND)
        self.assertEqual(self.members(), ["bob", "op", "owner"])

    def test_ownerKicksOperator(self):
        """
        An owner may kick an operator.
        """
        self.result(self.owner.kick, "#r", "op", "")
        self.assertEqual(self.members(), ["bob", "owner"])

    def test_versionOneHearsLeft(self):
        """
        The core tells every client of the kick; a version-1 binary client
        turns it into LEFT (see test_binary): here the recorded session
        version is what the door reads.
        """
        self.assertEqual(self.bob.version, 1)
        session = self.connect()
        session.hello(2)
        self.assertEqual(session.version, 2)

    def test_logged(self):
        """
        A kick and a ban are logged with the actor, the target, the room and
        the actor's address.
        """
        events: List[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.result(self.op.kick, "#r", "bob", "no")
        self.result(self.op.ban, "#r", "bob", "no")
        logged = [(e["actor"], e["what"], e["target"], e["room"], e["address"])
                  for e in events if "actor" in e and "what" in e]
        self.assertEqual(logged, [("op", "kicked", "bob", "#r", "10.0.0.1"),
                                  ("op", "banned", "bob", "#r", "10.0.0.1")])


class BanTests(ModerationTestCase):
    """
    A ban keeps a name out, every way it might come back.
    """

    def test_ban(self):
        """
        A banned member is out at once, and hears it was banned.
        """
        self.result(self.op.ban, "#r", "bob", "spam")
        self.assertEqual(self.bob.client.take(),
                         [("kicked", ("#r", "bob", "op", True, "spam"))])
        self.assertEqual(self.members(), ["op", "owner"])
        [ban] = self.info().bans
        self.assertEqual((ban.name, ban.by, ban.reason), ("bob", "op", "spam"))

    def test_everyWayBackIn(self):
        """
        A banned account is refused by JOIN, on the session it had, on a
        second connection, and after logging in again; nothing restores it
        into the room.
        """
        self.result(self.op.ban, "#r", "bob", "")
        self.assertEqual(self.status(self.bob.join, "#r", ""), FORBIDDEN)
        second = self.login("bob", address="10.9.9.9")
        self.assertEqual(second.client.take(), [])
        self.assertEqual(self.status(second.join, "#r", ""), FORBIDDEN)
        self.bob.closed()
        second.closed()
        third = self.login("bob")
        self.assertEqual(third.client.take(), [])
        self.assertEqual(self.status(third.join, "#R", ""), FORBIDDEN)
        self.assertEqual(self.members(), ["op", "owner"])

    def test_renameThenJoin(self):
        """
        A banned guest that renames is still banned; a guest cannot take a
        banned name in the room nor join under it.
        """
        eve = self.guest("eve")
        self.result(eve.join, "#r", "")
        self.result(self.op.ban, "#r", "eve", "")
        self.result(eve.nick, "notEve")
        self.assertEqual(self.status(eve.join, "#r", ""), FORBIDDEN)
        other = self.guest("other")
        self.assertEqual(self.status(other.nick, "eve"), OK)
        self.assertEqual(self.status(other.join, "#r", ""), FORBIDDEN)
        inside = self.guest("inside")
        self.result(inside.join, "#r", "")
        self.assertEqual(self.status(inside.nick, "EVE2"), OK)
        self.result(self.op.ban, "#r", "mallory", "")
        self.assertEqual(self.status(inside.nick, "Mallory"), FORBIDDEN)

    def test_guestLogsInAsBanned(self):
        """
        A guest in the room that logs in as a banned account leaves the room
        instead of bringing the account into it.
        """
        self.result(self.op.ban, "#r", "bob", "")
        self.bob.closed()
        guest = self.guest("guesty")
        self.result(guest.join, "#r", "")
        self.op.client.take()
        self.result(guest.login, "bob", "correct horse")
        self.assertNotIn("bob", self.members())
        self.assertNotIn("guesty", self.members())
        self.assertIn(("userLeft", ("#r", "guesty")), self.op.client.take())

    def test_banAbsentName(self):
        """
        A name that is not in the room, or not online, can be banned.
        """
        self.result(self.op.ban, "#r", "stranger", "")
        stranger = self.guest("stranger")
        self.assertEqual(self.status(stranger.join, "#r", ""), FORBIDDEN)

    def test_banRefusals(self):
        """
        An operator cannot ban an owner (0x05), nobody bans themselves (0x01),
        a second ban is 0x07, unbanning what is not banned 0x06, and a member
        may do neither (0x05).
        """
        self.assertEqual(self.status(self.op.ban, "#r", "owner", ""), FORBIDDEN)
        self.assertEqual(self.status(self.op.ban, "#r", "OP", ""), ERR)
        self.assertEqual(self.status(self.bob.ban, "#r", "op", ""), FORBIDDEN)
        self.result(self.op.ban, "#r", "eve", "")
        self.assertEqual(self.status(self.op.ban, "#r", "Eve", ""), CONFLICT)
        self.assertEqual(self.status(self.bob.unban, "#r", "eve"), FORBIDDEN)
        self.assertEqual(self.status(self.op.unban, "#r", "nobody"), NOT_FOUND)

    def test_unban(self):
        """
        After UNBAN the name may JOIN again, even the session that was
        banned.
        """
        self.result(self.op.ban, "#r", "bob", "")
        self.result(self.owner.unban, "#r", "BOB")
        self.assertEqual(self.status(self.bob.join, "#r", ""), OK)

    def test_banKeepsRoom(self):
        """
        A room with a ban outlives its last member: the banned user cannot
        wait for it to go and make it again.
        """
        self.result(self.op.ban, "#r", "eve", "")
        for session in (self.owner, self.op, self.bob):
            self.result(session.leave, "#r")
        self.assertIn("#r", self.service.directory.rooms)
        eve = self.account("eve")
        self.assertEqual(self.status(eve.join, "#r", ""), FORBIDDEN)


class TopicPasswordDestroyTests(ModerationTestCase):
    """
    The topic, the room password and destroying the room.
    """

    def test_topic(self):
        """
        An operator sets the topic: members hear TOPIC; JOIN's answer carries
        it; an empty topic removes it; a member may not set it.
        """
        self.result(self.op.setTopic, "#r", "be nice \u2713")
        self.assertEqual(self.bob.client.take(),
                         [("topicChanged", ("#r", "op", "be nice \u2713"))])
        self.result(self.bob.leave, "#r")
        self.assertEqual(self.result(self.bob.join, "#r", "").topic, "be nice \u2713")
        self.assertEqual(self.status(self.bob.setTopic, "#r", "mine"), FORBIDDEN)
        self.assertEqual(self.status(self.op.setTopic, "#r", "line\nbreak"), ERR)
        self.result(self.op.setTopic, "#r", "")
        self.assertIsNone(self.info().topic)

    def test_password(self):
        """
        An operator sets the room password: members stay, newcomers need it;
        an empty one removes it.
        """
        self.result(self.op.setRoomPassword, "#r", "sesame")
        self.assertEqual(self.members(), ["bob", "op", "owner"])
        carol = self.account("carol")
        self.assertEqual(self.status(carol.join, "#r", ""), FORBIDDEN)
        self.assertEqual(self.status(carol.join, "#r", "sesame"), OK)
        self.result(self.owner.setRoomPassword, "#r", "")
        self.assertIsNone(self.service.directory.rooms["#r"].passwordHash)
        self.assertEqual(self.status(self.bob.setRoomPassword, "#r", "x"), FORBIDDEN)
        self.assertEqual(self.status(self.op.setRoomPassword, "#r", "x" * 73), ERR)

    def test_destroy(self):
        """
        Only an owner destroys a room: every member's session but its own hears
        DESTROYED once, the room and everything stored of it are gone.
        """
        self.post(self.bob, "#r")
        for session in self.sessions:
            session.client.take()
        self.assertEqual(self.status(self.op.destroy, "#r"), FORBIDDEN)
        self.result(self.owner.destroy, "#r")
        self.assertEqual(self.bob.client.take(), [("roomDestroyed", ("#r", "owner"))])
        self.assertEqual(self.op.client.take(), [("roomDestroyed", ("#r", "owner"))])
        self.assertEqual(self.owner.client.take(), [])
        self.assertNotIn("#r", self.service.directory.rooms)
        self.assertEqual(self.bob.user.rooms, {})
        self.assertEqual(self.successResultOf(self.store.loadRooms()), [])
        self.assertEqual(self.result(self.bob.join, "#r", ""), [("bob", publicDer("bob"))])


class ClusterModerationTests(SynchronousTestCase):
    """
    Two nodes on one store and one fan-out: a kick or a ban on node A takes
    the member out on node B, where its sessions are.
    """

    def setUp(self):
        clock = Clock()
        clock.advance(1_700_000_000)
        hub = FakeHub(clock)
        store = MemoryStore(testKeys(), clock)
        self.a = makeService(store=store, clock=clock, fanout=hub.fanout("A"))
        self.b = makeService(store=store, clock=clock, fanout=hub.fanout("B"))

    def session(self, service, name):
        session = service.connect(FakeChatClient(), "10.0.0.1")
        session.hello(2)
        self.successResultOf(session.register(name, "correct horse", publicDer(name)))
        return session

    def test_kickAcrossNodes(self):
        """
        An operator on A bans a member whose session is on B: B's picture of
        the room drops it, its session hears KICKED, and its JOIN on B is
        refused.
        """
        owner = self.session(self.a, "owner")
        bob = self.session(self.b, "bob")
        self.successResultOf(owner.join("#r", ""))
        self.successResultOf(bob.join("#r", ""))
        bob.client.take()
        self.successResultOf(owner.ban("#r", "bob", "bye"))
        self.assertEqual(bob.client.take(), [("kicked", ("#r", "bob", "owner", True, "bye"))])
        self.assertEqual(sorted(self.b.directory.rooms["#r"].members), ["owner"])
        self.assertEqual(sorted(self.a.directory.rooms["#r"].members), ["owner"])
        failure = self.failureResultOf(bob.join("#r", ""))
        self.assertEqual(failure.value.status, FORBIDDEN)

    def test_topicAndDestroyAcrossNodes(self):
        """
        A topic set on A is heard on B; a room destroyed on A is gone on B,
        whose members hear it.
        """
        owner = self.session(self.a, "owner")
        bob = self.session(self.b, "bob")
        self.successResultOf(owner.join("#r", ""))
        self.successResultOf(bob.join("#r", ""))
        bob.client.take()
        self.successResultOf(owner.setTopic("#r", "hello"))
        self.successResultOf(owner.destroy("#r"))
        self.assertEqual(bob.client.take(), [("topicChanged", ("#r", "owner", "hello")),
                                             ("roomDestroyed", ("#r", "owner"))])
        self.assertNotIn("#r", self.b.directory.rooms)
        self.assertEqual(bob.user.rooms, {})


class FanoutCheckTests(SynchronousTestCase):
    """
    The moderation events from other nodes are checked like the others
    (L{chatd.fanout.checks.checkEvent}).
    """

    def test_checked(self):
        """
        Well-formed moderation events pass; a bad name, role, flag, text or
        hash is an L{InvalidEvent}.
        """
        good: List[Dict[str, Any]] = [
            {"t": "kicked", "room": "#r", "user": "bob", "by": "al", "reason": "", "banned": True},
            {"t": "unbanned", "room": "#r", "user": "bob"},
            {"t": "role", "room": "#r", "user": "bob", "by": "al", "role": None},
            {"t": "topic", "room": "#r", "by": "al", "topic": "hi"},
            {"t": "password", "room": "#r", "password": None},
            {"t": "destroyed", "room": "#r", "by": "al"},
        ]
        for event in good:
            checkEvent(event, lambda name: None)
        bad = [
            dict(good[0], banned=1), dict(good[0], user="no one"), dict(good[2], role="god"),
            dict(good[3], topic="x" * 513), dict(good[4], password=b""),
            dict(good[5], room="bad room"),
        ]
        for event in bad:
            self.assertRaises(InvalidEvent, checkEvent, event, lambda name: None)


async def banAcrossRedis(case: Any) -> None:
    """
    The owner on node A bans bob, whose session is on node B, through the
    Redis fan-out: B's session hears LEFT (a version-1 client), A and B list
    the owner alone, and bob's JOIN on B is refused.
    """
    a, b = await case.node("A"), await case.node("B")
    owner, bob = await case.account(a, "owner"), await case.guest(b, "bob")
    await case.request(owner, Op.JOIN, "#r", "")
    await case.seesRoom(bob, "#r")
    await case.request(bob, Op.JOIN, "#r", "")
    await case.events(owner, Op.JOINED)
    case.assertEqual((await case.request(owner, Op.BAN, "#r", "bob", "spam"))[0], OK)
    case.assertEqual(await case.events(bob, Op.LEFT), [(Op.LEFT, ("#r", "bob"))])
    case.assertEqual(await case.users(owner, "#r"), ["owner"])
    case.assertEqual(await case.users(bob, "#r"), ["owner"])
    case.assertEqual((await case.request(bob, Op.JOIN, "#r", ""))[0], FORBIDDEN)


class FakeRedisModerationTests(FakeMode, TestCase):
    """
    A ban across nodes, over the in-memory Redis.
    """

    async def test_banAcrossRedis(self):
        """
        See L{banAcrossRedis}.
        """
        await banAcrossRedis(self)


class RealRedisModerationTests(RealMode, TestCase):
    """
    A ban across nodes, over the real redis-server C{CHATD_TEST_REDIS} names.
    """

    async def test_banAcrossRedis(self):
        """
        See L{banAcrossRedis}.
        """
        await banAcrossRedis(self)
