# -*- test-case-name: chatd.test.test_store_moderation -*-
"""
Room moderation in the SQL store: topics, owners and operators, bans, room
passwords and destroying a room.

The statements are operations in the manner of L{chatd.store.operations}
(each runs inside one transaction and is given the store's C{execute}), so
that the server and C{chatd-admin owner} share them; L{ModerationStore} gives
L{chatd.store.sql.AdbapiStore} the L{chatd.istore.IMessageStore} methods
built on them. It lives apart from C{sql.py}, which holds the chat's own
tables.
"""

from typing import Callable, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred

from chatd.errors import Conflict, NotFound
from chatd.model import Ban, Moderation
from chatd.names import fold

OWNER, OPERATOR = "owner", "operator"
ROLES = (OWNER, OPERATOR)


def _requireRoom(txn, execute, roomKey):
    execute(txn, "SELECT topic FROM rooms WHERE name_key = ?", (roomKey,))
    rows = txn.fetchall()
    if not rows:
        raise NotFound("no such room")
    return rows[0][0]


def readModeration(txn, execute, roomKey: str) -> Moderation:
    """
    A room's topic, roles and bans.

    @raise NotFound: when there is no such room.
    """
    topic = _requireRoom(txn, execute, roomKey)
    execute(txn, "SELECT a.name, r.role FROM room_roles r"
                 " JOIN accounts a ON a.name_key = r.user_key WHERE r.room_key = ?",
            (roomKey,))
    roles = txn.fetchall()
    execute(txn, "SELECT name, banned_by, banned_ms, reason FROM room_bans"
                 " WHERE room_key = ?", (roomKey,))
    bans = [Ban(*row) for row in txn.fetchall()]
    return moderation(topic, roles, bans)


def moderation(topic: Optional[str], roles: Iterable[Tuple[str, str]],
               bans: Iterable[Ban]) -> Moderation:
    """
    A L{Moderation} from (name, role) pairs and L{Ban}s in any order: every
    store sorts them the same way (by folded name, not by the database's
    collation).
    """
    def names(role):
        return tuple(sorted((name for name, r in roles if r == role), key=fold))
    return Moderation(topic, names(OWNER), names(OPERATOR),
                      tuple(sorted(bans, key=lambda ban: fold(ban.name))))


def setRole(txn, execute, roomKey: str, userKey: str, role: Optional[str]) -> None:
    """
    Give account C{userKey} a C{role} in a room, or take its role away
    (L{None}). A role lifts any ban of that name in the room: nobody banned
    holds one.

    @raise NotFound: when there is no such room or account.
    """
    _requireRoom(txn, execute, roomKey)
    execute(txn, "SELECT 1 FROM accounts WHERE name_key = ?", (userKey,))
    if not txn.fetchall():
        raise NotFound("no such account")
    execute(txn, "DELETE FROM room_roles WHERE room_key = ? AND user_key = ?",
            (roomKey, userKey))
    if role is not None:
        execute(txn, "DELETE FROM room_bans WHERE room_key = ? AND user_key = ?",
                (roomKey, userKey))
        execute(txn, "INSERT INTO room_roles (room_key, user_key, role) VALUES (?, ?, ?)",
                (roomKey, userKey, role))


def addBan(txn, execute, roomKey: str, name: str, by: str, nowMs: int,
           reason: str) -> None:
    """
    Ban C{name} from a room. Its stored membership and its role there go in
    the same transaction, so that no login restores it into the room.

    @raise NotFound: when there is no such room.
    @raise Conflict: when the name is banned there already.
    """
    _requireRoom(txn, execute, roomKey)
    userKey = fold(name)
    execute(txn, "SELECT 1 FROM room_bans WHERE room_key = ? AND user_key = ?",
            (roomKey, userKey))
    if txn.fetchall():
        raise Conflict("%s is banned already" % (name,))
    execute(txn, "INSERT INTO room_bans (room_key, user_key, name, banned_by, banned_ms,"
                 " reason) VALUES (?, ?, ?, ?, ?, ?)",
            (roomKey, userKey, name, by, nowMs, reason))
    for table in ("memberships", "room_roles"):
        execute(txn, "DELETE FROM " + table + " WHERE room_key = ? AND user_key = ?",
                (roomKey, userKey))


def removeBan(txn, execute, roomKey: str, userKey: str) -> None:
    """
    Lift a ban.

    @raise NotFound: when that name is not banned from that room.
    """
    execute(txn, "DELETE FROM room_bans WHERE room_key = ? AND user_key = ?",
            (roomKey, userKey))
    if txn.rowcount != 1:
        raise NotFound("not banned")


def _updateRoom(txn, execute, assignment, value, roomKey):
    execute(txn, "UPDATE rooms SET " + assignment + " WHERE name_key = ?", (value, roomKey))
    if txn.rowcount != 1:
        raise NotFound("no such room")


def setTopic(txn, execute, roomKey: str, topic: Optional[str]) -> None:
    """
    Set a room's topic, or remove it (L{None}).

    @raise NotFound: when there is no such room.
    """
    _updateRoom(txn, execute, "topic = ?", topic, roomKey)


def setRoomPassword(txn, execute, roomKey: str, passwordHash: Optional[bytes]) -> None:
    """
    Set a room's password hash, or remove the password (L{None}).

    @raise NotFound: when there is no such room.
    """
    _updateRoom(txn, execute, "password_hash = ?", passwordHash, roomKey)


def destroyRoom(txn, execute, roomKey: str) -> None:
    """
    Delete a room with everything of it: history, memberships, roles and bans
    (C{ON DELETE CASCADE}).

    @raise NotFound: when there is no such room.
    """
    execute(txn, "DELETE FROM rooms WHERE name_key = ?", (roomKey,))
    if txn.rowcount != 1:
        raise NotFound("no such room")


class ModerationStore:
    """
    The moderation methods of L{chatd.istore.IMessageStore} for a store
    with C{run} (a write in call order) and C{_interact} (a read), as
    L{chatd.store.sql.AdbapiStore} has.
    """

    # What the store this is mixed into provides.
    run: Callable[..., Deferred]
    _interact: Callable[..., Deferred]
    _execute: Callable[..., None]
    _now: Callable[[], int]

    def moderation(self, room: str) -> "Deferred[Moderation]":
        return self._interact(lambda txn: readModeration(txn, self._execute, fold(room)))

    def setRole(self, room: str, user: str, role: Optional[str]) -> "Deferred[None]":
        return self.run(setRole, fold(room), fold(user), role)

    def addBan(self, room: str, name: str, by: str, reason: str) -> "Deferred[None]":
        return self.run(addBan, fold(room), name, by, self._now(), reason)

    def removeBan(self, room: str, name: str) -> "Deferred[None]":
        return self.run(removeBan, fold(room), fold(name))

    def setTopic(self, room: str, topic: str) -> "Deferred[None]":
        return self.run(setTopic, fold(room), topic)

    def setRoomPassword(self, room: str, passwordHash: Optional[bytes]) -> "Deferred[None]":
        return self.run(setRoomPassword, fold(room), passwordHash)

    def destroyRoom(self, room: str) -> "Deferred[None]":
        return self.run(destroyRoom, fold(room))
