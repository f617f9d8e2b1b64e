# -*- test-case-name: chatd.test.test_observer -*-
"""
A one-shot observer: many callers wait for one outcome that happens once.
"""

from typing import List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure


class OneShotObserver:
    """
    Hands out L{Deferred}s that all fire with the one result given to L{fire},
    whether they were asked for before or after it.
    """

    def __init__(self):
        self._fired = False
        self._result = None
        self._waiting: List[Deferred] = []

    def whenFired(self):
        """
        @return: a new L{Deferred} for the outcome; it does not share callbacks
            with the others, so one observer cannot change what another sees.
        """
        if not self._fired:
            d: Deferred = Deferred()
            self._waiting.append(d)
            return d
        if isinstance(self._result, Failure):
            return fail(self._result)
        return succeed(self._result)

    def fire(self, result):
        """
        Deliver C{result} (a value or a L{Failure}) to every observer, now and later.
        """
        self._fired, self._result = True, result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
