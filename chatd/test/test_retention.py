# -*- test-case-name: chatd.test.test_retention -*-
"""
Tests for L{chatd.retention}: C{--retention-days} with a fake clock.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.retention import DAY, Retention
from chatd.store.memory import MemoryStore
from chatd.test.fakes import testKeys

NOW = 1_700_000_000


class RetentionTests(SynchronousTestCase):
    """
    L{Retention} deletes what is older than its days once the store is ready,
    and then daily.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore(testKeys(), self.clock)
        self.successResultOf(self.store.createRoom("#r", None))
        self.ready: Deferred = Deferred()
        self.retention = Retention(self.store, 2, self.clock, lambda: self.ready)

    def store_(self, ageSeconds, envelopeId):
        self.successResultOf(self.store.appendMessage(
            "#r", "alice", int((self.clock.seconds() - ageSeconds) * 1000), envelopeId,
            b"{}", ["alice"]))

    def ids(self):
        return [row.timestamp for row in
                self.successResultOf(self.store.history("#r", "alice", 100, 0))]

    def test_atStartThenDaily(self):
        """
        Nothing is deleted before the store is ready; then what is older than
        two days goes at once, and a day later what has aged past two days.
        """
        self.store_(3 * DAY, "a")
        self.store_(DAY + 60, "b")
        self.store_(60, "c")
        self.retention.startService()
        self.assertEqual(len(self.ids()), 3)
        self.ready.callback(None)
        self.assertEqual(len(self.ids()), 2)
        self.clock.advance(DAY - 120)
        self.assertEqual(len(self.ids()), 2)
        self.clock.advance(120)
        self.assertEqual(len(self.ids()), 1)
        self.retention.stopService()
        loop = self.retention.loop
        self.assertFalse(loop is None or loop.running)

    def test_failureKeepsSchedule(self):
        """
        A store failure is logged and the next day's purge still runs.
        """
        calls = []

        def deleteHistoryBefore(cutoff):
            calls.append(cutoff)
            return fail(RuntimeError("database gone")) if len(calls) == 1 else succeed(0)
        self.patch(self.store, "deleteHistoryBefore", deleteHistoryBefore)
        self.retention.startService()
        self.ready.callback(None)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(DAY)
        self.assertEqual(calls, [(NOW - 2 * DAY) * 1000, (NOW - DAY) * 1000])
        self.retention.stopService()

    def test_stoppedBeforeReady(self):
        """
        A service stopped before the store was ready never starts its loop.
        """
        self.retention.startService()
        self.retention.stopService()
        self.ready.callback(None)
        self.assertIsNone(self.retention.loop)


class ServiceTreeTests(SynchronousTestCase):
    """
    C{twistd chatd --retention-days N} runs a L{Retention}; without it, none.
    """

    def services(self, *args):
        import os

        from twisted.internet.testing import MemoryReactorClock

        from chatd.options import Options
        from chatd.tap import makeService
        options = Options()
        options.parseOptions(["--data-dir", os.path.join(self.mktemp(), "d"), "--db",
                              "memory:", "--binary", "none", "--text", "none",
                              "--web", "none", *args])
        return list(makeService(options, reactor=MemoryReactorClock()))

    def test_option(self):
        """
        With C{--retention-days 7}, a L{Retention} keeping seven days is in the
        tree, after the core; by default there is none.
        """
        [retention] = [s for s in self.services("--retention-days", "7")
                       if isinstance(s, Retention)]
        self.assertEqual(retention._keep, 7 * DAY)
        self.assertFalse([s for s in self.services() if isinstance(s, Retention)])
