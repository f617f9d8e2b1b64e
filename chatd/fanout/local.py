# -*- test-case-name: chatd.test.test_service -*-
"""
The fan-out of a node that is its own cluster: nothing to publish to, counters
and limits in memory.
"""

from typing import TYPE_CHECKING, Hashable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from chatd.interfaces import IFanout
from chatd.ratelimit import Reservation, SlidingWindow

if TYPE_CHECKING:
    from chatd.core.events import Event
    from chatd.core.service import ChatService


class _Window:
    """
    A L{SlidingWindow} answering through L{Deferred}s, as a shared one would.
    """

    def __init__(self, clock: IReactorTime, count: Optional[int], seconds: float) -> None:
        self._window = SlidingWindow(clock, count, seconds)

    def reserve(self, key: str) -> "Deferred[Reservation]":
        return succeed(self._window.reserve(key))

    def release(self, key: str, token: Hashable) -> "Deferred[None]":
        self._window.release(key, token)
        return succeed(None)

    def hit(self, key: str) -> "Deferred[Optional[float]]":
        return succeed(self._window.hit(key))


@implementer(IFanout)
class LocalFanout:
    """
    A single node: events go nowhere, limits and counters live here.
    """

    nodeId = "local"

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._guests = 0

    def start(self, service: "ChatService") -> "Deferred[None]":
        return succeed(None)

    def stop(self) -> "Deferred[None]":
        return succeed(None)

    def publish(self, event: "Event") -> None:
        pass

    def guestNumber(self) -> int:
        number, self._guests = self._guests, self._guests + 1
        return number

    def window(self, name: str, count: Optional[int], seconds: float) -> _Window:
        return _Window(self.clock, count, seconds)

    def timestamp(self, room: str, now: int, last: int) -> "Deferred[int]":
        return succeed(max(now, last + 1))
