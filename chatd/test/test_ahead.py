"""
Tests for delivery ahead of the commit: L{chatd.store.numbering}, the stores
that number their own messages, and the core delivering a room message while
its commit runs (L{chatd.core.messages}).
"""

from functools import partial

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd import e2e
from chatd.core.devicebook import MARK_INTERVAL
from chatd.errors import Conflict, Status, Unavailable
from chatd.store.engines import POSTGRESQL, SQLITE
from chatd.store.numbering import Numbering, NumberingConflict
from chatd.store.sql import AdbapiStore
from chatd.test.devicecase import DeviceCase
from chatd.test.fakes import makeService, testKeys
from chatd.test.test_store import (
    PostgreSQLFixture,
    SQLiteFixture,
    _HeldThreadPool,
    _ThreadlessConnectionPool,
    _ThreadlessReactor,
)


def failHeld(threadpool, error):
    """
    Fail every transaction C{threadpool} (a L{_HeldThreadPool}) holds with
    C{error}, as a database that broke under them would, without running them.
    """
    work, threadpool.held = threadpool.held, []
    for onResult, _, _, _ in work:
        onResult(False, Failure(error))


class NumberingTests(SynchronousTestCase):
    """
    L{Numbering} hands out unique, increasing numbers.
    """

    def test_take(self):
        """
        Each message takes the next sequence number; a room's timestamps are
        kept when later than its latest and moved above it otherwise, in any
        case of the room's name; other rooms do not count.
        """
        numbering = Numbering(7, {"#lobby": 100})
        taken = [numbering.take(room, timestamp) for room, timestamp in
                 [("#Lobby", 100), ("#LOBBY", 150), ("#lobby", 120), ("#other", 5)]]
        self.assertEqual([(int(stamp), stamp.sequence) for stamp in taken],
                         [(101, 8), (150, 9), (151, 10), (5, 11)])
        self.assertEqual(numbering.takeSequence(), 12)
        self.assertEqual(numbering.sequence, 12)


class SQLiteNumberingTests(SQLiteFixture, TestCase):
    """
    An SQLite store numbers its messages before their transaction, from
    counters read when it opens, and never hands a number out twice.
    """

    async def stored(self):
        """
        The (sequence, timestamp, envelope id) of every stored room message.
        """
        return [tuple(row) for row in await self.query(
            "SELECT seq, ts, envelope_id FROM messages ORDER BY seq")]

    async def test_exactlyAsHandedOut(self):
        """
        A message appended with the numbers its numbering handed out is stored
        with exactly those, and the append fires with them.
        """
        await self.room()
        stamp = self.store.numbering.take("#Lobby", 500)
        stored = await self.store.appendMessage("#Lobby", "Alice", int(stamp), "e1", b"x",
                                                ["Alice"], stamp.sequence)
        self.assertEqual((int(stored), stored.sequence), (int(stamp), stamp.sequence))
        self.assertEqual(await self.stored(), [(stamp.sequence, 500, "e1")])

    async def test_numberedOnCall(self):
        """
        Messages, room and direct, are numbered in the order they are called,
        before any transaction runs.
        """
        await self.room()
        for name in ("Alice", "Bob"):
            await self.account(name)
        self.threadpool.hold()
        appended = [self.append(100, "r1"),
                    self.store.appendDirect("Alice", "Bob", 100, "d1", b"dm", ["Alice", "Bob"]),
                    self.append(100, "r2")]
        self.assertEqual(self.store.numbering.sequence, 3)
        self.threadpool.release()
        stamps = [await d for d in appended]
        self.assertEqual([(int(s), s.sequence) for s in stamps],
                         [(100, 1), (100, 2), (101, 3)])
        self.assertEqual(await self.stored(), [(1, 100, "r1"), (3, 101, "r2")])
        self.assertEqual(await self.store.currentSequence(), 3)

    async def test_failedNumberNotReused(self):
        """
        A number whose transaction failed is not handed out again, neither by
        this store nor by one opened after a device's mark was raised to it:
        a device marked there still catches up on the next message.
        """
        await self.room()
        await self.account("Bob")
        await self.append(100, "e1")
        self.threadpool.hold()
        failed = self.append(200, "e2")
        failHeld(self.threadpool, RuntimeError("the disk broke"))
        self.threadpool.release()
        await self.assertFailure(failed, RuntimeError)
        # The device was given e2 ahead of the commit, and its mark written.
        await self.store.setMarks([("Bob", "pc", 2)])
        await self.reopen()
        self.assertEqual(self.store.numbering.sequence, 2)
        stamp = await self.append(300, "e3")
        self.assertEqual(stamp.sequence, 3)
        await self.store.addMember("#Lobby", "Bob")
        caughtUp = await self.store.catchUp("Bob", "Bob", 2, 10)
        self.assertEqual([(m.sequence, m.envelope) for m in caughtUp], [(3, b"envelope e3")])

    async def test_restartAboveStored(self):
        """
        A store opened again numbers above every stored message, room or
        direct, and every mark, and gives each room timestamps above its
        latest.
        """
        await self.room()
        await self.room("#Other")
        for name in ("Alice", "Bob"):
            await self.account(name)
        await self.append(1000, "e1")
        await self.append(50, "e2", room="#Other")
        await self.store.appendDirect("Alice", "Bob", 7000, "d1", b"dm", ["Alice", "Bob"])
        await self.reopen()
        self.assertEqual(self.store.numbering.sequence, 3)
        stamps = [await self.append(900, "e3"), await self.append(40, "e4", room="#Other")]
        self.assertEqual([(int(s), s.sequence) for s in stamps], [(1001, 4), (51, 5)])
        await self.store.setMarks([("Bob", "pc", 40)])
        await self.reopen()
        self.assertEqual(self.store.numbering.sequence, 40)

    async def test_anotherWriter(self):
        """
        A second store writing messages to the same file is caught: its
        number is already in the database, and its message is refused.
        """
        await self.room()
        first = self.store
        self.store = self.createStore()
        await self.store.open()
        await first.appendMessage("#Lobby", "Alice", 100, "e1", b"x", ["Alice"])
        await self.assertFailure(self.append(200, "e2"), NumberingConflict)
        await first.close()


class PostgreSQLNumberingTests(PostgreSQLFixture, TestCase):
    """
    A PostgreSQL store, which the nodes of a cluster share, does not number
    ahead: it numbers each message in the transaction that stores it.
    """

    async def test_numberedInTransaction(self):
        """
        It has no numbering, and its appends are numbered one after another.
        """
        self.assertIsNone(self.store.numbering)
        await self.room()
        stamps = [await self.append(100, "e1"), await self.append(100, "e2")]
        self.assertEqual([(int(s), s.sequence) for s in stamps], [(100, 1), (101, 2)])


class EngineTests(SynchronousTestCase):
    """
    Which engines number ahead.
    """

    def test_engines(self):
        """
        SQLite, whose file one chatd owns, does; PostgreSQL, shared, does not.
        """
        self.assertEqual((SQLITE.numbersAhead, POSTGRESQL.numbersAhead), (True, False))


class AheadTests(DeviceCase):
    """
    On SQLite, a room message reaches the members before its commit; the
    sender's answer waits for it.
    """

    def buildService(self):
        reactor = _ThreadlessReactor()
        self.threadpool = _HeldThreadPool()
        self.path = self.mktemp()
        pool = SQLITE.connectionPool(
            (self.path,), reactor,
            poolFactory=partial(_ThreadlessConnectionPool, threadpool=self.threadpool))
        self.addCleanup(pool.close)
        self.pool = pool
        return makeService(store=AdbapiStore(SQLITE, (self.path,), testKeys(), pool=pool,
                                             reactor=reactor), rateLimit=(100, 1.0))

    def setUp(self):
        DeviceCase.setUp(self)
        self.alice = self.register("alice")
        self.bob = self.register("bob", "pc")
        for session in (self.alice, self.bob):
            self.result(session.join, "#r", "")
        self.clock.advance(MARK_INTERVAL)
        for session in (self.alice, self.bob):
            session.client.take()

    def blob(self, text):
        return self.sealFrom("alice", "first", ("room", "#r"),
                             self.readers("alice", "bob"), text)

    def stored(self):
        """
        The (sequence, timestamp) of every stored room message.
        """
        rows = self.successResultOf(self.pool.runQuery(
            "SELECT seq, ts FROM messages ORDER BY seq"))
        return [tuple(row) for row in rows]

    def test_deliveredBeforeCommit(self):
        """
        The members have the message while its transaction waits; the sender
        is answered once it is committed, with the timestamp delivered.
        """
        self.threadpool.hold()
        answer = self.alice.roomMessage("#r", self.blob("hi"))
        [(room, sender, timestamp, _)] = self.events(self.bob, "roomMessage")
        self.assertEqual((room, sender), ("#r", "alice"))
        self.assertNoResult(answer)
        self.threadpool.release()
        self.assertEqual(self.successResultOf(answer), timestamp)
        self.assertEqual(self.stored(), [(self.bob.mark, timestamp)])
        self.assertEqual(self.alice.mark, self.bob.mark)

    def test_failedCommit(self):
        """
        A message whose commit fails is refused to its sender with 0x0a
        (unavailable: try it again, as it is), whose mark stays below it; the
        retry (same envelope) is taken, under a later number, and a device
        marked at the failed number catches up on it.
        """
        blob = self.blob("hi")
        before = self.alice.mark
        self.threadpool.hold()
        answer = self.alice.roomMessage("#r", blob)
        self.assertEqual(len(self.events(self.bob, "roomMessage")), 1)
        failed = self.bob.mark
        failHeld(self.threadpool, RuntimeError("the disk broke"))
        self.threadpool.release()
        refusal = self.failureResultOf(answer, Unavailable).value
        self.assertEqual((refusal.status, str(refusal)),
                         (Status.UNAVAILABLE, "the message could not be stored; try again"))
        self.assertEqual(self.alice.mark, before)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.bob.closed()
        self.assertEqual(self.successResultOf(self.store.getMark("bob", "pc")), failed)
        timestamp = self.result(self.alice.roomMessage, "#r", blob)
        self.assertEqual(self.stored(), [(failed + 1, timestamp)])
        again = self.loginDevice("bob", "pc")
        [(_, sender, replayed, _)] = self.events(again, "roomMessage")
        self.assertEqual((sender, replayed), ("alice", timestamp))

    def test_failedDirectCommit(self):
        """
        A stored direct message whose commit fails is refused with 0x0a, as
        a room message is, and reaches nobody; the retry (same envelope) is
        taken and delivered.
        """
        blob = self.sealFrom("alice", "first", ("user", "bob"), self.readers("alice", "bob"),
                             "dm")
        self.threadpool.hold()
        answer = self.alice.directMessage("bob", blob)
        failHeld(self.threadpool, RuntimeError("the disk broke"))
        self.threadpool.release()
        refusal = self.failureResultOf(answer, Unavailable).value
        self.assertEqual((refusal.status, str(refusal)),
                         (Status.UNAVAILABLE, "the message could not be stored; try again"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.events(self.bob, "directMessage"), [])
        timestamp = self.result(self.alice.directMessage, "bob", blob)
        [(sender, delivered, _)] = [event[:3] for event in self.events(self.bob, "directMessage")]
        self.assertEqual((sender, delivered), ("alice", timestamp))

    def test_burst(self):
        """
        A burst of messages, with a direct message among them, is delivered
        in the order sent, with increasing timestamps and sequence numbers,
        all stored as delivered and answered in order once committed.
        """
        self.threadpool.hold()
        answers = [self.alice.roomMessage("#r", self.blob("m%d" % (i,))) for i in range(3)]
        answers.append(self.alice.directMessage("bob", self.sealFrom(
            "alice", "first", ("user", "bob"), self.readers("alice", "bob"), "dm")))
        answers += [self.alice.roomMessage("#r", self.blob("m%d" % (i,))) for i in (3, 4)]
        delivered = [timestamp for _, _, timestamp, _ in self.events(self.bob, "roomMessage")]
        self.assertEqual(len(delivered), 5)
        self.assertEqual(delivered, sorted(set(delivered)))
        self.threadpool.release()
        results = [self.successResultOf(d) for d in answers]
        self.assertEqual(results[:3] + results[4:], delivered)
        self.assertEqual(self.stored(), [(1, delivered[0]), (2, delivered[1]), (3, delivered[2]),
                                         (5, delivered[3]), (6, delivered[4])])
        self.assertEqual(self.bob.mark, 6)


class MemoryAheadTests(DeviceCase):
    """
    The memory store answers at once: what it refuses is never delivered.
    """

    def test_refusedNotDelivered(self):
        """
        A message the store refuses (its id stored already, though the
        service forgot it) is not delivered, and refused to the sender.
        """
        alice = self.register("alice")
        bob = self.register("bob", "pc")
        for session in (alice, bob):
            self.result(session.join, "#r", "")
        blob = self.sealFrom("alice", "first", ("room", "#r"), self.readers("alice", "bob"))
        self.result(alice.roomMessage, "#r", blob)
        bob.client.take()
        self.service.replays.discard(("alice", e2e.Envelope.parse(blob).id))
        self.assertIsInstance(self.refusal(alice.roomMessage, "#r", blob), Conflict)
        self.assertEqual(self.events(bob, "roomMessage"), [])

