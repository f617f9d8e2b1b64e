"""
Tests for L{chatd.ratelimit}: sliding windows on a L{Clock}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.ratelimit import SlidingWindow, inWholeSeconds


class SlidingWindowTests(SynchronousTestCase):
    """
    L{SlidingWindow} reserves slots up to its count and gives them back.
    """

    def setUp(self):
        self.clock = Clock()
        self.window = SlidingWindow(self.clock, 2, 10)

    def test_reserveUpToTheCount(self):
        """
        Two slots are granted, each saying how many came before it; the third
        is refused with the wait until the oldest leaves, and is not counted.
        """
        first, second = self.window.reserve("k"), self.window.reserve("k")
        self.assertEqual([(r.granted, r.before) for r in (first, second)],
                         [(True, 0), (True, 1)])
        self.clock.advance(4)
        refused = self.window.reserve("k")
        self.assertFalse(refused.granted)
        self.assertEqual(refused.wait, 6)
        self.assertTrue(self.window.reserve("other").granted)
        self.clock.advance(6)
        self.assertEqual(self.window.reserve("k").before, 0)

    def test_releaseGivesTheSlotBack(self):
        """
        A released slot no longer counts; releasing one that left the window
        already, or an unknown token, changes nothing.
        """
        first = self.window.reserve("k")
        second = self.window.reserve("k")
        self.window.release("k", first.token)
        self.assertEqual(self.window.reserve("k").before, 1)
        self.assertIsNotNone(self.window.hit("k"))
        self.window.release("k", "no such token")
        self.window.release("unknown", second.token)
        self.assertIsNotNone(self.window.hit("k"))

    def test_withoutLimit(self):
        """
        A window without a count grants every slot, counting them.
        """
        window = SlidingWindow(self.clock, None, 10)
        self.assertEqual([window.reserve("k").before for _ in range(50)], list(range(50)))

    def test_hit(self):
        """
        C{hit} answers L{None} for a counted event and the wait for a refused
        one.
        """
        self.assertEqual([self.window.hit("k") for _ in range(3)], [None, None, 10])

    def test_sweep(self):
        """
        Keys whose events all expired are forgotten once the table is full.
        """
        self.window.sweepAt = 3
        for key in "abc":
            self.window.hit(key)
        self.clock.advance(10)
        self.window.hit("d")
        self.assertEqual(list(self.window._events), ["d"])

    def test_sweepOncePerWindow(self):
        """
        Expired keys are also forgotten once a window length has passed since
        the last sweep, however few keys there are.
        """
        for key in "abc":
            self.window.hit(key)
        self.clock.advance(5)
        self.window.hit("d")
        self.assertEqual(list(self.window._events), ["a", "b", "c", "d"])
        self.clock.advance(5)
        self.window.hit("e")
        self.assertEqual(list(self.window._events), ["d", "e"])


class WholeSecondsTests(SynchronousTestCase):
    """
    L{inWholeSeconds} rounds waits up for people to read.
    """

    def test_roundsUp(self):
        """
        Fractions round up, and a wait is at least a second.
        """
        self.assertEqual([inWholeSeconds(s) for s in (0, 0.2, 1, 1.2, 59.9)],
                         ["1 s", "1 s", "1 s", "2 s", "60 s"])
