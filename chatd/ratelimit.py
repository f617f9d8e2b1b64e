# -*- test-case-name: chatd.test.test_ratelimit -*-
"""
Sliding-window counters, driven by an injected clock.

One L{SlidingWindow} serves every rate limit chatd has: messages per user, failed
logins per account and address, registrations per address. A refused attempt is
not recorded, so a client that keeps hammering a limit does not push its own
retry time further away.

An attempt takes its slot I{before} the work it limits starts (L{reserve}), and
gives it back if the attempt turns out not to count (L{release}): checking and
counting in one step is what keeps parallel attempts from all seeing room for
one more, and a Redis-backed window does that step in one script.
"""

from collections import deque
from dataclasses import dataclass
from itertools import count as counter
from typing import Hashable, Optional


def inWholeSeconds(seconds: float) -> str:
    """
    A wait for people to read: whole seconds, rounded up, at least one.
    """
    return "%d s" % max(1, round(seconds + 0.4999))


@dataclass(frozen=True)
class Reservation:
    """
    What a window answers to C{reserve}: a slot, counted already, or a refusal.

    @ivar wait: L{None} for a slot; for a refusal, the seconds until the
        oldest counted event leaves the window.
    @ivar token: what gives the slot back (see C{release}).
    @ivar before: how many events the key had in the window before this one.
    """

    wait: Optional[float] = None
    token: Hashable = None
    before: int = 0

    @property
    def granted(self) -> bool:
        return self.wait is None


class SlidingWindow:
    """
    At most C{count} events per key within any C{seconds}; a C{count} of
    L{None} counts without limit (for delays that grow with the count).

    @ivar clock: an L{IReactorTime} provider.
    """

    # Keys whose events have all expired are swept once the table passes this size,
    # so that a stream of one-off keys (addresses, unknown names) cannot grow it
    # without bound; and at most once per window length whatever its size, so
    # that a slow stream of them (a guest's JOINs, each guest a key) does not
    # hold thousands of dead keys for hours: memory stays flat.
    sweepAt = 4096

    def __init__(self, clock, count, seconds):
        self.clock = clock
        self.count = count
        self.seconds = seconds
        self._events = {}
        self._tokens = counter()
        self._nextSweep = clock.seconds() + seconds

    def _recent(self, key, now):
        events = self._events.get(key)
        if events is None:
            return ()
        horizon = now - self.seconds
        while events and events[0][0] <= horizon:
            events.popleft()
        return events

    def reserve(self, key: Hashable) -> Reservation:
        """
        Count one event for C{key} now, if it is under its limit.
        """
        now = self.clock.seconds()
        events = self._recent(key, now)
        if self.count is not None and len(events) >= self.count:
            return Reservation(wait=events[0][0] + self.seconds - now)
        before = len(events)
        if not events:
            if key not in self._events and (len(self._events) >= self.sweepAt
                                            or now >= self._nextSweep):
                self._sweep()
            events = self._events[key] = deque()
        token = next(self._tokens)
        events.append((now, token))
        return Reservation(token=token, before=before)

    def release(self, key: Hashable, token: Hashable) -> None:
        """
        Take back the event L{reserve} counted as C{token}: the attempt did not
        count after all. An event that already left the window is no matter.
        """
        events = self._events.get(key, ())
        for entry in events:
            if entry[1] == token:
                events.remove(entry)
                return

    def hit(self, key: Hashable) -> Optional[float]:
        """
        Count one event for C{key} if it is under its limit.

        @return: L{None} when the event was counted, else the seconds until the
            oldest counted event leaves the window.
        """
        return self.reserve(key).wait

    def _sweep(self):
        now = self.clock.seconds()
        self._nextSweep = now + self.seconds
        for key in [k for k in self._events if not self._recent(k, now)]:
            del self._events[key]
