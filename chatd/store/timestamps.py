# -*- test-case-name: chatd.test.test_store -*-
"""
Room timestamps are unique: the one rule both stores keep when they store a
message, so that HISTORY, which pages by timestamp, never skips one.

Nodes of a cluster normally take room timestamps from the fan-out, which gives
each room strictly increasing ones; while the fan-out is away each node counts
on its own, and two nodes may pick the same one. The store, which every node
shares, has the last word: a message whose timestamp is taken gets the next
free one.
"""

from typing import Iterable


def nextFree(timestamp: int, taken: Iterable[int]) -> int:
    """
    The first timestamp from C{timestamp} on that is not in C{taken}.

    @param taken: the room's timestamps at or above C{timestamp}, ascending
        (duplicates allowed: databases written before this rule may hold some).
    @return: a timestamp not in C{taken}; it may be above the last of them.
    """
    for stored in taken:
        if stored > timestamp:
            break
        if stored == timestamp:
            timestamp += 1
    return timestamp
