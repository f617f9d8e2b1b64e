# -*- test-case-name: chatd.test.test_ratelimit -*-
"""
Sliding-window counters, driven by an injected clock.

One L{SlidingWindow} serves every rate limit chatd has: messages per user, failed
logins per account, room and address, registrations per address. A refused
attempt is not recorded, so a client that keeps hammering a limit does not push
its own retry time further away.
"""

from collections import deque


class SlidingWindow:
    """
    At most C{count} events per key within any C{seconds}.

    @ivar clock: an L{IReactorTime} provider.
    """

    # Keys whose events have all expired are swept once the table passes this size,
    # so that a stream of one-off keys (addresses, unknown names) cannot grow it
    # without bound.
    sweepAt = 4096

    def __init__(self, clock, count, seconds):
        self.clock = clock
        self.count = count
        self.seconds = seconds
        self._events = {}

    def _recent(self, key, now):
        events = self._events.get(key)
        if events is None:
            return ()
        horizon = now - self.seconds
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def retryAfter(self, key):
        """
        How long until C{key} may act again.

        @return: L{None} when C{key} is under its limit now, else the seconds
            until its oldest counted event leaves the window.
        """
        now = self.clock.seconds()
        events = self._recent(key, now)
        if len(events) < self.count:
            return None
        return events[0] + self.seconds - now

    def record(self, key):
        """
        Count one event for C{key} now.
        """
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.sweepAt:
                self._sweep()
            events = self._events[key] = deque()
        events.append(self.clock.seconds())

    def hit(self, key):
        """
        Count one event for C{key} if it is under its limit.

        @return: L{None} when the event was counted, else what L{retryAfter} says.
        """
        wait = self.retryAfter(key)
        if wait is None:
            self.record(key)
        return wait

    def _sweep(self):
        now = self.clock.seconds()
        for key in [k for k in self._events if not self._recent(k, now)]:
            del self._events[key]
