# -*- test-case-name: chatd.test.test_shutdown -*-
"""
Stopping politely: every connection is told the server is going away, its
requests already taken are answered, and then it is closed; the core waits
for that, for at most C{stop-timeout} seconds, before it closes the store.

The listeners stop at the same moment (see L{chatd.tap}), so no new
connection comes in; one that slipped in meanwhile is refused by the core.
"""

import signal

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

log = Logger()

# The WARNING code of "the server is going away": reconnect later.
WARNING_GOING_AWAY = 0x06

GOING_AWAY_MESSAGE = "the server is shutting down; reconnect in a few seconds"


class Sessions:
    """
    The sessions connected to this node, and their polite ending.

    @ivar stopping: whether L{stop} has been called; the core refuses new
        connections from then on.
    """

    def __init__(self, clock):
        self._clock = clock
        self._live = set()
        self._empty = None
        self.stopping = False

    def __len__(self):
        return len(self._live)

    def add(self, session):
        self._live.add(session)

    def discard(self, session):
        self._live.discard(session)
        if not self._live and self._empty is not None:
            empty, self._empty = self._empty, None
            empty.callback(None)

    def stop(self, timeout: float) -> Deferred:
        """
        Tell every session's client the server is going away, and wait until
        every one has closed, or C{timeout} seconds have passed.

        @return: a L{Deferred} that fires with L{None} either way.
        """
        self.stopping = True
        for session in list(self._live):
            try:
                session.client.goAway(WARNING_GOING_AWAY, GOING_AWAY_MESSAGE)
            except Exception:
                log.failure("telling a client the server is going away")
        if not self._live:
            return succeed(None)
        log.info("stopping: waiting up to {timeout} s for {count} connections to close",
                 timeout=timeout, count=len(self._live))
        self._empty = Deferred()

        def late(result, timeout):
            self._empty = None
            log.warn("stopping: {count} connections still open after {timeout} s; "
                     "dropping them", count=len(self._live), timeout=timeout)

        return self._empty.addTimeout(timeout, self._clock, onTimeoutCancel=late)


def stopCleanlyOnTerm(reactor):
    """
    Make SIGTERM a requested, clean stop: the reactor stops (so the service
    tree stops politely, see L{Sessions.stop}) and the process exits 0.

    Twisted's own handler stops the reactor too, but then has C{twistd} kill
    itself with the same signal on the way out, so the process ends "killed by
    SIGTERM": to a supervisor or a script that is a crash, not the orderly stop
    it asked for. Call this once the reactor runs (its handlers are in place
    then), for example through C{reactor.callWhenRunning}.
    """
    def stop():
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def handler(number, frame):
        log.info("SIGTERM: stopping")
        reactor.callFromThread(stop)

    signal.signal(signal.SIGTERM, handler)
