# -*- test-case-name: chatd.test.test_startup -*-
"""
A start that cannot succeed ends the process: one line saying why, and a
non-zero exit status, so that an operator sees the cause at once and a
supervisor (systemd's C{Restart=}) knows the start failed, instead of a process
that lingers without serving.

Whatever stands in the way of serving what chatd was configured to serve
raises L{StartupError} with a sentence naming the cause (a port in use, a
damaged database, a missing module...), wherever it is found:

    - while the service is made, before the reactor runs (the data directory,
      the modules an option needs): L{chatd.tap.makeService} turns it into a
      L{SystemExit}, which Python prints on standard error as one line;
    - while the service starts (the store opens, the cluster is joined, the
      doors listen): the L{FailedStart} of the service tree logs it as one
      critical line and stops the reactor, and the process exits with
      L{EXIT_STATUS} once twistd has shut down.

Any other exception on the way is a bug, not a diagnosis: it is logged with
its traceback, and the process exits just the same.

A server chatd depends on (PostgreSQL, Redis) may simply not be up yet, as
when a whole machine boots: L{keepTrying} waits for it, with backoff and a
line per attempt, for a bounded time (C{--start-timeout}) before giving up
with a L{StartupError}.
"""

import atexit
import os
import sys
from typing import Callable, Optional

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from chatd.errors import Unavailable

log = Logger()

# What a failed start exits with: 1, "general error", which systemd counts as
# a failure to restart from.
EXIT_STATUS = 1


class StartupError(Exception):
    """
    chatd cannot serve what it was configured to serve; C{str(error)} is one
    line for the operator that names the cause and, where there is one, the
    fix.
    """


def describe(error: object) -> str:
    """
    The line that reports a start that failed with C{error}: an exception,
    typically, or a L{Failure}'s C{value}, which its type allows to be None.
    """
    return "chatd cannot start: %s" % (error,)


def exitWhenDone(status: int) -> None:
    """
    Make the process exit with C{status} once it is done: after the reactor
    has stopped and twistd has cleaned up (pid file, log), at interpreter exit.

    twistd offers no way to set its exit status, and an exception out of the
    reactor would be printed as a traceback; so the last thing the process
    does is flush its output and leave with C{os._exit}.
    """
    def leave():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)

    atexit.register(leave)


class FailedStart:
    """
    What a service tree does when its start fails: log why, and stop the
    reactor, with a non-zero exit status to come.

    @ivar failure: the first failure reported, or L{None}.
    """

    def __init__(self, reactor: IReactorCore,
                 exit: Callable[[int], None] = exitWhenDone) -> None:
        """
        @param reactor: the reactor to stop.
        @param exit: called once with L{EXIT_STATUS}; the tests pass a
            recorder, since the default ends the process.
        """
        self._reactor = reactor
        self._exit = exit
        self.failure: Optional[Failure] = None

    def __call__(self, failure: Failure) -> None:
        """
        Report C{failure} (a start that cannot complete) and end the process;
        only the first report counts, since one cause is enough and the rest
        are often its consequences.
        """
        if self.failure is not None:
            return
        self.failure = failure
        if failure.check(StartupError):
            log.critical("{line}", line=describe(failure.value))
        else:
            log.failure(describe(failure.value), failure, LogLevel.critical)
        self._exit(EXIT_STATUS)
        # Also when the failure comes before the reactor runs (a store that
        # opens at once): the reactor then stops as soon as it has started.
        self._reactor.callWhenRunning(self._stop)

    def _stop(self):
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            # Already stopping, for another reason.
            pass


# The wait before attempt n + 1: 0.5 s, doubling up to 5 s, with jitter, as
# the Redis fan-out reconnects.
START_BACKOFF = backoffPolicy(initialDelay=0.5, maxDelay=5.0, factor=2.0)


def reason(error: BaseException) -> str:
    """
    What went wrong, for a log line: the cause of an L{Unavailable} (whose
    own message is written for clients), else the error itself.
    """
    cause = error.__cause__ if isinstance(error, Unavailable) else None
    return " ".join(str(cause or error).split())


async def keepTrying(attempt: Callable[[], Deferred], clock: IReactorTime, bound: float,
                     what: str, policy: Callable[[int], float] = START_BACKOFF) -> object:
    """
    Call C{attempt} until it does not fail with L{Unavailable}, logging a line
    for each failure and waiting C{policy(n)} seconds after the n-th, for
    C{bound} seconds at most.

    @param attempt: returns a L{Deferred}; one still waiting when C{bound}
        runs out is cancelled.
    @param what: names what is waited for in messages ("the database").
    @return: what the first successful attempt gave.
    @raise StartupError: when C{bound} seconds have passed without success,
        naming C{what} and the last reason.
    """
    deadline = clock.seconds() + bound
    failures = 0
    last = "no answer"
    while True:
        left = deadline - clock.seconds()
        try:
            if left <= 0:
                raise TimeoutError()
            return await attempt().addTimeout(left, clock)
        except Unavailable as e:
            failures += 1
            last = reason(e)
        except TimeoutError:
            raise StartupError("%s could not be reached in %g s (%d failed attempts; "
                               "last: %s)" % (what, bound, failures, last)) from None
        left = deadline - clock.seconds()
        log.warn("{what} cannot be reached (attempt {attempt}): {reason}; still trying "
                 "for {left:.0f} s", what=what, attempt=failures, reason=last,
                 left=max(left, 0))
        await deferLater(clock, max(0, min(policy(failures), left)))
