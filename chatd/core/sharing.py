# -*- test-case-name: chatd.test.test_sharing -*-
"""
History for new members (protocol version 3): a room created with a history
setting N > 0 lets its members' clients re-wrap the message keys of its
latest N messages for a newcomer's devices. When an account joins such a
room, SHARE_WANTED goes to up to three online members; their SHARE_HISTORY
adds key entries to the stored messages, which the newcomer's HISTORY then
returns. The original signature does not cover the key maps, so it still
verifies; the newcomer's client checks it, C{to} and C{hist}.
"""

import json
from typing import Any, Sequence

from twisted.internet.defer import Deferred

from chatd import e2e
from chatd.core.base import SessionBase
from chatd.core.events import ShareWanted
from chatd.errors import BadRequest, Forbidden, StaleRecipients
from chatd.names import fold, isUserName
from chatd.store.entries import mergeShares

# The most members asked to share with one newcomer, and the most messages
# one SHARE_HISTORY may name.
SHARERS = 3
MAX_SHARES = 500


def _keyMaps(data):
    """
    One share's C{{"encrypted_keys": {...}, "key_ids": {...}}}, checked.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("a share's key maps are not JSON") from None
    keys = obj.get("encrypted_keys") if isinstance(obj, dict) else None
    ids = obj.get("key_ids") if isinstance(obj, dict) else None
    if not (isinstance(keys, dict) and isinstance(ids, dict) and keys.keys() == ids.keys()
            and all(isinstance(v, str) for v in list(keys.values()) + list(ids.values()))):
        raise BadRequest("a share holds encrypted_keys and key_ids with the same entries")
    return keys, ids


class SharingRequests(SessionBase):
    """
    The history-sharing parts of a L{chatd.core.session.Session}, mixed into it.
    """

    def _wantShares(self, room, newcomer):
        """
        Account C{newcomer} joined C{room}: ask up to L{SHARERS} other
        members online, one device session each, to share its history: those
        with a device session here first, then members on other nodes (which
        ask theirs, L{chatd.core.devicetell.shareWanted}).
        """
        if room.history <= 0 or not newcomer.account:
            return
        here, elsewhere = [], []
        for member in room.members.values():
            if member is newcomer:
                continue
            if any(s.device is not None for s in member.sessions):
                here.append(member.name)
            elif member.nodes and member.account:
                elsewhere.append(member.name)
        chosen = (here + elsewhere)[:SHARERS]
        if chosen:
            self.service.happened([ShareWanted(room.name, newcomer.name, room.history,
                                               chosen)])

    def shareHistory(self, roomName: str, newcomer: str,
                     entries: Sequence[Any]) -> "Deferred[int]":
        """
        Add key entries for C{newcomer}'s devices to stored messages of a room.

        @return: a L{Deferred} firing with how many entries were added.
        """
        user = self._greeted()
        room = self.service.directory.room(roomName)
        if fold(user.name) not in room.members:
            raise Forbidden("not a member of %s" % (room.name,))
        if not isUserName(newcomer):
            raise BadRequest("invalid user name %r" % (newcomer,))
        if len(entries) > MAX_SHARES:
            raise BadRequest("at most %d messages per share" % (MAX_SHARES,))
        return Deferred.fromCoroutine(self._share(room, newcomer, entries))

    async def _share(self, room, newcomer, entries):
        service = self.service
        online = room.members.get(fold(newcomer))
        accounts = await service.store.membersOf(room.name)
        if online is None and fold(newcomer) not in {fold(a) for a in accounts}:
            raise Forbidden("%s is not a member of %s" % (newcomer, room.name))
        held = await service.devices.load(newcomer)
        if held is None:
            raise Forbidden("%s is not an account" % (newcomer,))
        name, key, devices = held
        readers = service.devices.recipientsOf(name, key, devices)
        expected = {entry: e2e.keyId(spki) for entry, spki in readers.items()}
        latest = await service.store.latestMessages(room.name, room.history)
        shares = []
        for envelopeId, data in entries:
            if envelopeId not in latest:
                raise BadRequest("message %s is not among the latest %d of %s"
                                 % (envelopeId, room.history, room.name))
            keys, ids = _keyMaps(data)
            messageId, _, stored = latest[envelopeId]
            has = json.loads(stored)["encrypted_keys"]
            added = []
            for entry, encryptedKey in keys.items():
                if entry not in expected:
                    raise BadRequest("%s is not a device of %s" % (entry, name))
                if ids[entry] != expected[entry]:
                    raise StaleRecipients("key id of %s is not its device's key" % (entry,),
                                          [(name, key)])
                if entry not in has:
                    added.append((entry, encryptedKey, ids[entry]))
            # The message with the entries must still be an envelope (the
            # wrapped keys base64, as every reader's are).
            e2e.Envelope.parse(mergeShares(stored, added))
            shares += [(messageId,) + share for share in added]
        return await service.store.addShares(shares)
