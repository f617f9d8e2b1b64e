# -*- test-case-name: chatd.test.test_fanout -*-
"""
Sliding-window limits kept in Redis, shared by every node of a cluster.

Each key's events are a sorted set, C{chatd:window:<name>:<key>}, scored by the
time in ms. Checking for room and counting the new event are one Lua script, so
that requests arriving together on several nodes (or pipelined on one) cannot
all see room for one more: the limit holds exactly, whatever the timing.
Giving a slot back is one C{ZREM} of its member.

While the node cannot reach Redis, its limits are counted on this node alone.
"""

from twisted.internet.defer import succeed
from twisted.logger import Logger

from chatd.ratelimit import Reservation, SlidingWindow

log = Logger()

# Prune, count and add in one step. Times are ms; a limit of 0 counts without
# limit. Answers {1, events before this one} or {0, seconds to wait as text}.
RESERVE_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - width)
local count = redis.call('ZCARD', key)
if limit > 0 and count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, string.format('%.3f', tonumber(oldest[2]) + width - now)}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(width))
return {1, count}
"""


class RedisWindow:
    """
    One named window of a L{chatd.fanout.redis.RedisFanout}, one script run
    per reservation. Tokens are the sorted-set members (L{str}) for slots taken
    in Redis, and the local window's for slots counted here while Redis was
    away.
    """

    def __init__(self, fanout, name, count, seconds):
        self._fanout = fanout
        self._name = name
        self._count = count
        self._seconds = seconds
        self._local = SlidingWindow(fanout.clock, count, seconds)
        self._members = 0

    def _key(self, key):
        return "chatd:window:%s:%s" % (self._name, key)

    def reserve(self, key):
        fanout = self._fanout
        if fanout._commands is None:
            return succeed(self._local.reserve(key))
        self._members += 1
        member = "%s:%s:%d" % (fanout.nodeId, fanout._incarnation, self._members)
        d = fanout._eval(RESERVE_SCRIPT, [self._key(key)],
                         ["%.3f" % (fanout.clock.seconds() * 1000), self._seconds * 1000,
                          self._count or 0, member])

        def answered(reply):
            fanout.outage.worked()
            granted, value = reply
            if int(granted):
                return Reservation(token=member, before=int(value))
            return Reservation(wait=float(value) / 1000)

        def failed(failure):
            # Counted on this node only meanwhile; logged once per outage.
            fanout.outage.failed(failure)
            return self._local.reserve(key)
        return d.addCallbacks(answered, failed)

    def release(self, key, token):
        if not isinstance(token, str):
            return succeed(self._local.release(key, token))
        d = self._fanout._command("ZREM", self._key(key), token)

        def failed(failure):
            # The slot stays counted until it leaves the window: a limit that
            # errs towards refusing.
            log.warn("limit {name}: a slot not given back: {error}", name=self._name,
                     error=failure.getErrorMessage())
        return d.addCallbacks(lambda _: None, failed)

    def hit(self, key):
        return self.reserve(key).addCallback(lambda reservation: reservation.wait)
