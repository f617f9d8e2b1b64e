# -*- test-case-name: chatd.test.test_fanout -*-
"""
What a node sends to Redis, in order, and what waits while Redis is away.

Commands are sent in the order they were queued. While the command connection
is down, or while a subscription must be confirmed first (L{Outbox.hold}),
they wait, up to C{QUEUE_LIMIT} of them, the oldest dropped first with a log
line, rather than dropped: direct messages and presence changes are stored
nowhere else. Commands written but not confirmed when the connection dies are
queued again (receivers drop what they heard already by sequence number), as
far as they are worth resending (L{RESENT}): hash writes are not, since a
node rewrites its hash whole after reconnecting.
"""

from collections import deque
from typing import TYPE_CHECKING, Deque, Tuple

import txredisapi
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from chatd.fanout import directlog

if TYPE_CHECKING:
    from chatd.fanout.connections import Connections

log = Logger()

# One command's arguments, its name first.
Command = Tuple[object, ...]

QUEUE_LIMIT = 10000

# The queued commands that go out again after a reconnect: publishes, and the
# commands that keep a direct message for nodes that cannot hear it.
RESENT = frozenset(["PUBLISH"]) | directlog.COMMANDS


class Outbox:
    """
    The queue of commands to one Redis.

    @param connections: the L{chatd.fanout.connections.Connections} whose
        command connection sends them.
    """

    def __init__(self, connections: "Connections") -> None:
        self._connections = connections
        self._queue: Deque[Command] = deque()
        self._inflight: Deque[Command] = deque()
        self._holding = 0
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def enqueue(self, command: Command) -> None:
        """
        Queue C{command} (a tuple of a command's arguments) to be sent after
        everything queued before it; call L{flush} to send.
        """
        if len(self._queue) >= QUEUE_LIMIT:
            dropped = self._queue.popleft()
            if dropped[0] == "PUBLISH":
                self._dropped += 1
                if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                    log.error("publish queue full while redis is away: {count} event(s) dropped",
                              count=self._dropped)
        self._queue.append(command)

    def hold(self) -> None:
        """
        Keep what is queued from going out until as many L{release}s.
        """
        self._holding += 1

    def release(self) -> None:
        """
        Undo one L{hold}, and send what may go.
        """
        self._holding -= 1
        self.flush()

    def flush(self) -> None:
        """
        Send what is queued, in order, unless a subscription must come first.
        """
        while self._queue and self._holding == 0 and self._connections.commands is not None:
            item = self._queue.popleft()
            self._inflight.append(item)
            d = maybeDeferred(self._connections.commands.execute_command, *item)
            d.addCallbacks(self._confirmed, self._unconfirmed, callbackArgs=(item,),
                           errbackArgs=(item,))

    def _confirmed(self, result, item):
        if self._inflight and self._inflight[0] is item:
            self._inflight.popleft()
        elif item in self._inflight:
            self._inflight.remove(item)

    def _unconfirmed(self, failure, item):
        if failure.check(txredisapi.ConnectionError):
            return  # queued again when the loss is reported
        self._confirmed(None, item)
        log.failure("redis refused {command}", failure, command=item[0])

    def lost(self) -> None:
        """
        The command connection was lost: queue again, first, what was sent but
        not confirmed, and keep only what is worth sending again.
        """
        self._queue.extendleft(reversed([item for item in self._inflight if item[0] in RESENT]))
        self._inflight.clear()
        self._queue = deque(item for item in self._queue if item[0] in RESENT)
