# -*- test-case-name: chatd.test.test_fanout -*-
"""
What the nodes of a cluster count together in Redis: sliding-window limits,
room timestamps and guest numbers.

Each window key's events are a sorted set, C{chatd:window:<name>:<key>}, scored
by the time in ms. Checking for room and counting the new event are one Lua
script, so that requests arriving together on several nodes (or pipelined on
one) cannot all see room for one more: the limit holds exactly, whatever the
timing. Giving a slot back is one C{ZREM} of its member.

A room's newest timestamp is C{chatd:ts:<room>}, moved on by a script, so that
timestamps stay unique and ordered across nodes. Guest numbers come in blocks
of C{GUEST_BLOCK} from the counter C{chatd:guests}.

While the node cannot reach Redis, its limits are counted on this node alone,
room timestamps come from this node's clock (the shared store moves one
another node took to the next free one), and guest numbers come from the block
in hand, then at random from a range blocks never reach. Failures are logged
once per outage (L{chatd.outage.Outage}).
"""

import random
from collections import deque
from typing import TYPE_CHECKING, Deque, Hashable, Iterator, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from chatd.fanout.scripts import RESERVE_SCRIPT, TIMESTAMP_SCRIPT
from chatd.names import fold
from chatd.ratelimit import Reservation, SlidingWindow

if TYPE_CHECKING:
    from chatd.fanout.connections import Connections
    from chatd.outage import Outage

log = Logger()

GUEST_BLOCK = 20
# Guest numbers taken while Redis cannot hand out blocks: far above any block.
GUEST_FALLBACK = (10**9, 10**10)
TIMESTAMP_EXPIRY = 86400 * 1000


class RedisWindow:
    """
    One named window shared through Redis, one script run per reservation.
    Tokens are the sorted-set members (L{str}) for slots taken in Redis, and
    the local window's for slots counted here while Redis was away.

    @param connections: the node's L{chatd.fanout.connections.Connections}.
    @param outage: the L{chatd.outage.Outage} that failures are told to.
    @param owner: what makes this node's members unique (node and incarnation).
    """

    def __init__(self, connections: "Connections", outage: "Outage", owner: str, name: str,
                 count: Optional[int], seconds: float) -> None:
        self._connections = connections
        self._outage = outage
        self._owner = owner
        self._name = name
        self._count = count
        self._seconds = seconds
        self._local = SlidingWindow(connections.clock, count, seconds)
        self._members = 0

    def _key(self, key):
        return "chatd:window:%s:%s" % (self._name, key)

    def reserve(self, key: str) -> "Deferred[Reservation]":
        connections = self._connections
        if connections.commands is None:
            return succeed(self._local.reserve(key))
        self._members += 1
        member = "%s:%d" % (self._owner, self._members)
        d = connections.eval(RESERVE_SCRIPT, [self._key(key)],
                             ["%.3f" % (connections.clock.seconds() * 1000), self._seconds * 1000,
                              self._count or 0, member])

        def answered(reply):
            self._outage.worked()
            granted, value = reply
            if int(granted):
                return Reservation(token=member, before=int(value))
            return Reservation(wait=float(value) / 1000)

        def failed(failure):
            # Counted on this node only meanwhile; logged once per outage.
            self._outage.failed(failure)
            return self._local.reserve(key)
        return d.addCallbacks(answered, failed)

    def release(self, key: str, token: Hashable) -> "Deferred[None]":
        if not isinstance(token, str):
            self._local.release(key, token)
            return succeed(None)
        d = self._connections.command("ZREM", self._key(key), token)

        def failed(failure):
            # The slot stays counted until it leaves the window: a limit that
            # errs towards refusing.
            log.warn("limit {name}: a slot not given back: {error}", name=self._name,
                     error=failure.getErrorMessage())
        return d.addCallbacks(lambda _: None, failed)

    def hit(self, key: str) -> "Deferred[Optional[float]]":
        return self.reserve(key).addCallback(lambda reservation: reservation.wait)


def timestamp(connections: "Connections", outage: "Outage", room: str, now: int,
              last: int) -> "Deferred[int]":
    """
    The next timestamp of C{room}: above C{last} and every one any node gave,
    at least C{now}; this node's own answer while Redis fails.

    @return: a L{Deferred} of the timestamp (ms).
    """
    fallback = max(now, last + 1)
    if connections.commands is None:
        return succeed(fallback)
    d = connections.eval(TIMESTAMP_SCRIPT, ["chatd:ts:" + fold(room)],
                         [now, last, TIMESTAMP_EXPIRY])

    def answered(reply):
        outage.worked()
        return int(reply)

    def failed(failure):
        outage.failed(failure)
        return fallback
    return d.addCallbacks(answered, failed)


class GuestNumbers:
    """
    Guest numbers unique across the cluster, from blocks taken in Redis.
    """

    def __init__(self, connections: "Connections") -> None:
        self._connections = connections
        self._blocks: Deque[Iterator[int]] = deque()
        self._fetching = False

    def low(self) -> bool:
        """
        Whether another block should be fetched.
        """
        return len(self._blocks) < 2

    async def fetch(self) -> None:
        """
        Take one more block from Redis; a failure is logged, and numbers then
        come from the fallback range once the blocks in hand are used up.
        """
        if self._fetching:
            return
        self._fetching = True
        try:
            end = int(await self._connections.command("INCRBY", "chatd:guests", GUEST_BLOCK))
            self._blocks.append(iter(range(end - GUEST_BLOCK, end)))
        except Exception as e:
            log.warn("no block of guest numbers from redis: {error}", error=e)
        finally:
            self._fetching = False

    def next(self, refill: bool) -> int:
        """
        The next guest number.

        @param refill: whether to fetch a block when the last one starts.
        """
        while self._blocks:
            number = next(self._blocks[0], None)
            if number is not None:
                if len(self._blocks) == 1 and refill and self._connections.commands is not None:
                    Deferred.fromCoroutine(self.fetch())
                return number
            self._blocks.popleft()
        return random.randrange(*GUEST_FALLBACK)
