"""
Tests for L{chatd.store.readers}: a stored message's readers are a set shared
by the messages sent to the same readers, not a row per reader per message.
"""

from typing import Callable

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.store import makeStore
from chatd.store.memory import MemoryStore
from chatd.store.readers import readerSetDigest
from chatd.store.sql import loadMigrations
from chatd.test.test_store import (
    PostgreSQLFixture,
    SQLFixture,
    SQLiteFixture,
    StoreFixture,
)
from chatd.test.test_tap import parse

# The last schema version that kept a row per reader per message.
_PER_READER_VERSION = 4


class DigestTests(SynchronousTestCase):
    """
    L{readerSetDigest} names a set, whatever the order of its keys.
    """

    def test_order(self):
        """
        The order the keys come in does not change the name.
        """
        self.assertEqual(readerSetDigest(["bob", "alice"]),
                         readerSetDigest(["alice", "bob"]))

    def test_differentSets(self):
        """
        Sets that differ, even by how their keys would run together, have
        different names.
        """
        self.assertNotEqual(readerSetDigest(["alice", "bob"]),
                            readerSetDigest(["alice"]))
        self.assertNotEqual(readerSetDigest(["ab", "c"]),
                            readerSetDigest(["a", "bc"]))


class MemoryReaderSetTests(StoreFixture, TestCase):
    """
    The memory store keeps one set for a run of messages to the same readers.
    """

    def createStore(self):
        return MemoryStore(self.keys)

    async def test_shared(self):
        """
        Messages in a row to the same readers hold one set; history still
        reads by reader.
        """
        await self.room()
        await self.append(100, "e1", readers=("Alice", "Bob"))
        await self.append(200, "e2", readers=("bob", "ALICE"))
        await self.append(300, "e3", readers=("Alice", "Carol"))
        first, second, third = self.store._messages["#lobby"]
        self.assertIs(first.readerKeys, second.readerKeys)
        self.assertEqual(third.readerKeys, frozenset({"alice", "carol"}))
        self.assertEqual(await self.history("Bob"), [b"envelope e1", b"envelope e2"])
        self.assertEqual(await self.history("Carol"), [b"envelope e3"])


class SQLReaderSetTestsMixin(SQLFixture):
    """
    The SQL store's reader sets, on every engine.

    A test case mixing this in provides C{newDatabase()}, which points
    C{createStore} at a new, empty database.
    """

    newDatabase: Callable[[], None]

    async def count(self, table):
        [(rows,)] = await self.query(f"SELECT COUNT(*) FROM {table}")
        return rows

    async def test_onePerReaders(self):
        """
        A room's messages to the same readers store their readers once: the
        rows grow with the sets, not with the messages.
        """
        await self.room()
        for n in range(1, 6):
            await self.append(100 * n, f"e{n}", readers=("Alice", "Bob", "Carol"))
        await self.append(600, "e6", readers=("Alice", "Bob"))
        self.assertEqual(await self.count("reader_sets"), 2)
        self.assertEqual(await self.count("reader_set_members"), 5)
        self.assertEqual(len(await self.history("Carol")), 5)
        self.assertEqual(len(await self.history("Bob")), 6)
        self.assertEqual(await self.history("Dave"), [])

    async def test_sharedAcrossRooms(self):
        """
        Two rooms with the same readers use one set, and each reader's history
        of a room holds that room's messages only.
        """
        await self.room("#a")
        await self.room("#b")
        await self.append(100, "e1", room="#a")
        await self.append(100, "e2", room="#b")
        self.assertEqual(await self.count("reader_sets"), 1)
        self.assertEqual(await self.history(room="#a"), [b"envelope e1"])
        self.assertEqual(await self.history(room="#b"), [b"envelope e2"])

    async def test_replayStoresNoSet(self):
        """
        A refused append leaves no set behind.
        """
        await self.room()
        await self.append(100, "e1", readers=("Alice", "Bob"))
        await self.assertFailure(
            self.append(200, "e1", readers=("Alice", "Carol")), Exception)
        self.assertEqual(await self.count("reader_sets"), 1)

    async def test_retentionDropsUnused(self):
        """
        Deleting messages by age deletes the sets only they used, and keeps
        those newer messages use.
        """
        await self.room()
        await self.append(100, "e1", readers=("Alice", "Carol"))
        await self.append(200, "e2", readers=("Alice", "Bob"))
        await self.append(300, "e3", readers=("Alice", "Bob"))
        self.assertEqual(await self.store.deleteHistoryBefore(250), 2)
        self.assertEqual(await self.count("reader_sets"), 1)
        self.assertEqual(await self.count("reader_set_members"), 2)
        self.assertEqual(await self.history("Bob"), [b"envelope e3"])

    async def test_migrationKeepsReaders(self):
        """
        The messages of a database that kept a row per reader keep exactly
        their readers after the upgrade; the old table is gone, and new
        messages use shared sets.
        """
        await self.store.close()
        self.newDatabase()
        self.store = self.createStore(
            loadMigrations(self.engine.dialect)[:_PER_READER_VERSION])
        await self.store.open()
        await self.room()
        sql = self.engine.sql
        for ts, envelopeId, readers in [(100, "e1", ["alice", "bob"]),
                                        (200, "e2", ["alice", "carol"])]:
            await self.pool.runOperation(sql(
                "INSERT INTO messages (room_key, sender, sender_key, ts,"
                " envelope_id, key_id, body) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                ("#lobby", "Alice", "alice", ts, envelopeId,
                 *self.keys.seal(b"envelope " + envelopeId.encode(),
                                 "#lobby", "Alice", envelopeId)))
            for reader in readers:
                await self.pool.runOperation(sql(
                    "INSERT INTO message_readers (message_id, reader_key)"
                    " SELECT id, ? FROM messages WHERE envelope_id = ?"),
                    (reader, envelopeId))
        await self.reopen()
        self.assertEqual(await self.history("Alice"),
                         [b"envelope e1", b"envelope e2"])
        self.assertEqual(await self.history("Bob"), [b"envelope e1"])
        self.assertEqual(await self.history("Carol"), [b"envelope e2"])
        await self.assertFailure(self.query("SELECT * FROM message_readers"),
                                 Exception)
        await self.append(300, "e3", readers=("Alice", "Bob"))
        await self.append(400, "e4", readers=("Alice", "Bob"))
        self.assertEqual(await self.count("reader_sets"), 3)
        self.assertEqual(await self.history("Bob"),
                         [b"envelope e1", b"envelope e3", b"envelope e4"])


class SQLiteReaderSetTests(SQLiteFixture, SQLReaderSetTestsMixin, TestCase):
    """
    Reader sets on SQLite.
    """

    def newDatabase(self):
        self.path = self.mktemp()


class PostgreSQLReaderSetTests(PostgreSQLFixture, SQLReaderSetTestsMixin, TestCase):
    """
    Reader sets on PostgreSQL.
    """

    def newDatabase(self):
        self.connectionString = self.newSchema()


class MemoryCapTests(StoreFixture, TestCase):
    """
    The memory store keeps the newest messages of each room, up to its cap.
    """

    def createStore(self):
        return MemoryStore(self.keys, historyCap=3)

    async def test_newestKept(self):
        """
        Past the cap the oldest message of the room goes, and its id may be
        stored again; other rooms keep theirs.
        """
        await self.room()
        await self.room("#other")
        await self.append(50, "o1", room="#other")
        for n in range(1, 6):
            await self.append(100 * n, f"e{n}")
        self.assertEqual(await self.history(),
                         [b"envelope e3", b"envelope e4", b"envelope e5"])
        self.assertEqual(await self.history(room="#other"), [b"envelope o1"])
        await self.append(600, "e1")
        self.assertEqual(len(self.store._envelopeIds), 4)


class MemoryCapOptionTests(SynchronousTestCase):
    """
    C{--memory-history} reaches the memory store.
    """

    def test_option(self):
        """
        The option sets the cap, 1000 unless given, and refuses 0.
        """
        self.assertEqual(parse("--memory-history", "20").memoryHistory, 20)
        self.assertEqual(parse().memoryHistory, 1000)
        self.assertRaises(UsageError, parse, "--memory-history", "0")

    def test_makeStore(self):
        """
        L{makeStore} gives a memory store the cap it is given.
        """
        from chatd.test.test_store import KEYS
        store = makeStore("memory:", KEYS, memoryHistory=7)
        assert isinstance(store, MemoryStore)
        self.assertEqual(store._historyCap, 7)
