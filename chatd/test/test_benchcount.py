"""
Tests for L{bench.inprocess} and L{bench.instructions}: the in-process room
that the instruction counts are taken on delivers what a real server does,
for chatd and twisted.words alike.
"""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from chatd.test.benchtree import benchModule as _bench


class InProcessRoomTests(SynchronousTestCase):
    """
    Every reader but the sender reads every message, once.
    """

    def test_chatd(self):
        """
        chatd's readers each read one ROOM_MSG frame per message, about the
        size of a cut envelope; the sender reads its acknowledgements.
        """
        result = _bench("instructions").measure("chatd", 4, 6, 10)
        self.assertEqual(result["deliveries"], 18)
        # A cut of one reader's entries is about a kilobyte; the three
        # readers' frames and the sender's six acknowledgements, no more.
        self.assertGreater(result["bytes_read"], 18 * 900)
        self.assertLess(result["bytes_read"], 18 * 1400)

    def test_words(self):
        """
        twisted.words' readers each read one PRIVMSG line per message.
        """
        result = _bench("instructions").measure("words", 4, 6, 10)
        self.assertEqual(result["deliveries"], 18)
        line = len(":reader0!reader0@bench.local PRIVMSG #bench :0 xxxxxxxxxx\r\n")
        self.assertEqual(result["bytes_read"], 18 * line)


class TotalTests(SynchronousTestCase):
    """
    The count is the totals line of callgrind's output, not its summary.
    """

    def test_totalsNotSummary(self):
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "callgrind.out")
            with open(path, "w") as output:
                output.write("events: Ir\nsummary: 0\nfn=x\n1 5\ntotals: 12345\n")
            self.assertEqual(_bench("instructions")._total(path), 12345)

    def test_noTotals(self):
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "callgrind.out")
            with open(path, "w") as output:
                output.write("events: Ir\nsummary: 0\n")
            self.assertRaises(ValueError, _bench("instructions")._total, path)
