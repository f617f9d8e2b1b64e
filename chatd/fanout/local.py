# -*- test-case-name: chatd.test.test_service -*-
"""
The fan-out of a node that is its own cluster: nothing to publish to, counters
and limits in memory.
"""

from twisted.internet.defer import succeed
from zope.interface import implementer

from chatd.interfaces import IFanout
from chatd.ratelimit import SlidingWindow


class _Window:
    """
    A L{SlidingWindow} answering through L{Deferred}s, as a shared one would.
    """

    def __init__(self, clock, count, seconds):
        self._window = SlidingWindow(clock, count, seconds)

    def reserve(self, key):
        return succeed(self._window.reserve(key))

    def release(self, key, token):
        self._window.release(key, token)
        return succeed(None)

    def hit(self, key):
        return succeed(self._window.hit(key))


@implementer(IFanout)
class LocalFanout:
    """
    A single node: events go nowhere, limits and counters live here.
    """

    nodeId = "local"

    def __init__(self, clock):
        self.clock = clock
        self._guests = 0

    def start(self, service):
        return succeed(None)

    def stop(self):
        return succeed(None)

    def publish(self, event):
        pass

    def guestNumber(self):
        number, self._guests = self._guests, self._guests + 1
        return number

    def window(self, name, count, seconds):
        return _Window(self.clock, count, seconds)

    def timestamp(self, room, now, last):
        return succeed(max(now, last + 1))
