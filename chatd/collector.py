# -*- test-case-name: chatd.test.test_collector -*-
"""
The cyclic garbage collector's thresholds while chatd serves.

CPython's default thresholds (700, 10, 10) run a collection of the youngest
generation every 700 allocations of container objects and, now and then, a
collection of every object the process holds. A server handling room
messages allocates several containers per delivery (the parsed envelope's
maps, each reader's cut and call), so collections come thousands of times a
second, and the full ones walk every session, room and cached key: each a
pause of many milliseconds for every connection at once. In a 50-member room
at 200 messages a second on SQLite, raising the thresholds took the p99
latency from 44-68 ms to 17-22 ms (five runs each, bench/README.rst), and
the CPU per delivery down a little.

chatd's own data holds few reference cycles (Twisted's failures and
Deferred chains make most of those that are made), so collecting them less
often costs little memory: the youngest generation is collected every 50 000
allocations rather than every 700, a full collection about a hundred times
less often than by default.
"""

import gc
from typing import Any, Optional, Tuple

from twisted.application.service import Service

THRESHOLDS = (50_000, 20, 100)


class CollectorThresholds(Service):
    """
    Sets the collector's thresholds while the service runs, and gives the
    ones it found back when it stops (so a test process that starts a
    server is left as it was).
    """

    def __init__(self, thresholds: Tuple[int, int, int] = THRESHOLDS,
                 collector: Any = gc) -> None:
        """
        @param collector: the L{gc} module, or what stands for it in tests.
        """
        self._thresholds = thresholds
        self._collector = collector
        self._found: Optional[Tuple[int, ...]] = None

    def startService(self) -> None:
        Service.startService(self)
        self._found = self._collector.get_threshold()
        self._collector.set_threshold(*self._thresholds)

    def stopService(self) -> None:
        if self._found is not None:
            self._collector.set_threshold(*self._found)
            self._found = None
        return Service.stopService(self)
