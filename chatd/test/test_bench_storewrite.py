# -*- test-case-name: chatd.test.test_bench_storewrite -*-
"""
Tests for C{bench.storewrite}, the SQLite store's CPU per stored message;
L{chatd.test.benchtree} finds C{bench/}.
"""

import os
import sqlite3

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatd.test.benchtree import benchModule

try:
    runOnce = benchModule("storewrite").runOnce
except SkipTest as noTree:
    skip = str(noTree)


class RunOnceTests(SynchronousTestCase):
    """
    L{runOnce} stores the messages through the store's own transaction, on a
    database with the page size asked for.
    """

    def stored(self, pageSize=None):
        directory = self.mktemp()
        os.mkdir(directory)
        readers = tuple("member%d" % (n,) for n in range(12))
        user, system = runOnce(directory, b"x" * 5000, readers, 4, 2, pageSize)
        self.assertGreaterEqual(user, 0)
        self.assertGreaterEqual(system, 0)
        database = sqlite3.connect(os.path.join(directory, "store.sqlite"))
        self.addCleanup(database.close)
        return database

    def test_messagesStored(self):
        """
        The first transaction and the measured ones are all stored, numbered
        in order, sharing one reader set, with SQLite's page size.
        """
        database = self.stored()
        self.assertEqual(database.execute("SELECT seq FROM messages ORDER BY id").fetchall(),
                         [(n,) for n in range(1, 7)])
        self.assertEqual(database.execute("SELECT COUNT(*) FROM reader_sets").fetchall(),
                         [(1,)])
        self.assertEqual(database.execute("PRAGMA page_size").fetchall(), [(4096,)])

    def test_pageSize(self):
        """
        A page size asked for is the new database's.
        """
        database = self.stored(16384)
        self.assertEqual(database.execute("PRAGMA page_size").fetchall(), [(16384,)])
