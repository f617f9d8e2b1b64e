# -*- test-case-name: chatd.test.test_failures -*-
"""
Failed logins and wrong room passwords: who may try again, and how soon.

A failure is counted three ways: for the name tried (an account, C{user:alice},
or a room, C{room:#ops}) together with the address it came from; for the
address alone; and for the name across every address. The first two refuse
(RateLimited) when full, and refuse I{that address only}: strangers elsewhere
cannot lock anyone out. The third never refuses; once a name has had
C{login-limit} failures in the window, from anywhere, each further attempt on
it waits before its check, one second and then twice as long each time, up to
C{login-delay} seconds: guesses from many addresses are slowed, and the right
password still gets in.

A slot is taken I{before} a password is checked, and given back when the
password was right: parallel attempts cannot run more bcrypt checks than the
limits allow, since every one of them is counted before any check starts.
A login signature (AUTH) costs a fraction of a millisecond to check and cannot
be guessed, so it is checked first and a valid one is never limited; only the
failures are counted, in the same windows.

In a cluster the windows are the fan-out's, kept in Redis: taking a slot is one
script there, so the limits hold across nodes however the requests interleave.
"""

from typing import List, Tuple

from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater

from chatd.errors import RateLimited
from chatd.ratelimit import inWholeSeconds

# The first wait once a name's free failures are used up; it doubles from there.
FIRST_DELAY = 1.0


class Attempt:
    """
    The slots one password check holds while it runs.
    """

    def __init__(self, slots):
        self._slots = slots

    def succeeded(self):
        """
        The password was right: the attempt was no failure, and its slots are
        given back.

        @return: a L{Deferred} that fires once they are.
        """
        slots, self._slots = self._slots, []
        return _release(slots)


def _release(slots):
    return gatherResults([window.release(key, token) for window, key, token in slots])


class FailureLimits:
    """
    The failure windows of one node (shared by the cluster through the fan-out).

    @param fanout: the L{chatd.interfaces.IFanout} whose windows count.
    @param clock: an L{IReactorTime}, for the delays.
    @param settings: a L{chatd.config.Settings}: C{loginLimit} per name and
        address, C{addressLimit} per address, C{loginDelay} the longest wait.
    """

    def __init__(self, fanout, clock, settings):
        count, seconds = settings.loginLimit
        self.clock = clock
        self.free = count
        self.longest = settings.loginDelay
        self._pairs = fanout.window("pair-failures", count, seconds)
        self._addresses = fanout.window("address-failures", *settings.addressLimit)
        self._names = fanout.window("name-failures", None, seconds)

    def delay(self, before):
        """
        The seconds an attempt waits when its name already had C{before}
        failures (or attempts under way) in the window, from anywhere.
        """
        if before < self.free:
            return 0.0
        return min(self.longest, FIRST_DELAY * 2.0 ** min(before - self.free, 64))

    async def attempt(self, name, address):
        """
        Take the slots of one password check of C{name} from C{address}, and
        wait as long as the name's recent failures say.

        @raise RateLimited: when C{address} has too many failures, for C{name}
            or in all; nothing is then counted.
        @return: the L{Attempt}, to be told when the password was right.
        """
        slots = await self._reserve(name, address)
        reservation = await self._names.reserve(name)
        slots.append((self._names, name, reservation.token))
        wait = self.delay(reservation.before)
        if wait:
            await deferLater(self.clock, wait)
        return Attempt(slots)

    async def failed(self, name, address):
        """
        Count a failure that cost too little to reserve a slot for (a bad AUTH
        signature).

        @raise RateLimited: when C{address} already has too many failures; the
            failure is then not counted.
        """
        await self._reserve(name, address)
        await self._names.reserve(name)

    async def _reserve(self, name, address):
        held: List[Tuple[object, str, object]] = []
        # An address holds no "|", so the pair's key is unambiguous.
        pair = "%s|%s" % (address, name)
        for window, key in ((self._addresses, address), (self._pairs, pair)):
            reservation = await window.reserve(key)
            if not reservation.granted:
                await _release(held)
                raise RateLimited("too many failed attempts from your address; retry in %s"
                                  % inWholeSeconds(reservation.wait))
            held.append((window, key, reservation.token))
        return held
