# -*- test-case-name: chatd.test.test_readers -*-
"""
Who may read a stored message, kept as a reader set shared by every message
sent to the same readers (schema version 5).

A room's messages go to the same entry keys until its membership changes, so
storing the set once and a reference per message makes the store's cost per
message independent of the room's size: the old layout wrote one row per
reader per message, which was most of a 200-member room's store CPU.
"""

from functools import lru_cache
from hashlib import sha256
from typing import Iterable, Tuple

from chatd.store.entries import readerKey

# Sets are named by their digest; the migration names the sets it makes for
# the messages stored before version 5 "message ID", which no digest can be.
_DIGEST_PREFIX = "sha256:"


def readerKeys(readers: Iterable[str]) -> frozenset:
    """
    The keys history is read by for C{readers}: each entry key with its
    user part folded (L{chatd.store.entries.readerKey}: device ids are exact).
    """
    return _readerSet(frozenset(readers))[0]


@lru_cache(maxsize=256)
def _readerSet(readers: frozenset) -> Tuple[frozenset, str]:
    """
    L{readerKeys} and their L{readerSetDigest}, kept for the last few sets of
    readers: a room's messages go to the same readers until its membership
    changes, and folding each of them again for every message was a large
    part of storing one in a big room.
    """
    keys = frozenset(readerKey(reader) for reader in readers)
    return keys, readerSetDigest(keys)


def readerSetDigest(keys: Iterable[str]) -> str:
    """
    The name of the set of reader C{keys}: it does not depend on their order,
    and two different sets do not share it (no key holds a newline).
    """
    canonical = "\n".join(sorted(keys)).encode("utf-8")
    return _DIGEST_PREFIX + sha256(canonical).hexdigest()


def storeReaderSet(txn, execute, readers: Iterable[str]) -> int:
    """
    The id of the stored set of C{readers}, storing it if no message has used
    it yet.

    Two servers on one PostgreSQL may store one set at once: C{ON CONFLICT DO
    NOTHING} waits for the other and then answers no row, and the set the
    other stored is read back.

    @param execute: runs one query with C{?} placeholders on C{txn}.
    @return: the set's id, for the message's C{readers_id}.
    """
    keys, digest = _readerSet(frozenset(readers))
    execute(txn, "SELECT id FROM reader_sets WHERE digest = ?", (digest,))
    found = txn.fetchall()
    if found:
        return found[0][0]
    execute(txn, "INSERT INTO reader_sets (digest) VALUES (?)"
                 " ON CONFLICT DO NOTHING RETURNING id", (digest,))
    made = txn.fetchall()
    if not made:
        execute(txn, "SELECT id FROM reader_sets WHERE digest = ?", (digest,))
        return txn.fetchall()[0][0]
    [(setId,)] = made
    for key in keys:
        execute(txn, "INSERT INTO reader_set_members (set_id, reader_key)"
                     " VALUES (?, ?)", (setId, key))
    return setId


def dropUnusedReaderSets(txn, execute) -> None:
    """
    Delete the reader sets no stored message refers to any more (after
    messages were deleted by age), with their members.
    """
    execute(txn, "DELETE FROM reader_sets WHERE NOT EXISTS"
                 " (SELECT 1 FROM messages m WHERE m.readers_id = reader_sets.id)")
