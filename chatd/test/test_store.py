# -*- test-case-name: chatd.test.test_store -*-
"""
Tests for L{chatd.store}: one set of behaviours run against L{MemoryStore},
against L{AdbapiStore} on an SQLite file and, when C{CHATD_TEST_POSTGRES} names
a database, against L{AdbapiStore} on PostgreSQL; plus what only the SQL store
has (schema versions, group commit, files on disk) and the choice of store by
URL.

On SQLite the store runs on a L{ConnectionPool} without threads: its work runs
on the calling thread and its results come back at once, so the group-commit
tests can hold work back and let it go. On PostgreSQL it runs on its real pool
of threads, as a server does, and the tests wait for its results.
"""

import base64
import os
import sqlite3
import stat
import sys
import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, FrozenSet, List, Tuple, Type

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from chatd.errors import Conflict, NotFound, Unavailable
from chatd.istore import IMessageStore
from chatd.model import Account, HistoryRow, RoomRecord
from chatd.startup import StartupError
from chatd.store import makeStore
from chatd.store.engines import POSTGRESQL, SQLITE, Engine, _sqliteStatements, engineForURL
from chatd.store.memory import MemoryStore
from chatd.store.seal import AtRestKeys
from chatd.store.sql import AdbapiStore, loadMigrations
from chatd.store.timestamps import nextFree
from chatd.test.mixin import TestCaseMixin
from chatd.turn import TurnEnd

try:
    import psycopg
except ImportError:
    psycopg = None  # type: ignore[assignment]

# The database the PostgreSQL tests make their schemas in, if any.
POSTGRES_URL = os.environ.get("CHATD_TEST_POSTGRES", "")

# A fixed at-rest key, so that runs do not differ by key.
KEYS = AtRestKeys([base64.urlsafe_b64encode(bytes(range(32)))])

# Written inside an envelope; no store may keep it where it can be read.
MARKER = b"PLAINTEXT-MARKER-5d1e07"


class _ThreadlessReactor(Clock):
    """
    Just enough reactor for a L{ConnectionPool} that never starts threads.

    The pool asks to be started when the reactor runs, which this one never
    does; results handed over "from a thread" are delivered at once.
    """

    def callWhenRunning(self, f, *args, **kwargs):
        return ("never run", f)

    def removeSystemEventTrigger(self, triggerID):
        pass

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class _HeldThreadPool:
    """
    A stand-in for the pool's L{twisted.python.threadpool.ThreadPool} that runs
    work on the calling thread: at once, or, after L{hold}, when a test says.

    @ivar holding: whether new work waits in C{held} rather than run.
    @ivar held: the work waiting to run.
    """

    def __init__(self):
        self.holding = False
        self.held: List[Tuple[Any, ...]] = []

    def hold(self):
        """
        Keep work from now on until L{runHeld}.
        """
        self.holding = True

    def runHeld(self):
        """
        Run the work held so far; work queued meanwhile stays held.
        """
        work, self.held = self.held, []
        for item in work:
            self._run(*item)

    def release(self):
        """
        Stop holding: run the work held so far, and later work at once.
        """
        self.holding = False
        work, self.held = self.held, []
        for item in work:
            self._run(*item)

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        if not self.holding:
            self._run(onResult, f, args, kwargs)
        else:
            self.held.append((onResult, f, args, kwargs))

    def _run(self, onResult, f, args, kwargs):
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def stop(self):
        pass


class _ThreadlessConnectionPool(ConnectionPool):
    """
    A L{ConnectionPool} whose work runs on the calling thread, in
    C{threadpool}, a L{_HeldThreadPool}.
    """

    def __init__(self, *args, threadpool, **kwargs):
        ConnectionPool.__init__(self, *args, **kwargs)
        self.threadpool = threadpool


class StoreFixture(TestCaseMixin):
    """
    A store to test, opened for each test, and ways to fill it.

    A test case mixing this in provides C{createStore()}, returning an unopened
    store, and C{persistedBytes()}, a coroutine returning every byte the store
    keeps (it may close the store to get them).

    The tests await each L{Deferred}, so that they run alike on stores whose
    results come at once and on stores whose results come from threads.

    @ivar keys: the at-rest keys C{createStore} gives the store.
    """

    keys = KEYS
    createStore: Callable[..., Any]
    persistedBytes: Callable[[], Awaitable[bytes]]

    def setUp(self):
        self.store = self.createStore()
        return self.store.open()

    def room(self, name="#Lobby", passwordHash=None):
        """
        Create room C{name}.

        @return: the L{Deferred} of the creation.
        """
        return self.store.createRoom(name, passwordHash)

    def account(self, name, publicKey=b"key"):
        """
        Create a key-only account C{name}.

        @return: the L{Deferred} of the creation.
        """
        return self.store.createAccount(name, None, publicKey)

    def append(self, timestamp, envelopeId, sender="Alice", room="#Lobby",
               readers=("Alice", "Bob"), envelope=None):
        """
        Append a message; its envelope defaults to one naming its id.

        @return: the L{Deferred} of the append.
        """
        if envelope is None:
            envelope = b"envelope " + envelopeId.encode("ascii")
        return self.store.appendMessage(
            room, sender, timestamp, envelopeId, envelope, readers
        )

    def appendAt(self, timestamp, envelopeId):
        """
        Append a message at exactly C{timestamp}, as a store shared by nodes
        stores one whose timestamp is free however late it comes: a store
        that numbers its own messages is handed the timestamp with a number
        it gave out, which it then stores as it is.

        @return: the L{Deferred} of the append.
        """
        numbering = self.store.numbering
        if numbering is None:
            return self.append(timestamp, envelopeId)
        return self.store.appendMessage(
            "#Lobby", "Alice", timestamp, envelopeId, b"envelope " + envelopeId.encode("ascii"),
            ("Alice", "Bob"), numbering.takeSequence())

    async def history(self, reader="Bob", limit=50, before=0, room="#Lobby"):
        """
        The envelopes of C{reader}'s history, as L{bytes}.
        """
        rows = await self.store.history(room, reader, limit, before)
        return [row.envelope for row in rows]


class StoreTestsMixin(StoreFixture):
    """
    Behaviours every L{IMessageStore} shares.
    """

    # The public methods a store has beyond IMessageStore, for callers that
    # know which store they hold (chatd.admin runs operations through an SQL
    # store's run).
    beyondInterface: FrozenSet[str] = frozenset()

    async def test_interface(self):
        """
        The store provides L{IMessageStore}.
        """
        self.assertTrue(verifyObject(IMessageStore, self.store))

    def test_interfaceDeclaresEveryMethod(self):
        """
        Every public method of the store but those of C{beyondInterface} is
        declared by L{IMessageStore} (the device and waiting-message methods
        included), so that what the core calls on any store is what the
        interface promises.
        """
        public = {name for name in dir(self.store)
                  if not name.startswith("_") and callable(getattr(self.store, name))}
        self.assertEqual(public - set(IMessageStore.names(all=True)), self.beyondInterface)

    async def test_noAccount(self):
        """
        An unknown name has no account.
        """
        self.assertIsNone(await self.store.getAccount("nobody"))

    async def test_createAccount(self):
        """
        An account is found under any case and keeps the case it was made with.
        """
        await self.store.createAccount("Alice", b"hash", b"key")
        self.assertEqual(
            await self.store.getAccount("aLICE"), Account("Alice", b"hash", b"key")
        )

    async def test_keyOnlyAccount(self):
        """
        An account without a password keeps L{None} as its hash.
        """
        await self.account("Alice")
        self.assertEqual(
            await self.store.getAccount("alice"), Account("Alice", None, b"key")
        )

    async def test_duplicateAccount(self):
        """
        A name taken in any case is refused with L{Conflict}, leaving the first.
        """
        await self.account("Alice")
        error = await self.assertFailure(
            self.store.createAccount("ALICE", b"hash", b"other"), Conflict
        )
        self.assertEqual(error.message, "that name is taken")
        self.assertEqual(
            await self.store.getAccount("alice"), Account("Alice", None, b"key")
        )

    async def test_setPublicKey(self):
        """
        setPublicKey replaces the key of the account named in any case.
        """
        await self.account("Alice")
        await self.store.setPublicKey("alice", b"new key")
        self.assertEqual(
            await self.store.getAccount("Alice"), Account("Alice", None, b"new key")
        )

    async def test_setPublicKeyNoAccount(self):
        """
        setPublicKey fails with L{NotFound} for an unknown account.
        """
        await self.assertFailure(self.store.setPublicKey("nobody", b"key"), NotFound)

    async def test_createRoom(self):
        """
        Created rooms are loaded with their case, password hash and no history.
        """
        await self.room("#Lobby")
        await self.room("#b", b"hash")
        self.assertEqual(
            await self.store.loadRooms(),
            [RoomRecord("#b", b"hash", 0), RoomRecord("#Lobby", None, 0)],
        )

    async def test_duplicateRoom(self):
        """
        A room name taken in any case is refused with L{Conflict}.
        """
        await self.room("#Lobby")
        await self.assertFailure(self.store.createRoom("#LOBBY", b"hash"), Conflict)
        self.assertEqual(await self.store.loadRooms(), [RoomRecord("#Lobby", None, 0)])

    async def test_lastTimestamp(self):
        """
        A loaded room's lastTimestamp is its newest message's, whatever order the
        messages came in.
        """
        await self.room("#Lobby")
        await self.room("#quiet")
        for timestamp, envelopeId in [(100, "a"), (300, "b"), (200, "c")]:
            await self.appendAt(timestamp, envelopeId)
        self.assertEqual(
            await self.store.loadRooms(),
            [RoomRecord("#Lobby", None, 300), RoomRecord("#quiet", None, 0)],
        )

    async def test_messagesAfter(self):
        """
        Messages after a timestamp come oldest first, whoever reads them, at most
        the limit.
        """
        await self.room()
        for timestamp, envelopeId in [(100, "a"), (300, "c"), (200, "b")]:
            await self.appendAt(timestamp, envelopeId)
        rows = await self.store.messagesAfter("#lobby", 100, 10)
        self.assertEqual([(r.timestamp, r.envelope) for r in rows],
                         [(200, b"envelope b"), (300, b"envelope c")])
        self.assertEqual(len(await self.store.messagesAfter("#Lobby", 0, 2)), 2)
        self.assertEqual(await self.store.messagesAfter("#Lobby", 300, 10), [])

    async def test_deleteRoom(self):
        """
        A room nothing keeps (named in any case) is deleted, and its name is
        free again.
        """
        await self.room("#Lobby")
        self.assertIs(await self.store.deleteRoom("#lobby"), True)
        self.assertEqual(await self.store.loadRooms(), [])
        await self.room("#LOBBY")
        self.assertEqual(await self.store.loadRooms(), [RoomRecord("#LOBBY", None, 0)])

    async def test_deleteRoomKept(self):
        """
        A room with a password, a remembered member or history is kept.
        """
        await self.account("Alice")
        await self.room("#locked", passwordHash=b"hash")
        await self.room("#member")
        await self.store.addMember("#member", "Alice")
        await self.room("#Lobby")
        await self.append(100, "e1")
        for name in ("#locked", "#member", "#Lobby"):
            self.assertIs(await self.store.deleteRoom(name), False)
        self.assertEqual(len(await self.store.loadRooms()), 3)
        await self.store.removeMember("#member", "Alice")
        self.assertIs(await self.store.deleteRoom("#member"), True)

    async def test_deleteNoRoom(self):
        """
        Deleting a room that does not exist does nothing.
        """
        self.assertIs(await self.store.deleteRoom("#nowhere"), False)

    async def test_roomsOf(self):
        """
        roomsOf gives the display names of a user's rooms, sorted, however the
        user's name is cased.
        """
        await self.account("Alice")
        for name in ["#b", "#A", "#c", "#other"]:
            await self.room(name)
        for name in ["#b", "#A", "#c"]:
            await self.store.addMember(name, "alice")
        self.assertEqual(await self.store.roomsOf("ALICE"), ["#A", "#b", "#c"])

    async def test_addMemberTwice(self):
        """
        Adding a member twice, in another case, keeps one membership.
        """
        await self.account("Alice")
        await self.room("#Lobby")
        await self.store.addMember("#Lobby", "Alice")
        self.assertIsNone(await self.store.addMember("#lobby", "ALICE"))
        self.assertEqual(await self.store.roomsOf("Alice"), ["#Lobby"])

    async def test_addMemberUnknown(self):
        """
        A membership of a missing room or account is refused with L{NotFound}.
        """
        await self.account("Alice")
        await self.room("#Lobby")
        await self.assertFailure(self.store.addMember("#nowhere", "Alice"), NotFound)
        await self.assertFailure(self.store.addMember("#Lobby", "nobody"), NotFound)
        self.assertEqual(await self.store.roomsOf("Alice"), [])

    async def test_removeMember(self):
        """
        Removing a member forgets the membership; removing it again does nothing.
        """
        await self.account("Alice")
        await self.room("#Lobby")
        await self.room("#other")
        await self.store.addMember("#Lobby", "Alice")
        await self.store.addMember("#other", "Alice")
        await self.store.removeMember("#LOBBY", "alice")
        self.assertIsNone(await self.store.removeMember("#Lobby", "Alice"))
        self.assertEqual(await self.store.roomsOf("Alice"), ["#other"])

    async def test_historyOldestFirst(self):
        """
        History gives each message's sender, timestamp and envelope, oldest first.
        """
        await self.room()
        await self.append(100, "e1", sender="Alice")
        await self.append(200, "e2", sender="Bob")
        self.assertEqual(
            await self.store.history("#lobby", "bob", 10, 0),
            [
                HistoryRow("Alice", 100, b"envelope e1"),
                HistoryRow("Bob", 200, b"envelope e2"),
            ],
        )

    async def test_timestampsUnique(self):
        """
        A message asking for a timestamp the room has already is stored under
        another, which the append fires with; other rooms do not count. A
        store shared by nodes takes the next free one; a store that numbers
        its own messages, one above the room's latest (its timestamps
        increase with each message).
        """
        await self.room()
        await self.room("#Other")
        stored = [await self.append(timestamp, envelopeId) for timestamp, envelopeId in
                  [(200, "a"), (200, "b"), (201, "c"), (199, "d"), (199, "e")]]
        stored.append(await self.append(200, "f", room="#Other"))
        if self.store.numbering is None:
            self.assertEqual(stored, [200, 201, 202, 199, 203, 200])
        else:
            self.assertEqual(stored, [200, 201, 202, 203, 204, 200])
        rows = await self.store.history("#Lobby", "Bob", 50, 0)
        self.assertEqual([row.timestamp for row in rows], sorted(stored[:5]))

    async def test_historyByTimestamp(self):
        """
        History is ordered by timestamp, not by the order messages came in; on
        a store shared by nodes, a message appended with a timestamp already
        taken comes after the one that has it (a store that numbers its own
        messages gives it one above the room's latest: test_timestampsUnique).
        """
        await self.room()
        for timestamp, envelopeId in [(300, "late"), (100, "early"), (200, "tie1")]:
            await self.appendAt(timestamp, envelopeId)
        expected = [b"envelope early", b"envelope tie1", b"envelope late"]
        if self.store.numbering is None:
            await self.append(200, "tie2")
            expected.insert(2, b"envelope tie2")
        self.assertEqual(await self.history(), expected)

    async def test_historyLimit(self):
        """
        History gives the newest C{limit} messages.
        """
        await self.room()
        for n in range(1, 6):
            await self.append(n * 100, f"e{n}")
        self.assertEqual(await self.history(limit=2), [b"envelope e4", b"envelope e5"])

    async def test_historyNoLimit(self):
        """
        A limit of zero or less gives no messages.
        """
        await self.room()
        await self.append(100, "e1")
        self.assertEqual(await self.history(limit=0), [])
        self.assertEqual(await self.history(limit=-1), [])

    async def test_historyBefore(self):
        """
        History with C{before} gives only messages stamped strictly earlier.
        """
        await self.room()
        for n in range(1, 6):
            await self.append(n * 100, f"e{n}")
        self.assertEqual(
            await self.history(before=300), [b"envelope e1", b"envelope e2"]
        )

    async def test_historyPaging(self):
        """
        Paging back with C{before} set to the oldest timestamp seen gives every
        message once, with no gaps.
        """
        await self.room()
        for n in range(1, 8):
            await self.append(n * 100, f"e{n}")
        pages = []
        before = 0
        while True:
            rows = await self.store.history("#Lobby", "Bob", 3, before)
            if not rows:
                break
            pages.append([row.envelope for row in rows])
            before = rows[0].timestamp
        self.assertEqual(
            pages,
            [
                [b"envelope e5", b"envelope e6", b"envelope e7"],
                [b"envelope e2", b"envelope e3", b"envelope e4"],
                [b"envelope e1"],
            ],
        )

    async def test_historyReaders(self):
        """
        A reader sees only the messages it has a key entry in, named in any case.
        """
        await self.room()
        await self.append(100, "e1", readers=["Alice", "Bob"])
        await self.append(200, "e2", readers=["Alice", "Carol"])
        self.assertEqual(await self.history(reader="BOB"), [b"envelope e1"])
        self.assertEqual(await self.history(reader="carol"), [b"envelope e2"])
        self.assertEqual(await self.history(reader="Mallory"), [])

    async def test_historyOfRoom(self):
        """
        History gives only the messages of the room asked for.
        """
        await self.room("#Lobby")
        await self.room("#other")
        await self.append(100, "e1", room="#other")
        await self.append(200, "e2", room="#Lobby")
        self.assertEqual(await self.history(room="#Lobby"), [b"envelope e2"])
        self.assertEqual(await self.history(room="#nowhere"), [])

    async def test_replay(self):
        """
        A sender's envelope id used again, by any case of the sender's name, is
        refused with L{Conflict} and not stored.
        """
        await self.room()
        await self.append(100, "e1", sender="Alice")
        error = await self.assertFailure(
            self.append(200, "e1", sender="ALICE", envelope=b"again"), Conflict
        )
        self.assertEqual(error.message, "replayed envelope id")
        self.assertEqual(await self.history(), [b"envelope e1"])

    async def test_sameIdOtherSender(self):
        """
        Different senders may use the same envelope id.
        """
        await self.room()
        await self.append(100, "e1", sender="Alice")
        await self.append(200, "e1", sender="Bob", envelope=b"Bob's")
        self.assertEqual(await self.history(), [b"envelope e1", b"Bob's"])

    async def test_replayAmongOthers(self):
        """
        A replay refused between other appends leaves them stored.
        """
        await self.room()
        first = self.append(100, "e1")
        replay = self.append(200, "e1")
        second = self.append(300, "e2")
        await first
        await self.assertFailure(replay, Conflict)
        await second
        self.assertEqual(await self.history(), [b"envelope e1", b"envelope e2"])

    async def test_appendNoRoom(self):
        """
        A message to a room that was never created is refused with L{NotFound}.
        """
        await self.assertFailure(self.append(100, "e1", room="#nowhere"), NotFound)
        self.assertEqual(await self.history(room="#nowhere"), [])

    async def test_encryptedAtRest(self):
        """
        The store keeps no envelope in plaintext, while history still returns it.
        """
        await self.room()
        envelope = b'{"id": "e1", "body": "' + MARKER + b'"}'
        await self.append(100, "e1", envelope=envelope)
        self.assertEqual(await self.history(), [envelope])
        self.assertNotIn(MARKER, await self.persistedBytes())

    async def test_persistedBytes(self):
        """
        What the at-rest test reads holds what was stored: here an envelope id,
        which is not secret.
        """
        await self.room()
        await self.append(100, "ENVELOPE-ID-9c41")
        self.assertIn(b"ENVELOPE-ID-9c41", await self.persistedBytes())

    async def test_writesInCallOrder(self):
        """
        Writes nobody waited for take effect in the order they were called: a
        room dropped and made again at once exists afterwards, holding only what
        was posted to the new one.
        """
        await self.room()
        await gatherResults(
            [self.store.deleteRoom("#Lobby"), self.room(), self.append(200, "e2")]
        )
        self.assertEqual(await self.history(), [b"envelope e2"])

    async def test_appendsAtOnce(self):
        """
        Appends made all at once are acknowledged in the order they were made
        and kept in that order, equal timestamps included; each history read
        made meanwhile sees a prefix of them, and paging back finds each once.
        """
        await self.room()
        heard = []
        appends = []
        reads = []
        for n in range(40):
            # Two messages per timestamp: only the order of the calls orders
            # each pair.
            appends.append(
                self.append(1000 + n // 2, f"e{n}").addCallback(
                    lambda _, n=n: heard.append(n)
                )
            )
            reads.append(Deferred.fromCoroutine(self.history(limit=100)))
        await gatherResults(appends)
        everything = [b"envelope e%d" % (n,) for n in range(40)]
        self.assertEqual(heard, list(range(40)))
        self.assertEqual(await self.history(limit=100), everything)
        for seen in await gatherResults(reads):
            self.assertEqual(seen, everything[: len(seen)])
        paged: List[bytes] = []
        before = 0
        while rows := await self.store.history("#Lobby", "Bob", 6, before):
            # Pages of 6 end between two timestamps, where paging by
            # timestamp can go on from.
            paged[:0] = [row.envelope for row in rows]
            before = rows[0].timestamp
        self.assertEqual(paged, everything)


class MemoryStoreTests(StoreTestsMixin, TestCase):
    """
    The shared behaviours, in memory.
    """

    def createStore(self):
        return MemoryStore(self.keys)

    async def persistedBytes(self):
        return repr(vars(self.store)).encode("ascii", "backslashreplace")


class SQLFixture(StoreFixture):
    """
    A store on an SQL database, which a test can reopen and query directly.

    A test case mixing this in provides, besides what L{StoreFixture} asks
    for, C{engine}, C{createStore(migrations)} and C{self.pool} (the pool of
    the store made last).
    """

    engine: Engine
    pool: ConnectionPool

    def reopen(self, migrations=None):
        """
        Close the store and open a new one on the same database.

        @return: the L{Deferred} of the new store's C{open}.
        """

        def closed(ignored):
            self.store = self.createStore(migrations)
            return self.store.open()

        return self.store.close().addCallback(closed)

    def query(self, sql):
        """
        The rows of C{sql}, run directly on the store's pool.

        @return: a L{Deferred} firing with a list of rows.
        """
        return self.pool.runQuery(sql)

    @property
    def newest(self):
        """
        The version of the newest schema file shipped for the engine.
        """
        return len(loadMigrations(self.engine.dialect))


class SQLStoreTestsMixin(SQLFixture, StoreTestsMixin):
    """
    What only the SQL store has, on every engine: schema versions and their
    upgrades.

    A test case mixing this in provides, besides what L{SQLFixture} asks for,
    C{syntaxError}, what the engine's module raises for SQL it cannot parse.
    """

    syntaxError: Type[Exception]
    beyondInterface = frozenset({"run"})

    def withExtraTable(self):
        """
        The shipped schema files and one more, which makes a table C{extra}.
        """
        return loadMigrations(self.engine.dialect) + [
            (self.newest + 1, "CREATE TABLE extra (x INTEGER);")
        ]

    async def test_schemaVersion(self):
        """
        A new database is at the newest schema version after open, in one row.
        """
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest,)])

    async def test_reopen(self):
        """
        Reopening keeps accounts, rooms and history, and applies nothing again.
        """
        await self.store.createAccount("Alice", b"hash", b"key")
        await self.room()
        await self.append(100, "e1")
        await self.reopen()
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest,)])
        self.assertEqual(
            await self.store.getAccount("alice"), Account("Alice", b"hash", b"key")
        )
        self.assertEqual(
            await self.store.loadRooms(), [RoomRecord("#Lobby", None, 100)]
        )
        self.assertEqual(await self.history(), [b"envelope e1"])
        await self.assertFailure(self.append(200, "e1"), Conflict)

    async def test_migrate(self):
        """
        Opening applies the schema files above the stored version, and records
        the newest.
        """
        await self.room()
        await self.append(100, "e1")
        await self.reopen(self.withExtraTable())
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest + 1,)])
        self.assertEqual(await self.query("SELECT x FROM extra"), [])
        self.assertEqual(await self.history(), [b"envelope e1"])

    async def test_failedMigration(self):
        """
        A schema file that fails is undone whole and its version not recorded;
        the store cannot open, saying why.
        """
        broken = "CREATE TABLE extra (x INTEGER);\nCREATE TABLE broken (;"
        error = await self.assertFailure(
            self.reopen(loadMigrations(self.engine.dialect) + [(self.newest + 1, broken)]),
            StartupError,
        )
        self.assertIsInstance(error.__cause__, self.syntaxError)
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest,)])
        # Making the table again succeeds only if the failed file left none.
        await self.reopen(self.withExtraTable())
        self.assertEqual(await self.query("SELECT x FROM extra"), [])

    async def test_newerDatabase(self):
        """
        A database at a schema version newer than the store knows is refused.
        """
        await self.reopen(self.withExtraTable())
        error = await self.assertFailure(self.reopen(), StartupError)
        self.assertIn("schema version %d" % (self.newest + 1,), str(error))


class SQLiteFixture(SQLFixture):
    """
    A store on an SQLite file, C{self.path}.

    Its pool runs without threads: results come back at once, so a test can
    hold work back and let it go.
    """

    engine = SQLITE

    def setUp(self):
        self.path = self.mktemp()
        return SQLFixture.setUp(self)

    def createStore(self, migrations=None, afterTurn=None):
        """
        A store on C{self.path} whose pool (C{self.pool}) runs without threads,
        in C{self.threadpool}; its writes start through C{afterTurn}.
        """
        reactor = _ThreadlessReactor()
        self.threadpool = _HeldThreadPool()
        self.pool = SQLITE.connectionPool(
            (self.path,), reactor,
            poolFactory=partial(_ThreadlessConnectionPool, threadpool=self.threadpool),
        )
        self.addCleanup(self.pool.close)
        return AdbapiStore(
            SQLITE, (self.path,), self.keys, pool=self.pool, reactor=reactor,
            migrations=migrations, afterTurn=afterTurn,
        )

    async def persistedBytes(self):
        await self.store.close()
        stored = FilePath(self.path).getContent()
        if os.path.exists(self.path + "-journal"):
            stored += FilePath(self.path + "-journal").getContent()
        return stored


class SQLiteStoreTests(SQLiteFixture, SQLStoreTestsMixin, TestCase):
    """
    The shared behaviours on an SQLite file, and those only SQLite has.
    """

    syntaxError = sqlite3.OperationalError

    async def test_damagedFile(self):
        """
        A file that is not an SQLite database cannot be opened: the failure is
        a L{StartupError} naming the file and what is wrong with it.
        """
        self.path = self.mktemp()
        FilePath(self.path).setContent(b"\x42" * 8192)
        error = await self.assertFailure(self.reopen(), StartupError)
        self.assertEqual(str(error), "cannot open the SQLite database %s: file is not a"
                         " database" % (self.path,))

    def test_pragmas(self):
        """
        Connections keep a rollback journal, sync fully, wait for locks and
        enforce foreign keys.
        """
        self.assertEqual(self.successResultOf(self.query("PRAGMA journal_mode")),
                         [("truncate",)])
        self.assertEqual(self.successResultOf(self.query("PRAGMA synchronous")),
                         [(2,)])
        self.assertEqual(self.successResultOf(self.query("PRAGMA busy_timeout")),
                         [(5000,)])
        self.assertEqual(self.successResultOf(self.query("PRAGMA foreign_keys")),
                         [(1,)])

    def test_filesPrivate(self):
        """
        The database file and its journal are readable and writable by their
        owner only, whatever the umask, and a database left readable by others
        is tightened when opened.
        """
        self.successResultOf(self.room())
        for name in (self.path, self.path + "-journal"):
            self.assertEqual(stat.S_IMODE(os.stat(name).st_mode), 0o600, name)
        self.successResultOf(self.store.close())
        os.chmod(self.path, 0o644)
        self.store = self.createStore()
        self.successResultOf(self.store.open())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_writeAheadDatabaseTurnedBack(self):
        """
        A database an older chatd left in write-ahead mode, with rows in its
        log only, is opened with a rollback journal: what the log held is in
        the database, and the log is gone.
        """
        self.successResultOf(self.room())
        self.successResultOf(self.store.close())
        older = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(older.close)
        self.assertEqual(older.execute("PRAGMA journal_mode=WAL").fetchall(), [("wal",)])
        older.execute("PRAGMA wal_autocheckpoint=0")
        older.execute("INSERT INTO rooms (name_key, name, created_ms) "
                      "VALUES ('#older', '#older', 0)")
        # The older chatd dies with the row in its log only: the files as
        # they are now are what it leaves (a clean close would merge the log).
        left = {name: FilePath(name).getContent()
                for name in (self.path, self.path + "-wal")}
        self.assertTrue(left[self.path + "-wal"])
        older.close()
        for name, content in left.items():
            FilePath(name).setContent(content)
        self.store = self.createStore()
        self.successResultOf(self.store.open())
        self.assertEqual(self.successResultOf(self.query("PRAGMA journal_mode")),
                         [("truncate",)])
        self.assertEqual(self.successResultOf(self.query(
            "SELECT name FROM rooms WHERE name_key = '#older'")), [("#older",)])
        self.assertFalse(os.path.exists(self.path + "-wal"))

    def test_groupCommit(self):
        """
        Messages appended while a write runs are written together in the next
        transaction, and their callers hear in the order they called.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        heard = []
        for n in range(1, 5):
            self.append(n * 100, f"e{n}").addCallback(lambda _, n=n: heard.append(n))
        self.assertEqual((len(threadpool.held), heard), (1, []))
        threadpool.runHeld()
        self.assertEqual((len(threadpool.held), heard), (1, [1]))
        threadpool.runHeld()
        self.assertEqual((threadpool.held, heard), ([], [1, 2, 3, 4]))
        threadpool.release()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e1", b"envelope e2", b"envelope e3", b"envelope e4"],
        )

    def test_writeStartsAtTheTurnsEnd(self):
        """
        A write queued while none runs starts at the reactor turn's end,
        after the turn's frames are sent, and every message of the turn is
        in its one transaction.
        """
        self.successResultOf(self.room())
        self.successResultOf(self.store.close())
        clock = Clock()
        turnEnd = TurnEnd(clock)
        self.store = self.createStore(afterTurn=turnEnd.later)
        self.successResultOf(self.store.open())
        threadpool = self.threadpool
        threadpool.hold()
        startedBeforeTheSends = []

        class Outbox:
            def flush(self):
                startedBeforeTheSends.append(len(threadpool.held))

        first = self.append(100, "e1")
        turnEnd.add(Outbox())  # type: ignore[arg-type]
        second = self.append(200, "e2")
        self.assertEqual(threadpool.held, [])
        clock.advance(0)
        self.assertEqual((startedBeforeTheSends, len(threadpool.held)), ([0], 1))
        threadpool.runHeld()
        self.assertEqual((threadpool.held, first.called, second.called), ([], True, True))
        threadpool.release()
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.history())),
                         [b"envelope e1", b"envelope e2"])

    def test_cancelledWriteDropped(self):
        """
        A queued write whose caller stopped waiting (its deadline passed while
        the database was frozen) is dropped, not written for nobody later; the
        others queued with it are written.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        self.append(100, "e1")
        dropped = self.append(200, "e2")
        kept = self.append(300, "e3")
        dropped.cancel()
        self.failureResultOf(dropped)
        threadpool.release()
        self.successResultOf(kept)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.history())),
                         [b"envelope e1", b"envelope e3"])

    def test_cancelledReadDropped(self):
        """
        A read cancelled before a thread took it up does not run.
        """
        threadpool = self.threadpool
        threadpool.hold()
        read = self.store.getAccount("Alice")
        read.cancel()
        self.failureResultOf(read)
        ran = []
        self.patch(self.store, "_getAccount", lambda txn, key: ran.append(key))
        threadpool.release()
        self.assertEqual(ran, [])

    def test_unavailable(self):
        """
        An error that says the database cannot work right now (here: locked
        by another connection past its busy timeout) is L{Unavailable}, with
        the database's own error as its cause.
        """
        self.successResultOf(self.room())
        locker = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(locker.close)
        locker.execute("PRAGMA busy_timeout = 0")
        locker.execute("BEGIN IMMEDIATE")
        # Give up on the lock at once rather than after the usual 5 s.
        for connection in self.pool.connections.values():
            connection.execute("PRAGMA busy_timeout = 0")
        error = self.failureResultOf(self.append(100, "e1"), Unavailable).value
        self.assertEqual(str(error), "the database is unavailable; try again")
        self.assertIsInstance(error.__cause__, sqlite3.OperationalError)
        locker.execute("ROLLBACK")
        self.successResultOf(self.append(100, "e1"))

    def test_writesQueueTogether(self):
        """
        Writes of every kind queue behind the running write and go in one
        transaction, in the order they were called.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        heard: List[object] = []
        for write in [
            self.store.deleteRoom("#Lobby"),
            self.room(),
            self.append(100, "e1"),
            self.account("Alice"),
            self.store.addMember("#Lobby", "Alice"),
            self.append(200, "e2"),
        ]:
            write.addCallback(heard.append)
        threadpool.runHeld()
        self.assertEqual((len(threadpool.held), heard), (1, [True]))
        threadpool.runHeld()
        self.assertEqual((threadpool.held, heard), ([], [True, None, 100, None, None, 200]))
        threadpool.release()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e1", b"envelope e2"],
        )
        self.assertEqual(
            self.successResultOf(self.store.roomsOf("Alice")), ["#Lobby"]
        )

    def test_refusalsInBatch(self):
        """
        Replays (of a stored id or one earlier in the same batch), messages to
        missing rooms and other refused writes are refused alone; the rest of
        their batch is stored.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        results = [
            self.append(100, "e1"),
            self.append(200, "e2"),
            self.append(300, "e1"),
            self.append(400, "e3", room="#nowhere"),
            self.room(),
            self.append(500, "e2"),
            self.append(600, "e4"),
        ]
        threadpool.runHeld()
        threadpool.runHeld()
        self.successResultOf(results[0])
        self.successResultOf(results[1])
        self.failureResultOf(results[2], Conflict)
        self.failureResultOf(results[3], NotFound)
        self.failureResultOf(results[4], Conflict)
        self.failureResultOf(results[5], Conflict)
        self.successResultOf(results[6])
        threadpool.release()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e1", b"envelope e2", b"envelope e4"],
        )

    def test_failedBatch(self):
        """
        An unexpected error in a batch undoes all of its writes and fails each
        of their callers, and the next batch still runs.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        first = self.append(100, "e1")
        stored = self.append(200, "e2")
        account = self.account("Alice")
        bad = self.append(300, "e3", envelope="not bytes")
        threadpool.runHeld()
        self.successResultOf(first)
        threadpool.runHeld()
        self.failureResultOf(stored, TypeError)
        self.failureResultOf(account, TypeError)
        self.failureResultOf(bad, TypeError)
        threadpool.release()
        self.successResultOf(self.append(400, "e4"))
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e1", b"envelope e4"],
        )
        self.assertIsNone(self.successResultOf(self.store.getAccount("Alice")))

    def test_appendFromCallback(self):
        """
        A message appended by a caller's callback queues behind the callers not
        yet told, even when writes complete at once, so order holds.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        heard = []

        def appendAnother(ignored):
            heard.append(1)
            self.append(400, "e4").addCallback(lambda _: heard.append(4))

        self.append(50, "e0")
        self.append(100, "e1").addCallback(appendAnother)
        self.append(200, "e2").addCallback(lambda _: heard.append(2))
        threadpool.runHeld()
        threadpool.release()
        self.assertEqual(heard, [1, 2, 4])
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e0", b"envelope e1", b"envelope e2", b"envelope e4"],
        )

    def test_closeWaitsForWrites(self):
        """
        close fires only after queued writes are committed.
        """
        self.successResultOf(self.room())
        threadpool = self.threadpool
        threadpool.hold()
        heard = []
        self.append(100, "e1").addCallback(lambda _: heard.append("e1"))
        self.append(200, "e2").addCallback(lambda _: heard.append("e2"))
        self.store.close().addCallback(lambda _: heard.append("closed"))
        threadpool.runHeld()
        self.assertEqual(heard, ["e1"])
        threadpool.runHeld()
        self.assertEqual(heard, ["e1", "e2", "closed"])
        self.successResultOf(self.reopen())
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.history())),
            [b"envelope e1", b"envelope e2"],
        )


def _postgresSkip():
    """
    Why the PostgreSQL tests cannot run here, or L{None} when they can.
    """
    if not POSTGRES_URL:
        return (
            "CHATD_TEST_POSTGRES is not set: give it the postgresql:// URL of a"
            " database the tests may make schemas in (.ci/run starts one)"
        )
    if psycopg is None:
        return "psycopg is not installed: install chatd with its postgres extra"
    return None


class PostgreSQLFixture(SQLFixture):
    """
    A store on the PostgreSQL server that C{CHATD_TEST_POSTGRES} names,
    through the store's real pool of threads and connections.

    Each test runs in a schema of its own, made for it and dropped after it:
    the store's connections find it first on their C{search_path}.
    """

    skip = _postgresSkip()
    engine = POSTGRESQL

    def setUp(self):
        self.connectionString = self.newSchema()
        return SQLFixture.setUp(self)

    def newSchema(self):
        """
        Make an empty schema, to be dropped when the test ends.

        @return: a libpq connection string for the test database that puts the
            schema first on the C{search_path}.
        """
        self.schema = f"chatd_test_{uuid.uuid4().hex}"
        admin = psycopg.connect(POSTGRES_URL, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute(f"CREATE SCHEMA {self.schema}")
        self.addCleanup(admin.execute, f"DROP SCHEMA {self.schema} CASCADE")
        # Named after the schema too, so that a test can find its connections.
        return psycopg.conninfo.make_conninfo(
            POSTGRES_URL,
            options=f"-c search_path={self.schema}",
            application_name=self.schema,
        )

    def createStore(self, migrations=None, connectionString=None):
        """
        A store on the test's schema, or on another one, with a pool of real
        threads (C{self.pool}) that is closed when the test ends.
        """
        if connectionString is None:
            connectionString = self.connectionString
        self.pool = pool = POSTGRESQL.connectionPool((connectionString,))
        self.addCleanup(lambda: pool.running and pool.close())
        return AdbapiStore(
            POSTGRESQL, (connectionString,), self.keys, pool=pool,
            migrations=migrations,
        )

    async def persistedBytes(self):
        stored = []
        for (table,) in await self.query(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() ORDER BY table_name"
        ):
            stored.append(await self.query(f"SELECT * FROM {table}"))
        return repr(stored).encode("ascii", "backslashreplace")



class PostgreSQLStoreTests(PostgreSQLFixture, SQLStoreTestsMixin, TestCase):
    """
    The shared behaviours on PostgreSQL, and those only PostgreSQL has.
    """

    syntaxError = psycopg.errors.SyntaxError if psycopg else Exception

    async def test_readsBesideWrites(self):
        """
        Reads run on other connections than the writes: one goes on while a
        write waits for a lock.
        """
        await self.room()
        await self.append(100, "e1")
        locker = psycopg.connect(self.connectionString)
        self.addCleanup(locker.close)
        locker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        waiting = self.append(200, "e2")
        self.assertEqual(await self.history(), [b"envelope e1"])
        self.assertNoResult(waiting)
        locker.commit()
        await waiting
        self.assertEqual(await self.history(), [b"envelope e1", b"envelope e2"])

    async def test_reconnect(self):
        """
        Connections the server dropped are replaced: each fails the one read
        that finds it broken, as L{Unavailable}, and the reads after it work.
        """
        await self.room()
        await self.append(100, "e1")
        # Reads at once, so that several threads open their connections.
        await gatherResults(
            [Deferred.fromCoroutine(self.history()) for _ in range(POSTGRESQL.poolSize)]
        )
        admin = psycopg.connect(POSTGRES_URL, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (self.schema,),
        )
        failed = 0
        for _ in range(3 * POSTGRESQL.poolSize):
            try:
                self.assertEqual(await self.history(), [b"envelope e1"])
            except Unavailable:
                failed += 1
        self.assertLessEqual(failed, POSTGRESQL.poolSize)
        # adbapi logs each rollback that failed on a broken connection.
        self.flushLoggedErrors()

    async def test_timestampsUniqueAcrossStores(self):
        """
        Two stores on one database (two nodes of a cluster) storing many
        messages at once with the same timestamps give each its own.
        """
        await self.room()
        other = self.createStore()
        await other.open()
        self.addCleanup(other.close)
        appends = []
        for number in range(40):
            for store in (self.store, other):
                appends.append(store.appendMessage(
                    "#Lobby", "Alice", 1000 + number // 4, "%s-%d" % (id(store), number),
                    b"envelope", ["Bob"]))
        stored = await gatherResults(appends)
        self.assertEqual(len(set(stored)), len(stored))
        rows = await self.store.history("#Lobby", "Bob", 500, 0)
        self.assertEqual(sorted(stored), [row.timestamp for row in rows])

    async def test_openTogether(self):
        """
        Servers starting together on one new database make its schema once,
        in turn, and all open.
        """
        connectionString = self.newSchema()
        stores = [
            self.createStore(connectionString=connectionString) for _ in range(3)
        ]
        await gatherResults([store.open() for store in stores])
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest,)])
        await gatherResults([store.close() for store in stores])


class MigrationFileTests(SynchronousTestCase):
    """
    Tests for L{loadMigrations}.
    """

    def write(self, *names):
        """
        A directory holding a file for each of C{names}, its name as its text.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        for name in names:
            (directory / name).write_text(name)
        return directory

    def test_shipped(self):
        """
        Each engine's shipped schema starts at version 1, which creates the
        tables in its own types.
        """
        (version, sqlite), *later = loadMigrations("sqlite")
        self.assertEqual(version, 1)
        self.assertIn("CREATE TABLE messages", sqlite)
        self.assertIn("BLOB", sqlite)
        (version, postgresql), *later = loadMigrations("postgresql")
        self.assertEqual(version, 1)
        self.assertIn("CREATE TABLE messages", postgresql)
        self.assertIn("BYTEA", postgresql)

    def test_order(self):
        """
        Schema files are read in numeric order; other files are ignored.
        """
        directory = self.write("010-ten.sql", "002-two.sql", "001-one.sql",
                               "README", "003-x.sql.orig")
        for n in range(3, 10):
            (directory / f"{n:03}-n.sql").write_text("")
        migrations = loadMigrations("sqlite", directory)
        self.assertEqual([version for version, _ in migrations], list(range(1, 11)))
        self.assertEqual(migrations[0], (1, "001-one.sql"))
        self.assertEqual(migrations[9], (10, "010-ten.sql"))

    def test_dialects(self):
        """
        A file with a dialect before C{.sql} is read for that dialect only; one
        without is read for every dialect.
        """
        directory = self.write("001-a.sqlite.sql", "001-a.postgresql.sql",
                               "002-b.sql", "003-c.postgresql.sql")
        self.assertEqual(
            loadMigrations("sqlite", directory),
            [(1, "001-a.sqlite.sql"), (2, "002-b.sql")],
        )
        self.assertEqual(
            loadMigrations("postgresql", directory),
            [(1, "001-a.postgresql.sql"), (2, "002-b.sql"),
             (3, "003-c.postgresql.sql")],
        )

    def test_twoFiles(self):
        """
        Two files with one number for the same dialect are refused.
        """
        directory = self.write("001-a.sql", "001-a.sqlite.sql")
        error = self.assertRaises(RuntimeError, loadMigrations, "sqlite", directory)
        self.assertEqual(str(error), "two sqlite schema files are numbered 1")

    def test_gap(self):
        """
        Schema files with a gap in their numbers are refused.
        """
        self.assertRaises(
            RuntimeError,
            loadMigrations,
            "sqlite",
            self.write("001-one.sql", "003-three.sql"),
        )


class EngineTests(SynchronousTestCase):
    """
    Tests for L{chatd.store.engines}.
    """

    def test_poolThreadRunsLower(self):
        """
        A SQLite connection set up in a thread of its own (the pool's)
        lowers that thread's CPU priority by the engine's C{threadNiceness};
        one set up in the main thread leaves it as it is.
        """
        if not sys.platform.startswith("linux"):
            raise SkipTest("threads have priorities of their own on Linux")
        path = self.mktemp()
        main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen = []

        def connect():
            SQLITE.onConnect(sqlite3.connect(path, isolation_level=None))
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        thread = threading.Thread(target=connect)
        thread.start()
        thread.join()
        self.assertEqual(seen, [min(19, main + SQLITE.threadNiceness)])
        SQLITE.onConnect(sqlite3.connect(path, isolation_level=None))
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), main)
        self.assertEqual((SQLITE.threadNiceness, POSTGRESQL.threadNiceness), (10, 0))

    def test_splitStatements(self):
        """
        An SQLite script is cut at the semicolons that end statements, not those
        in literals or comments.
        """
        script = (
            "-- a comment; with a semicolon\n"
            "CREATE TABLE a (x TEXT DEFAULT ';');\n"
            "INSERT INTO a VALUES ('b;c'); INSERT INTO a VALUES ('d');\n"
            "-- the end\n"
        )
        self.assertEqual(
            _sqliteStatements(script),
            [
                "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');",
                "INSERT INTO a VALUES ('b;c');",
                "INSERT INTO a VALUES ('d');",
                "-- the end",
            ],
        )

    def test_violations(self):
        """
        SQLite's constraint errors are told apart by their error codes.
        """
        connection = sqlite3.connect(":memory:")
        self.addCleanup(connection.close)
        SQLITE.onConnect(connection)
        connection.execute("CREATE TABLE a (k TEXT PRIMARY KEY)")
        connection.execute("CREATE TABLE b (k TEXT REFERENCES a, u TEXT UNIQUE)")
        connection.execute("INSERT INTO a VALUES ('k')")
        connection.execute("INSERT INTO b VALUES ('k', 'u')")
        errors = [
            self.assertRaises(sqlite3.IntegrityError, connection.execute, statement)
            for statement in [
                "INSERT INTO a VALUES ('k')",
                "INSERT INTO b VALUES ('k', 'u')",
                "INSERT INTO b VALUES ('missing', 'v')",
            ]
        ]
        self.assertEqual(
            [
                (SQLITE.isUniqueViolation(error), SQLITE.isForeignKeyViolation(error))
                for error in errors + [ValueError("not from SQLite")]
            ],
            [(True, False), (True, False), (False, True), (False, False)],
        )

    def test_placeholders(self):
        """
        Queries written with C{?} get each engine's parameter marker.
        """
        query = "SELECT a FROM t WHERE b = ? AND c = ?"
        self.assertEqual(SQLITE.sql(query), query)
        self.assertEqual(
            POSTGRESQL.sql(query), "SELECT a FROM t WHERE b = %s AND c = %s"
        )

    def test_postgresqlViolations(self):
        """
        PostgreSQL's constraint errors are told apart by their SQLSTATE.
        """
        if psycopg is None:
            raise SkipTest("psycopg is not installed")
        errors = [
            psycopg.errors.UniqueViolation(),
            psycopg.errors.ForeignKeyViolation(),
            psycopg.errors.CheckViolation(),
        ]
        self.assertEqual(
            [
                (
                    POSTGRESQL.isUniqueViolation(error),
                    POSTGRESQL.isForeignKeyViolation(error),
                )
                for error in errors
            ],
            [(True, False), (False, True), (False, False)],
        )

    def test_postgresqlURL(self):
        """
        A C{postgresql://} or C{postgres://} URL is handed to psycopg as it is.
        """
        if psycopg is None:
            raise SkipTest("psycopg is not installed")
        for url in [
            "postgresql://chatd:secret@db.example:5433/chatd",
            "postgres://chatd@db/chatd?sslmode=require",
            "postgresql:///chatd",
        ]:
            self.assertEqual(engineForURL(url), (POSTGRESQL, (url,)))

    def test_badPostgreSQLURL(self):
        """
        A PostgreSQL URL libpq would not parse is refused, without repeating
        the URL and the password in it.
        """
        if psycopg is None:
            raise SkipTest("psycopg is not installed")
        for url in [
            "postgresql://chatd:sec ret@db/chatd",
            "postgresql://chatd:secret@db/chatd?secret=1",
        ]:
            error = self.assertRaises(ValueError, engineForURL, url)
            self.assertIn("malformed PostgreSQL URL", str(error))
            self.assertNotIn("secret", str(error))
            self.assertNotIn("sec ret", str(error))

    def test_noPsycopg(self):
        """
        Without psycopg a PostgreSQL URL is refused, naming the extra to install.
        """
        previous = sys.modules.pop("psycopg", None)
        if previous is not None:
            self.addCleanup(sys.modules.__setitem__, "psycopg", previous)
        self.addCleanup(sys.modules.pop, "psycopg")
        # None in sys.modules makes importing it fail with ImportError.
        sys.modules["psycopg"] = None  # type: ignore[assignment]
        error = self.assertRaises(ValueError, engineForURL, "postgresql://db/chatd")
        self.assertIn("chatd[postgres]", str(error))

    def test_absolutePath(self):
        """
        C{sqlite:///path} names an absolute path.
        """
        self.assertEqual(
            engineForURL("sqlite:///var/lib/chatd/chatd.sqlite"),
            (SQLITE, ("/var/lib/chatd/chatd.sqlite",)),
        )

    def test_relativePath(self):
        """
        C{sqlite:path} names a path relative to the working directory.
        """
        self.assertEqual(
            engineForURL("sqlite:chatd-data/chatd.sqlite"),
            (SQLITE, ("chatd-data/chatd.sqlite",)),
        )

    def test_badSQLiteURLs(self):
        """
        An SQLite URL with a host or without a path is refused.
        """
        for url in ["sqlite://host/chatd.sqlite", "sqlite:", "sqlite://"]:
            self.assertRaises(ValueError, engineForURL, url)

    def test_oldSQLite(self):
        """
        An SQLite library older than 3.35 (no RETURNING) is refused.
        """
        self.patch(sqlite3, "sqlite_version_info", (3, 34, 1))
        error = self.assertRaises(ValueError, engineForURL, "sqlite:chatd.sqlite")
        self.assertIn("3.35", str(error))


class MakeStoreTests(SynchronousTestCase):
    """
    Tests for L{makeStore}.
    """

    def test_memory(self):
        """
        C{memory:} makes a L{MemoryStore}.
        """
        self.assertIsInstance(makeStore("memory:", KEYS), MemoryStore)

    def test_sqlite(self):
        """
        An SQLite URL makes an L{AdbapiStore} that can be closed unopened.
        """
        store = makeStore("sqlite:" + self.mktemp(), KEYS, _ThreadlessReactor())
        self.assertIsInstance(store, AdbapiStore)
        self.successResultOf(store.close())

    def test_postgresql(self):
        """
        A PostgreSQL URL makes an L{AdbapiStore} on PostgreSQL, which connects
        only when used, so it can be closed unopened with no server there.
        """
        if psycopg is None:
            raise SkipTest("psycopg is not installed")
        store = makeStore(
            "postgresql://chatd@db.invalid/chatd", KEYS, _ThreadlessReactor()
        )
        assert isinstance(store, AdbapiStore)
        self.assertEqual(store._engine, POSTGRESQL)
        self.successResultOf(store.close())

    def test_unknown(self):
        """
        Any other URL is refused with a message naming the accepted forms.
        """
        error = self.assertRaises(ValueError, makeStore, "mysql://db/chatd", KEYS)
        self.assertIn("memory:", str(error))
        self.assertIn("sqlite:///absolute/path", str(error))
        self.assertIn("sqlite:relative/path", str(error))
        self.assertIn("postgresql://", str(error))


class NextFreeTests(SynchronousTestCase):
    """
    L{nextFree} finds the first timestamp not taken.
    """

    def test_nextFree(self):
        """
        A free timestamp is kept; a taken one moves past the run of taken ones
        after it, duplicates included.
        """
        self.assertEqual(nextFree(5, []), 5)
        self.assertEqual(nextFree(5, [7, 8]), 5)
        self.assertEqual(nextFree(5, [5, 6, 8]), 7)
        self.assertEqual(nextFree(5, [5, 5, 6, 6, 7]), 8)
