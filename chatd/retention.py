# -*- test-case-name: chatd.test.test_retention -*-
"""
C{--retention-days}: room history older than that is deleted once the store is
open and then once a day.

Direct messages are never stored (docs/security.rst), so room history is all
there is to expire. The age is the server timestamp a message was stored
with, and the deletion is one store write (L{chatd.istore.IMessageStore.
deleteHistoryBefore}), in the store's own call order.
"""

from typing import Optional

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

DAY = 24 * 60 * 60


class Retention(Service):
    """
    Deletes expired room history at start, once the store is ready, and then
    every L{DAY}.

    @ivar loop: the L{LoopingCall} that runs L{purge}, once started.
    """

    log = Logger()

    def __init__(self, store, days, clock, whenReady):
        """
        @param store: the L{chatd.istore.IMessageStore}.
        @param days: how many days of history to keep, at least 1.
        @param clock: an L{IReactorTime}, for the age and the schedule.
        @param whenReady: a callable returning a L{Deferred} that fires once
            the store is open.
        """
        self._store = store
        self._keep = days * DAY
        self._clock = clock
        self._whenReady = whenReady
        self.loop: Optional[LoopingCall] = None

    def startService(self):
        Service.startService(self)
        # A store that never opens is a failed start, reported elsewhere.
        self._whenReady().addCallbacks(self._begin, lambda failure: None)

    def _begin(self, ignored):
        if not self.running:
            return
        self.loop = LoopingCall(self.purge)
        self.loop.clock = self._clock
        self.loop.start(DAY, now=True)

    def purge(self):
        """
        Delete the history older than the retention period.

        @return: a L{Deferred} that fires with how many messages were deleted,
            or L{None} when the store failed (logged, and tried again the next
            day rather than stopping the schedule).
        """
        cutoff = int((self._clock.seconds() - self._keep) * 1000)
        d = self._store.deleteHistoryBefore(cutoff)
        d.addCallback(self._deleted)
        d.addErrback(lambda failure: self.log.failure(
            "Could not delete expired room history", failure))
        return d

    def _deleted(self, count):
        if count:
            self.log.info("Deleted {count} room messages older than {days} days.",
                          count=count, days=self._keep // DAY)
        return count

    def stopService(self):
        Service.stopService(self)
        if self.loop is not None and self.loop.running:
            self.loop.stop()
