"""
Tests for L{chatd.startup}, and for the failed starts L{chatd.tap} reports
through it.
"""

import os
from typing import List, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.errors import Unavailable
from chatd.options import Options
from chatd.startup import EXIT_STATUS, FailedStart, StartupError, keepTrying
from chatd.tap import ListenWhenReady, makeService


class RecordingReactor:
    """
    The part of a reactor L{FailedStart} uses: it runs, and records being
    stopped.
    """

    def __init__(self):
        self.stopped = 0

    def callWhenRunning(self, f, *args):
        f(*args)

    def stop(self):
        self.stopped += 1


def fail(error):
    """
    A L{Failure} of C{error} with a traceback, as a start would report it.
    """
    try:
        raise error
    except type(error):
        return Failure()


class FailedStartTests(SynchronousTestCase):
    """
    L{FailedStart} reports a failed start in one line and ends the process.
    """

    def setUp(self):
        self.reactor = RecordingReactor()
        self.exits: List[int] = []
        self.failedStart = FailedStart(cast(IReactorCore, self.reactor), self.exits.append)

    def test_startupError(self):
        """
        A L{StartupError} is logged as one critical line naming its cause,
        without a traceback; the reactor stops and the process is to exit with
        a non-zero status.
        """
        with capturedLogs() as events:
            self.failedStart(fail(StartupError("port 4017 is in use")))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertEqual(event["line"], "chatd cannot start: port 4017 is in use")
        self.assertNotIn("log_failure", event)
        self.assertEqual((self.exits, self.reactor.stopped), ([EXIT_STATUS], 1))
        self.assertNotEqual(EXIT_STATUS, 0)

    def test_bug(self):
        """
        Any other exception is a bug: it is logged with its traceback, and the
        process ends just the same.
        """
        with capturedLogs() as events:
            self.failedStart(fail(KeyError("oops")))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIsInstance(event["log_failure"].value, KeyError)
        self.assertEqual((self.exits, self.reactor.stopped), ([EXIT_STATUS], 1))
        self.flushLoggedErrors(KeyError)

    def test_firstOnly(self):
        """
        Only the first failure is reported: the others are often its
        consequences.
        """
        with capturedLogs() as events:
            self.failedStart(fail(StartupError("first")))
            self.failedStart(fail(StartupError("second")))
        self.assertEqual([e["line"] for e in events], ["chatd cannot start: first"])
        self.assertEqual((self.exits, self.reactor.stopped), ([EXIT_STATUS], 1))


class RefusingReactor(MemoryReactorClock):
    """
    A memory reactor on which one TCP port is taken.
    """

    def listenTCP(self, port, factory, backlog=50, interface=""):
        if port == 4017:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        return MemoryReactorClock.listenTCP(self, port, factory, backlog, interface)


class ListenerFailureTests(SynchronousTestCase):
    """
    A door that cannot listen fails the start, naming the door, the endpoint
    and the reason.
    """

    def test_portInUse(self):
        """
        The failure names the door and its endpoint; the doors that did listen
        are closed again when the service stops.
        """
        reactor = RefusingReactor()
        failures: List[Failure] = []
        listeners = ListenWhenReady(lambda: succeed(None), failures.append)
        for door, description in [("web", "tcp:8017"),
                                  ("binary", "tcp:4017:interface=127.0.0.1")]:
            listeners.listen(door, description, serverFromString(reactor, description),
                             object())
        listeners.startService()
        [failure] = failures
        self.assertIsInstance(failure.value, StartupError)
        self.assertEqual(str(failure.value), "the binary door cannot listen on "
                         "tcp:4017:interface=127.0.0.1: Address already in use")
        self.assertEqual([port for port, *_ in reactor.tcpServers], [8017])
        self.successResultOf(listeners.stopService())
        self.assertFalse(list(listeners)[0].running)


class MakeServiceFailureTests(SynchronousTestCase):
    """
    What L{makeService} finds wrong before the reactor runs ends twistd with
    one line.
    """

    def makeService(self, *args):
        options = Options()
        options.parseOptions(["--db", "memory:", "--binary", "tcp:0", "--text", "none",
                              "--web", "none", *args])
        return makeService(options, reactor=MemoryReactorClock(),
                           failedStart=self.fail)

    def test_dataDirUnderAFile(self):
        """
        A data directory that cannot be made or read is named, with the reason.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w"):
            pass
        error = self.assertRaises(SystemExit, self.makeService,
                                  "--data-dir", os.path.join(path, "data"))
        self.assertEqual(str(error), "chatd cannot start: cannot use the data directory "
                         "%s/data: %s/data: Not a directory" % (path, path))


class KeepTryingTests(SynchronousTestCase):
    """
    L{keepTrying} waits for a server that is not up yet, for a bounded time.
    """

    def setUp(self):
        self.clock = Clock()
        self.attempts = []

    def attempt(self):
        d: Deferred = Deferred()
        self.attempts.append(d)
        return d

    def unavailable(self, n):
        try:
            raise Unavailable("the database is unavailable; try again") from ConnectionError(
                "connection refused %d" % (n,))
        except Unavailable:
            self.attempts[n].errback()

    def test_backoffThenSuccess(self):
        """
        Each failure is logged with its cause, and the next attempt follows
        after the policy's wait; the first success is the result.
        """
        with capturedLogs() as events:
            d = Deferred.fromCoroutine(keepTrying(
                self.attempt, self.clock, 30, "the database", policy=lambda n: 2 ** n))
            self.unavailable(0)
            self.clock.advance(1.9)
            self.assertEqual(len(self.attempts), 1)
            self.clock.advance(0.1)
            self.unavailable(1)
            self.clock.advance(4)
            self.attempts[2].callback("open")
        self.assertEqual(self.successResultOf(d), "open")
        self.assertEqual([(e["attempt"], e["reason"], e["left"]) for e in events],
                         [(1, "connection refused 0", 30), (2, "connection refused 1", 28)])

    def test_givesUp(self):
        """
        After the bound, the start fails, naming what was waited for, for how
        long, and the last reason.
        """
        with capturedLogs():
            d = Deferred.fromCoroutine(keepTrying(
                self.attempt, self.clock, 10, "the database", policy=lambda n: 3))
            for n in range(3):
                self.unavailable(n)
                self.clock.advance(3)
            self.unavailable(3)
            self.clock.advance(0.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
        self.assertEqual(len(self.attempts), 4)
        error = self.failureResultOf(d, StartupError).value
        self.assertEqual(str(error), "the database could not be reached in 10 s "
                         "(4 failed attempts; last: connection refused 3)")

    def test_hangingAttempt(self):
        """
        An attempt still waiting when the bound runs out is cancelled, and the
        start fails.
        """
        d = Deferred.fromCoroutine(keepTrying(self.attempt, self.clock, 10, "Redis"))
        self.clock.advance(10)
        self.assertTrue(self.attempts[0].called)
        error = self.failureResultOf(d, StartupError).value
        self.assertEqual(str(error), "Redis could not be reached in 10 s "
                         "(0 failed attempts; last: no answer)")

    def test_otherErrors(self):
        """
        Errors other than L{Unavailable} are not waited out.
        """
        d = Deferred.fromCoroutine(keepTrying(self.attempt, self.clock, 10, "the database"))
        self.attempts[0].errback(StartupError("file is not a database"))
        self.failureResultOf(d, StartupError)
        self.assertEqual(len(self.attempts), 1)
