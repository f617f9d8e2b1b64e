# -*- test-case-name: chatd.test.test_turn -*-
"""
The end of a reactor turn: what the handlers of one turn's reads leave to be
done together once they have all run.

Two kinds of work wait for it, in this order:

1. The frames gathered for each connection (L{chatd.protocols.outbox}): one
   C{send} per connection for everything the turn's messages gave it.
2. Work the recipients need not wait for (L{TurnEnd.later}): the SQL store
   starts its group-commit transaction here. Started at once, its thread woke
   while the turn's messages were still being fanned out and sent, and took
   the GIL each time a C{send} released it; every reader then waited for the
   thread's Python work as well as the server's. A store that numbers its
   messages ahead delivers before the commit anyway, and a commit started at
   the turn's end also takes in every message of the turn.

The turn's end is a C{callLater(0)}, made when the first work of a turn
arrives: Twisted runs it once the current turn's I/O handlers have returned,
before it polls again.
"""

from typing import TYPE_CHECKING, Callable, List
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from chatd.protocols.outbox import Outbox

log = Logger()


class TurnEnd:
    """
    The outboxes with frames gathered this reactor turn, and the work that
    comes after their sends, run together by one call at the turn's end.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self.due: "List[Outbox]" = []
        self.after: List[Callable[[], object]] = []

    def _schedule(self) -> None:
        # Nothing waiting yet (or the turn's end has taken it all): this
        # turn has no call of its own.
        if not (self.due or self.after):
            self.reactor.callLater(0, self.flush)

    def add(self, outbox: "Outbox") -> None:
        """
        Flush C{outbox} at the turn's end.
        """
        self._schedule()
        self.due.append(outbox)

    def later(self, work: Callable[[], object]) -> None:
        """
        Call C{work} at the turn's end, once every outbox due then has sent.
        """
        self._schedule()
        self.after.append(work)

    def flush(self) -> None:
        due, self.due = self.due, []
        after, self.after = self.after, []
        for outbox in due:
            # One connection's failure must not hold back the others' frames.
            try:
                outbox.flush()
            except Exception:
                log.failure("sending a connection's frames")
        for work in after:
            try:
                work()
            except Exception:
                log.failure("work left for the turn's end")


_turnEnds: "WeakKeyDictionary[object, TurnEnd]" = WeakKeyDictionary()


def turnEndOf(reactor: IReactorTime) -> TurnEnd:
    """
    The one L{TurnEnd} of C{reactor}.
    """
    turnEnd = _turnEnds.get(reactor)
    if turnEnd is None:
        turnEnd = _turnEnds[reactor] = TurnEnd(reactor)
    return turnEnd
