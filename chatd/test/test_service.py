"""
Tests for L{chatd.core}: the protocol-free core, driven directly through
L{Session} methods, with recording clients, an in-memory store and a L{Clock}.

The binary protocol's tests (L{chatd.test.test_binary}) show the same rules on
the wire; these show what only the core decides: who hears which event, the
order in which refusals rank, timers, limits, and requests that are still in
flight when their session goes away.
"""

import json
from typing import Any, Dict

import bcrypt
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from chatd import e2e, loginsig
from chatd.config import Settings
from chatd.core.directory import ROOM, USER
from chatd.core.service import ChatService
from chatd.core.session import WARNING_IDLE
from chatd.credentials import Credentials
from chatd.errors import (
    AuthRequired,
    BadRequest,
    ChatError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    StaleRecipients,
    Status,
)
from chatd.interfaces import IChatClient, IChatService
from chatd.isession import ISession
from chatd.protocols.requests import REQUESTS
from chatd.store.memory import MemoryStore
from chatd.test.fakes import FakeChatClient, makeService, privateKey, publicDer, testKeys

# Idle timers far enough away that tests which move the clock by minutes do not
# collect warnings they are not about.
NO_IDLE = dict(idleWarning=3600.0, idleTimeout=7200.0)

# An envelope id of the canonical shape, for tests that reuse one.
ENVELOPE_ID = "A" * 22


def keys(*names):
    """
    The public keys of C{names}, as a recipients map for L{e2e.seal}.
    """
    return {name: publicDer(name) for name in names}


def cut(blob, reader):
    """
    C{blob} as C{reader} must receive it: both key maps cut to its own entry.
    """
    return e2e.Envelope.parse(blob).cutFor(reader)


class HeldThreads:
    """
    A C{runInThread} for L{Credentials} that runs work at once, or, while
    C{held}, keeps it until L{release}, like a thread pool that has not got
    round to it yet.
    """

    def __init__(self):
        self.held = False
        self.pending = []

    def __call__(self, f, *args):
        if not self.held:
            return maybeDeferred(f, *args)
        d: Deferred = Deferred()
        self.pending.append((d, f, args))
        return d

    def release(self):
        self.held = False
        pending, self.pending = self.pending, []
        for d, f, args in pending:
            d.callback(f(*args))


class HistoryLimitStore(MemoryStore):
    """
    A L{MemoryStore} that remembers the limit of every history query.
    """

    def __init__(self, keys):
        MemoryStore.__init__(self, keys)
        self.limits = []

    def history(self, room, reader, limit, before):
        self.limits.append(limit)
        return MemoryStore.history(self, room, reader, limit, before)


class BrokenClient(FakeChatClient):
    """
    A client that, once C{broken}, raises instead of taking a JOINED event.
    """

    broken = False

    def userJoined(self, room, user, publicKey):
        if self.broken:
            raise RuntimeError("this client is broken")
        FakeChatClient.userJoined(self, room, user, publicKey)


class CoreTestCase(SynchronousTestCase):
    """
    A started core on an in-memory store, and helpers to act as its clients.

    @cvar settings: overrides of L{Settings} for the tests of the class.
    """

    settings: Dict[str, Any] = {}

    def setUp(self):
        self.sessions = []
        self.service = self.buildService()
        self.clock = self.service.clock
        self.store = self.service.store
        self.successResultOf(self.service.whenReady())

    def buildService(self):
        return makeService(**self.settings)

    # -- requests ---------------------------------------------------------

    def result(self, method, *args):
        """
        The result of a request that must succeed, whether it answered at once
        or with a L{Deferred} that has fired.
        """
        return self.successResultOf(maybeDeferred(method, *args))

    def refusal(self, method, *args):
        """
        The L{ChatError} of a request that must be refused, whether it raised at
        once or failed its L{Deferred}.
        """
        return self.failureResultOf(maybeDeferred(method, *args), ChatError).value

    def status(self, method, *args):
        """
        The status a request ends with: L{Status.OK}, or its refusal's.
        """
        outcome: list = []
        maybeDeferred(method, *args).addBoth(outcome.append)
        self.assertEqual(len(outcome), 1, "the request has not finished")
        if isinstance(outcome[0], Failure):
            outcome[0].trap(ChatError)
            error = outcome[0].value
            assert isinstance(error, ChatError)
            return error.status
        return Status.OK

    # -- clients ----------------------------------------------------------

    def connect(self, address="10.0.0.1", client=None):
        """
        A new session, not greeted yet, on C{client} (a new L{FakeChatClient}
        by default).
        """
        session = self.service.connect(client or FakeChatClient(), address)
        self.sessions.append(session)
        return session

    def guest(self, name, address="10.0.0.1"):
        """
        A greeted guest that took the nickname C{name} and published
        C{publicDer(name)}.
        """
        session = self.connect(address)
        session.hello(1)
        self.result(session.nick, name)
        self.result(session.setKey, publicDer(name))
        return session

    def account(self, name, password="correct horse", address="10.0.0.1"):
        """
        A session that registered the account C{name} with C{publicDer(name)}.
        """
        session = self.connect(address)
        session.hello(1)
        self.result(session.register, name, password, publicDer(name))
        session.client.take()
        return session

    def login(self, name, password="correct horse", address="10.0.0.1"):
        """
        A new session logged in as account C{name}.
        """
        session = self.connect(address)
        session.hello(1)
        self.result(session.login, name, password)
        return session

    def joinAll(self, room, *sessions):
        """
        Put each session's user in C{room}, then make every client forget the
        events so far.
        """
        for session in sessions:
            self.result(session.join, room, "")
        for session in self.sessions:
            session.client.take()

    # -- envelopes --------------------------------------------------------

    def seal(self, sender, to, recipients, text="hello", signer=None, **kw):
        """
        An envelope from C{sender} signed by C{privateKey(signer or sender)},
        stamped with the server's clock unless C{ts} is given.
        """
        kw.setdefault("ts", self.service.now())
        return e2e.seal(sender, privateKey(signer or sender), to, recipients,
                        text.encode("utf-8"), **kw)

    def post(self, session, room, text="hello", **kw):
        """
        Seal a message to the room's current members and post it.

        @return: the server timestamp.
        """
        members = dict(self.result(session.getKeys, ROOM, room))
        blob = self.seal(session.user.name, ("room", room), members, text, **kw)
        return self.result(session.roomMessage, room, blob)


class InterfaceTests(CoreTestCase):
    """
    The core and the recording client provide the interfaces they claim.
    """

    def test_interfaces(self):
        """
        L{ChatService} provides L{IChatService} and L{FakeChatClient} provides
        L{IChatClient}, so the fakes stand for what front doors give the core.
        """
        self.assertTrue(verifyObject(IChatService, self.service))
        self.assertTrue(verifyObject(IChatClient, FakeChatClient()))

    def test_session(self):
        """
        A session provides L{ISession}, every method a door calls, and every
        request of the doors' table is one of its methods.
        """
        session = self.service.connect(FakeChatClient(), "127.0.0.1")
        self.assertTrue(verifyObject(ISession, session))
        self.assertLessEqual(set(REQUESTS.values()), set(ISession.names()))
        self.assertLessEqual(session.overlapping, set(REQUESTS.values()))


class MembershipEventTests(CoreTestCase):
    """
    Who hears of joins and leaves, with one and several sessions per user.
    """

    def test_joinTellsMembersNotTheJoiner(self):
        """
        A joiner gets the sorted member list as its answer and no event, while
        the members already there get userJoined with the joiner's key.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.assertEqual(self.result(alice.join, "#r", ""), [("alice", publicDer("alice"))])
        self.assertEqual(self.result(bob.join, "#r", ""),
                         [("alice", publicDer("alice")), ("bob", publicDer("bob"))])
        self.assertEqual(alice.client.take(), [("userJoined", ("#r", "bob", publicDer("bob")))])
        self.assertEqual(bob.client.take(), [])

    def test_leaveTellsTheOthers(self):
        """
        A member that leaves gets no event; the others get userLeft.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", alice, bob)
        self.assertIs(self.result(bob.leave, "#r"), False)
        self.assertEqual(alice.client.take(), [("userLeft", ("#r", "bob"))])
        self.assertEqual(bob.client.take(), [])

    def test_accountSessionsHearTheirOwnJoinAndLeave(self):
        """
        When one session of an account joins or leaves, the account's other
        sessions hear it about their own user, as do the co-members; the
        requesting session hears nothing.
        """
        bob = self.guest("bob")
        self.joinAll("#r", bob)
        first = self.account("alice")
        second = self.login("alice")
        self.result(first.join, "#r", "")
        joined = ("userJoined", ("#r", "alice", publicDer("alice")))
        self.assertEqual([first.client.take(), second.client.take(), bob.client.take()],
                         [[], [joined], [joined]])
        self.result(first.leave, "#r")
        left = ("userLeft", ("#r", "alice"))
        self.assertEqual([first.client.take(), second.client.take(), bob.client.take()],
                         [[], [left], [left]])

    def test_secondSessionHearsTheAccountsRooms(self):
        """
        A session that logs in to an account that is already online gets
        userJoined for itself in each of the account's rooms, in the order they
        were joined; nobody else hears anything.
        """
        bob = self.guest("bob")
        self.joinAll("#b", bob)
        first = self.account("alice")
        self.joinAll("#a", first)
        self.joinAll("#b", first)
        bob.client.take()
        second = self.login("alice")
        self.assertEqual(second.client.take(),
                         [("userJoined", ("#a", "alice", publicDer("alice"))),
                          ("userJoined", ("#b", "alice", publicDer("alice")))])
        self.assertEqual([first.client.take(), bob.client.take()], [[], []])

    def test_lastSessionGoingTakesTheUserAway(self):
        """
        Closing one of an account's two sessions changes nothing for others;
        closing the last one makes its rooms hear userLeft and takes it offline.
        """
        bob = self.guest("bob")
        first = self.account("alice")
        second = self.login("alice")
        self.joinAll("#r", bob, first)
        second.client.take()
        first.closed()
        self.assertEqual(bob.client.take(), [])
        self.assertEqual(self.result(bob.listUsers, "#r"), ["alice", "bob"])
        second.closed()
        self.assertEqual(bob.client.take(), [("userLeft", ("#r", "alice"))])
        self.assertEqual(self.result(bob.listUsers, ""), ["bob"])

    def test_failingClientDoesNotStopTheFanOut(self):
        """
        A client that raises while taking an event is disconnected, and the
        other members still get the event.
        """
        broken = self.connect(client=BrokenClient())
        broken.hello(1)
        self.result(broken.setKey, publicDer("broken"))
        alice, bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", broken, alice)
        broken.client.broken = True
        self.result(bob.join, "#r", "")
        self.assertEqual(alice.client.take(), [("userJoined", ("#r", "bob", publicDer("bob")))])
        self.assertTrue(broken.client.disconnected)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class GuestToAccountTests(CoreTestCase):
    """
    A guest becoming an account, and memberships across going offline.
    """

    def test_registerInARoomRenamesThenChangesKey(self):
        """
        A guest in a room that registers makes its co-members see userRenamed
        then keyChanged, and its rooms become the account's stored rooms.
        """
        bob, gus = self.guest("bob"), self.guest("gus")
        self.joinAll("#r", bob, gus)
        self.result(gus.register, "alice", "correct horse", publicDer("alice"))
        self.assertEqual(bob.client.take(),
                         [("userRenamed", ("gus", "alice")),
                          ("keyChanged", ("alice", publicDer("alice")))])
        self.assertEqual(gus.client.take(), [])
        self.assertEqual(self.result(bob.listUsers, "#r"), ["alice", "bob"])
        self.assertEqual(self.successResultOf(self.store.roomsOf("alice")), ["#r"])

    def test_registerWithTheSameKeyOnlyRenames(self):
        """
        A guest that registers with the key it already published makes its
        co-members see userRenamed only.
        """
        bob = self.guest("bob")
        gus = self.connect()
        gus.hello(1)
        self.result(gus.setKey, publicDer("alice"))
        self.joinAll("#r", bob, gus)
        self.result(gus.register, "alice", "correct horse", publicDer("alice"))
        self.assertEqual(bob.client.take(), [("userRenamed", ("rand1", "alice"))])

    def test_loginRestoresStoredMemberships(self):
        """
        An account that went fully offline is put back in its rooms at its next
        login: co-members see userLeft then userJoined, and the new session gets
        userJoined for itself.
        """
        bob, alice = self.guest("bob"), self.account("alice")
        self.joinAll("#r", bob, alice)
        alice.closed()
        self.assertEqual(bob.client.take(), [("userLeft", ("#r", "alice"))])
        again = self.login("alice")
        joined = ("userJoined", ("#r", "alice", publicDer("alice")))
        self.assertEqual(bob.client.take(), [joined])
        self.assertEqual(again.client.take(), [joined])

    def test_guestMembershipsVanish(self):
        """
        Of an account and a guest that both went offline from a password room,
        only the account is back in it at its next login; a new guest with the
        old guest's name is not.
        """
        alice = self.account("alice")
        gus = self.guest("gus")
        self.result(alice.join, "#p", "sesame")
        self.result(gus.join, "#p", "sesame")
        alice.closed()
        gus.closed()
        again = self.login("alice")
        self.assertEqual(again.client.take(),
                         [("userJoined", ("#p", "alice", publicDer("alice")))])
        newGus = self.guest("gus")
        self.assertEqual(self.result(again.listUsers, "#p"), ["alice"])
        self.assertEqual(newGus.client.take(), [])

    def test_explicitLeaveForgetsTheStoredMembership(self):
        """
        An account that leaves a room is not put back in it at its next login,
        while one that merely disconnected is.
        """
        bob, alice = self.guest("bob"), self.account("alice")
        self.joinAll("#left", bob, alice)
        self.joinAll("#kept", bob, alice)
        self.result(alice.leave, "#left")
        self.assertEqual(self.successResultOf(self.store.roomsOf("alice")), ["#kept"])
        alice.closed()
        again = self.login("alice")
        self.assertEqual(again.client.take(),
                         [("userJoined", ("#kept", "alice", publicDer("alice")))])

    def test_accountMembershipOutlivesAnEmptyPlainRoom(self):
        """
        An account's stored membership keeps a room without password or history
        that has no one online in it, whether the account was alone in it or a
        guest left it last, so the account is put back in it at its next login.
        """
        alice, gus = self.account("alice"), self.guest("gus")
        self.joinAll("#alone", alice)
        self.joinAll("#shared", alice, gus)
        alice.closed()
        self.result(gus.leave, "#shared")
        again = self.login("alice")
        self.assertEqual(again.client.take(),
                         [("userJoined", ("#alone", "alice", publicDer("alice"))),
                          ("userJoined", ("#shared", "alice", publicDer("alice")))])

    def test_guestLoggingInToAnOnlineAccountLeavesItsRooms(self):
        """
        A guest that logs in to an account already online leaves its own rooms
        (its co-members and the session itself see userLeft) and hears
        userJoined for the account's.
        """
        bob, gus, carol = self.guest("bob"), self.guest("gus"), self.guest("carol")
        alice = self.account("alice")
        self.joinAll("#g", bob, gus)
        self.joinAll("#a", carol, alice)
        self.result(gus.login, "alice", "correct horse")
        self.assertEqual(bob.client.take(), [("userLeft", ("#g", "gus"))])
        self.assertEqual(gus.client.take(),
                         [("userLeft", ("#g", "gus")),
                          ("userJoined", ("#a", "alice", publicDer("alice")))])
        self.assertEqual([alice.client.take(), carol.client.take()], [[], []])
        self.assertEqual(self.result(bob.listUsers, ""), ["alice", "bob", "carol"])
        self.assertIs(gus.user, alice.user)


class RoomTests(CoreTestCase):
    """
    Creating, joining and dropping rooms, their passwords, lists and keys.
    """

    def test_ownRoomOnlyForItsUser(self):
        """
        A room named like an account can be created only by that account;
        others may join it once it exists.
        """
        alice = self.account("alice")
        bob = self.guest("bob")
        self.assertEqual(self.status(bob.join, "alice", ""), Status.FORBIDDEN)
        self.assertEqual(self.status(bob.create, "alice", ""), Status.FORBIDDEN)
        self.result(alice.join, "alice", "")
        self.result(bob.join, "alice", "")

    settings = NO_IDLE

    def test_joinCreatesAPasswordRoom(self):
        """
        A join that creates a room with a password stores its bcrypt hash; a
        later join with the wrong password is Forbidden, with the right one ok.
        """
        alice, bob = self.account("alice"), self.guest("bob")
        self.result(alice.join, "#p", "sesame")
        [record] = self.successResultOf(self.store.loadRooms())
        self.assertEqual(record.name, "#p")
        self.assertTrue(bcrypt.checkpw(b"sesame", record.passwordHash))
        self.assertIsInstance(self.refusal(bob.join, "#p", "open up"), Forbidden)
        self.assertIsInstance(self.refusal(bob.join, "#p", ""), Forbidden)
        self.assertEqual(alice.client.take(), [])
        self.result(bob.join, "#p", "sesame")

    def test_roomPasswordFailuresAreLimitedPerRoomAndAddress(self):
        """
        After five wrong passwords for one room from one address, even the
        right one gets RateLimited from there until a minute has passed; from
        another address the right one gets in, after a short wait.
        """
        owner = self.account("owner", address="10.0.0.9")
        self.result(owner.create, "#p", "sesame")
        bob, carol = self.guest("bob", "10.0.0.1"), self.guest("carol", "10.0.0.2")
        for _ in range(5):
            self.assertIsInstance(self.refusal(bob.join, "#p", "wrong"), Forbidden)
        self.assertIsInstance(self.refusal(bob.join, "#p", "sesame"), RateLimited)
        d = carol.join("#p", "sesame")
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertEqual(len(self.successResultOf(d)), 1)
        self.clock.advance(59)
        self.result(bob.join, "#p", "sesame")

    def test_failuresAreLimitedPerAddressAcrossNames(self):
        """
        Twenty failures from one address, spread over rooms, make that address
        RateLimited for a fresh room and for LOGIN too; another address is not.
        """
        owner = self.account("owner", address="10.0.0.9")
        for i in range(5):
            self.result(owner.create, "#p%d" % i, "sesame")
        bob = self.guest("bob", "10.0.0.1")
        for i in range(4):
            for _ in range(5):
                self.assertIsInstance(self.refusal(bob.join, "#p%d" % i, "wrong"), Forbidden)
        self.assertIsInstance(self.refusal(bob.join, "#p4", "sesame"), RateLimited)
        self.account("alice", address="10.0.0.3").closed()
        self.assertIsInstance(self.refusal(bob.login, "alice", "correct horse"), RateLimited)
        carol = self.guest("carol", "10.0.0.2")
        self.result(carol.join, "#p4", "sesame")

    def test_createRules(self):
        """
        CREATE makes a room without joining it; a second CREATE of the name, in
        any case, is a Conflict, and JOIN in another case joins the room.
        """
        alice = self.guest("alice")
        self.assertIsNone(self.result(alice.create, "#r", ""))
        self.assertEqual(self.result(alice.listUsers, "#r"), [])
        self.assertIsInstance(self.refusal(alice.create, "#R", ""), Conflict)
        self.assertEqual(self.result(alice.join, "#R", ""), [("alice", publicDer("alice"))])
        self.assertEqual(self.result(alice.listRooms), ["#r"])

    def test_joinRefusals(self):
        """
        Joining a passwordless room with a password is Forbidden; joining a room
        one is in is a Conflict, also from another session of the same account
        and whatever the password.
        """
        alice = self.account("alice")
        other = self.login("alice")
        bob = self.guest("bob")
        self.result(alice.join, "#open", "")
        self.result(alice.join, "#p", "sesame")
        self.assertIsInstance(self.refusal(bob.join, "#open", "sesame"), Forbidden)
        self.assertIsInstance(self.refusal(alice.join, "#open", ""), Conflict)
        self.assertIsInstance(self.refusal(other.join, "#OPEN", ""), Conflict)
        self.assertIsInstance(self.refusal(other.join, "#p", "wrong"), Conflict)
        self.assertEqual(self.result(bob.listUsers, "#open"), ["alice"])

    def test_emptyRoomIsRemoved(self):
        """
        A room without password or history goes, from memory and from the
        store, when its last member leaves or disconnects.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#left", alice)
        self.joinAll("#gone", bob)
        self.assertEqual([r.name for r in self.successResultOf(self.store.loadRooms())],
                         ["#gone", "#left"])
        self.result(alice.leave, "#left")
        bob.closed()
        self.assertEqual(self.result(alice.listRooms), [])
        self.assertEqual(self.successResultOf(self.store.loadRooms()), [])

    def test_passwordOrHistoryKeepsARoom(self):
        """
        A room with a password, or with a stored message, stays when its last
        member leaves.
        """
        alice = self.account("alice")
        self.result(alice.join, "#secret", "sesame")
        self.joinAll("#talk", alice)
        timestamp = self.post(alice, "#talk")
        self.result(alice.leave, "")
        self.assertEqual(self.result(alice.listRooms), ["#secret", "#talk"])
        records = self.successResultOf(self.store.loadRooms())
        self.assertEqual([(r.name, r.lastTimestamp) for r in records],
                         [("#secret", 0), ("#talk", timestamp)])

    def test_listsAreSorted(self):
        """
        LIST_ROOMS and LIST_USERS answer sorted names.
        """
        zed, amy = self.guest("zed"), self.guest("amy")
        bob = self.account("bob")
        for name in ("#c", "#a", "#b"):
            self.result(zed.create, name, "")
        self.joinAll("#a", zed, bob, amy)
        self.assertEqual(self.result(amy.listRooms), ["#a", "#b", "#c"])
        self.assertEqual(self.result(amy.listUsers, ""), ["amy", "bob", "zed"])
        self.assertEqual(self.result(amy.listUsers, "#a"), ["amy", "bob", "zed"])

    def test_passwordRoomIsPrivate(self):
        """
        The members and keys of a password room are Forbidden to non-members
        and given to members; those of an open room are given to anyone.
        """
        alice, bob = self.account("alice"), self.guest("bob")
        self.result(alice.join, "#p", "sesame")
        self.joinAll("#open", alice)
        self.assertIsInstance(self.refusal(bob.listUsers, "#p"), Forbidden)
        self.assertIsInstance(self.refusal(bob.getKeys, ROOM, "#p"), Forbidden)
        self.assertEqual(self.result(alice.getKeys, ROOM, "#p"), [("alice", publicDer("alice"))])
        self.assertEqual(self.result(bob.listUsers, "#open"), ["alice"])
        self.assertEqual(self.result(bob.getKeys, ROOM, "#open"),
                         [("alice", publicDer("alice"))])
        self.assertIsInstance(self.refusal(bob.getKeys, ROOM, "#none"), NotFound)

    def test_getKeysOfAUser(self):
        """
        GET_KEYS of a user: an online guest without a key is a BadRequest, an
        offline account answers its stored key, an unknown name is NotFound,
        and a kind other than room or user is a BadRequest.
        """
        asker = self.guest("asker")
        keyless = self.connect()
        self.assertEqual(keyless.hello(1), "rand1")
        self.assertIsInstance(self.refusal(asker.getKeys, USER, "rand1"), BadRequest)
        alice = self.account("alice")
        self.result(alice.setKey, publicDer("alice-2"))
        self.assertEqual(self.result(asker.getKeys, USER, "alice"),
                         [("alice", publicDer("alice-2"))])
        alice.closed()
        self.assertEqual(self.result(asker.getKeys, USER, "ALICE"),
                         [("alice", publicDer("alice-2"))])
        self.assertIsInstance(self.refusal(asker.getKeys, USER, "nobody"), NotFound)
        self.assertIsInstance(self.refusal(asker.getKeys, 2, "alice"), BadRequest)


class MessageTests(CoreTestCase):
    """
    Room and direct messages: timestamps, replays, key maps, fan-out, limits.
    """

    settings = NO_IDLE

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)

    def test_timestampsStrictlyIncrease(self):
        """
        Room timestamps follow the server clock but always grow, also when the
        clock stands still or goes back.
        """
        first = self.post(self.alice, "#r")
        self.assertEqual(first, self.service.now())
        second = self.post(self.alice, "#r")
        self.clock.advance(-10)
        third = self.post(self.bob, "#r")
        self.clock.advance(20)
        fourth = self.post(self.alice, "#r")
        self.assertEqual([second, third, fourth], [first + 1, first + 2, first + 10_000])

    def test_replayedIds(self):
        """
        An accepted envelope id is a Conflict the second time and the message
        is delivered once, while an id refused for a stale key map may be used
        again.
        """
        stale = self.seal("alice", ("room", "#r"), keys("alice"), envelopeId=ENVELOPE_ID)
        self.assertIsInstance(self.refusal(self.alice.roomMessage, "#r", stale),
                              StaleRecipients)
        blob = self.seal("alice", ("room", "#r"), keys("alice", "bob"), envelopeId=ENVELOPE_ID)
        timestamp = self.result(self.alice.roomMessage, "#r", blob)
        self.assertIsInstance(self.refusal(self.alice.roomMessage, "#r", blob), Conflict)
        self.assertEqual(self.bob.client.take(),
                         [("roomMessage", ("#r", "alice", timestamp, cut(blob, "bob")))])

    def test_staleRecipientsListsTheMembers(self):
        """
        A key map with a stranger, a missing member, an outdated key, or one map
        disagreeing with the other is refused with exactly the current members
        and keys, sorted by name, and nothing is delivered.
        """
        carol = self.guest("carol")
        self.joinAll("#r", carol)
        members = [("alice", publicDer("alice")), ("bob", publicDer("bob")),
                   ("carol", publicDer("carol"))]
        wrongKey = dict(keys("alice", "carol"), bob=publicDer("bob-old"))
        mismatched = json.loads(self.seal("alice", ("room", "#r"), keys("alice", "bob", "carol")))
        del mismatched["encrypted_keys"]["carol"]
        for blob in [self.seal("alice", ("room", "#r"), keys("alice", "bob", "carol", "dave")),
                     self.seal("alice", ("room", "#r"), keys("alice", "bob")),
                     self.seal("alice", ("room", "#r"), wrongKey),
                     json.dumps(mismatched).encode("utf-8")]:
            error = self.refusal(self.alice.roomMessage, "#r", blob)
            self.assertIsInstance(error, StaleRecipients)
            self.assertEqual(error.members, members)
        self.assertEqual([self.bob.client.take(), carol.client.take()], [[], []])

    def test_roomMessageReachesEverySessionButTheSender(self):
        """
        A room message reaches every session of every member except the one
        that sent it, each cut to its own user's entry.
        """
        carol = self.account("carol")
        carol2 = self.login("carol")
        self.joinAll("#r", carol)
        carol2.client.take()
        blob = self.seal("carol", ("room", "#r"), keys("alice", "bob", "carol"))
        timestamp = self.result(carol.roomMessage, "#r", blob)
        for session, reader in [(self.alice, "alice"), (self.bob, "bob"), (carol2, "carol")]:
            self.assertEqual(session.client.take(),
                             [("roomMessage", ("#r", "carol", timestamp, cut(blob, reader)))])
        self.assertEqual(carol.client.take(), [])

    def test_directMessageFanOut(self):
        """
        A DM reaches every session of the recipient and the sender's other
        sessions, each cut to its own user's entry, and not the sending session.
        """
        carol = self.account("carol")
        carol2 = self.login("carol")
        dave = self.account("dave")
        dave2 = self.login("dave")
        blob = self.seal("carol", ("user", "dave"), keys("carol", "dave"))
        timestamp = self.result(carol.directMessage, "dave", blob)
        toDave = [("directMessage", ("carol", timestamp, cut(blob, "dave")))]
        self.assertEqual([dave.client.take(), dave2.client.take()], [toDave, toDave])
        self.assertEqual(carol2.client.take(),
                         [("directMessage", ("carol", timestamp, cut(blob, "carol")))])
        self.assertEqual(carol.client.take(), [])

    def test_directMessageToSelf(self):
        """
        A DM to oneself needs one key entry and reaches one's other sessions.
        """
        carol = self.account("carol")
        carol2 = self.login("carol")
        blob = self.seal("carol", ("user", "carol"), keys("carol"))
        timestamp = self.result(carol.directMessage, "carol", blob)
        self.assertEqual(carol2.client.take(),
                         [("directMessage", ("carol", timestamp, cut(blob, "carol")))])
        self.assertEqual(carol.client.take(), [])

    def test_goingOfflineAfterADirectMessageToSelf(self):
        """
        A user that sent itself a DM can still go offline: its last session
        closing takes it off the online list.
        """
        blob = self.seal("alice", ("user", "alice"), keys("alice"))
        self.result(self.alice.directMessage, "alice", blob)
        self.alice.closed()
        self.assertEqual(self.result(self.bob.listUsers, ""), ["bob"])

    def test_directMessageTargets(self):
        """
        A DM to an unknown or offline user is NotFound, and to a guest without a
        key a BadRequest.
        """
        self.account("zed").closed()
        keyless = self.connect()
        keyless.hello(1)
        blob = self.seal("alice", ("user", "zed"), keys("alice", "zed"))
        self.assertIsInstance(self.refusal(self.alice.directMessage, "zed", blob), NotFound)
        self.assertIsInstance(self.refusal(self.alice.directMessage, "nobody", blob), NotFound)
        self.assertIsInstance(self.refusal(self.alice.directMessage, keyless.user.name, blob),
                              BadRequest)

    def test_roomKeyMapAfterSetKey(self):
        """
        After a member publishes a new key, its co-members hear keyChanged and
        an envelope wrapped for the old key is refused listing the new one.
        """
        self.result(self.bob.setKey, publicDer("bob-2"))
        self.assertEqual(self.alice.client.take(), [("keyChanged", ("bob", publicDer("bob-2")))])
        old = self.seal("alice", ("room", "#r"), keys("alice", "bob"))
        error = self.refusal(self.alice.roomMessage, "#r", old)
        self.assertIsInstance(error, StaleRecipients)
        self.assertEqual(error.members,
                         [("alice", publicDer("alice")), ("bob", publicDer("bob-2"))])
        new = self.seal("alice", ("room", "#r"), dict(error.members))
        self.result(self.alice.roomMessage, "#r", new)

    def test_directKeyMapAfterSetKey(self):
        """
        A DM wrapped for the recipient's previous key is refused listing both
        parties' current keys.
        """
        carol = self.guest("carol")
        self.result(self.alice.directMessage, "carol",
                    self.seal("alice", ("user", "carol"), keys("alice", "carol")))
        self.result(carol.setKey, publicDer("carol-2"))
        old = self.seal("alice", ("user", "carol"), keys("alice", "carol"))
        error = self.refusal(self.alice.directMessage, "carol", old)
        self.assertIsInstance(error, StaleRecipients)
        self.assertEqual(error.members,
                         [("alice", publicDer("alice")), ("carol", publicDer("carol-2"))])

    def test_keyChangedAudience(self):
        """
        An account's new key is announced to its room co-members, its DM peers
        and its own other sessions, not to strangers or the requesting session,
        and it is stored.
        """
        carol = self.account("carol")
        carol2 = self.login("carol")
        dave, erin = self.guest("dave"), self.guest("erin")
        self.joinAll("#r", carol)
        self.result(carol.directMessage, "dave",
                    self.seal("carol", ("user", "dave"), keys("carol", "dave")))
        everyone = (self.alice, self.bob, carol2, dave, erin, carol)
        for session in everyone:
            session.client.take()
        self.result(carol.setKey, publicDer("carol-2"))
        changed = [("keyChanged", ("carol", publicDer("carol-2")))]
        self.assertEqual([session.client.take() for session in everyone],
                         [changed, changed, changed, changed, [], []])
        account = self.successResultOf(self.store.getAccount("carol"))
        self.assertEqual(account.publicKey, publicDer("carol-2"))

    def test_rateLimitPerUserSlides(self):
        """
        More than five messages in five seconds by one user, across its
        sessions, are RateLimited and not delivered; refusals do not count, and
        the window slides.
        """
        carol = self.account("carol")
        carol2 = self.login("carol")
        self.joinAll("#r", carol)
        carol2.client.take()
        statuses = []
        for session, delay in [(carol, 0), (carol, 0), (carol, 0), (carol2, 1), (carol2, 0),
                               (carol, 0), (carol2, 0), (carol, 3.5), (carol, 0.5),
                               (carol2, 0), (carol, 0), (carol2, 0)]:
            self.clock.advance(delay)
            blob = self.seal("carol", ("room", "#r"), keys("alice", "bob", "carol"))
            statuses.append(self.status(session.roomMessage, "#r", blob))
        ok, limited = Status.OK, Status.RATE_LIMITED
        self.assertEqual(statuses, [ok] * 5 + [limited] * 3 + [ok] * 3 + [limited])
        self.assertEqual(len(self.alice.client.take()), 8)

    def test_directMessageReplayAtTheSkewHorizon(self):
        """
        A DM stamped at the far edge of the allowed clock skew is still a replay
        at the last moment its timestamp is accepted.
        """
        edge = self.service.now() + int(self.service.settings.clockSkew * 1000)
        blob = self.seal("alice", ("user", "bob"), keys("alice", "bob"), ts=edge)
        self.result(self.alice.directMessage, "bob", blob)
        self.bob.client.take()
        self.clock.advance(2 * self.service.settings.clockSkew)
        self.assertEqual(self.status(self.alice.directMessage, "bob", blob), Status.CONFLICT)
        self.assertEqual(self.bob.client.take(), [])


class RoomMessagePrecedenceTests(CoreTestCase):
    """
    When several of section 2's refusals apply to ROOM_MSG, the first one wins.
    """

    settings = NO_IDLE

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)
        self.members = keys("alice", "bob")

    def tooOld(self):
        return self.service.now() - 301_000

    def test_unknownRoomBeforeMembership(self):
        """
        A non-member posting to a room that does not exist gets NotFound.
        """
        carol = self.guest("carol")
        self.assertIsInstance(self.refusal(carol.roomMessage, "#nowhere", b"junk"), NotFound)
        self.assertIsInstance(self.refusal(carol.roomMessage, "#r", b"junk"), BadRequest)

    def test_membershipBeforeRateLimit(self):
        """
        A user over its rate limit posting to a room it is not in is told it is
        not a member.
        """
        carol = self.guest("carol")
        for _ in range(5):
            self.result(carol.directMessage, "alice",
                        self.seal("carol", ("user", "alice"), keys("alice", "carol")))
        error = self.refusal(carol.roomMessage, "#r", b"junk")
        self.assertEqual((type(error), error.message), (BadRequest, "not a member of #r"))
        self.assertIsInstance(self.refusal(carol.directMessage, "alice", b"junk"), RateLimited)

    def test_rateLimitBeforeEnvelopeFormat(self):
        """
        A malformed envelope over the rate limit gets RateLimited.
        """
        for _ in range(5):
            self.result(self.alice.roomMessage, "#r",
                        self.seal("alice", ("room", "#r"), self.members))
        self.assertIsInstance(self.refusal(self.alice.roomMessage, "#r", b"not json"),
                              RateLimited)

    def test_fromBeforeTo(self):
        """
        An envelope claiming another sender and addressed elsewhere is Forbidden
        for its sender.
        """
        blob = self.seal("bob", ("room", "#elsewhere"), self.members, signer="alice")
        error = self.refusal(self.alice.roomMessage, "#r", blob)
        self.assertIsInstance(error, Forbidden)
        self.assertIn("'from'", error.message)

    def test_toBeforeTimestamp(self):
        """
        An envelope addressed elsewhere and too old is refused for its address.
        """
        blob = self.seal("alice", ("room", "#elsewhere"), self.members, ts=self.tooOld())
        error = self.refusal(self.alice.roomMessage, "#r", blob)
        self.assertIsInstance(error, BadRequest)
        self.assertIn("addressed", error.message)

    def test_toMatchesExactly(self):
        """
        An envelope addressed to the room's name in another case is refused,
        even though the request may name the room in any case.
        """
        wrongCase = self.seal("alice", ("room", "#R"), self.members)
        self.assertIsInstance(self.refusal(self.alice.roomMessage, "#r", wrongCase), BadRequest)
        right = self.seal("alice", ("room", "#r"), self.members)
        self.result(self.alice.roomMessage, "#R", right)

    def test_timestampBeforeSignature(self):
        """
        An envelope too old and signed by the wrong key is refused for its
        timestamp.
        """
        blob = self.seal("alice", ("room", "#r"), self.members, signer="bob", ts=self.tooOld())
        error = self.refusal(self.alice.roomMessage, "#r", blob)
        self.assertIsInstance(error, BadRequest)
        self.assertIn("timestamp", error.message)

    def test_signatureBeforeReplay(self):
        """
        A replayed id on an envelope signed by the wrong key is Forbidden.
        """
        self.result(self.alice.roomMessage, "#r",
                    self.seal("alice", ("room", "#r"), self.members, envelopeId=ENVELOPE_ID))
        forged = self.seal("alice", ("room", "#r"), self.members, signer="bob",
                           envelopeId=ENVELOPE_ID)
        error = self.refusal(self.alice.roomMessage, "#r", forged)
        self.assertIsInstance(error, Forbidden)
        self.assertIn("signature", error.message)

    def test_replayBeforeKeyMap(self):
        """
        A replayed id on an envelope with a stale key map is a Conflict.
        """
        self.result(self.alice.roomMessage, "#r",
                    self.seal("alice", ("room", "#r"), self.members, envelopeId=ENVELOPE_ID))
        stale = self.seal("alice", ("room", "#r"), keys("alice"), envelopeId=ENVELOPE_ID)
        self.assertIsInstance(self.refusal(self.alice.roomMessage, "#r", stale), Conflict)


class IdleTestCase(CoreTestCase):
    """
    Helpers for the idle warning and disconnect tests.
    """

    def warnings(self, session):
        """
        The codes of the events C{session} got since last asked, which must all
        be warnings with a message.
        """
        events = session.client.take()
        for name, (_, message) in events:
            self.assertEqual(name, "warning")
            self.assertTrue(message)
        return [code for _, (code, _) in events]


class IdleTests(IdleTestCase):
    """
    The idle warning and disconnect, counted from the last bytes received.
    """

    def test_warnThenDisconnect(self):
        """
        Twenty seconds without traffic bring one idle warning (0x03), thirty a
        disconnect, after which no timer is left.
        """
        session = self.connect()
        session.hello(1)
        self.clock.advance(19.5)
        self.assertEqual(self.warnings(session), [])
        self.clock.advance(0.5)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(9.5)
        self.assertFalse(session.client.disconnected)
        self.clock.advance(0.5)
        self.assertTrue(session.client.disconnected)
        self.assertEqual(self.warnings(session), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_trafficRestartsTheCount(self):
        """
        Bytes received before the warning push both the warning and the
        disconnect back to twenty and thirty seconds after them.
        """
        session = self.connect()
        session.hello(1)
        self.clock.advance(15)
        session.received()
        self.clock.advance(19.5)
        self.assertEqual(self.warnings(session), [])
        self.clock.advance(0.5)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(9.5)
        self.assertFalse(session.client.disconnected)
        self.clock.advance(0.5)
        self.assertTrue(session.client.disconnected)

    def test_oneWarningPerIdlePeriod(self):
        """
        Traffic after a warning saves the session and starts a new idle period,
        which gets its own single warning.
        """
        session = self.connect()
        session.hello(1)
        self.clock.advance(20)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(5)
        session.received()
        self.clock.advance(19.5)
        self.assertEqual(self.warnings(session), [])
        self.assertFalse(session.client.disconnected)
        self.clock.advance(0.5)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(10)
        self.assertTrue(session.client.disconnected)
        self.assertEqual(self.warnings(session), [])

    def test_closedSessionHasNoTimer(self):
        """
        A closed session leaves no timer behind and never hears of idleness.
        """
        session = self.connect()
        session.closed()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual((session.client.take(), session.client.disconnected), ([], False))


class ConfiguredIdleTests(IdleTestCase):
    """
    The idle rules with idleWarning and idleTimeout taken from the settings.
    """

    settings = dict(idleWarning=5, idleTimeout=8)

    def test_configuredTimes(self):
        """
        With idleWarning 5 and idleTimeout 8, a silent session is warned at 5 s
        and disconnected at 8 s, and one that sent bytes at 6 s is warned at
        11 s and disconnected at 14 s.
        """
        silent, talking = self.connect(), self.connect()
        silent.hello(1)
        talking.hello(1)
        self.clock.advance(4.5)
        self.assertEqual([self.warnings(silent), self.warnings(talking)], [[], []])
        self.clock.advance(0.5)
        self.assertEqual([self.warnings(silent), self.warnings(talking)],
                         [[WARNING_IDLE], [WARNING_IDLE]])
        self.clock.advance(1)
        talking.received()
        self.clock.advance(1.5)
        self.assertFalse(silent.client.disconnected)
        self.clock.advance(0.5)
        self.assertEqual([silent.client.disconnected, talking.client.disconnected], [True, False])
        self.clock.advance(2.5)
        self.assertEqual(self.warnings(talking), [])
        self.clock.advance(0.5)
        self.assertEqual(self.warnings(talking), [WARNING_IDLE])
        self.clock.advance(2.5)
        self.assertFalse(talking.client.disconnected)
        self.clock.advance(0.5)
        self.assertTrue(talking.client.disconnected)


class LongIdleTimeoutTests(IdleTestCase):
    """
    The idle rules with a timeout more than twice the warning.
    """

    settings = dict(idleWarning=5, idleTimeout=20)

    def test_trafficRestartsTheCount(self):
        """
        With idleWarning 5 and idleTimeout 20, traffic after a warning brings a
        fresh warning 5 s later and the disconnect 20 s later.
        """
        session = self.connect()
        session.hello(1)
        self.clock.advance(5)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(1)
        session.received()
        self.clock.advance(5)
        self.assertEqual(self.warnings(session), [WARNING_IDLE])
        self.clock.advance(14.5)
        self.assertEqual((self.warnings(session), session.client.disconnected), ([], False))
        self.clock.advance(0.5)
        self.assertTrue(session.client.disconnected)


class ChallengeTests(CoreTestCase):
    """
    Login by signing a challenge.
    """

    settings = NO_IDLE

    def setUp(self):
        CoreTestCase.setUp(self)
        self.account("alice").closed()
        self.session = self.connect()
        self.session.hello(1)

    def sign(self, challenge, name="alice", key="alice"):
        return loginsig.signAuth(privateKey(key), challenge, name)

    def test_failedAuthUsesUpTheChallenge(self):
        """
        An AUTH that fails uses the challenge up, so a right signature over it
        fails too; a fresh challenge then works.
        """
        challenge = self.session.challenge()
        self.assertEqual(len(challenge), 32)
        self.assertIsInstance(self.refusal(self.session.auth, "alice", b"x" * 256), Forbidden)
        self.assertIsInstance(self.refusal(self.session.auth, "alice", self.sign(challenge)),
                              Forbidden)
        fresh = self.session.challenge()
        self.assertNotEqual(fresh, challenge)
        self.result(self.session.auth, "alice", self.sign(fresh))
        self.assertEqual(self.session.user.name, "alice")

    def test_challengeExpires(self):
        """
        A challenge answered within 60 s logs in; one answered at 60 s does not.
        """
        late = self.connect()
        late.hello(1)
        lateChallenge = late.challenge()
        challenge = self.session.challenge()
        self.clock.advance(59.5)
        self.result(self.session.auth, "alice", self.sign(challenge))
        self.clock.advance(0.5)
        self.assertIsInstance(self.refusal(late.auth, "alice", self.sign(lateChallenge)),
                              Forbidden)

    def test_newChallengeReplacesTheOld(self):
        """
        After a second CHALLENGE, a signature over the first no longer logs in,
        and one over the second does.
        """
        first = self.session.challenge()
        self.session.challenge()
        self.assertIsInstance(self.refusal(self.session.auth, "alice", self.sign(first)),
                              Forbidden)
        other = self.connect()
        other.hello(1)
        other.challenge()
        second = other.challenge()
        self.result(other.auth, "alice", self.sign(second))

    def test_unknownUserLikeWrongSignature(self):
        """
        AUTH as an unknown user and AUTH with another key's signature are
        refused with the same status and message.
        """
        challenge = self.session.challenge()
        unknown = self.refusal(self.session.auth, "nobody",
                               self.sign(challenge, "nobody", key="nobody"))
        challenge = self.session.challenge()
        wrong = self.refusal(self.session.auth, "alice", self.sign(challenge, key="mallory"))
        self.assertEqual((unknown.status, unknown.message), (wrong.status, wrong.message))
        self.assertEqual(unknown.status, Status.FORBIDDEN)


class HistoryTests(CoreTestCase):
    """
    Reading a room's stored messages.
    """

    settings = dict(rateLimit=(1000, 5.0))

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)

    def postMany(self, count):
        """
        Post C{count} messages from alice, the clock standing still.

        @return: their timestamps.
        """
        return [self.post(self.alice, "#r", "message %d" % i) for i in range(count)]

    def test_defaultLimit(self):
        """
        A limit of 0 answers the newest 50, oldest first, each cut to the
        reader.
        """
        stamps = self.postMany(60)
        rows = self.result(self.bob.history, "#r", 0, 0)
        self.assertEqual([timestamp for _, timestamp, _ in rows], stamps[10:])
        sender, timestamp, envelope = rows[-1]
        self.assertEqual((sender, timestamp), ("alice", stamps[-1]))
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"message 59")
        self.assertEqual(set(json.loads(envelope)["encrypted_keys"]), {"bob"})

    def test_limitIsCapped(self):
        """
        The store is asked for the default for a limit of 0, and for at most
        500 rows whatever the limit.
        """
        store = HistoryLimitStore(testKeys())
        self.service = makeService(store=store)
        alice = self.guest("alice")
        self.joinAll("#r", alice)
        for limit in (0, 7, 500, 501, 65535):
            self.result(alice.history, "#r", limit, 0)
        self.assertEqual(store.limits, [50, 7, 500, 500, 500])

    def test_pagingHasNoGaps(self):
        """
        Paging back with C{before} set to the oldest timestamp seen returns
        every message once, even when they were posted within one millisecond.
        """
        stamps = self.postMany(60)
        pages: list = []
        before = 0
        while True:
            rows = self.result(self.bob.history, "#r", 25, before)
            if not rows:
                break
            pages[:0] = [timestamp for _, timestamp, _ in rows]
            before = rows[0][1]
        self.assertEqual(pages, stamps)
        self.assertEqual(len(set(stamps)), 60)

    def test_laterMemberSeesOnlyWhatIsForIt(self):
        """
        A member that joined later is not given the messages from before it
        joined, which have no key entry for it.
        """
        early = self.post(self.alice, "#r", "before carol")
        carol = self.guest("carol")
        self.joinAll("#r", carol)
        late = self.post(self.alice, "#r", "with carol")
        self.assertEqual([row[1] for row in self.result(carol.history, "#r", 0, 0)], [late])
        self.assertEqual([row[1] for row in self.result(self.bob.history, "#r", 0, 0)],
                         [early, late])

    def test_nonMemberRefused(self):
        """
        History is for members: a non-member gets BadRequest, and a room that
        does not exist NotFound.
        """
        self.postMany(1)
        carol = self.guest("carol")
        self.assertIsInstance(self.refusal(carol.history, "#r", 0, 0), BadRequest)
        self.assertIsInstance(self.refusal(carol.history, "#none", 0, 0), NotFound)


class InFlightTests(CoreTestCase):
    """
    A session that closes while its login or join waits on bcrypt leaves
    nothing behind.
    """

    def buildService(self):
        self.threads = HeldThreads()
        clock = Clock()
        clock.advance(1_700_000_000)
        service = ChatService(MemoryStore(testKeys()), Settings(bcryptCost=4), clock,
                              credentials=Credentials(4, runInThread=self.threads))
        service.startService()
        return service

    def test_closeDuringLogin(self):
        """
        A guest that closes while its LOGIN is being checked does not bring the
        account online, nor back into its rooms; its own rooms see it leave.
        """
        bob, carol = self.guest("bob"), self.guest("carol")
        alice = self.account("alice")
        self.joinAll("#r", bob, alice)
        alice.closed()
        gus = self.guest("gus")
        self.joinAll("#g", carol, gus)
        bob.client.take()
        self.threads.held = True
        d = maybeDeferred(gus.login, "alice", "correct horse")
        self.assertNoResult(d)
        gus.closed()
        self.assertEqual(carol.client.take(), [("userLeft", ("#g", "gus"))])
        self.threads.release()
        self.failureResultOf(d, BadRequest)
        self.assertEqual(self.result(bob.listUsers, ""), ["bob", "carol"])
        self.assertEqual(self.result(bob.listUsers, "#r"), ["bob"])
        self.assertEqual(bob.client.take(), [])

    def test_closeDuringLoginToAnOnlineAccount(self):
        """
        A guest that closes while its LOGIN to an online account is being
        checked does not become one of the account's sessions.
        """
        alice = self.account("alice")
        gus = self.guest("gus")
        self.threads.held = True
        d = maybeDeferred(gus.login, "alice", "correct horse")
        gus.closed()
        self.threads.release()
        self.failureResultOf(d, BadRequest)
        self.assertEqual(alice.user.sessions, [alice])
        self.assertEqual(self.result(alice.listUsers, ""), ["alice"])

    def test_closeDuringJoin(self):
        """
        A member-to-be that closes while its room password is being checked
        does not end up in the room, and the members hear nothing.
        """
        alice, bob = self.account("alice"), self.guest("bob")
        self.result(alice.join, "#p", "sesame")
        self.threads.held = True
        d = maybeDeferred(bob.join, "#p", "sesame")
        self.assertNoResult(d)
        bob.closed()
        self.threads.release()
        self.failureResultOf(d, BadRequest)
        self.assertEqual(self.result(alice.listUsers, "#p"), ["alice"])
        self.assertEqual(self.result(alice.listUsers, ""), ["alice"])
        self.assertEqual(alice.client.take(), [])

    def test_closeDuringRegister(self):
        """
        A guest that closes while its REGISTER is being hashed does not come
        online; the name is free to log in to afterwards.
        """
        gus = self.guest("gus")
        self.threads.held = True
        d = maybeDeferred(gus.register, "alice", "correct horse", publicDer("alice"))
        gus.closed()
        self.threads.release()
        self.failureResultOf(d, BadRequest)
        observer = self.guest("observer")
        self.assertEqual(self.result(observer.listUsers, ""), ["observer"])
        self.login("alice")


class NoGuestTests(CoreTestCase):
    """
    A server that admits accounts only.
    """

    settings = dict(allowGuests=False)

    def test_guestsMayOnlyLogIn(self):
        """
        A greeted guest gets AuthRequired for every request but HELLO,
        REGISTER, LOGIN, CHALLENGE and AUTH (and HEARTBEAT); once logged in, it
        may do the rest.
        """
        session = self.connect()
        session.hello(1)
        for method, args in [(session.nick, ("gus",)), (session.listUsers, ("",)),
                             (session.listRooms, ()), (session.create, ("#r", "")),
                             (session.join, ("#r", "")), (session.leave, ("#r",)),
                             (session.roomMessage, ("#r", b"{}")),
                             (session.directMessage, ("bob", b"{}")),
                             (session.history, ("#r", 0, 0)),
                             (session.setKey, (publicDer("gus"),)),
                             (session.getKeys, (USER, "bob"))]:
            self.assertIsInstance(self.refusal(method, *args), AuthRequired, method.__name__)
        session.heartbeat()
        self.assertEqual(len(session.challenge()), 32)
        self.result(session.register, "alice", "correct horse", publicDer("alice"))
        self.assertEqual(self.result(session.listRooms), [])
        self.login("alice")
        other = self.connect()
        other.hello(1)
        self.result(other.auth, "alice", loginsig.signAuth(privateKey("alice"), other.challenge(),
                                                      "alice"))
        self.assertEqual(self.result(other.join, "#r", ""), [("alice", publicDer("alice"))])
