"""
Tests for L{chatd.store.guard} and L{chatd.outage}: deadlines on store calls,
and outages logged once.
"""

from typing import cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatd.errors import Status, Unavailable
from chatd.istore import IMessageStore
from chatd.store.guard import GuardedStore
from chatd.store.memory import MemoryStore
from chatd.test.fakes import testKeys


@implementer(IMessageStore)
class FrozenStore:
    """
    A store whose calls answer only when a test says: a frozen database.

    @ivar calls: the L{Deferred} of each call, unanswered.
    """

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            d: Deferred = Deferred()
            self.calls.append(d)
            return d
        return call


class GuardedStoreTests(SynchronousTestCase):
    """
    L{GuardedStore} gives every call a deadline.
    """

    def setUp(self):
        self.clock = Clock()
        self.frozen = FrozenStore()
        self.store = GuardedStore(self.frozen, self.clock, 5)

    def test_interface(self):
        """
        A guarded store is an L{IMessageStore}.
        """
        verifyObject(IMessageStore, GuardedStore(MemoryStore(testKeys()), self.clock, 5))

    def test_deadline(self):
        """
        A call the store has not answered within the deadline fails with
        L{Unavailable}, status 0x0a, saying the database is unavailable; the
        store's call is cancelled.
        """
        with capturedLogs():
            d = self.store.history("#room", "alice", 50, 0)
            self.clock.advance(4.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
        error = self.failureResultOf(d, Unavailable).value
        self.assertEqual((error.status, error.message),
                         (Status.UNAVAILABLE, "the database is unavailable; try again"))
        self.assertEqual(str(error.__cause__), "no answer within 5 s")
        self.assertTrue(self.frozen.calls[0].called)
        self.flushLoggedErrors()

    def test_inTime(self):
        """
        An answer within the deadline goes through as it is, errors included.
        """
        d = self.store.getAccount("alice")
        self.frozen.calls[0].callback("account")
        self.assertEqual(self.successResultOf(d), "account")
        d = self.store.getAccount("alice")
        self.frozen.calls[1].errback(KeyError("x"))
        self.failureResultOf(d, KeyError)
        self.clock.advance(10)

    def test_outageLoggedOnce(self):
        """
        A frozen database is logged once, when the outage starts, with the
        first failure's traceback; the failures after it are counted, and one
        line says when it ends, how long it lasted and how many failed.
        """
        with capturedLogs() as events:
            for _ in range(1000):
                d = self.store.appendMessage("#room", "alice", 1, "id", b"x", ["alice"])
                self.clock.advance(5)
                self.failureResultOf(d, Unavailable)
        [started] = events
        self.assertEqual(started["log_level"], LogLevel.error)
        self.assertIn("the database is unavailable; requests that need it fail",
                      formatEvent(started))
        self.assertIsNotNone(started["log_failure"])
        with capturedLogs() as events:
            d = self.store.getAccount("alice")
            self.frozen.calls[-1].callback(None)
        self.successResultOf(d)
        [ended] = events
        self.assertEqual((ended["log_level"], ended["failures"], ended["seconds"]),
                         (LogLevel.warn, 1000, 4995))
        self.flushLoggedErrors()

    def test_storeReportsUnavailable(self):
        """
        A failure the store reports as L{Unavailable} (a lost connection)
        counts toward the outage too, logged with its cause.
        """
        guarded = GuardedStore(cast(IMessageStore, FailingStore()), self.clock, 5)
        with capturedLogs() as events:
            for _ in range(3):
                self.failureResultOf(guarded.roomsOf("alice"), Unavailable)
        [started] = events
        self.assertIsInstance(started["log_failure"].value, ConnectionError)
        self.assertEqual(guarded.outage.failures, 3)
        self.flushLoggedErrors(ConnectionError)

    def test_openAndCloseNotCounted(self):
        """
        Opening (retried at start, with lines of its own) and closing neither
        start nor end an outage, but have the deadline too.
        """
        with capturedLogs() as events:
            opening = self.store.open()
            self.clock.advance(5)
        self.failureResultOf(opening, Unavailable)
        self.assertEqual((events, self.store.outage.since), ([], None))


class FailingStore:
    """
    A store that has lost its connection; only C{roomsOf} is there to call.
    """

    def roomsOf(self, user):
        try:
            try:
                raise ConnectionError("server closed the connection")
            except ConnectionError as e:
                raise Unavailable("the database is unavailable; try again") from e
        except Unavailable:
            return fail()
