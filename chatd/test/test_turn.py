"""
Tests for L{chatd.turn}: what waits for the end of a reactor turn.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.turn import TurnEnd, turnEndOf


class _Outbox:
    """
    Records its flush in C{log}, as an outbox's send would.
    """

    def __init__(self, log, name):
        self.log, self.name = log, name

    def flush(self):
        self.log.append(self.name)


class TurnEndTests(SynchronousTestCase):
    """
    The turn's end flushes every outbox that gathered frames in it, then runs
    the work left for after the sends.
    """

    def test_oneFailureDoesNotHoldTheOthers(self):
        """
        An outbox whose flush raises is logged; those after it are flushed.
        """
        clock = Clock()
        turnEnd = TurnEnd(clock)
        flushed: list = []

        class Broken:
            def flush(self):
                raise RuntimeError("broken")

        fine = _Outbox(flushed, "fine")
        turnEnd.add(Broken())  # type: ignore[arg-type]
        turnEnd.add(fine)  # type: ignore[arg-type]
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(flushed, ["fine"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(turnEnd.due, [])

    def test_laterAfterTheSends(self):
        """
        Work left for later runs at the turn's end after every outbox of the
        turn has sent, even an outbox that gathered after the work was left;
        one call is scheduled for both.
        """
        clock = Clock()
        turnEnd = TurnEnd(clock)
        happened: list = []
        turnEnd.later(lambda: happened.append("commit"))
        turnEnd.add(_Outbox(happened, "send"))  # type: ignore[arg-type]
        self.assertEqual((len(clock.getDelayedCalls()), happened), (1, []))
        clock.advance(0)
        self.assertEqual(happened, ["send", "commit"])

    def test_failingWorkLogged(self):
        """
        Work that raises is logged, and the work after it still runs.
        """
        clock = Clock()
        turnEnd = TurnEnd(clock)
        happened: list = []
        turnEnd.later(lambda: 1 / 0)
        turnEnd.later(lambda: happened.append("next"))
        clock.advance(0)
        self.assertEqual(happened, ["next"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_nextTurn(self):
        """
        Work left while the turn's end runs waits for the next one.
        """
        calls: list = []

        class Reactor:
            def callLater(self, delay, f):
                calls.append(f)

        turnEnd = TurnEnd(Reactor())  # type: ignore[arg-type]
        happened: list = []
        turnEnd.later(lambda: turnEnd.later(lambda: happened.append("second")))
        calls.pop()()
        self.assertEqual((happened, len(calls)), ([], 1))
        calls.pop()()
        self.assertEqual((happened, calls), (["second"], []))

    def test_onePerReactor(self):
        """
        Every caller with the same reactor shares its one turn's end.
        """
        clock = Clock()
        self.assertIs(turnEndOf(clock), turnEndOf(clock))
        self.assertIsNot(turnEndOf(clock), turnEndOf(Clock()))
