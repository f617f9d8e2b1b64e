"""
Tests for L{chatd.outage}, and for the Redis fan-out's use of it: a Redis that
fails commands is logged once per outage, not once per message.
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatd.outage import Outage


class OutageTests(SynchronousTestCase):
    """
    L{Outage} logs the start and the end of an outage, and counts between.
    """

    def test_startCountEnd(self):
        """
        The first failure is logged with its traceback and what it means; the
        next are counted; the first success logs the end with the length and
        the count, and a later failure starts a new outage.
        """
        clock = Clock()
        outage = Outage("Redis at h:1/0", clock, "limits are this node's own")
        with capturedLogs() as events:
            outage.worked()
            for _ in range(50):
                outage.failed(Failure(ConnectionError("gone")))
                clock.advance(1)
            outage.worked()
            outage.worked()
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events], [
            (LogLevel.error, "Redis at h:1/0 is unavailable; limits are this node's own "
             "(further failures are counted, not logged)"),
            (LogLevel.warn, "Redis at h:1/0 is back after 50.0 s; 50 failure(s) meanwhile")])
        self.assertIsInstance(events[0]["log_failure"].value, ConnectionError)
        with capturedLogs() as events:
            outage.failed(Failure(ConnectionError("again")))
        self.assertEqual(len(events), 1)
        self.flushLoggedErrors(ConnectionError)


class FailingCommands:
    """
    A Redis command connection that is up but answers every script with an
    error (as a frozen Redis does, after the reply timeout), until healed.
    """

    healed = False

    def eval(self, script, keys, args):
        if self.healed:
            return succeed("12345")
        return fail(TimeoutError("no reply from redis"))


class RedisOutageTests(SynchronousTestCase):
    """
    The Redis fan-out falls back to this node's own timestamps while Redis
    fails, and says so once, not per message.
    """

    def test_timestampsLoggedOnce(self):
        """
        A hundred timestamps from this node's clock log one line when the
        outage starts and one when Redis answers again.
        """
        try:
            from chatd.fanout.redis import RedisFanout
        except ImportError:
            raise SkipTest("the Redis fan-out needs txredisapi")
        clock = Clock()
        fanout = RedisFanout("redis://127.0.0.1:1/0", clock)
        fanout.connections.commands = commands = FailingCommands()
        with capturedLogs() as events:
            for n in range(100):
                self.assertEqual(self.successResultOf(fanout.timestamp("#room", 1000 + n, 0)),
                                 1000 + n)
            commands.healed = True
            self.assertEqual(self.successResultOf(fanout.timestamp("#room", 2000, 0)), 12345)
        self.assertEqual([(e["log_level"], e.get("failures")) for e in events],
                         [(LogLevel.error, None), (LogLevel.warn, 100)])
        self.flushLoggedErrors(TimeoutError)
