# -*- test-case-name: chatd.test.test_outage -*-
"""
Logging an outage of something chatd depends on (the database, Redis) without
a storm: while it is out, every request that needs it fails, and a line per
failure would be thousands of identical tracebacks a second that bury
everything else and fill the disk.

So an L{Outage} logs once when the outage starts, with the first failure and
its traceback (the one worth reading), then only counts, and logs once more
when it ends, with how long it lasted and how many failures it caused.
"""

from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

log = Logger()


class Outage:
    """
    The state of one dependency: up, or out since a moment, with a count.

    @ivar since: when the current outage started (the clock's seconds), or
        L{None} while the dependency works.
    @ivar failures: how many failures the current outage has caused.
    """

    def __init__(self, what: str, clock: IReactorTime,
                 meanwhile: str = "requests that need it fail until it is back") -> None:
        """
        @param what: names the dependency in log lines ("the database").
        @param clock: tells the outage's start and length.
        @param meanwhile: what an outage means for chatd, for its first line.
        """
        self.what = what
        self.meanwhile = meanwhile
        self._clock = clock
        self.since: Optional[float] = None
        self.failures = 0

    def failed(self, failure: Failure) -> None:
        """
        A request failed because the dependency is out: log it if it is the
        first of an outage, else count it.
        """
        self.failures += 1
        if self.since is None:
            self.since = self._clock.seconds()
            log.failure("{what} is unavailable; {meanwhile} (further failures are "
                        "counted, not logged)", failure, LogLevel.error, what=self.what,
                        meanwhile=self.meanwhile)

    def worked(self) -> None:
        """
        A request went through: end the outage, if there was one, with a line
        saying how long it lasted and how many failures it caused.
        """
        if self.since is None:
            return
        log.warn("{what} is back after {seconds:.1f} s; {failures} failure(s) "
                 "meanwhile", what=self.what, seconds=self._clock.seconds() - self.since,
                 failures=self.failures)
        self.since = None
        self.failures = 0
