# -*- test-case-name: chatd.test.test_operations -*-
"""
What operators do to an SQL store beyond serving chat: invite tokens, bans,
account and room listings, password resets, deletions, history retention and
re-sealing under the newest at-rest key.

Each function runs inside one transaction of L{chatd.store.sql.AdbapiStore}
(through its L{run<chatd.store.sql.AdbapiStore.run>}), as L{checkStoredKeys
<chatd.store.keycheck.checkStoredKeys>} does: it is given the transaction and
the store's C{execute(txn, query, parameters)}, which takes C{?} placeholders.
The server (registration, login, retention) and C{python -m chatd.admin} share
these, so each statement is written once.
"""

import hashlib
import secrets
from typing import List, Optional, Tuple

from chatd.errors import Forbidden, NotFound
from chatd.store.readers import dropUnusedReaderSets
from chatd.store.seal import AtRestKeys, SealError

# How many rows one re-sealing transaction handles: small enough that a
# running server waits little for the write lock between batches.
RESEAL_BATCH = 500


def newInviteToken() -> str:
    """
    A fresh invite token: 144 random bits, URL-safe, easy to paste.
    """
    return secrets.token_urlsafe(18)


def tokenHash(token: str) -> str:
    """
    What the store keeps of an invite token.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def createInvite(txn, execute, token: str, uses: int, expiresMs: Optional[int],
                 nowMs: int) -> None:
    """
    Store an invite C{token} good for C{uses} registrations until C{expiresMs}
    (L{None}: forever).
    """
    execute(txn, "INSERT INTO invites (token_hash, uses_left, expires_ms, created_ms)"
                 " VALUES (?, ?, ?, ?)", (tokenHash(token), uses, expiresMs, nowMs))


def useInvite(txn, execute, token: str, nowMs: int) -> None:
    """
    Use up one registration of C{token}, in the transaction that creates the
    account, so a refused registration costs the token nothing.

    @raise Forbidden: when the token is unknown, used up or expired.
    """
    execute(txn, "UPDATE invites SET uses_left = uses_left - 1"
                 " WHERE token_hash = ? AND uses_left > 0"
                 " AND (expires_ms IS NULL OR expires_ms > ?)",
            (tokenHash(token), nowMs))
    if txn.rowcount != 1:
        raise Forbidden("that invite is unknown, used up or expired")


def listAccounts(txn, execute) -> List[Tuple[str, bool, bool, int, int]]:
    """
    Every account: (name, has a password, banned, rooms it belongs to,
    created ms), by name.
    """
    execute(txn, "SELECT a.name, a.password_hash IS NOT NULL, a.banned,"
                 " (SELECT COUNT(*) FROM memberships m WHERE m.user_key = a.name_key),"
                 " a.created_ms FROM accounts a")
    return sorted(((name, bool(password), bool(banned), rooms, created)
                   for name, password, banned, rooms, created in txn.fetchall()),
                  key=lambda row: row[0].lower())


def listRooms(txn, execute) -> List[Tuple[str, bool, int, int]]:
    """
    Every room: (name, has a password, members, stored messages), by name.
    """
    execute(txn, "SELECT r.name, r.password_hash IS NOT NULL,"
                 " (SELECT COUNT(*) FROM memberships m WHERE m.room_key = r.name_key),"
                 " (SELECT COUNT(*) FROM messages s WHERE s.room_key = r.name_key)"
                 " FROM rooms r")
    return sorted(((name, bool(password), members, messages)
                   for name, password, members, messages in txn.fetchall()),
                  key=lambda row: row[0].lower())


def _updateAccount(txn, execute, assignment, values, nameKey):
    execute(txn, "UPDATE accounts SET " + assignment + " WHERE name_key = ?",
            values + (nameKey,))
    if txn.rowcount != 1:
        raise NotFound("no such account")


def setPassword(txn, execute, nameKey: str, passwordHash: Optional[bytes]) -> None:
    """
    Replace an account's password hash (L{None}: key-only login).

    @raise NotFound: when there is no such account.
    """
    _updateAccount(txn, execute, "password_hash = ?", (passwordHash,), nameKey)


def setBanned(txn, execute, nameKey: str, banned: bool) -> None:
    """
    Ban an account from logging in on every door, or lift the ban.

    @raise NotFound: when there is no such account.
    """
    _updateAccount(txn, execute, "banned = ?", (int(banned),), nameKey)


def deleteAccount(txn, execute, nameKey: str) -> None:
    """
    Delete an account; its memberships go with it (C{ON DELETE CASCADE}).
    Messages it sent stay in their rooms' history.

    @raise NotFound: when there is no such account.
    """
    execute(txn, "DELETE FROM memberships WHERE user_key = ?", (nameKey,))
    execute(txn, "DELETE FROM accounts WHERE name_key = ?", (nameKey,))
    if txn.rowcount != 1:
        raise NotFound("no such account")


def deleteHistoryBefore(txn, execute, timestampMs: int) -> int:
    """
    Delete every stored message (room or direct) older than C{timestampMs},
    and the reader sets only room messages used.

    @return: how many messages were deleted.
    """
    execute(txn, "DELETE FROM messages WHERE ts < ?", (timestampMs,))
    deleted = txn.rowcount
    dropUnusedReaderSets(txn, execute)
    # Stored direct messages (schema 6) age out alike.
    execute(txn, "DELETE FROM direct_messages WHERE ts < ?", (timestampMs,))
    return deleted + txn.rowcount


# The tables of sealed messages, each with the column its seal is bound to:
# room messages to their room, stored direct messages (schema 6) to their
# conversation (chatd.store.entries.pairKey).
SEALED_TABLES = (("messages", "room_key"), ("direct_messages", "pair_key"))


def resealBatch(txn, execute, keys: AtRestKeys, afterId: int,
                limit: int = RESEAL_BATCH,
                table: str = "messages") -> Tuple[int, int, Optional[int]]:
    """
    Seal again, with the newest key, up to C{limit} messages of C{table}
    (one of L{SEALED_TABLES}) with ids above C{afterId} that are sealed with
    another key or in the old Fernet format. Each batch commits on its own,
    so an interrupted rotation resumes where it stopped: a re-sealed row
    names the newest key and is not selected again.

    @return: (rows re-sealed, rows that did not open and were left as they
        are, the last id looked at or L{None} when none was left).
    """
    bound = dict(SEALED_TABLES)[table]
    execute(txn, "SELECT id, " + bound + ", sender, envelope_id, key_id, body FROM " + table +
                 " WHERE (key_id IS NULL OR key_id <> ?) AND id > ? ORDER BY id LIMIT ?",
            (keys.newestId, afterId, limit))
    rows = txn.fetchall()
    done = skipped = 0
    for messageId, roomKey, sender, envelopeId, keyId, body in rows:
        try:
            envelope = keys.open(keyId, body, roomKey, sender, envelopeId)
        except SealError:
            skipped += 1
            continue
        newId, newBody = keys.seal(envelope, roomKey, sender, envelopeId)
        execute(txn, "UPDATE " + table + " SET key_id = ?, body = ? WHERE id = ?",
                (newId, newBody, messageId))
        done += 1
    return done, skipped, rows[-1][0] if rows else None
