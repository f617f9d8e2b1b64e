# -*- test-case-name: chatd.test.test_store -*-
"""
Tests for L{chatd.store}: one set of behaviours run against L{MemoryStore} and
against L{AdbapiStore} on an SQLite file, plus what only the SQL store has
(schema versions, group commit, files on disk) and the choice of store by URL.

The SQL store runs here on a L{ConnectionPool} without threads: its work runs
on the calling thread and its results come back at once, so every test is
synchronous and the group-commit tests can hold work back and let it go.
"""

import base64
import os
import sqlite3
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from chatd.errors import Conflict, NotFound
from chatd.interfaces import IMessageStore
from chatd.model import Account, HistoryRow, RoomRecord
from chatd.store import makeStore
from chatd.store.engines import SQLITE, _sqliteStatements, engineForURL
from chatd.store.memory import MemoryStore
from chatd.store.sql import AdbapiStore, loadMigrations

# A fixed at-rest key, so that runs do not differ by key.
FERNET = MultiFernet([Fernet(base64.urlsafe_b64encode(bytes(range(32))))])

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

    @ivar held: the work waiting to run, or L{None} when not holding.
    """

    def __init__(self):
        self.held = None

    def hold(self):
        """
        Keep work from now on until L{runHeld}.
        """
        self.held = []

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
        work, self.held = self.held, None
        for item in work:
            self._run(*item)

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        if self.held is None:
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
    A L{ConnectionPool} whose work runs on the calling thread.
    """

    def __init__(self, *args, **kwargs):
        ConnectionPool.__init__(self, *args, **kwargs)
        self.threadpool = _HeldThreadPool()


class StoreTestsMixin:
    """
    Behaviours every L{IMessageStore} shares.

    A test case mixing this in provides C{createStore()}, returning an unopened
    store, and C{persistedBytes()}, returning every byte the store keeps (it
    may close the store to get them).
    """

    def setUp(self):
        self.store = self.createStore()
        self.successResultOf(self.store.open())

    def room(self, name="#Lobby", passwordHash=None):
        """
        Create room C{name}.
        """
        self.successResultOf(self.store.createRoom(name, passwordHash))

    def account(self, name, publicKey=b"key"):
        """
        Create a key-only account C{name}.
        """
        self.successResultOf(self.store.createAccount(name, None, publicKey))

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

    def history(self, reader="Bob", limit=50, before=0, room="#Lobby"):
        """
        The envelopes of C{reader}'s history, as L{bytes}.
        """
        rows = self.successResultOf(self.store.history(room, reader, limit, before))
        return [row.envelope for row in rows]

    def test_interface(self):
        """
        The store provides L{IMessageStore}.
        """
        self.assertTrue(verifyObject(IMessageStore, self.store))

    def test_noAccount(self):
        """
        An unknown name has no account.
        """
        self.assertIsNone(self.successResultOf(self.store.getAccount("nobody")))

    def test_createAccount(self):
        """
        An account is found under any case and keeps the case it was made with.
        """
        self.successResultOf(self.store.createAccount("Alice", b"hash", b"key"))
        self.assertEqual(
            self.successResultOf(self.store.getAccount("aLICE")),
            Account("Alice", b"hash", b"key"),
        )

    def test_keyOnlyAccount(self):
        """
        An account without a password keeps L{None} as its hash.
        """
        self.account("Alice")
        self.assertEqual(
            self.successResultOf(self.store.getAccount("alice")),
            Account("Alice", None, b"key"),
        )

    def test_duplicateAccount(self):
        """
        A name taken in any case is refused with L{Conflict}, leaving the first.
        """
        self.account("Alice")
        failure = self.failureResultOf(
            self.store.createAccount("ALICE", b"hash", b"other"), Conflict
        )
        self.assertEqual(failure.value.message, "that name is taken")
        self.assertEqual(
            self.successResultOf(self.store.getAccount("alice")),
            Account("Alice", None, b"key"),
        )

    def test_setPublicKey(self):
        """
        setPublicKey replaces the key of the account named in any case.
        """
        self.account("Alice")
        self.successResultOf(self.store.setPublicKey("alice", b"new key"))
        self.assertEqual(
            self.successResultOf(self.store.getAccount("Alice")),
            Account("Alice", None, b"new key"),
        )

    def test_setPublicKeyNoAccount(self):
        """
        setPublicKey fails with L{NotFound} for an unknown account.
        """
        self.failureResultOf(self.store.setPublicKey("nobody", b"key"), NotFound)

    def test_createRoom(self):
        """
        Created rooms are loaded with their case, password hash and no history.
        """
        self.room("#Lobby")
        self.room("#b", b"hash")
        self.assertEqual(
            self.successResultOf(self.store.loadRooms()),
            [RoomRecord("#b", b"hash", 0), RoomRecord("#Lobby", None, 0)],
        )

    def test_duplicateRoom(self):
        """
        A room name taken in any case is refused with L{Conflict}.
        """
        self.room("#Lobby")
        self.failureResultOf(self.store.createRoom("#LOBBY", b"hash"), Conflict)
        self.assertEqual(
            self.successResultOf(self.store.loadRooms()),
            [RoomRecord("#Lobby", None, 0)],
        )

    def test_lastTimestamp(self):
        """
        A loaded room's lastTimestamp is its newest message's, whatever order the
        messages came in.
        """
        self.room("#Lobby")
        self.room("#quiet")
        for timestamp, envelopeId in [(100, "a"), (300, "b"), (200, "c")]:
            self.successResultOf(self.append(timestamp, envelopeId))
        self.assertEqual(
            self.successResultOf(self.store.loadRooms()),
            [RoomRecord("#Lobby", None, 300), RoomRecord("#quiet", None, 0)],
        )

    def test_deleteRoom(self):
        """
        Deleting a room (named in any case) takes its memberships and history
        with it, and frees its envelope ids.
        """
        self.account("Alice")
        self.room("#Lobby")
        self.successResultOf(self.store.addMember("#Lobby", "Alice"))
        self.successResultOf(self.append(100, "e1"))
        self.successResultOf(self.store.deleteRoom("#lobby"))
        self.assertEqual(self.successResultOf(self.store.loadRooms()), [])
        self.assertEqual(self.successResultOf(self.store.roomsOf("Alice")), [])
        self.room("#Lobby")
        self.assertEqual(self.history(), [])
        self.successResultOf(self.append(200, "e1"))
        self.assertEqual(self.history(), [b"envelope e1"])

    def test_deleteNoRoom(self):
        """
        Deleting a room that does not exist does nothing.
        """
        self.assertIsNone(self.successResultOf(self.store.deleteRoom("#nowhere")))

    def test_roomsOf(self):
        """
        roomsOf gives the display names of a user's rooms, sorted, however the
        user's name is cased.
        """
        self.account("Alice")
        for name in ["#b", "#A", "#c", "#other"]:
            self.room(name)
        for name in ["#b", "#A", "#c"]:
            self.successResultOf(self.store.addMember(name, "alice"))
        self.assertEqual(
            self.successResultOf(self.store.roomsOf("ALICE")), ["#A", "#b", "#c"]
        )

    def test_addMemberTwice(self):
        """
        Adding a member twice, in another case, keeps one membership.
        """
        self.account("Alice")
        self.room("#Lobby")
        self.successResultOf(self.store.addMember("#Lobby", "Alice"))
        self.assertIsNone(self.successResultOf(self.store.addMember("#lobby", "ALICE")))
        self.assertEqual(self.successResultOf(self.store.roomsOf("Alice")), ["#Lobby"])

    def test_addMemberUnknown(self):
        """
        A membership of a missing room or account is refused with L{NotFound}.
        """
        self.account("Alice")
        self.room("#Lobby")
        self.failureResultOf(self.store.addMember("#nowhere", "Alice"), NotFound)
        self.failureResultOf(self.store.addMember("#Lobby", "nobody"), NotFound)
        self.assertEqual(self.successResultOf(self.store.roomsOf("Alice")), [])

    def test_removeMember(self):
        """
        Removing a member forgets the membership; removing it again does nothing.
        """
        self.account("Alice")
        self.room("#Lobby")
        self.room("#other")
        self.successResultOf(self.store.addMember("#Lobby", "Alice"))
        self.successResultOf(self.store.addMember("#other", "Alice"))
        self.successResultOf(self.store.removeMember("#LOBBY", "alice"))
        self.assertIsNone(
            self.successResultOf(self.store.removeMember("#Lobby", "Alice"))
        )
        self.assertEqual(self.successResultOf(self.store.roomsOf("Alice")), ["#other"])

    def test_historyOldestFirst(self):
        """
        History gives each message's sender, timestamp and envelope, oldest first.
        """
        self.room()
        self.successResultOf(self.append(100, "e1", sender="Alice"))
        self.successResultOf(self.append(200, "e2", sender="Bob"))
        self.assertEqual(
            self.successResultOf(self.store.history("#lobby", "bob", 10, 0)),
            [
                HistoryRow("Alice", 100, b"envelope e1"),
                HistoryRow("Bob", 200, b"envelope e2"),
            ],
        )

    def test_historyByTimestamp(self):
        """
        History is ordered by timestamp, messages of equal timestamp in the order
        they were appended.
        """
        self.room()
        for timestamp, envelopeId in [(300, "late"), (100, "early"), (200, "tie1"),
                                      (200, "tie2")]:
            self.successResultOf(self.append(timestamp, envelopeId))
        self.assertEqual(
            self.history(),
            [b"envelope early", b"envelope tie1", b"envelope tie2", b"envelope late"],
        )

    def test_historyLimit(self):
        """
        History gives the newest C{limit} messages.
        """
        self.room()
        for n in range(1, 6):
            self.successResultOf(self.append(n * 100, f"e{n}"))
        self.assertEqual(
            self.history(limit=2), [b"envelope e4", b"envelope e5"]
        )

    def test_historyNoLimit(self):
        """
        A limit of zero or less gives no messages.
        """
        self.room()
        self.successResultOf(self.append(100, "e1"))
        self.assertEqual(self.history(limit=0), [])
        self.assertEqual(self.history(limit=-1), [])

    def test_historyBefore(self):
        """
        History with C{before} gives only messages stamped strictly earlier.
        """
        self.room()
        for n in range(1, 6):
            self.successResultOf(self.append(n * 100, f"e{n}"))
        self.assertEqual(
            self.history(before=300), [b"envelope e1", b"envelope e2"]
        )

    def test_historyPaging(self):
        """
        Paging back with C{before} set to the oldest timestamp seen gives every
        message once, with no gaps.
        """
        self.room()
        for n in range(1, 8):
            self.successResultOf(self.append(n * 100, f"e{n}"))
        pages = []
        before = 0
        while True:
            rows = self.successResultOf(self.store.history("#Lobby", "Bob", 3, before))
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

    def test_historyReaders(self):
        """
        A reader sees only the messages it has a key entry in, named in any case.
        """
        self.room()
        self.successResultOf(self.append(100, "e1", readers=["Alice", "Bob"]))
        self.successResultOf(self.append(200, "e2", readers=["Alice", "Carol"]))
        self.assertEqual(self.history(reader="BOB"), [b"envelope e1"])
        self.assertEqual(self.history(reader="carol"), [b"envelope e2"])
        self.assertEqual(self.history(reader="Mallory"), [])

    def test_historyOfRoom(self):
        """
        History gives only the messages of the room asked for.
        """
        self.room("#Lobby")
        self.room("#other")
        self.successResultOf(self.append(100, "e1", room="#other"))
        self.successResultOf(self.append(200, "e2", room="#Lobby"))
        self.assertEqual(self.history(room="#Lobby"), [b"envelope e2"])
        self.assertEqual(self.history(room="#nowhere"), [])

    def test_replay(self):
        """
        A sender's envelope id used again, by any case of the sender's name, is
        refused with L{Conflict} and not stored.
        """
        self.room()
        self.successResultOf(self.append(100, "e1", sender="Alice"))
        failure = self.failureResultOf(
            self.append(200, "e1", sender="ALICE", envelope=b"again"), Conflict
        )
        self.assertEqual(failure.value.message, "replayed envelope id")
        self.assertEqual(self.history(), [b"envelope e1"])

    def test_sameIdOtherSender(self):
        """
        Different senders may use the same envelope id.
        """
        self.room()
        self.successResultOf(self.append(100, "e1", sender="Alice"))
        self.successResultOf(self.append(200, "e1", sender="Bob", envelope=b"Bob's"))
        self.assertEqual(self.history(), [b"envelope e1", b"Bob's"])

    def test_replayAmongOthers(self):
        """
        A replay refused between other appends leaves them stored.
        """
        self.room()
        first = self.append(100, "e1")
        replay = self.append(200, "e1")
        second = self.append(300, "e2")
        self.successResultOf(first)
        self.failureResultOf(replay, Conflict)
        self.successResultOf(second)
        self.assertEqual(self.history(), [b"envelope e1", b"envelope e2"])

    def test_appendNoRoom(self):
        """
        A message to a room that was never created is refused with L{NotFound}.
        """
        self.failureResultOf(self.append(100, "e1", room="#nowhere"), NotFound)
        self.assertEqual(self.history(room="#nowhere"), [])

    def test_encryptedAtRest(self):
        """
        The store keeps no envelope in plaintext, while history still returns it.
        """
        self.room()
        envelope = b'{"id": "e1", "body": "' + MARKER + b'"}'
        self.successResultOf(self.append(100, "e1", envelope=envelope))
        self.assertEqual(self.history(), [envelope])
        self.assertNotIn(MARKER, self.persistedBytes())


class MemoryStoreTests(StoreTestsMixin, SynchronousTestCase):
    """
    The shared behaviours, in memory.
    """

    def createStore(self):
        return MemoryStore(FERNET)

    def persistedBytes(self):
        return repr(vars(self.store)).encode("ascii", "backslashreplace")


class SQLiteStoreTests(StoreTestsMixin, SynchronousTestCase):
    """
    The shared behaviours on an SQLite file, and those only the SQL store has.
    """

    def setUp(self):
        self.path = self.mktemp()
        StoreTestsMixin.setUp(self)

    def createStore(self, migrations=None):
        """
        A store on C{self.path} whose pool (C{self.pool}) runs without threads.
        """
        reactor = _ThreadlessReactor()
        self.pool = SQLITE.connectionPool(
            (self.path,), reactor, poolFactory=_ThreadlessConnectionPool
        )
        self.addCleanup(self.pool.close)
        return AdbapiStore(
            SQLITE, (self.path,), FERNET, pool=self.pool, reactor=reactor,
            migrations=migrations,
        )

    def reopen(self, migrations=None):
        """
        Close the store and open a new one on the same file.

        @return: the L{Deferred} of the new store's C{open}.
        """
        self.successResultOf(self.store.close())
        self.store = self.createStore(migrations)
        return self.store.open()

    def query(self, sql):
        """
        The rows of C{sql}, run directly on the store's pool.
        """
        return self.successResultOf(self.pool.runQuery(sql))

    def persistedBytes(self):
        self.successResultOf(self.store.close())
        stored = FilePath(self.path).getContent()
        if os.path.exists(self.path + "-wal"):
            stored += FilePath(self.path + "-wal").getContent()
        return stored

    def test_storedOnDisk(self):
        """
        The database file holds what was stored, so the at-rest test reads the
        right bytes: here an envelope id, which is not secret.
        """
        self.room()
        self.successResultOf(self.append(100, "ENVELOPE-ID-9c41"))
        self.assertIn(b"ENVELOPE-ID-9c41", self.persistedBytes())

    def test_pragmas(self):
        """
        Connections write ahead, sync fully, wait for locks and enforce foreign
        keys.
        """
        self.assertEqual(self.query("PRAGMA journal_mode"), [("wal",)])
        self.assertEqual(self.query("PRAGMA synchronous"), [(2,)])
        self.assertEqual(self.query("PRAGMA busy_timeout"), [(5000,)])
        self.assertEqual(self.query("PRAGMA foreign_keys"), [(1,)])

    def test_schemaVersion(self):
        """
        A new database is at schema version 1 after open, in one row.
        """
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(1,)])

    def test_reopen(self):
        """
        Reopening keeps accounts, rooms and history, and applies nothing again.
        """
        self.successResultOf(self.store.createAccount("Alice", b"hash", b"key"))
        self.room()
        self.successResultOf(self.append(100, "e1"))
        self.successResultOf(self.reopen())
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(1,)])
        self.assertEqual(
            self.successResultOf(self.store.getAccount("alice")),
            Account("Alice", b"hash", b"key"),
        )
        self.assertEqual(
            self.successResultOf(self.store.loadRooms()),
            [RoomRecord("#Lobby", None, 100)],
        )
        self.assertEqual(self.history(), [b"envelope e1"])
        self.failureResultOf(self.append(200, "e1"), Conflict)

    def test_migrate(self):
        """
        Opening applies the schema files above the stored version, and records
        the newest.
        """
        self.room()
        self.successResultOf(self.append(100, "e1"))
        self.successResultOf(
            self.reopen(loadMigrations() + [(2, "CREATE TABLE extra (x INTEGER);")])
        )
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(2,)])
        self.assertEqual(self.query("SELECT x FROM extra"), [])
        self.assertEqual(self.history(), [b"envelope e1"])

    def test_failedMigration(self):
        """
        A schema file that fails is undone whole and its version not recorded.
        """
        broken = "CREATE TABLE extra (x INTEGER);\nCREATE TABLE broken (;"
        self.failureResultOf(
            self.reopen(loadMigrations() + [(2, broken)]), sqlite3.OperationalError
        )
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(1,)])
        self.assertEqual(
            self.query("SELECT name FROM sqlite_master WHERE name = 'extra'"), []
        )

    def test_newerDatabase(self):
        """
        A database at a schema version newer than the store knows is refused.
        """
        self.successResultOf(
            self.reopen(loadMigrations() + [(2, "CREATE TABLE extra (x INTEGER);")])
        )
        failure = self.failureResultOf(self.reopen(), RuntimeError)
        self.assertIn("schema version 2", str(failure.value))

    def test_groupCommit(self):
        """
        Messages appended while a write runs are written together in the next
        transaction, and their callers hear in the order they called.
        """
        self.room()
        threadpool = self.pool.threadpool
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
            self.history(),
            [b"envelope e1", b"envelope e2", b"envelope e3", b"envelope e4"],
        )

    def test_refusalsInBatch(self):
        """
        Replays (of a stored id or one earlier in the same batch) and messages
        to missing rooms are refused alone; the rest of their batch is stored.
        """
        self.room()
        threadpool = self.pool.threadpool
        threadpool.hold()
        results = [
            self.append(100, "e1"),
            self.append(200, "e2"),
            self.append(300, "e1"),
            self.append(400, "e3", room="#nowhere"),
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
        self.successResultOf(results[5])
        threadpool.release()
        self.assertEqual(
            self.history(), [b"envelope e1", b"envelope e2", b"envelope e4"]
        )

    def test_failedBatch(self):
        """
        An unexpected error in a batch undoes all of its messages and fails each
        of their callers, and the next batch still runs.
        """
        self.room()
        threadpool = self.pool.threadpool
        threadpool.hold()
        first = self.append(100, "e1")
        stored = self.append(200, "e2")
        bad = self.append(300, "e3", envelope="not bytes")
        threadpool.runHeld()
        self.successResultOf(first)
        threadpool.runHeld()
        self.failureResultOf(stored, TypeError)
        self.failureResultOf(bad, TypeError)
        threadpool.release()
        self.successResultOf(self.append(400, "e4"))
        self.assertEqual(self.history(), [b"envelope e1", b"envelope e4"])

    def test_appendFromCallback(self):
        """
        A message appended by a caller's callback queues behind the callers not
        yet told, even when writes complete at once, so order holds.
        """
        self.room()
        threadpool = self.pool.threadpool
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
            self.history(),
            [b"envelope e0", b"envelope e1", b"envelope e2", b"envelope e4"],
        )

    def test_closeWaitsForWrites(self):
        """
        close fires only after queued appends are committed.
        """
        self.room()
        threadpool = self.pool.threadpool
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
        self.assertEqual(self.history(), [b"envelope e1", b"envelope e2"])


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
        The shipped schema starts at version 1, which creates the tables.
        """
        version, script = loadMigrations()[0]
        self.assertEqual(version, 1)
        self.assertIn("CREATE TABLE messages", script)

    def test_order(self):
        """
        Schema files are read in numeric order; other files are ignored.
        """
        directory = self.write("010-ten.sql", "002-two.sql", "001-one.sql",
                               "README", "003-x.sql.orig")
        for n in range(3, 10):
            (directory / f"{n:03}-n.sql").write_text("")
        migrations = loadMigrations(directory)
        self.assertEqual([version for version, _ in migrations], list(range(1, 11)))
        self.assertEqual(migrations[0], (1, "001-one.sql"))
        self.assertEqual(migrations[9], (10, "010-ten.sql"))

    def test_gap(self):
        """
        Schema files with a gap in their numbers are refused.
        """
        self.assertRaises(
            RuntimeError, loadMigrations, self.write("001-one.sql", "003-three.sql")
        )


class EngineTests(SynchronousTestCase):
    """
    Tests for L{chatd.store.engines}.
    """

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
        self.assertIsInstance(makeStore("memory:", FERNET), MemoryStore)

    def test_sqlite(self):
        """
        An SQLite URL makes an L{AdbapiStore} that can be closed unopened.
        """
        store = makeStore("sqlite:" + self.mktemp(), FERNET, _ThreadlessReactor())
        self.assertIsInstance(store, AdbapiStore)
        self.successResultOf(store.close())

    def test_postgresql(self):
        """
        A PostgreSQL URL is refused until PostgreSQL support is built.
        """
        error = self.assertRaises(
            ValueError, makeStore, "postgresql://chatd@db/chatd", FERNET
        )
        self.assertEqual(str(error), "PostgreSQL support is not built yet")

    def test_unknown(self):
        """
        Any other URL is refused with a message naming the accepted forms.
        """
        error = self.assertRaises(ValueError, makeStore, "mysql://db/chatd", FERNET)
        self.assertIn("memory:", str(error))
        self.assertIn("sqlite:///absolute/path", str(error))
        self.assertIn("sqlite:relative/path", str(error))
