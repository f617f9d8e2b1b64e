# -*- test-case-name: chatd.test.test_outbox -*-
"""
What each connection has yet to send, bounded per connection and in total.

Every door writes through an L{Outbox}, the transport's streaming producer:
while the transport's own buffer is full, frames wait in the outbox. One
connection may keep at most C{send-queue} bytes waiting, and all of them
together at most C{send-budget} (a L{SendBudget} shared by the doors): past
either, the connection whose frame did not fit is dropped as too slow, as IRC
servers do on "SendQ exceeded". So a crowd of readers that never read cannot
grow the server's memory past the budget.

A frame may be L{bytes} or a L{tuple} of L{bytes} pieces that L{chain} makes.
Pieces let a room message's ciphertext (see L{chatd.e2e.Envelope.sharedCut}) be
one object held by every reader's queue; frames are joined only when the
transport takes them.
"""

from collections import deque
from typing import Any, Deque
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


def chain(*parts):
    """
    One frame made of C{parts}: L{bytes}, L{tuple}s of pieces, or objects with
    C{pieces} (a L{chatd.cut.Cut}).

    @return: L{bytes} when every part is L{bytes}, else a L{tuple} of pieces
        that keeps shared pieces as they are.
    """
    if all(type(part) is bytes for part in parts):
        return b"".join(parts)
    pieces = []
    for part in parts:
        if isinstance(part, bytes):
            pieces.append(part)
        else:
            pieces.extend(getattr(part, "pieces", part))
    return tuple(pieces)


def size(frame):
    """
    The bytes a frame of L{chain} will take on the wire.
    """
    return len(frame) if isinstance(frame, bytes) else sum(map(len, frame))


class SendBudget:
    """
    The bytes waiting in every outbox of the server together.

    @ivar limit: the most that may wait.
    @ivar used: what waits now.
    """

    def __init__(self, limit):
        self.limit = limit
        self.used = 0

    def take(self, count):
        """
        Reserve C{count} bytes.

        @return: whether they fit; nothing is reserved when they do not.
        """
        if self.used + count > self.limit:
            return False
        self.used += count
        return True

    def give(self, count):
        """
        Bytes reserved by L{take} no longer wait.
        """
        self.used -= count


@implementer(IPushProducer)
class Outbox:
    """
    The frames a connection has yet to hand to its transport.

    Registered as the transport's streaming producer: while the transport's own
    buffer is full it pauses us, and frames wait here, counted, until it resumes.

    @param transport: where frames go: L{bytes} through C{write}, pieces
        through C{writeSequence}.
    @param limit: the most bytes that may wait here.
    @param overflow: called, once everything waiting is dropped, when a frame
        does not fit under C{limit} or C{budget}.
    @param budget: the L{SendBudget} shared with the other connections.
    """

    def __init__(self, transport, limit, overflow, budget):
        self.transport = transport
        self.limit = limit
        self.overflow = overflow
        self.budget = budget
        self.paused = False
        self.size = 0
        self._queue: Deque[Any] = deque()

    def write(self, frame):
        if not self.paused:
            # The fan-out's last step for every reader: straight through.
            if type(frame) is bytes:
                self.transport.write(frame)
            else:
                self._hand(frame)
            return
        count = size(frame)
        if self.size + count > self.limit or not self.budget.take(count):
            self.stopProducing()
            self.overflow()
            return
        self._queue.append((frame, count))
        self.size += count

    def _hand(self, frame):
        if isinstance(frame, bytes):
            self.transport.write(frame)
        else:
            self.transport.writeSequence(frame)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self._queue and not self.paused:
            frame, count = self._queue.popleft()
            self.size -= count
            self.budget.give(count)
            self._hand(frame)

    def stopProducing(self):
        self._queue.clear()
        self.budget.give(self.size)
        self.size = 0


_budgets: "WeakKeyDictionary[object, SendBudget]" = WeakKeyDictionary()


def budgetOf(service):
    """
    The L{SendBudget} every door of C{service} shares, made on first use from
    its C{send-budget} setting; the core itself knows nothing of it.
    """
    budget = _budgets.get(service)
    if budget is None:
        budget = _budgets[service] = SendBudget(service.settings.sendBudget)
    return budget
