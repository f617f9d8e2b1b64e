# -*- test-case-name: chatd.test.test_store_devices -*-
"""
Messages that wait, in the SQL store: direct messages stored like room
messages, the store-wide sequence every stored message takes, the marks of
what each device was given, the catch-up read after them, and the key
entries members share with a newcomer (SHARE_HISTORY).

The statements are operations in the manner of L{chatd.store.operations};
L{WaitingStore} gives L{chatd.store.sql.AdbapiStore} the
L{chatd.istore.IMessageStore} methods built on them. Bodies are sealed
and opened in the pool's thread, as room history's are.
"""

from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed

from chatd.errors import Conflict
from chatd.model import HistoryRow, StoredMessage
from chatd.names import fold
from chatd.store.entries import Stamp, mergeShares, pairKey, readerKey, readingKeys
from chatd.store.numbering import Numbering, claimSequence
from chatd.store.seal import AtRestKeys, DamageReport, SealError

# Whether a reader may read message C{m}: its reader set (chatd.store.readers)
# names one of its two reading keys (entries.readingKeys), or a member shared
# an entry for it (SHARE_HISTORY). Four parameters: the reading keys twice.
_READS = ("(m.readers_id IN (SELECT set_id FROM reader_set_members WHERE reader_key IN (?, ?))"
          " OR m.id IN (SELECT message_id FROM message_shares WHERE reader_key IN (?, ?)))")
# Whether a reader may read direct message C{d}: two parameters, the reading keys.
_READS_DIRECT = ("d.id IN (SELECT message_id FROM direct_readers"
                 " WHERE reader_key IN (?, ?))")


def nextSequence(txn, execute) -> int:
    """
    Take the next store-wide sequence number (the row stays locked until
    commit, so that two nodes never take one number).
    """
    execute(txn, "UPDATE message_sequence SET value = value + 1")
    execute(txn, "SELECT value FROM message_sequence")
    [(value,)] = txn.fetchall()
    return value


def sequenceFor(txn, execute, handedOut: int) -> int:
    """
    The sequence number a message is stored with: C{handedOut}, taken before
    the transaction from the store's L{chatd.store.numbering.Numbering} (and
    now recorded in the counter), or, when 0, the counter's next.
    """
    if handedOut:
        claimSequence(txn, execute, handedOut)
        return handedOut
    return nextSequence(txn, execute)


def currentSequence(txn, execute) -> int:
    execute(txn, "SELECT value FROM message_sequence")
    [(value,)] = txn.fetchall()
    return value


def appendDirect(txn, execute, keys: AtRestKeys, sender: str, peer: str, timestamp: int,
                 envelopeId: str, envelope: bytes, readers: Sequence[str],
                 sequence: int = 0) -> Stamp:
    """
    Store a direct message between two accounts, sealed at rest.

    @param sequence: as L{sequenceFor}'s C{handedOut}.

    @raise Conflict: when the sender's envelope id is stored already.
    """
    pair = pairKey(sender, peer)
    execute(txn, "SELECT 1 FROM direct_messages WHERE sender_key = ? AND envelope_id = ?",
            (fold(sender), envelopeId))
    if txn.fetchall():
        raise Conflict("replayed envelope id")
    sequence = sequenceFor(txn, execute, sequence)
    keyId, body = keys.seal(envelope, pair, sender, envelopeId)
    execute(txn, "INSERT INTO direct_messages (seq, pair_key, sender, sender_key, peer,"
                 " peer_key, ts, envelope_id, key_id, body)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (sequence, pair, sender, fold(sender), peer, fold(peer), timestamp, envelopeId,
             keyId, body))
    [(messageId,)] = txn.fetchall()
    for key in sorted({readerKey(reader) for reader in readers}):
        execute(txn, "INSERT INTO direct_readers (message_id, reader_key) VALUES (?, ?)",
                (messageId, key))
    return Stamp(timestamp, sequence)


def _open(keys, rows, damaged):
    """
    Open C{(sealKey, sender, envelopeId, keyId, body)} rows, setting aside
    those that do not open (as L{chatd.store.seal.openRows} does).

    @return: per row, the envelope or L{None}.
    """
    opened = []
    for sealKey, sender, envelopeId, keyId, body in rows:
        try:
            opened.append(keys.open(keyId, body, sealKey, sender, envelopeId))
        except SealError as e:
            damaged.append((sealKey, sender, envelopeId, str(e)))
            opened.append(None)
    return opened


def _shares(txn, execute, messageIds) -> Dict[int, List[Tuple[str, str, str]]]:
    """
    The shared key entries of the room messages C{messageIds}.
    """
    found: Dict[int, List[Tuple[str, str, str]]] = {}
    ids = list(messageIds)
    for start in range(0, len(ids), 500):
        page = ids[start:start + 500]
        execute(txn, "SELECT message_id, entry_key, encrypted_key, key_id FROM message_shares"
                     " WHERE message_id IN (%s)" % ",".join("?" * len(page)), tuple(page))
        for messageId, entry, encryptedKey, keyId in txn.fetchall():
            found.setdefault(messageId, []).append((entry, encryptedKey, keyId))
    return found


def directHistory(txn, execute, keys: AtRestKeys, user: str, peer: str, reader: str,
                  limit: int, before: int) -> Tuple[List[HistoryRow], list]:
    """
    The newest C{limit} direct messages between C{user} and C{peer} that
    C{reader} (an entry key) has an entry in, below C{before} (0: no bound).

    @return: (L{HistoryRow}s oldest first, damaged rows).
    """
    pair = pairKey(user, peer)
    bound = " AND d.ts < ?" if before else ""
    execute(txn, "SELECT d.sender, d.ts, d.envelope_id, d.key_id, d.body FROM direct_messages d"
                 " WHERE d.pair_key = ? AND " + _READS_DIRECT + bound +
                 " ORDER BY d.ts DESC, d.id DESC LIMIT ?",
            (pair,) + readingKeys(reader) + ((before,) if before else ()) + (limit,))
    rows = list(reversed(txn.fetchall()))
    damaged: List = []
    opened = _open(keys, [(pair, sender, envelopeId, keyId, body)
                          for sender, _, envelopeId, keyId, body in rows], damaged)
    return ([HistoryRow(row[0], row[1], envelope) for row, envelope in zip(rows, opened)
             if envelope is not None], damaged)


def roomHistory(txn, execute, keys: AtRestKeys, roomKey: str, reader: str, limit: int,
                before: int) -> Tuple[List[HistoryRow], list]:
    """
    Room history for C{reader} (an entry key), with the shares merged in.

    @return: (L{HistoryRow}s oldest first, damaged rows).
    """
    bound = " AND m.ts < ?" if before else ""
    reading = readingKeys(reader) * 2
    execute(txn, "SELECT m.id, m.sender, m.ts, m.envelope_id, m.key_id, m.body FROM messages m"
                 " WHERE m.room_key = ? AND " + _READS + bound +
                 " ORDER BY m.ts DESC, m.id DESC LIMIT ?",
            (roomKey,) + reading + ((before,) if before else ()) + (limit,))
    rows = list(reversed(txn.fetchall()))
    shares = _shares(txn, execute, [row[0] for row in rows])
    damaged: List = []
    opened = _open(keys, [(roomKey, sender, envelopeId, keyId, body)
                          for _, sender, _, envelopeId, keyId, body in rows], damaged)
    return ([HistoryRow(row[1], row[2], mergeShares(envelope, shares.get(row[0], ())))
             for row, envelope in zip(rows, opened) if envelope is not None], damaged)


def catchUp(txn, execute, keys: AtRestKeys, user: str, reader: str, after: int,
            limit: int) -> Tuple[List[StoredMessage], list]:
    """
    The oldest C{limit} stored messages above sequence C{after} of the rooms
    C{user} is remembered in and of its direct conversations, that
    C{reader} (an entry key) has an entry in.

    @return: (L{StoredMessage}s in sequence order, damaged rows).
    """
    userKey, reading = fold(user), readingKeys(reader)
    execute(txn, "SELECT m.seq, m.id, r.name, m.room_key, m.sender, m.ts, m.envelope_id,"
                 " m.key_id, m.body FROM messages m"
                 " JOIN memberships s ON s.room_key = m.room_key AND s.user_key = ?"
                 " JOIN rooms r ON r.name_key = m.room_key"
                 " WHERE m.seq > ? AND " + _READS + " ORDER BY m.seq LIMIT ?",
            (userKey, after) + reading * 2 + (limit,))
    rooms = txn.fetchall()
    execute(txn, "SELECT d.seq, d.sender, d.sender_key, d.peer, d.pair_key, d.ts,"
                 " d.envelope_id, d.key_id, d.body FROM direct_messages d"
                 " WHERE d.seq > ? AND " + _READS_DIRECT + " ORDER BY d.seq LIMIT ?",
            (after,) + reading + (limit,))
    directs = txn.fetchall()
    shares = _shares(txn, execute, [row[1] for row in rooms])
    damaged: List = []
    found = []
    opened = _open(keys, [(roomKey, sender, envelopeId, keyId, body)
                          for _, _, _, roomKey, sender, _, envelopeId, keyId, body in rooms],
                   damaged)
    for (seq, messageId, room, _, sender, ts, _, _, _), envelope in zip(rooms, opened):
        if envelope is not None:
            found.append(StoredMessage(seq, room, None, sender, ts,
                                       mergeShares(envelope, shares.get(messageId, ()))))
    opened = _open(keys, [(pair, sender, envelopeId, keyId, body)
                          for _, sender, _, _, pair, _, envelopeId, keyId, body in directs],
                   damaged)
    for (seq, sender, senderKey, peer, _, ts, _, _, _), envelope in zip(directs, opened):
        if envelope is not None:
            other = peer if senderKey == userKey else sender
            found.append(StoredMessage(seq, None, other, sender, ts, envelope))
    found.sort(key=lambda message: message.sequence)
    return found[:limit], damaged


def latestMessages(txn, execute, keys: AtRestKeys, roomKey: str,
                   latest: int) -> Tuple[Dict[str, Tuple[int, str, bytes]], list]:
    """
    The latest C{latest} messages of a room, for SHARE_HISTORY: by envelope
    id, C{(message id, sender, envelope with its shares)}.

    @return: (that dict, damaged rows).
    """
    execute(txn, "SELECT id, sender, envelope_id, key_id, body FROM messages"
                 " WHERE room_key = ? ORDER BY ts DESC, id DESC LIMIT ?", (roomKey, latest))
    rows = txn.fetchall()
    shares = _shares(txn, execute, [row[0] for row in rows])
    damaged: List = []
    opened = _open(keys, [(roomKey, sender, envelopeId, keyId, body)
                          for _, sender, envelopeId, keyId, body in rows], damaged)
    return ({envelopeId: (messageId, sender, mergeShares(envelope, shares.get(messageId, ())))
             for (messageId, sender, envelopeId, _, _), envelope in zip(rows, opened)
             if envelope is not None}, damaged)


def addShares(txn, execute, shares: Sequence[Tuple[int, str, str, str]]) -> int:
    """
    Add C{(message id, entry key, encrypted key, key id)} entries; the first
    share of an entry wins, later ones are ignored.

    @return: how many were added.
    """
    added = 0
    for messageId, entry, encryptedKey, keyId in shares:
        # Not in the message's reader set, which other messages share.
        execute(txn, "INSERT INTO message_shares (message_id, entry_key, reader_key,"
                     " encrypted_key, key_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (messageId, entry, readerKey(entry), encryptedKey, keyId))
        added += txn.rowcount
    return added


def readMark(txn, execute, userKey: str, device: str) -> Optional[int]:
    execute(txn, "SELECT seq FROM device_marks WHERE user_key = ? AND device = ?",
            (userKey, device))
    rows = txn.fetchall()
    return rows[0][0] if rows else None


def writeMarks(txn, execute, marks: Sequence[Tuple[str, str, int]]) -> None:
    """
    Raise each C{(user, device, sequence)} mark (a mark never goes back).
    """
    for user, device, sequence in marks:
        userKey = fold(user)
        stored = readMark(txn, execute, userKey, device)
        if stored is None:
            execute(txn, "INSERT INTO device_marks (user_key, device, seq) VALUES (?, ?, ?)",
                    (userKey, device, sequence))
        elif sequence > stored:
            execute(txn, "UPDATE device_marks SET seq = ? WHERE user_key = ? AND device = ?",
                    (sequence, userKey, device))


def membersOf(txn, execute, roomKey: str) -> List[str]:
    execute(txn, "SELECT a.name FROM memberships m JOIN accounts a ON a.name_key = m.user_key"
                 " WHERE m.room_key = ?", (roomKey,))
    return sorted((name for (name,) in txn.fetchall()), key=fold)


class WaitingStore:
    """
    The waiting-message methods of L{chatd.istore.IMessageStore} for a
    store with C{run}, C{_interact}, C{_keys} and C{_damage}.
    """

    run: Callable[..., Deferred]
    _interact: Callable[..., Deferred]
    _execute: Callable[..., None]
    _keys: AtRestKeys
    _damage: DamageReport
    numbering: Optional[Numbering]

    def _readOpened(self, operation, *args):
        return self._interact(
            lambda txn: operation(txn, self._execute, self._keys, *args)
        ).addCallback(self._damage.keep)

    def appendDirect(self, sender: str, peer: str, timestamp: int, envelopeId: str,
                     envelope: bytes, readers: Iterable[str]) -> "Deferred[Stamp]":
        # Numbered here, when the store numbers ahead, so that it shares one
        # counter with the room messages numbered before their transaction.
        sequence = self.numbering.takeSequence() if self.numbering is not None else 0
        return self.run(appendDirect, self._keys, sender, peer, timestamp, envelopeId,
                        envelope, list(readers), sequence)

    def directHistory(self, user: str, peer: str, reader: str, limit: int,
                      before: int) -> "Deferred[List[HistoryRow]]":
        if limit <= 0:
            return succeed([])
        return self._readOpened(directHistory, user, peer, reader, limit, before)

    def catchUp(self, user: str, reader: str, after: int,
                limit: int) -> "Deferred[List[StoredMessage]]":
        if limit <= 0:
            return succeed([])
        return self._readOpened(catchUp, user, reader, after, limit)

    def latestMessages(self, room: str,
                       latest: int) -> "Deferred[Dict[str, Tuple[int, str, bytes]]]":
        if latest <= 0:
            return succeed({})
        return self._readOpened(latestMessages, fold(room), latest)

    def addShares(self, shares: Iterable[Tuple[int, str, str, str]]) -> "Deferred[int]":
        return self.run(addShares, list(shares))

    def currentSequence(self) -> "Deferred[int]":
        if self.numbering is not None:
            # Numbers handed out may not be committed yet; a device that
            # starts here is not owed their messages.
            return succeed(self.numbering.sequence)
        return self._interact(lambda txn: currentSequence(txn, self._execute))

    def getMark(self, user: str, device: str) -> "Deferred[Optional[int]]":
        return self._interact(lambda txn: readMark(txn, self._execute, fold(user), device))

    def setMarks(self, marks: Iterable[Tuple[str, str, int]]) -> "Deferred[None]":
        return self.run(writeMarks, list(marks))

    def membersOf(self, room: str) -> "Deferred[List[str]]":
        return self._interact(lambda txn: membersOf(txn, self._execute, fold(room)))
