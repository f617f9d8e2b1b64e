# -*- test-case-name: chatd.test.test_store -*-
"""
Rooms, their memberships and their history, in the SQL store: the
L{chatd.istore.IMessageStore} methods for them, mixed into
L{chatd.store.sql.AdbapiStore} as L{chatd.store.moderation.ModerationStore}
is.

Its own module because what is stored about rooms is one idea, and how the
store reaches its database (the pool, the write queue, the schema) is
another.
"""

from typing import Callable, Iterable, List, Optional

from twisted.internet.defer import Deferred, succeed

from chatd.errors import Conflict, NotFound
from chatd.model import HistoryRow, RoomRecord
from chatd.names import fold
from chatd.store.engines import Engine
from chatd.store.entries import Stamp
from chatd.store.moderation import OWNER
from chatd.store.numbering import Numbering
from chatd.store.readers import storeReaderSet
from chatd.store.seal import AtRestKeys, DamageReport, openRows
from chatd.store.timestamps import nextFree
from chatd.store.waiting import roomHistory, sequenceFor

# How many taken timestamps one query reads while looking for a free one.
_TAKEN_PAGE = 64


class RoomStore:
    """
    The room, membership and room history methods of
    L{chatd.istore.IMessageStore} for a store with C{_write} (a write in
    call order) and C{_interact} (a read), as L{chatd.store.sql.AdbapiStore}
    has.
    """

    # What the store this is mixed into provides.
    _write: Callable[..., Deferred]
    _interact: Callable[..., Deferred]
    _execute: Callable[..., None]
    _now: Callable[[], int]
    _engine: Engine
    _keys: AtRestKeys
    _damage: DamageReport
    numbering: Optional[Numbering]

    # Rooms and memberships

    def loadRooms(self) -> "Deferred[List[RoomRecord]]":
        return self._interact(self._loadRooms)

    def _loadRooms(self, txn):
        self._execute(
            txn,
            "SELECT r.name, r.password_hash, COALESCE(MAX(m.ts), 0), r.history"
            " FROM rooms r LEFT JOIN messages m ON m.room_key = r.name_key"
            " GROUP BY r.name_key, r.name, r.password_hash, r.history",
        )
        # Sorted here rather than by ORDER BY, whose order depends on the
        # database's collation.
        return [
            RoomRecord(name, passwordHash, lastTimestamp, history)
            for name, passwordHash, lastTimestamp, history in sorted(
                txn.fetchall(), key=lambda row: fold(row[0])
            )
        ]

    def createRoom(self, name: str, passwordHash: Optional[bytes], owner: Optional[str] = None,
                   history: int = 0) -> "Deferred[None]":
        return self._write(self._createRoom, name, passwordHash, owner, history)

    def _createRoom(self, txn, name, passwordHash, owner, history):
        try:
            self._execute(
                txn,
                "INSERT INTO rooms (name_key, name, password_hash, created_ms)"
                " VALUES (?, ?, ?, ?)",
                (fold(name), name, passwordHash, self._now()),
            )
            if history:
                # Apart, so that a room without the setting is made alike on
                # every schema (the column's default is 0).
                self._execute(txn, "UPDATE rooms SET history = ? WHERE name_key = ?",
                              (history, fold(name)))
        except Exception as error:
            if self._engine.isUniqueViolation(error):
                raise Conflict("that room exists") from None
            raise
        if owner is not None:
            self._execute(
                txn, "INSERT INTO room_roles (room_key, user_key, role) VALUES (?, ?, ?)",
                (fold(name), fold(owner), OWNER))

    def deleteRoom(self, name: str) -> "Deferred[bool]":
        return self._write(self._deleteRoom, fold(name))

    def _deleteRoom(self, txn, roomKey):
        self._execute(
            txn,
            "DELETE FROM rooms WHERE name_key = ? AND password_hash IS NULL"
            " AND topic IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM memberships WHERE room_key = ?)"
            " AND NOT EXISTS (SELECT 1 FROM messages WHERE room_key = ?)"
            " AND NOT EXISTS (SELECT 1 FROM room_bans WHERE room_key = ?)",
            (roomKey, roomKey, roomKey, roomKey),
        )
        return txn.rowcount == 1

    def addMember(self, room: str, user: str) -> "Deferred[None]":
        return self._write(self._addMember, fold(room), fold(user))

    def _addMember(self, txn, roomKey, userKey):
        try:
            self._execute(
                txn,
                "INSERT INTO memberships (room_key, user_key) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                (roomKey, userKey),
            )
        except Exception as error:
            if self._engine.isForeignKeyViolation(error):
                raise NotFound("no such room or account") from None
            raise

    def removeMember(self, room: str, user: str) -> "Deferred[None]":
        return self._write(
            self._execute,
            "DELETE FROM memberships WHERE room_key = ? AND user_key = ?",
            (fold(room), fold(user)),
        )

    def roomsOf(self, user: str) -> "Deferred[List[str]]":
        return self._interact(self._roomsOf, fold(user))

    def _roomsOf(self, txn, userKey):
        self._execute(
            txn,
            "SELECT r.name FROM memberships m JOIN rooms r ON r.name_key = m.room_key"
            " WHERE m.user_key = ?",
            (userKey,),
        )
        # Sorted here too, for the same reason as in _loadRooms.
        return sorted(name for (name,) in txn.fetchall())

    # Room history

    def appendMessage(self, room: str, sender: str, timestamp: int, envelopeId: str,
                      envelope: bytes, readers: Iterable[str],
                      sequence: int = 0) -> "Deferred[Stamp]":
        if not sequence and self.numbering is not None:
            stamp = self.numbering.take(room, timestamp)
            timestamp, sequence = int(stamp), stamp.sequence
        return self._write(
            self._appendMessage, room, sender, timestamp, envelopeId, envelope, readers,
            sequence
        )

    def _appendMessage(self, txn, room, sender, timestamp, envelopeId, envelope,
                       readers, sequence):
        """
        @param sequence: the number the store's L{Numbering} handed out with
            C{timestamp}, both then stored as they are; 0 to take the next
            free timestamp and the next number here, under the locks that
            keep the nodes sharing the database apart.
        """
        roomKey = fold(room)
        keyId, body = self._keys.seal(envelope, roomKey, sender, envelopeId)
        if not sequence:
            timestamp = self._freeTimestamp(txn, roomKey, timestamp)
        readersId = storeReaderSet(txn, self._execute, readers)
        sequence = sequenceFor(txn, self._execute, sequence)
        try:
            self._execute(
                txn,
                "INSERT INTO messages (room_key, sender, sender_key, ts,"
                " envelope_id, key_id, body, readers_id, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (roomKey, sender, fold(sender), timestamp, envelopeId, keyId, body,
                 readersId, sequence),
            )
        except Exception as error:
            if self._engine.isUniqueViolation(error):
                raise Conflict("replayed envelope id") from None
            if self._engine.isForeignKeyViolation(error):
                raise NotFound("no such room") from None
            raise
        return Stamp(timestamp, sequence)

    def _freeTimestamp(self, txn, roomKey, timestamp):
        """
        The first timestamp of the room at or above C{timestamp} that no stored
        message has. The room's row stays locked until commit, so that two
        nodes storing at once cannot both take one timestamp.
        """
        self._execute(
            txn, "SELECT name_key FROM rooms WHERE name_key = ?" + self._engine.rowLock,
            (roomKey,),
        )
        txn.fetchall()
        while True:
            self._execute(
                txn,
                "SELECT ts FROM messages WHERE room_key = ? AND ts >= ?"
                " ORDER BY ts LIMIT ?",
                (roomKey, timestamp, _TAKEN_PAGE),
            )
            taken = [ts for (ts,) in txn.fetchall()]
            timestamp = nextFree(timestamp, taken)
            if len(taken) < _TAKEN_PAGE or timestamp <= taken[-1]:
                return timestamp

    # Bodies are opened in the pool's thread, to keep the work off the reactor;
    # what did not open is logged back on the reactor's (DamageReport.keep).

    def messagesAfter(self, room: str, after: int,
                      limit: int) -> "Deferred[List[HistoryRow]]":
        if limit <= 0:
            return succeed([])
        return self._interact(
            self._messagesAfter, fold(room), after, limit
        ).addCallback(self._damage.keep)

    def _messagesAfter(self, txn, roomKey, after, limit):
        self._execute(
            txn,
            "SELECT sender, ts, envelope_id, key_id, body FROM messages"
            " WHERE room_key = ? AND ts > ? ORDER BY ts, id LIMIT ?",
            (roomKey, after, limit),
        )
        return openRows(self._keys, roomKey, txn.fetchall())

    def history(self, room: str, reader: str, limit: int,
                before: int) -> "Deferred[List[HistoryRow]]":
        if limit <= 0:
            # SQLite would read a negative LIMIT as no limit at all.
            return succeed([])
        # The reader is an entry key (chatd.store.entries); shared entries
        # are merged into the envelopes read back.
        return self._interact(
            lambda txn: roomHistory(txn, self._execute, self._keys, fold(room), reader,
                                    limit, before)
        ).addCallback(self._damage.keep)
