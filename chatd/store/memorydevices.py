# -*- test-case-name: chatd.test.test_store_devices -*-
"""
Devices and messages that wait in the L{chatd.store.memory.MemoryStore}:
what L{chatd.store.devices} and L{chatd.store.waiting} keep in SQL, in
dictionaries, answering alike.
"""

from dataclasses import dataclass, replace
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed

from chatd.devicelist import Head, HeadConflict
from chatd.errors import ChatError, Conflict, NotFound
from chatd.model import NO_DEVICES, DeviceList, HistoryRow, PendingDevice, StoredMessage
from chatd.names import fold
from chatd.store.entries import Stamp, mergeShares, pairKey, readerKey, readingKeys
from chatd.store.numbering import Numbering
from chatd.store.seal import SealError


@dataclass(frozen=True)
class _Direct:
    """
    One stored direct message: a row of the SQL store's C{direct_messages}.
    """

    sequence: int
    pair: str
    sender: str
    senderKey: str
    peer: str
    timestamp: int
    envelopeId: str
    keyId: str
    body: bytes
    readerKeys: FrozenSet[str]


def _answered(method):
    def answered(*args):
        try:
            return succeed(method(*args))
        except ChatError as e:
            return fail(e)
    answered.__name__ = method.__name__
    answered.__doc__ = method.__doc__
    return answered


class MemoryDevices:
    """
    The device and waiting-message methods of the memory store, mixed into
    L{chatd.store.memory.MemoryStore}, whose C{_accounts}, C{_rooms},
    C{_members}, C{_messages}, C{_keys}, C{_damage} and C{_clock} they read.
    """

    _accounts: Dict[str, Any]
    _rooms: Dict[str, Any]
    _members: Dict[str, Any]
    _messages: Dict[str, List[Any]]
    _keys: Any
    _damage: Any
    _clock: Any

    def _initDevices(self):
        self._lists: Dict[str, Any] = {}
        self._removed: Dict[str, set] = {}
        self._pending: Dict[str, Dict[str, Any]] = {}
        self._recovery: Dict[str, bytes] = {}
        # Numbered at once (the store answers at once), as a store that
        # numbers ahead of its commit does.
        self.numbering = Numbering()
        self._directs: List[_Direct] = []
        self._directIds: set = set()
        # (room key, folded sender, envelope id) -> {entry key: (key, key id)}
        self._shares: Dict[Tuple[str, str, str], Dict[str, Tuple[str, str]]] = {}
        self._marks: Dict[Tuple[str, str], int] = {}

    def _account(self, user):
        key = fold(user)
        if key not in self._accounts:
            raise NotFound("no such account")
        return key

    def _writeDevices(self, key, devices):
        self._lists[key] = devices
        pending = self._pending.get(key, {})
        for device, _ in devices.devices:
            pending.pop(device, None)

    # Devices

    def getDevices(self, user: str) -> "Deferred[DeviceList]":
        return succeed(self._lists.get(fold(user), NO_DEVICES))

    def removedDevices(self, user: str) -> "Deferred[FrozenSet[str]]":
        return succeed(frozenset(self._removed.get(fold(user), ())))

    @_answered
    def publishDevices(self, user: str, devices: DeviceList, prev: Any,
                       removed: Iterable[str]) -> None:
        key = fold(user)
        head = self._lists.get(key, NO_DEVICES).head
        if head != tuple(prev):
            raise HeadConflict("the device list changed meanwhile", Head(*head))
        self._writeDevices(key, devices)
        self._removed.setdefault(key, set()).update(removed)

    @_answered
    def resetIdentity(self, user: str, publicKey: bytes, devices: DeviceList,
                      recovery: bytes) -> None:
        key = self._account(user)
        self._accounts[key] = replace(self._accounts[key], publicKey=publicKey)
        for table in (self._removed, self._pending):
            table.pop(key, None)
        for mark in [mark for mark in self._marks if mark[0] == key]:
            del self._marks[mark]
        self._writeDevices(key, devices)
        self._setRecovery(key, recovery)

    def _createDevices(self, key, devices, recovery):
        if devices is not None:
            self._writeDevices(key, devices)
        self._setRecovery(key, recovery)

    def addPending(self, user: str, pending: PendingDevice) -> "Deferred[None]":
        self._pending.setdefault(fold(user), {})[pending.device] = pending
        return succeed(None)

    def pendingDevices(self, user: str) -> "Deferred[List[PendingDevice]]":
        now = int(self._clock.seconds() * 1000)
        pending = self._pending.get(fold(user), {})
        for device in [d for d, p in pending.items() if p.expires <= now]:
            del pending[device]
        return succeed(sorted(pending.values(), key=lambda p: p.device))

    def _setRecovery(self, key, blob):
        if blob:
            self._recovery[key] = blob
        else:
            self._recovery.pop(key, None)

    def getRecovery(self, user: str) -> "Deferred[bytes]":
        return succeed(self._recovery.get(fold(user), b""))

    def setRecovery(self, user: str, blob: bytes) -> "Deferred[None]":
        self._setRecovery(fold(user), blob)
        return succeed(None)

    # Messages that wait

    @_answered
    def appendDirect(self, sender: str, peer: str, timestamp: int, envelopeId: str,
                     envelope: bytes, readers: Iterable[str]) -> Stamp:
        if (fold(sender), envelopeId) in self._directIds:
            raise Conflict("replayed envelope id")
        self._directIds.add((fold(sender), envelopeId))
        pair = pairKey(sender, peer)
        keyId, body = self._keys.seal(envelope, pair, sender, envelopeId)
        sequence = self.numbering.takeSequence()
        self._directs.append(_Direct(sequence, pair, sender, fold(sender), peer, timestamp,
                                     envelopeId, keyId, body,
                                     frozenset(readerKey(r) for r in readers)))
        return Stamp(timestamp, sequence)

    def _openOne(self, sealKey, sender, envelopeId, keyId, body, damaged):
        try:
            return self._keys.open(keyId, body, sealKey, sender, envelopeId)
        except SealError as e:
            damaged.append((sealKey, sender, envelopeId, str(e)))
            return None

    def _sharesOf(self, roomKey, message):
        return [(entry, encryptedKey, keyId) for entry, (encryptedKey, keyId) in
                self._shares.get((roomKey, message.senderKey, message.envelopeId), {}).items()]

    def _readsRoom(self, roomKey, message, keys):
        """
        Whether a reader, by its reading keys C{keys} (L{readingKeys}), has
        an entry in a room message, shared or not.
        """
        return not message.readerKeys.isdisjoint(keys) or any(
            readerKey(entry) in keys for entry, _, _ in self._sharesOf(roomKey, message))

    def _openRoom(self, roomKey, message, damaged):
        envelope = self._openOne(roomKey, message.sender, message.envelopeId, message.keyId,
                                 message.body, damaged)
        if envelope is None:
            return None
        return mergeShares(envelope, self._sharesOf(roomKey, message))

    def _roomHistory(self, roomKey, reader, limit, before):
        keys = readingKeys(reader)
        visible = [m for m in self._messages.get(roomKey, [])
                   if self._readsRoom(roomKey, m, keys)
                   and (before == 0 or m.timestamp < before)]
        visible.sort(key=lambda message: message.timestamp)
        damaged: List = []
        rows = []
        for message in visible[-limit:]:
            envelope = self._openRoom(roomKey, message, damaged)
            if envelope is not None:
                rows.append(HistoryRow(message.sender, message.timestamp, envelope))
        return self._damage.keep((rows, damaged))

    def directHistory(self, user: str, peer: str, reader: str, limit: int,
                      before: int) -> "Deferred[List[HistoryRow]]":
        if limit <= 0:
            return succeed([])
        pair, keys = pairKey(user, peer), readingKeys(reader)
        visible = [d for d in self._directs if d.pair == pair
                   and not d.readerKeys.isdisjoint(keys)
                   and (before == 0 or d.timestamp < before)]
        visible.sort(key=lambda direct: direct.timestamp)
        damaged: List = []
        rows = []
        for direct in visible[-limit:]:
            envelope = self._openOne(pair, direct.sender, direct.envelopeId, direct.keyId,
                                     direct.body, damaged)
            if envelope is not None:
                rows.append(HistoryRow(direct.sender, direct.timestamp, envelope))
        return succeed(self._damage.keep((rows, damaged)))

    def catchUp(self, user: str, reader: str, after: int,
                limit: int) -> "Deferred[List[StoredMessage]]":
        if limit <= 0:
            return succeed([])
        userKey, keys = fold(user), readingKeys(reader)
        damaged: List = []
        found = []
        for roomKey, members in self._members.items():
            if userKey not in members:
                continue
            for message in self._messages[roomKey]:
                if message.sequence > after and self._readsRoom(roomKey, message, keys):
                    envelope = self._openRoom(roomKey, message, damaged)
                    if envelope is not None:
                        found.append(StoredMessage(message.sequence, self._rooms[roomKey].name,
                                                   None, message.sender, message.timestamp,
                                                   envelope))
        for direct in self._directs:
            if direct.sequence > after and not direct.readerKeys.isdisjoint(keys):
                envelope = self._openOne(direct.pair, direct.sender, direct.envelopeId,
                                         direct.keyId, direct.body, damaged)
                if envelope is not None:
                    other = direct.peer if direct.senderKey == userKey else direct.sender
                    found.append(StoredMessage(direct.sequence, None, other, direct.sender,
                                               direct.timestamp, envelope))
        found.sort(key=lambda message: message.sequence)
        return succeed(self._damage.keep((found[:limit], damaged)))

    def latestMessages(self, room: str,
                       latest: int) -> "Deferred[Dict[str, Tuple[Any, str, bytes]]]":
        roomKey = fold(room)
        if latest <= 0:
            return succeed({})
        messages = sorted(self._messages.get(roomKey, []), key=lambda m: m.timestamp)
        damaged: List = []
        found = {}
        for message in messages[-latest:]:
            envelope = self._openRoom(roomKey, message, damaged)
            if envelope is not None:
                found[message.envelopeId] = ((roomKey, message.senderKey, message.envelopeId),
                                             message.sender, envelope)
        return succeed(self._damage.keep((found, damaged)))

    def addShares(self, shares: Iterable[Tuple[Any, str, str, str]]) -> "Deferred[int]":
        added = 0
        for messageId, entry, encryptedKey, keyId in shares:
            entries = self._shares.setdefault(messageId, {})
            if entry not in entries:
                entries[entry] = (encryptedKey, keyId)
                added += 1
        return succeed(added)

    def currentSequence(self) -> "Deferred[int]":
        return succeed(self.numbering.sequence)

    def getMark(self, user: str, device: str) -> "Deferred[Optional[int]]":
        return succeed(self._marks.get((fold(user), device)))

    def setMarks(self, marks: Iterable[Tuple[str, str, int]]) -> "Deferred[None]":
        for user, device, sequence in marks:
            key = (fold(user), device)
            if sequence > self._marks.get(key, -1):
                self._marks[key] = sequence
        return succeed(None)

    def membersOf(self, room: str) -> "Deferred[List[str]]":
        members = self._members.get(fold(room), set())
        return succeed(sorted((self._accounts[key].name for key in members), key=fold))

    def _deleteDirectsBefore(self, timestampMs) -> int:
        kept = [d for d in self._directs if d.timestamp >= timestampMs]
        deleted = len(self._directs) - len(kept)
        self._directs = kept
        return deleted


__all__ = ["MemoryDevices"]
