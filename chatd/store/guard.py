# -*- test-case-name: chatd.test.test_guard -*-
"""
A deadline on every call to the store, and its outages logged once.

A database that is frozen (a stopped server, a network that drops packets, a
lock held by another process) would otherwise leave every request that needs
it waiting for as long as it stays frozen, with clients seeing nothing.
L{GuardedStore} stands in front of the store the core uses: a call that has
not answered within the deadline fails with L{Unavailable}, which every door
answers with status 0x0A, "the database is unavailable; try again", and a
failure the store itself reports as L{Unavailable} (a lost connection, a
statement timeout) is counted by an L{Outage} instead of logged each time.

A call that timed out is cancelled, so the SQL store drops it if it has not
started yet (see L{chatd.store.sql.AdbapiStore}); one already running in the
database may still complete, as with any database client that stops
waiting: PostgreSQL's statement timeout, which chatd sets to the same
deadline, then usually undoes it on the server too.
"""

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import Unavailable
from chatd.istore import IMessageStore
from chatd.outage import Outage

UNAVAILABLE = "the database is unavailable; try again"


@implementer(IMessageStore)
class GuardedStore:
    """
    An L{IMessageStore} that passes every call to another one, with a
    deadline.

    Every method of L{IMessageStore} returns a L{Deferred}, so the guard
    wraps whatever the store's methods return rather than list them: a method
    added to the interface is guarded without a change here.

    @ivar outage: the database's L{Outage}.
    """

    def __init__(self, store: IMessageStore, clock: IReactorTime, timeout: float) -> None:
        """
        @param store: the store to guard.
        @param clock: keeps the deadlines.
        @param timeout: seconds each call has to answer.
        """
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self.outage = Outage("the database", clock)

    def __getattr__(self, name):
        method = getattr(self._store, name)
        if not callable(method):
            return method
        # Opening is retried at start, with a line per attempt, and closing
        # asks nothing of the database: neither starts or ends an outage.
        counted = name not in ("open", "close")

        def guarded(*args, **kwargs):
            return self._guard(method(*args, **kwargs), counted)

        return guarded

    def _guard(self, result, counted):
        if not isinstance(result, Deferred):
            return result
        result.addTimeout(self._timeout, self._clock)
        result.addErrback(self._timedOut)
        if counted:
            result.addCallbacks(self._worked, self._failed)
        return result

    def _timedOut(self, failure):
        failure.trap(TimeoutError)
        raise Unavailable(UNAVAILABLE) from TimeoutError(
            "no answer within %g s" % (self._timeout,))

    def _worked(self, value):
        self.outage.worked()
        return value

    def _failed(self, failure):
        if failure.check(Unavailable):
            # Its cause says what happened; the Unavailable only what clients hear.
            self.outage.failed(Failure(failure.value.__cause__ or failure.value))
        return failure
