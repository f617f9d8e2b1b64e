"""
Tests for room moderation in every store: topics, roles, bans, room
passwords and destroying rooms (L{chatd.store.moderation} and its memory
counterpart).
"""

from typing import TYPE_CHECKING

from twisted.trial.unittest import TestCase

from chatd.errors import Conflict, NotFound
from chatd.model import Ban, Moderation
from chatd.store.moderation import OPERATOR, OWNER
from chatd.test.test_store import MemoryStoreTests, PostgreSQLFixture, SQLiteFixture, StoreFixture

# The mixin's tests run in the test cases below; to the type checker it is
# one itself.
if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


class ModerationTestsMixin(StoreFixture, _Base):
    """
    Moderation behaviours every L{IMessageStore} shares.
    """

    async def test_ownerAtCreation(self):
        """
        A room created with an owner has that account as its only owner, no
        topic, no operator and no ban.
        """
        await self.account("Alice")
        await self.store.createRoom("#Lobby", None, owner="alice")
        self.assertEqual(await self.store.moderation("#LOBBY"),
                         Moderation(None, ("Alice",), (), ()))

    async def test_noRoom(self):
        """
        Every moderation call on a room that does not exist fails with
        L{NotFound}.
        """
        await self.account("Alice")
        for call in (lambda: self.store.moderation("#x"),
                     lambda: self.store.setRole("#x", "Alice", OPERATOR),
                     lambda: self.store.addBan("#x", "bob", "Alice", ""),
                     lambda: self.store.removeBan("#x", "bob"),
                     lambda: self.store.setTopic("#x", "t"),
                     lambda: self.store.setRoomPassword("#x", b"h"),
                     lambda: self.store.destroyRoom("#x")):
            with self.assertRaises(NotFound):
                await call()

    async def test_roles(self):
        """
        Roles are set, changed and taken away; they are listed by role and
        sorted ignoring case, with the names as registered.
        """
        for name in ("alice", "Bob", "carol"):
            await self.account(name)
        await self.room()
        await self.store.setRole("#Lobby", "CAROL", OPERATOR)
        await self.store.setRole("#Lobby", "bob", OPERATOR)
        await self.store.setRole("#Lobby", "alice", OWNER)
        info = await self.store.moderation("#Lobby")
        self.assertEqual((info.owners, info.operators), (("alice",), ("Bob", "carol")))
        self.assertEqual([info.roleOf(n) for n in ("ALICE", "bob", "dave")],
                         [OWNER, OPERATOR, None])
        await self.store.setRole("#Lobby", "bob", OWNER)
        await self.store.setRole("#Lobby", "carol", None)
        info = await self.store.moderation("#Lobby")
        self.assertEqual((info.owners, info.operators), (("alice", "Bob"), ()))

    async def test_roleNeedsAccount(self):
        """
        Only accounts hold roles.
        """
        await self.room()
        with self.assertRaises(NotFound):
            await self.store.setRole("#Lobby", "guest", OPERATOR)

    async def test_ban(self):
        """
        A ban keeps the name as written, who banned it, when and why; it takes
        away the name's stored membership and role; a second ban of the name
        is a L{Conflict}; unbanning lifts it, once.
        """
        await self.account("Bob")
        await self.account("alice")
        await self.room()
        await self.store.addMember("#Lobby", "bob")
        await self.store.setRole("#Lobby", "bob", OPERATOR)
        await self.store.addBan("#lobby", "BOB", "alice", "spam")
        info = await self.store.moderation("#Lobby")
        [ban] = info.bans
        self.assertEqual((ban.name, ban.by, ban.reason), ("BOB", "alice", "spam"))
        self.assertIsInstance(ban.timestamp, int)
        self.assertEqual(info.banOf("bob"), ban)
        self.assertEqual(info.operators, ())
        self.assertEqual(await self.store.roomsOf("bob"), [])
        with self.assertRaises(Conflict):
            await self.store.addBan("#Lobby", "bob", "alice", "")
        await self.store.removeBan("#Lobby", "Bob")
        self.assertEqual((await self.store.moderation("#Lobby")).bans, ())
        with self.assertRaises(NotFound):
            await self.store.removeBan("#Lobby", "bob")

    async def test_banGuestName(self):
        """
        Any name can be banned, an account's or not.
        """
        await self.room()
        await self.store.addBan("#Lobby", "rand7", "alice", "")
        self.assertEqual((await self.store.moderation("#Lobby")).banOf("RAND7").name, "rand7")

    async def test_roleLiftsBan(self):
        """
        Giving a banned account a role lifts its ban.
        """
        await self.account("bob")
        await self.room()
        await self.store.addBan("#Lobby", "bob", "admin", "")
        await self.store.setRole("#Lobby", "bob", OWNER)
        info = await self.store.moderation("#Lobby")
        self.assertEqual((info.owners, info.bans), (("bob",), ()))

    async def test_topicAndPassword(self):
        """
        A topic is set and removed; a room password is set and removed, as
        loadRooms then shows.
        """
        await self.room()
        await self.store.setTopic("#Lobby", "Be nice ✓")
        self.assertEqual((await self.store.moderation("#Lobby")).topic, "Be nice ✓")
        await self.store.setTopic("#Lobby", None)
        self.assertIsNone((await self.store.moderation("#Lobby")).topic)
        await self.store.setRoomPassword("#Lobby", b"hash")
        [record] = await self.store.loadRooms()
        self.assertEqual(record.passwordHash, b"hash")
        await self.store.setRoomPassword("#Lobby", None)
        [record] = await self.store.loadRooms()
        self.assertIsNone(record.passwordHash)

    async def test_keptByTopicOrBan(self):
        """
        An empty room with a topic or a ban is not removed as unused; one
        whose only keeper is an owner is.
        """
        await self.account("alice")
        await self.room("#t")
        await self.store.setTopic("#t", "topic")
        await self.room("#b")
        await self.store.addBan("#b", "bob", "alice", "")
        await self.store.createRoom("#o", None, owner="alice")
        self.assertEqual([await self.store.deleteRoom(name) for name in ("#t", "#b", "#o")],
                         [False, False, True])

    async def test_destroy(self):
        """
        Destroying a room deletes it with its history, memberships, roles and
        bans; a room made again of that name starts afresh, and the history's
        envelope ids may be used again.
        """
        await self.account("Alice")
        await self.store.createRoom("#Lobby", None, owner="Alice")
        await self.store.addMember("#Lobby", "Alice")
        await self.store.addBan("#Lobby", "bob", "Alice", "")
        await self.store.setTopic("#Lobby", "t")
        await self.append(1000, "id1")
        await self.store.destroyRoom("#lobby")
        self.assertEqual(await self.store.loadRooms(), [])
        self.assertEqual(await self.store.roomsOf("Alice"), [])
        await self.room()
        self.assertEqual(await self.store.moderation("#Lobby"), Moderation(None))
        self.assertEqual(await self.history("Alice"), [])
        await self.append(2000, "id1")


class MemoryModerationTests(ModerationTestsMixin, TestCase):
    createStore = MemoryStoreTests.createStore


class SQLiteModerationTests(SQLiteFixture, ModerationTestsMixin, TestCase):
    pass


class PostgreSQLModerationTests(PostgreSQLFixture, ModerationTestsMixin, TestCase):
    pass


class ModerationValueTests(TestCase):
    """
    L{Moderation} answers for names ignoring case.
    """

    def test_lookups(self):
        """
        roleOf and banOf fold the name they are asked about.
        """
        ban = Ban("Eve", "alice", 1, "")
        info = Moderation("t", ("Alice",), ("bob",), (ban,))
        self.assertEqual((info.roleOf("alice"), info.roleOf("BOB"), info.roleOf("eve")),
                         (OWNER, OPERATOR, None))
        self.assertEqual((info.banOf("EVE"), info.banOf("alice")), (ban, None))
