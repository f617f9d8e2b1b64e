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
"""

import atexit
import os
import sys
from typing import Callable

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

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


def describe(error: BaseException) -> str:
    """
    The line that reports a start that failed with C{error}.
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
        self.failure = None

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
