# -*- test-case-name: chatd.test.test_store -*-
"""
A message store held in dictionaries, for tests and for servers that keep
nothing across restarts.

It answers exactly as L{chatd.store.sql.AdbapiStore} does, refusals included,
so the core can be tested against it and run against either; its L{Deferred}s
have already fired when they are returned. Envelopes are kept sealed with
the at-rest key here too, so that no store ever holds one in plaintext.
"""

from dataclasses import dataclass, replace
from functools import wraps
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from chatd.errors import ChatError, Conflict, Forbidden, NotFound
from chatd.istore import IMessageStore
from chatd.model import Account, Ban, DeviceList, HistoryRow, Moderation, RoomRecord
from chatd.names import fold
from chatd.store.entries import Stamp
from chatd.store.memorydevices import MemoryDevices
from chatd.store.moderation import OWNER, moderation
from chatd.store.operations import tokenHash
from chatd.store.readers import readerKeys
from chatd.store.seal import AtRestKeys, DamageReport, openRows

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Room:
    """
    A stored room: the row the SQL store's C{rooms} table holds.
    """

    name: str
    passwordHash: Optional[bytes]
    topic: Optional[str] = None
    history: int = 0


@dataclass(frozen=True)
class _Message:
    """
    One stored room message: the row the SQL store's C{messages} table holds,
    with its readers' keys (one set shared by the room's messages in a row
    that have the same readers).
    """

    sender: str
    senderKey: str
    timestamp: int
    envelopeId: str
    keyId: str
    body: bytes
    readerKeys: FrozenSet[str]
    sequence: int = 0


def _answered(method: Callable[..., _T]) -> Callable[..., "Deferred[_T]"]:
    """
    A method that returns or raises, as one that returns a L{Deferred} that
    has fired, as every store method does.
    """
    @wraps(method)
    def answered(*args):
        try:
            return succeed(method(*args))
        except ChatError as e:
            return fail(e)
    return answered


@implementer(IMessageStore)
class MemoryStore(MemoryDevices):
    """
    An L{IMessageStore} that forgets everything when the process ends.

    @ivar _messages: each room's messages by folded room name, in the order
        they were appended.
    @ivar _envelopeIds: every stored (folded sender, envelope id) pair, the
        uniqueness the SQL store's constraint keeps.
    @ivar _historyCap: the most messages kept per room.
    """

    def __init__(self, keys: AtRestKeys, clock: Optional[IReactorTime] = None,
                 historyCap: int = 1000) -> None:
        """
        @param keys: the L{chatd.store.seal.AtRestKeys} envelopes are sealed
            with.
        @param clock: what invite expiry is checked against; the global
            reactor when L{None}.
        @param historyCap: the most messages kept per room (the newest):
            memory is all this store has, and an envelope to a large room
            holds a key entry per reader, so an uncapped room grew the
            process by gigabytes.
        """
        if clock is None:
            from twisted.internet import reactor as globalReactor
            clock = cast(IReactorTime, globalReactor)
        self._historyCap = historyCap
        self._keys = keys
        self._damage = DamageReport()
        self._accounts: Dict[str, Account] = {}
        self._rooms: Dict[str, _Room] = {}
        self._members: Dict[str, Set[str]] = {}
        self._messages: Dict[str, List[_Message]] = {}
        self._envelopeIds: Set[Tuple[str, str]] = set()
        # hash of the token -> [uses left, expiry in ms or None]
        self._invites: Dict[str, list] = {}
        self._roles: Dict[str, Dict[str, str]] = {}
        self._bans: Dict[str, Dict[str, Ban]] = {}
        self._clock = clock
        self._initDevices()

    def open(self) -> "Deferred[None]":
        return succeed(None)

    def close(self) -> "Deferred[None]":
        return succeed(None)

    def getAccount(self, name: str) -> "Deferred[Optional[Account]]":
        return succeed(self._accounts.get(fold(name)))

    def createAccount(self, name: str, passwordHash: Optional[bytes], publicKey: bytes,
                      invite: Optional[str] = None, devices: Optional[DeviceList] = None,
                      recovery: bytes = b"") -> "Deferred[None]":
        key = fold(name)
        if key in self._accounts:
            return fail(Conflict("that name is taken"))
        if invite is not None:
            usable = self._invites.get(tokenHash(invite))
            if not usable or usable[0] <= 0 or not (
                    usable[1] is None or usable[1] > self._clock.seconds() * 1000):
                return fail(Forbidden("that invite is unknown, used up or expired"))
            usable[0] -= 1
        self._accounts[key] = Account(name, passwordHash, publicKey)
        self._createDevices(key, devices, recovery)
        return succeed(None)

    def createInvite(self, token: str, uses: int,
                     expiresMs: Optional[int]) -> "Deferred[None]":
        self._invites[tokenHash(token)] = [uses, expiresMs]
        return succeed(None)

    def deleteHistoryBefore(self, timestampMs: int) -> "Deferred[int]":
        deleted = 0
        for room, messages in self._messages.items():
            kept = [m for m in messages if m.timestamp >= timestampMs]
            deleted += len(messages) - len(kept)
            self._messages[room] = kept
        return succeed(deleted + self._deleteDirectsBefore(timestampMs))

    def setPublicKey(self, name: str, publicKey: bytes) -> "Deferred[None]":
        key = fold(name)
        if key not in self._accounts:
            return fail(NotFound("no such account"))
        self._accounts[key] = replace(self._accounts[key], publicKey=publicKey)
        return succeed(None)

    def loadRooms(self) -> "Deferred[List[RoomRecord]]":
        return succeed(
            [
                RoomRecord(
                    room.name,
                    room.passwordHash,
                    max((m.timestamp for m in self._messages[key]), default=0),
                    room.history,
                )
                for key, room in sorted(self._rooms.items())
            ]
        )

    def createRoom(self, name: str, passwordHash: Optional[bytes], owner: Optional[str] = None,
                   history: int = 0) -> "Deferred[None]":
        key = fold(name)
        if key in self._rooms:
            return fail(Conflict("that room exists"))
        self._rooms[key] = _Room(name, passwordHash, history=history)
        self._members[key] = set()
        self._messages[key] = []
        self._roles[key] = {} if owner is None else {fold(owner): OWNER}
        self._bans[key] = {}
        return succeed(None)

    def deleteRoom(self, name: str) -> "Deferred[bool]":
        key = fold(name)
        room = self._rooms.get(key)
        if room is None or room.passwordHash is not None or room.topic is not None \
                or self._members[key] or self._messages[key] or self._bans[key]:
            return succeed(False)
        self._forgetRoom(key)
        return succeed(True)

    def _forgetRoom(self, key):
        for table in (self._rooms, self._members, self._messages, self._roles, self._bans):
            del table[key]

    # Moderation: the SQL store's chatd.store.moderation, in dictionaries.

    def _room(self, name):
        key = fold(name)
        if key not in self._rooms:
            raise NotFound("no such room")
        return key

    @_answered
    def moderation(self, room: str) -> Moderation:
        key = self._room(room)
        roles = [(self._accounts[user].name, role) for user, role in self._roles[key].items()]
        return moderation(self._rooms[key].topic, roles, self._bans[key].values())

    @_answered
    def setRole(self, room: str, user: str, role: Optional[str]) -> None:
        key, userKey = self._room(room), fold(user)
        if userKey not in self._accounts:
            raise NotFound("no such account")
        self._roles[key].pop(userKey, None)
        if role is not None:
            self._bans[key].pop(userKey, None)
            self._roles[key][userKey] = role

    @_answered
    def addBan(self, room: str, name: str, by: str, reason: str) -> None:
        key, userKey = self._room(room), fold(name)
        if userKey in self._bans[key]:
            raise Conflict("%s is banned already" % (name,))
        self._bans[key][userKey] = Ban(name, by, int(self._clock.seconds() * 1000), reason)
        self._members[key].discard(userKey)
        self._roles[key].pop(userKey, None)

    @_answered
    def removeBan(self, room: str, name: str) -> None:
        if self._bans.get(fold(room), {}).pop(fold(name), None) is None:
            raise NotFound("not banned")

    @_answered
    def setTopic(self, room: str, topic: str) -> None:
        key = self._room(room)
        self._rooms[key] = replace(self._rooms[key], topic=topic)

    @_answered
    def setRoomPassword(self, room: str, passwordHash: Optional[bytes]) -> None:
        key = self._room(room)
        self._rooms[key] = replace(self._rooms[key], passwordHash=passwordHash)

    @_answered
    def destroyRoom(self, room: str) -> None:
        key = self._room(room)
        envelopeIds = {(m.senderKey, m.envelopeId) for m in self._messages[key]}
        self._forgetRoom(key)
        # The SQL store's unique (sender, id) pairs go with their rows.
        self._envelopeIds -= envelopeIds

    def addMember(self, room: str, user: str) -> "Deferred[None]":
        roomKey = fold(room)
        userKey = fold(user)
        if roomKey not in self._rooms or userKey not in self._accounts:
            return fail(NotFound("no such room or account"))
        self._members[roomKey].add(userKey)
        return succeed(None)

    def removeMember(self, room: str, user: str) -> "Deferred[None]":
        self._members.get(fold(room), set()).discard(fold(user))
        return succeed(None)

    def roomsOf(self, user: str) -> "Deferred[List[str]]":
        userKey = fold(user)
        return succeed(
            sorted(
                self._rooms[roomKey].name
                for roomKey, members in self._members.items()
                if userKey in members
            )
        )

    def appendMessage(self, room: str, sender: str, timestamp: int, envelopeId: str,
                      envelope: bytes, readers: Iterable[str],
                      sequence: int = 0) -> "Deferred[Stamp]":
        roomKey = fold(room)
        senderKey = fold(sender)
        if (senderKey, envelopeId) in self._envelopeIds:
            return fail(Conflict("replayed envelope id"))
        if roomKey not in self._rooms:
            return fail(NotFound("no such room"))
        if not sequence:
            stamp = self.numbering.take(room, timestamp)
            timestamp, sequence = int(stamp), stamp.sequence
        self._envelopeIds.add((senderKey, envelopeId))
        keyId, body = self._keys.seal(envelope, roomKey, sender, envelopeId)
        messages = self._messages[roomKey]
        keys = readerKeys(readers)
        if messages and messages[-1].readerKeys == keys:
            # One set for a run of messages to the same readers, as the SQL
            # store's reader sets: the room's size is not paid per message.
            keys = messages[-1].readerKeys
        messages.append(
            _Message(sender, senderKey, timestamp, envelopeId, keyId, body, keys, sequence)
        )
        if len(messages) > self._historyCap:
            # The oldest goes, and its id with it: the service's replay cache
            # still refuses it while its timestamp would be accepted.
            dropped = messages.pop(0)
            self._envelopeIds.discard((dropped.senderKey, dropped.envelopeId))
        return succeed(Stamp(timestamp, sequence))

    def messagesAfter(self, room: str, after: int,
                      limit: int) -> "Deferred[List[HistoryRow]]":
        roomKey = fold(room)
        later = [m for m in self._messages.get(roomKey, []) if m.timestamp > after]
        later.sort(key=lambda message: message.timestamp)
        return succeed(self._open(roomKey, later[:max(limit, 0)]))

    def history(self, room: str, reader: str, limit: int,
                before: int) -> "Deferred[List[HistoryRow]]":
        if limit <= 0:
            return succeed([])
        # The reader is an entry key; shared entries count (memorydevices).
        return succeed(self._roomHistory(fold(room), reader, limit, before))

    def _open(self, roomKey, messages):
        """
        Open C{messages} of one room as the SQL store does: those that do not
        open are left out and logged once.
        """
        return self._damage.keep(openRows(self._keys, roomKey, [
            (m.sender, m.timestamp, m.envelopeId, m.keyId, m.body) for m in messages
        ]))
