# -*- test-case-name: chatd.test.test_operations -*-
"""
Tests for what stores do for operators (L{chatd.store.operations}): invites
and retention on every store, and the admin's operations on SQL stores.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from chatd.errors import Conflict, Forbidden
from chatd.istore import IMessageStore
from chatd.store.memory import MemoryStore
from chatd.test.mixin import TestCaseMixin
from chatd.test.test_store import KEYS, PostgreSQLFixture, SQLiteFixture


class StoreOperationsMixin(TestCaseMixin):
    """
    Invites and retention, alike on every store.
    """

    keys = KEYS
    store: IMessageStore

    async def test_inviteOnce(self):
        """
        A single-use invite admits one account; the next is refused.
        """
        await self.store.createInvite("tok", 1, None)
        await self.store.createAccount("Alice", None, b"k", invite="tok")
        await self.assertFailure(
            self.store.createAccount("Bob", None, b"k", invite="tok"), Forbidden)
        self.assertIsNone(await self.store.getAccount("Bob"))

    async def test_refusedKeepsInvite(self):
        """
        A registration refused because its name is taken uses nothing up.
        """
        await self.store.createInvite("tok", 1, None)
        await self.store.createAccount("Alice", None, b"k")
        await self.assertFailure(
            self.store.createAccount("alice", None, b"k", invite="tok"), Conflict)
        await self.store.createAccount("Bob", None, b"k", invite="tok")

    async def test_inviteExpired(self):
        """
        An invite that expires at the store's time (0 on the test clocks)
        admits nobody; an unknown one neither.
        """
        await self.store.createInvite("old", 5, 0)
        await self.assertFailure(
            self.store.createAccount("Alice", None, b"k", invite="old"), Forbidden)
        await self.assertFailure(
            self.store.createAccount("Alice", None, b"k", invite="new"), Forbidden)

    async def test_deleteHistoryBefore(self):
        """
        Messages stored before the cut-off go, in every room; later ones stay.
        """
        for room in ("#a", "#b"):
            await self.store.createRoom(room, None)
            for ts in (1000, 2000, 3000):
                await self.store.appendMessage(room, "Alice", ts, "%s%d" % (room, ts),
                                               b"{}", ["Alice"])
        self.assertEqual(await self.store.deleteHistoryBefore(2500), 4)
        for room in ("#a", "#b"):
            rows = await self.store.history(room, "Alice", 10, 0)
            self.assertEqual([row.timestamp for row in rows], [3000])


class MemoryOperationsTests(StoreOperationsMixin, TestCase):
    """
    Invites and retention in memory.
    """

    def setUp(self):
        self.store = MemoryStore(self.keys, Clock())
        return self.store.open()


class SQLiteOperationsTests(SQLiteFixture, StoreOperationsMixin, TestCase):
    """
    Invites and retention on SQLite.
    """


class PostgreSQLOperationsTests(PostgreSQLFixture, StoreOperationsMixin, TestCase):
    """
    Invites and retention on PostgreSQL.
    """
