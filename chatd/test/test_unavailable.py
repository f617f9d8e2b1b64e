"""
The core on a frozen database: every request that needs it is answered
within the deadline with L{Unavailable} (status 0x0a) instead of hanging, says
so rather than "internal error", and the outage is logged once, not per
request.
"""

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from zope.interface import implementer

from chatd.errors import Status, Unavailable
from chatd.istore import IMessageStore
from chatd.protocols.jsonwire import errorCode
from chatd.store.guard import GuardedStore
from chatd.store.memory import MemoryStore
from chatd.test.fakes import makeService, publicDer, testKeys
from chatd.test.test_service import CoreTestCase

DEADLINE = 5


@implementer(IMessageStore)
class FreezableStore:
    """
    A L{MemoryStore} that can freeze: while frozen, its calls never answer.
    """

    def __init__(self):
        self.store = MemoryStore(testKeys())
        self.frozen = False

    def __getattr__(self, name):
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def call(*args):
            if self.frozen:
                return Deferred()
            return method(*args)
        return call


class FrozenDatabaseTests(CoreTestCase):
    """
    Requests that need the database, while it is frozen.
    """

    def buildService(self):
        clock = Clock()
        clock.advance(1_700_000_000)
        self.freezable = FreezableStore()
        return makeService(GuardedStore(self.freezable, clock, DEADLINE), clock)

    def unavailable(self, method, *args):
        """
        Call C{method} while the database is frozen: it is answered, after the
        deadline and not before, with L{Unavailable}.
        """
        d = maybeDeferred(method, *args)
        self.clock.advance(DEADLINE - 0.1)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.failureResultOf(d, Unavailable).value
        self.assertEqual((error.status, error.message),
                         (Status.UNAVAILABLE, "the database is unavailable; try again"))
        return error

    def freeze(self):
        self.freezable.frozen = True
        self.addCleanup(self.flushLoggedErrors)

    def test_history(self):
        """
        HISTORY says the database is unavailable.
        """
        alice = self.account("alice")
        self.joinAll("#room", alice)
        self.freeze()
        with capturedLogs():
            self.unavailable(alice.history, "#room", 0, 0)

    def test_login(self):
        """
        LOGIN says the database is unavailable, and counts no failure.
        """
        self.account("alice")
        self.freeze()
        session = self.connect()
        session.hello(1)
        with capturedLogs():
            self.unavailable(session.login, "alice", "correct horse")
        self.freezable.frozen = False
        self.result(session.login, "alice", "correct horse")

    def test_register(self):
        """
        REGISTER says the database is unavailable, and the name is free to
        register once it is back.
        """
        self.freeze()
        session = self.connect()
        session.hello(1)
        with capturedLogs():
            self.unavailable(session.register, "alice", "correct horse", publicDer("alice"))
        self.freezable.frozen = False
        self.result(session.register, "alice", "correct horse", publicDer("alice"))

    def test_roomMessageRetried(self):
        """
        A room message refused so may be sent again as it is, once the
        database is back.
        """
        alice = self.account("alice")
        self.joinAll("#room", alice)
        members = dict(self.result(alice.getKeys, 0, "#room"))
        blob = self.seal("alice", ("room", "#room"), members)
        self.freeze()
        with capturedLogs():
            self.unavailable(alice.roomMessage, "#room", blob)
        self.freezable.frozen = False
        self.result(alice.roomMessage, "#room", blob)

    def test_noLogStorm(self):
        """
        A hundred messages refused during one outage log one line (with the
        first failure), and the end of the outage one more, with the count.
        """
        alice = self.account("alice")
        self.joinAll("#room", alice)
        members = dict(self.result(alice.getKeys, 0, "#room"))
        self.freeze()
        with capturedLogs() as events:
            for n in range(100):
                blob = self.seal("alice", ("room", "#room"), members, "m%d" % (n,))
                d = maybeDeferred(alice.roomMessage, "#room", blob)
                self.clock.advance(DEADLINE)
                self.failureResultOf(d, Unavailable)
            self.freezable.frozen = False
            self.post(alice, "#room")
        loud = (LogLevel.warn, LogLevel.error, LogLevel.critical)
        self.assertEqual([(e["log_level"], e.get("failures")) for e in events
                          if e["log_level"] in loud],
                         [(LogLevel.error, None), (LogLevel.warn, 100)])

    def test_codeOnJSONDoors(self):
        """
        The JSON doors name the status C{unavailable}.
        """
        self.assertEqual(errorCode(Status.UNAVAILABLE), "unavailable")
