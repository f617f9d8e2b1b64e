# -*- test-case-name: chatd.test.test_bench_storewrite -*-
"""
What the SQLite store's own thread spends to store one room message, with no
server: the store's real transaction (its queued-write runner and
C{_appendMessage}: the at-rest seal, the reader set, the row, the sequence
counter, each write under its savepoint) on a new database file, in this
process.

    python -m bench.storewrite [--bytes 72000] [--batch 13] [--page-size N]

C{--batch} messages go in each transaction, as the store's group commit puts
every message queued while the previous commit ran in the next one (shape
C{d/5} averages about 13; a server at a few messages a second commits them
one by one). C{--page-size} makes the new database with that page size
instead of SQLite's (chatd's) 4096, before the store's own statements run.
It prints user, system and total CPU microseconds per message, the median of
C{--runs} runs: CPU time, so other work on the machine counts only through
shared caches.

It calls the store's private write methods on a plain C{sqlite3} cursor,
rather than going through the connection pool, so that what it counts is the
database work alone: in a server the same work also pays for the hand-offs
of the interpreter lock between the pool's thread and the reactor's, which
only a real server shows (C{bench.chatload} with C{--server-pid}).
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
from typing import cast

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.task import Clock

from chatd.store.engines import SQLITE
from chatd.store.numbering import readNumbering
from chatd.store.seal import AtRestKeys, generateKey
from chatd.store.sql import AdbapiStore, loadMigrations

_ROOM = "#bench"


def _inTransaction(cursor, interaction, *args):
    cursor.execute(SQLITE.beginStatement)
    result = interaction(cursor, *args)
    cursor.execute("COMMIT")
    return result


def runOnce(directory, envelope, readers, messages, batch, pageSize=None):
    """
    Store C{messages} room messages in transactions of C{batch}, on a new
    database in C{directory}.

    @return: (user, system) CPU microseconds per message.
    """
    path = os.path.join(directory, "store.sqlite")
    # The store's pool is never used: the transactions run on a cursor here.
    unused = cast(ConnectionPool, object())
    store = AdbapiStore(SQLITE, (path,), AtRestKeys([generateKey()]), pool=unused,
                        reactor=Clock(), migrations=loadMigrations(SQLITE.dialect))
    # In this one thread; the store opens its transactions itself.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        if pageSize is not None:
            connection.execute("PRAGMA page_size=%d" % (pageSize,))
        SQLITE.onConnect(connection)
        cursor = connection.cursor()
        _inTransaction(cursor, store._readVersion)
        for version, script in store._migrations:
            _inTransaction(cursor, store._migrate, version, script)
        cursor.execute(SQLITE.beginStatement)
        cursor.execute("INSERT INTO rooms (name_key, name, created_ms) VALUES (?, ?, 0)",
                       (_ROOM, _ROOM))
        cursor.execute("COMMIT")
        numbering = _inTransaction(cursor, readNumbering, store._execute)

        def transaction(first):
            writes = []
            for n in range(first, first + batch):
                stamp = numbering.take(_ROOM, 1000 + n)
                writes.append((store._appendMessage, (
                    _ROOM, readers[n % 10], int(stamp), "e%d" % (n,), envelope,
                    readers, stamp.sequence)))
            for outcome in _inTransaction(cursor, store._runWrites, writes):
                if not isinstance(outcome, int):
                    raise RuntimeError("a write was refused: %r" % (outcome,))

        # The first transaction stores the reader set, as a room's first
        # message does; the others find it, as the rest of a room's do.
        transaction(0)
        before = os.times()
        stored = 0
        while stored < messages:
            transaction(batch + stored)
            stored += batch
        after = os.times()
    finally:
        connection.close()
    return ((after.user - before.user) / stored * 1e6,
            (after.system - before.system) / stored * 1e6)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=72000,
                        help="envelope size (72000: a 200-member room's)")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--batch", type=int, default=13)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    envelope = os.urandom(args.bytes)
    readers = tuple("member%04d" % (n,) for n in range(args.readers))
    results = []
    for _ in range(args.runs):
        directory = tempfile.mkdtemp(prefix="chatd-storewrite-")
        try:
            results.append(runOnce(directory, envelope, readers, args.messages,
                                   args.batch, args.page_size))
        finally:
            shutil.rmtree(directory)
    user = statistics.median(u for u, _ in results)
    system = statistics.median(s for _, s in results)
    total = statistics.median(u + s for u, s in results)
    print("bytes %d  batch %d  page size %s: user %.0f  system %.0f  total %.0f"
          " us per message (median of %d)" % (
              args.bytes, args.batch, args.page_size or "default", user, system, total,
              args.runs))


if __name__ == "__main__":
    main()
