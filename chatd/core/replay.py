# -*- test-case-name: chatd.test.test_quotas -*-
"""
The envelope ids accepted lately, so that a replayed envelope is refused.
"""

from collections import deque
from typing import Any, Deque, Dict, Hashable, Tuple

from twisted.internet.interfaces import IReactorTime


class ReplayCache:
    """
    Envelope ids accepted from each sender within the clock-skew horizon.

    An envelope older than the horizon is refused for its timestamp before its id
    is looked at, so ids need only be kept that long. The store's unique index on
    (sender, id) backs this up for room messages across restarts.

    At most C{capacity} ids are kept, so that memory stays bounded whatever the
    message rate: past it the oldest are forgotten first (each sender's message
    rate limit keeps a full cache rare; see docs/security.rst).
    """

    def __init__(self, clock: IReactorTime, horizon: float, capacity: int) -> None:
        self.clock = clock
        self.horizon = horizon
        self.capacity = capacity
        self._expiry: Dict[Hashable, float] = {}
        self._order: Deque[Tuple[float, Any]] = deque()

    def __contains__(self, key: object) -> bool:
        self._prune()
        return key in self._expiry

    def add(self, key: Hashable) -> None:
        expires = self.clock.seconds() + self.horizon
        self._expiry[key] = expires
        self._order.append((expires, key))
        while len(self._order) > self.capacity:
            expires, key = self._order.popleft()
            if self._expiry.get(key) == expires:
                del self._expiry[key]

    def __len__(self) -> int:
        return len(self._expiry)

    def discard(self, key: Hashable) -> None:
        self._expiry.pop(key, None)

    def _prune(self):
        now = self.clock.seconds()
        while self._order and self._order[0][0] <= now:
            expires, key = self._order.popleft()
            if self._expiry.get(key) == expires:
                del self._expiry[key]
