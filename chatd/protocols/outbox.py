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

On a TCP (or UNIX socket) transport with nothing waiting, the frames of one
reactor turn are gathered and go onto the socket together at the turn's end,
in one C{send} (L{chatd.turn.TurnEnd}). Twisted's C{write} would buffer them
too, but then registers the socket for writing (an C{epoll_ctl}), sends from
the next poll through its dispatch, and unregisters it (another
C{epoll_ctl}): at low rates a quarter to a third of the server's CPU per
delivery (bench/README.rst). Twisted has no such write of its own, so it is
written here, keeping to the buffers' meaning: what the socket does not take
goes to the transport's C{write}, and everything later queues behind it, so
the order is kept and the transport still pauses the outbox when it is full.

On a TLS transport over TCP, the turn's frames are gathered the same way and
go to the TLS transport's C{write} together at the turn's end: one record
for the turn, sealed once (L{chatd.tlshandoff}), where a write a frame would
make a record each.
"""

from collections import deque
from typing import Any, Callable, Deque, cast
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.tcp import Connection
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from chatd.turn import TurnEnd, turnEndOf


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


def framed(prefix, tail):
    """
    The frame of a message's shared C{prefix} (L{bytes}, or a L{tuple} of
    pieces; L{chatd.protocols.splice.Prefixes}) and a reader's C{tail}, as
    L{chain} makes frames.
    """
    return prefix + tail if type(prefix) is bytes else (*prefix, tail)


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
        # A socket to send on straight, and the turn's end that flushes it.
        self._socket: Any = None
        self._turnEnd: "TurnEnd | None" = None
        if isinstance(transport, Connection):
            self._socket = transport.socket
            self._turnEnd = turnEndOf(cast(IReactorTime, transport.reactor))
        elif isinstance(transport, TLSMemoryBIOProtocol) and isinstance(transport.transport,
                                                                         Connection):
            self._turnEnd = turnEndOf(cast(IReactorTime, transport.transport.reactor))
        self._gathered: "list[bytes] | None" = None
        self._gatheredSize = 0
        # What to do once everything waiting is handed over (L{handOver}).
        self._afterHandOver: "Callable[[], None] | None" = None

    def write(self, frame):
        gathered = self._gathered
        if gathered is not None:
            # The fan-out's last step for every reader after the first this turn.
            if type(frame) is not bytes:
                frame = b"".join(frame)
            gathered.append(frame)
            self._gatheredSize += len(frame)
            if self._gatheredSize >= GATHER_LIMIT:
                self.flush()
            return
        if not self.paused:
            transport = self.transport
            if type(frame) is bytes and self._turnEnd is not None and (
                    self._socket is None or _idle(transport)):
                self._gathered = [frame]
                self._gatheredSize = len(frame)
                if len(frame) >= GATHER_LIMIT:
                    self.flush()
                else:
                    self._turnEnd.add(self)
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

    def writeSpliced(self, prefix, tail):
        """
        Write the frame of a message's shared C{prefix} and a reader's own
        C{tail} (L{framed}): the fan-out's step for every reader. While this
        turn's frames gather, the two go in as they are, to be joined with
        the rest once, at the turn's end; so the prefix is not copied per
        reader here.
        """
        gathered = self._gathered
        if gathered is None:
            self.write(framed(prefix, tail))
            return
        if type(prefix) is bytes:
            gathered.append(prefix)
            self._gatheredSize += len(prefix) + len(tail)
        else:
            gathered.extend(prefix)
            self._gatheredSize += size(prefix) + len(tail)
        gathered.append(tail)
        if self._gatheredSize >= GATHER_LIMIT:
            self.flush()

    def _hand(self, frame):
        if isinstance(frame, bytes):
            self.transport.write(frame)
        else:
            self.transport.writeSequence(frame)

    def flush(self) -> None:
        """
        Send the frames gathered this turn: straight onto a TCP socket while
        the transport holds nothing, the rest (and everything on TLS) through
        the transport's C{write}.
        """
        gathered, self._gathered = self._gathered, None
        if gathered is None:
            return
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        transport = self.transport
        if self._socket is not None and _idle(transport):
            try:
                sent = self._socket.send(data)
            except OSError:
                # Full (EAGAIN) or broken: the transport's own write sees to
                # it, and closes the connection when the socket is broken.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def pauseProducing(self):
        self.paused = True

    def handOver(self, then: "Callable[[], None]") -> None:
        """
        Hand every frame waiting here to the transport, then call C{then}: at
        once when the transport takes them all now, else from
        L{resumeProducing} once it has taken the rest. Until then the frames
        stay here, counted under C{limit} and C{budget}: a connection that
        closes while its reader does not read holds no more than before.

        While the transport has paused us, we wait for it to resume us rather
        than resume ourselves: a TLS transport, paused once, does not pause
        its producer again, and would take the whole queue at once.
        """
        self._afterHandOver = then
        if not self.paused:
            self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        self.flush()
        while self._queue and not self.paused:
            frame, count = self._queue.popleft()
            self.size -= count
            self.budget.give(count)
            self._hand(frame)
        if self._afterHandOver is not None and not self._queue:
            then, self._afterHandOver = self._afterHandOver, None
            then()

    def stopProducing(self):
        self._afterHandOver = None
        self._gathered = None
        self._queue.clear()
        self.budget.give(self.size)
        self.size = 0


# Gathered frames are sent once this many bytes are waiting, without waiting
# for the turn's end: a larger send costs hardly less a byte, and so a turn
# holds little per connection (Twisted's default buffer size; chatd's
# transports buffer up to four times as much, see chatd.protocols.tuneSocket).
GATHER_LIMIT = 65536


def _idle(transport: Connection) -> bool:
    """
    Whether C{transport} is open and holds no bytes of its own to send.
    """
    return not (transport.dataBuffer or transport._tempDataBuffer
                or transport.disconnecting or not transport.connected)


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
