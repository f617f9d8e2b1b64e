"""
Tests for L{chatd.core.settling}: requests for a new room while a session is
still creating it, on one node and on two, through the core and the doors, and
for an emptied room while the store decides whether to drop it.

The store's answers wait until a test gives each, so the requests that arrive
meanwhile are in the race by construction, not by timing.
"""

import json
from typing import List, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.credentials import Credentials
from chatd.errors import Conflict, Forbidden, Unavailable
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.store.memory import MemoryStore
from chatd.test.fakes import FakeChatClient, FakeHub, makeService, publicDer, testKeys
from chatd.test.test_binary import FORBIDDEN, OK, Wire
from chatd.test.test_service import CoreTestCase, HeldThreads
from chatd.test.test_store import PostgreSQLFixture
from chatd.test.test_text import LineClient, b64


class HeldRoomStore(MemoryStore):
    """
    A L{MemoryStore} whose room creations wait, in call order, until the test
    L{store}s or L{fail}s each.
    """

    def __init__(self):
        MemoryStore.__init__(self, testKeys())
        self.creating: List[Tuple[Deferred, tuple]] = []

    def createRoom(self, *args):
        d: Deferred = Deferred()
        self.creating.append((d, args))
        return d

    def store(self):
        """
        Carry out the oldest waiting creation, as the memory store would have.
        """
        d, args = self.creating.pop(0)
        MemoryStore.createRoom(self, *args).chainDeferred(d)

    def fail(self, error):
        """
        Fail the oldest waiting creation with C{error}, storing nothing.
        """
        d, _ = self.creating.pop(0)
        d.errback(error)


class LateDeleteStore(MemoryStore):
    """
    A L{MemoryStore} whose room deletions are carried out at once but answered
    when the test says, like a database write that has committed while its
    answer is still on its way from the thread.
    """

    def __init__(self):
        MemoryStore.__init__(self, testKeys())
        self.deleting: List[Tuple[Deferred, Deferred]] = []

    def deleteRoom(self, name):
        d: Deferred = Deferred()
        self.deleting.append((MemoryStore.deleteRoom(self, name), d))
        return d

    def answer(self):
        """
        Answer the oldest deletion.
        """
        done, d = self.deleting.pop(0)
        done.chainDeferred(d)


def names(answer):
    """
    The member names of a JOIN's answer.
    """
    return [name for name, _ in answer]


class SameNewRoomTests(CoreTestCase):
    """
    Sessions of one node asking for one new room at the same moment.
    """

    def buildService(self):
        self.threads = HeldThreads()
        return makeService(store=HeldRoomStore(),
                           credentials=Credentials(cost=4, runInThread=self.threads))

    def roles(self, room):
        info = self.successResultOf(self.store.moderation(room))
        return info.owners, info.operators

    def test_secondJoinWaitsForTheFirst(self):
        """
        A guest joining a room that another guest's JOIN is still storing
        waits, and gets in once it is stored; the room is stored once and its
        creator is in it first.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        first, second = alice.join("#new", ""), bob.join("#new", "")
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(len(self.store.creating), 1)
        self.store.store()
        self.assertEqual(names(self.successResultOf(first)), ["alice"])
        self.assertEqual(names(self.successResultOf(second)), ["alice", "bob"])
        self.assertEqual([r.name for r in self.successResultOf(self.store.loadRooms())],
                         ["#new"])
        self.assertEqual(alice.client.take(), [("userJoined", ("#new", "bob", publicDer("bob")))])

    def test_creatorOwnsIt(self):
        """
        Of two accounts joining one new room at once, the first is its owner
        and the second an ordinary member.
        """
        alice, bob = self.account("alice"), self.account("bob")
        first, second = alice.join("#new", ""), bob.join("#NEW", "")
        self.store.store()
        self.successResultOf(first)
        self.assertEqual(names(self.successResultOf(second)), ["alice", "bob"])
        self.assertEqual(self.roles("#new"), (("alice",), ()))
        self.assertEqual(self.store.creating, [])

    def test_passwordOfTheCreator(self):
        """
        Joins that come while the creator's password is still being hashed
        are decided against that password: the right one gets in, a guest
        too; a wrong or missing one is Forbidden.
        """
        alice = self.account("alice")
        bob, carol, dave = self.guest("bob"), self.account("carol"), self.guest("dave")
        self.threads.held = True
        first = alice.join("#p", "sesame")
        joins = [bob.join("#p", "sesame"), carol.join("#p", "other"), dave.join("#p", "")]
        self.threads.release()
        self.store.store()
        self.assertEqual(names(self.successResultOf(first)), ["alice"])
        self.assertEqual(names(self.successResultOf(joins[0])), ["alice", "bob"])
        for refused in joins[1:]:
            self.failureResultOf(refused, Forbidden)
        self.assertEqual(self.result(alice.listUsers, "#p"), ["alice", "bob"])
        self.assertEqual(self.store.creating, [])

    def test_failedCreationIsTakenOverByTheWaiter(self):
        """
        When the store fails the first creation, its JOIN gets that error and
        the JOIN that waited creates the room itself, as its owner.
        """
        alice, bob = self.account("alice"), self.account("bob")
        first, second = alice.join("#new", ""), bob.join("#new", "")
        self.store.fail(Unavailable("the database did not answer"))
        self.failureResultOf(first, Unavailable)
        self.assertNoResult(second)
        self.store.store()
        self.assertEqual(names(self.successResultOf(second)), ["bob"])
        self.assertEqual(self.roles("#new"), (("bob",), ()))

    def test_failedTwiceIsAClearError(self):
        """
        When every creation fails, each JOIN gets the store's error, never
        "no such room", and no room is left behind.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        first, second = alice.join("#new", ""), bob.join("#new", "")
        self.store.fail(Unavailable("the database did not answer"))
        self.store.fail(Unavailable("the database did not answer"))
        self.failureResultOf(first, Unavailable)
        self.failureResultOf(second, Unavailable)
        self.assertEqual(self.result(alice.listRooms), [])
        self.assertEqual(self.store.creating, [])

    def test_createWhileJoinCreates(self):
        """
        A CREATE of a room a JOIN is creating waits, and is a Conflict once
        the room is stored; a JOIN of a room a CREATE is creating gets in.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        join, create = alice.join("#a", ""), bob.create("#a", "")
        self.assertNoResult(create)
        self.store.store()
        self.successResultOf(join)
        self.failureResultOf(create, Conflict)
        create, join = alice.create("#b", ""), bob.join("#b", "")
        self.assertNoResult(join)
        self.store.store()
        self.assertIsNone(self.successResultOf(create))
        self.assertEqual(names(self.successResultOf(join)), ["bob"])


class EmptiedRoomTests(CoreTestCase):
    """
    A JOIN of an emptied room while the store decides whether to drop it.
    """

    def buildService(self):
        return makeService(store=LateDeleteStore())

    def test_joinWhileTheStoreDrops(self):
        """
        A JOIN of a room the store has dropped before this node heard so waits
        for the answer, then creates the room anew, rather than being told
        there is no such room.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.result(alice.join, "#r", "")
        self.result(alice.leave, "#r")
        self.assertEqual(len(self.store.deleting), 1)
        join = bob.join("#r", "")
        self.assertNoResult(join)
        self.store.answer()
        self.assertEqual(names(self.successResultOf(join)), ["bob"])
        self.assertEqual([r.name for r in self.successResultOf(self.store.loadRooms())], ["#r"])

    def test_joinWhileTheStoreKeeps(self):
        """
        A JOIN of an emptied room that the store keeps (for its topic) waits
        for the answer, then joins the room with its topic.
        """
        alice, bob = self.account("alice"), self.guest("bob")
        self.result(alice.join, "#r", "")
        self.result(alice.setTopic, "#r", "kept")
        self.result(alice.leave, "#r")
        join = bob.join("#r", "")
        self.assertNoResult(join)
        self.store.answer()
        answer = self.successResultOf(join)
        self.assertEqual((names(answer), answer.topic), (["bob"], "kept"))


class TwoNodesTests(SynchronousTestCase):
    """
    Sessions of two nodes of a cluster (one store, one fan-out) joining one new
    room at the same moment.
    """

    def setUp(self):
        clock = Clock()
        clock.advance(1_700_000_000)
        self.store = HeldRoomStore()
        hub = FakeHub(clock)
        self.a, self.b = [makeService(store=self.store, clock=clock, fanout=hub.fanout(node))
                          for node in "AB"]

    def guest(self, service, name):
        session = service.connect(FakeChatClient(), "10.0.0.1")
        session.hello(1)
        self.successResultOf(session.nick(name))
        self.successResultOf(session.setKey(publicDer(name)))
        return session

    def test_loserJoinsTheWinnersRoom(self):
        """
        The node whose store write loses (a Conflict: the other node stored the
        room first) joins the stored room, with the other node's members, and
        so does the join that waited for its creation; every node then sees
        every member, and the room is stored once.
        """
        alice, bob, carol = self.guest(self.a, "alice"), self.guest(self.b, "bob"), \
            self.guest(self.b, "carol")
        onA, onB, waiting = alice.join("#new", ""), bob.join("#new", ""), carol.join("#new", "")
        self.assertEqual(len(self.store.creating), 2)
        self.store.store()
        self.assertEqual(names(self.successResultOf(onA)), ["alice"])
        self.store.store()
        self.assertEqual(names(self.successResultOf(onB)), ["alice", "bob"])
        self.assertEqual(names(self.successResultOf(waiting)), ["alice", "bob", "carol"])
        for session in (alice, bob):
            self.assertEqual(session.listUsers("#new"), ["alice", "bob", "carol"])
        self.assertEqual(len(self.successResultOf(self.store.loadRooms())), 1)


class PostgreSQLNodesTests(PostgreSQLFixture, TestCase):
    """
    Two nodes, each with a store of its own on one PostgreSQL database, that
    do not hear of each other's rooms: the second to create a room finds it
    stored (the database refuses the duplicate) and joins it.
    """

    async def node(self, store, nodeId):
        service = makeService(store=store, fanout=FakeHub(Clock()).fanout(nodeId))
        await service.whenReady()
        return service

    async def register(self, service, name):
        session = service.connect(FakeChatClient(), "10.0.0.1")
        session.hello(1)
        await session.register(name, "correct horse", publicDer(name))
        return session

    async def test_roomStoredByAnotherNode(self):
        """
        A JOIN on node B of a room node A has stored but B has not heard of
        joins it as a room that exists: a wrong password is Forbidden, the
        right one gets in, and A's creator stays its only owner.
        """
        other = self.createStore()
        await other.open()
        self.addCleanup(other.close)
        a, b = await self.node(self.store, "A"), await self.node(other, "B")
        alice = await self.register(a, "alice")
        bob, carol = await self.register(b, "bob"), await self.register(b, "carol")
        self.assertEqual(names(await alice.join("#p", "sesame")), ["alice"])
        self.assertNotIn("#p", b.directory.rooms)
        with self.assertRaises(Forbidden):
            await bob.join("#p", "other")
        self.assertEqual(names(await carol.join("#p", "sesame")), ["carol"])
        info = await self.store.moderation("#p")
        self.assertEqual((info.owners, info.operators), (("alice",), ()))
        self.assertEqual([r.name for r in await other.loadRooms()], ["#p"])


class DoorTests(SynchronousTestCase):
    """
    The doors share the core's wait: a JOIN over one door while a JOIN over
    another is creating the room.
    """

    def setUp(self):
        self.store = HeldRoomStore()
        self.service = makeService(store=self.store)

    def test_binaryThenText(self):
        """
        A binary-door JOIN creates the room; text-door joins sent meanwhile
        get in with the right (empty) password and are refused with one.
        """
        alice = Wire(BinaryFactory(self.service))
        alice.hello()
        self.assertEqual(alice.request(Op.NICK, "alice")[0], OK)
        self.assertEqual(alice.request(Op.SET_KEY, publicDer("alice"))[0], OK)
        text = TextFactory(self.service)
        bob, carol = LineClient(text), LineClient(text)
        for client, name in [(bob, "bob"), (carol, "carol")]:
            client.ok("CMD::/nick " + name)
            client.ok("CMD::/key " + b64(publicDer(name)))
        alice.send(Op.JOIN, "#new", "")
        bob.send("CMD::/join #new")
        carol.send("CMD::/join #new secret")
        self.assertEqual((alice.responses(Op.JOIN), bob.replies(), carol.replies()), ([], [], []))
        self.store.store()
        self.assertEqual(alice.responses(Op.JOIN), [(OK, ([("alice", publicDer("alice"))],))])
        [joined] = bob.replies()
        self.assertEqual([m["userId"] for m in json.loads(joined[4:])["members"]],
                         ["alice", "bob"])
        [refused] = carol.replies()
        self.assertEqual(int(refused[5:7], 16), FORBIDDEN)
