# -*- test-case-name: chatd.test.test_ahead -*-
"""
Numbering messages before they are committed, for a store that alone writes
its database (the memory store; SQLite, whose file one chatd process owns).

Such a store hands each room message its server timestamp and its store-wide
sequence number on the reactor thread, from counters read once when it
opens; the transaction then writes exactly those values. The core can so
deliver a message while its commit (and the disk flush under it) is still
running, and answer the sender once it is done (L{chatd.core.messages}).

Two rules keep the numbers sound when a commit fails after the message was
delivered:

  - a number once handed out is never handed out again by this process,
    so the next message gets a higher one, whatever became of the failed one;
  - a store opening reads its counter as the highest of the stored counter
    and every device's mark (L{readNumbering}), so a mark raised to a number
    whose message was never committed cannot hide a later message after a
    restart either.

Stores shared by several nodes (PostgreSQL) cannot number ahead: each node
would count on its own. They take both numbers inside the transaction, under
a lock, and the core delivers after the commit, as before.
"""

from typing import Dict, Mapping, Optional

from chatd.names import fold
from chatd.store.entries import Stamp

# The schema version that made the store-wide sequence and the device marks
# (006-devices): a store kept on an older schema (the tests of upgrades) has
# nothing to number from.
SEQUENCE_SCHEMA = 6


class NumberingConflict(Exception):
    """
    The database's counter is past a number this process handed out:
    something else writes messages to a database this process must own alone.
    """


class Numbering:
    """
    The next timestamps and sequence numbers of one store's messages.

    @ivar sequence: the last sequence number handed out.
    """

    def __init__(self, sequence: int = 0,
                 lastTimestamps: Optional[Mapping[str, int]] = None) -> None:
        """
        @param sequence: the highest sequence number stored or marked.
        @param lastTimestamps: folded room name -> the room's latest stored
            timestamp, for the rooms that have messages.
        """
        self.sequence = sequence
        self._last: Dict[str, int] = dict(lastTimestamps or {})

    def take(self, room: str, timestamp: int) -> Stamp:
        """
        Number the next message of C{room}.

        @param timestamp: the timestamp asked for (the fan-out's).
        @return: that timestamp, or one above the room's latest when the room
            has one as late (a room's timestamps are unique and increase), with
            the next sequence number.
        """
        roomKey = fold(room)
        last = self._last.get(roomKey)
        if last is not None and timestamp <= last:
            timestamp = last + 1
        self._last[roomKey] = timestamp
        return Stamp(timestamp, self.takeSequence())

    def takeSequence(self) -> int:
        """
        The next sequence number, for a message without a room timestamp (a
        direct message).
        """
        self.sequence += 1
        return self.sequence


def readNumbering(txn, execute) -> Numbering:
    """
    The numbering of an SQL database's messages, read as its store opens.

    The sequence is the highest of the stored counter, the messages' numbers
    (which the counter covers but history deletion cannot lower) and the
    devices' marks (which may be above the counter: a message delivered ahead
    of a commit that failed).
    """
    execute(txn, "SELECT MAX(n) FROM ("
                 " SELECT value AS n FROM message_sequence"
                 " UNION ALL SELECT MAX(seq) FROM messages"
                 " UNION ALL SELECT MAX(seq) FROM direct_messages"
                 " UNION ALL SELECT MAX(seq) FROM device_marks) AS numbers")
    [(sequence,)] = txn.fetchall()
    execute(txn, "SELECT room_key, MAX(ts) FROM messages GROUP BY room_key")
    return Numbering(sequence or 0, dict(txn.fetchall()))


def claimSequence(txn, execute, sequence: int) -> None:
    """
    Record in the database's counter that C{sequence}, handed out by a
    L{Numbering}, is stored.

    @raise NumberingConflict: when the counter is at or past it already.
    """
    execute(txn, "UPDATE message_sequence SET value = ? WHERE value < ?",
            (sequence, sequence))
    if txn.rowcount != 1:
        raise NumberingConflict(
            "the database already numbers messages up to %d or beyond: another process"
            " writes to it (only one chatd may use an SQLite file)" % (sequence,))
