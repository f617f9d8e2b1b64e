# -*- test-case-name: chatd.test.test_client -*-
"""
Whose keys the terminal client trusts.

Trust is the person's, not the server's: every key is pinned on first sight
(L{chatd.client.keystore.KnownKeys}); a pinned key that changes is reported
loudly, nothing is encrypted to that user, and what the user sends is held
(L{chatd.client.errors.Held}), until the person accepts the new key (C{/trust
USER LAST4}, after comparing fingerprints, or C{/verify}) or rejects it
(C{/reject}).

Guests' names are handed on, so their keys are never pinned: a guest who takes
the name carol is not pinned as carol, and a later account carol is a first
contact, not a key change. Who is a guest is what the server says (the guest
flag of protocol version 2, docs/protocol.rst); from a server that does not
say, a name of the guest form (C{rand123}) is a guest.
"""

from typing import Any

from chatd import e2e
from chatd.client.connection import ServerError
from chatd.client.errors import ClientError
from chatd.client.keystore import KeystoreError
from chatd.names import fold, isGuestName
from chatd.protocols.opcodes import KIND_ROOM, KIND_USER, Op

# What /trust asks the person to type: this many last characters of the
# fingerprint they compared.
TRUST_CODE_LENGTH = 4

# The guest bit of a user's flags (protocol version 2).
GUEST_FLAG = 0x01


class Trust:
    """
    The keys-and-trust part of L{chatd.client.chat.ChatClient}, which it is
    mixed into (a mixin so that splitting the module changed no behaviour); it
    uses the client's C{home}, C{ui}, C{rooms}, C{call}, C{_isMe},
    C{_ourKey}, C{_tell} and C{_openInOrder}.

    @ivar keys: folded name to the key the server last gave for that user.
    @ivar blocked: folded names whose pinned key changed and is not yet trusted.
    @ivar changes: folded name to C{(name, key)}: the new key a blocked user
        was last seen with, the one the person is shown and may accept.
    @ivar guests: folded name to whether the server last said that user is a
        guest.
    """

    # What the object this is mixed into provides (for type checkers).
    _isMe: Any
    _judgeWaitingList: Any
    _memberDevices: Any
    _openInOrder: Any
    _ourKey: Any
    _tell: Any
    call: Any
    deviceLists: Any
    home: Any
    ownKey: Any
    privateKey: Any
    publicKey: Any
    rooms: Any
    ui: Any
    verdicts: Any

    def _initTrust(self):
        self.keys = {}
        self.blocked = set()
        self.changes = {}
        self._held = {}
        self._rejected = set()
        self._unchecked = set()
        self.guests = {}

    def isGuest(self, name):
        """
        Whether C{name} is a guest: as the server last said, or, from a server
        that never said, by the form of the name.
        """
        said = self.guests.get(fold(name))
        return isGuestName(name) if said is None else said

    def _noteGuest(self, name, flags):
        """
        Remember what the server said of C{name} (its flags, or L{None} when
        the server said nothing).
        """
        if flags is not None:
            self.guests[fold(name)] = bool(flags & GUEST_FLAG)

    def _members(self, entries):
        """
        The C{(name, key)} pairs of a member list, noting the guest flags of
        entries that carry them (C{(name, key, flags)}, protocol version 2),
        and judging the device lists of those that carry one (C{(name, flags,
        key, devicelist)}, version 3's C{devmembers}).
        """
        pairs = []
        for entry in entries:
            if len(entry) == 4 and isinstance(entry[1], int):
                name, flags, der, wireList = entry
                self._noteGuest(name, flags)
                self._memberDevices(name, der, wireList)
            else:
                name, der, *rest = entry
                self._noteGuest(name, rest[0] if rest else None)
            pairs.append((name, der))
        return pairs

    def _sawKey(self, user, der):
        """
        Pin or check C{user}'s key. Guests' names are reused by others, so their
        keys are shown but never pinned. Our own key is only compared with the
        one this device holds (L{OwnKey}).
        """
        if self._isMe(user):
            self.ownKey.check(user, der, self._ourKey(user))
            return
        old = self.keys.get(fold(user))
        self.keys[fold(user)] = der
        self._unchecked.discard(fold(user))
        if self.isGuest(user):
            return
        state = self.home.knownKeys.check(user, der)
        if state == "new":
            self.home.knownKeys.pin(user, der)
            self._tell(self.ui.notice, "first contact with %s: key %s pinned"
                       % (user, e2e.fingerprint(der)))
        elif state == "changed":
            if fold(user) not in self.blocked or old != der:
                self.blocked.add(fold(user))
                self._rejected.discard(fold(user))
                self.changes[fold(user)] = (user, der)
                pinned, _ = self.home.knownKeys.pinned(user)
                self._tell(self.ui.keyChanged, user, e2e.fingerprint(pinned), e2e.fingerprint(der))
        else:
            self._unblock(user)

    def _unblock(self, user):
        """
        C{user}'s key is trusted again: what was held from them is opened now,
        checked with that key, in the order it came.
        """
        self.blocked.discard(fold(user))
        self._rejected.discard(fold(user))
        self.changes.pop(fold(user), None)
        for held in self._held.pop(fold(user), []):
            self._openInOrder(*held)

    def _checkRenamed(self, names):
        """
        Check the keys of users who were renamed since we last looked: a guest
        that logs in is renamed before its account key arrives (KEY_CHANGED), so
        its temporary key must not be pinned under the account's name at the
        rename.
        """
        for name in names:
            if fold(name) in self._unchecked and fold(name) in self.keys:
                self._sawKey(name, self.keys[fold(name)])

    def _trustedKey(self, user):
        """
        The key to check C{user}'s signatures with: the pinned one, for guests
        the one the server gave, and for us the one this device holds.
        """
        if self._isMe(user):
            return self._ourKey(user)
        if not self.isGuest(user):
            pinned = self.home.knownKeys.pinned(user)
            if pinned is not None:
                return pinned[0]
        return self.keys.get(fold(user))

    def fingerprint(self, user=None):
        """
        Our own fingerprint, or the one we hold for C{user}.
        """
        if user is None or self._isMe(user):
            if self.privateKey is None:
                raise ClientError("no key yet: /register, /auth, or /join as a guest")
            return e2e.fingerprint(self.publicKey)
        self._checkRenamed([user])
        der = self._trustedKey(user)
        if der is None:
            raise ClientError("no key known for %s; try /keys user %s" % (user, user))
        return e2e.fingerprint(der)

    async def keysOf(self, kind, name):
        """
        The keys the server gives for a room or a user, each checked against our
        pins: C{[(user, fingerprint, state)]} with state C{verified}, C{tofu},
        C{changed}, C{guest} or C{self}.
        """
        (members,) = await self.call(Op.GET_KEYS, KIND_ROOM if kind == "room" else KIND_USER, name)
        result = []
        for user, der in self._members(members):
            self._sawKey(user, der)
            result.append((user, e2e.fingerprint(der), self._state(user, der)))
        return result

    def _state(self, user, der):
        if self._isMe(user):
            return "self" if der == self._ourKey(user) else "changed"
        if self.isGuest(user):
            return "guest"
        pinned = self.home.knownKeys.pinned(user)
        if pinned is None or pinned[0] != der:
            return "changed"
        return pinned[1]

    async def verify(self, user, fingerprint):
        """
        Mark C{user}'s current key verified when C{fingerprint} (as the person
        read it from the other person) matches it.
        """
        name, der = await self._keyToAccept(user)
        pinned = self.home.knownKeys.pinned(name)
        try:
            matched = self.home.knownKeys.verify(name, fingerprint, der)
        except KeystoreError as e:
            raise ClientError(str(e)) from None
        if not matched:
            raise ClientError("fingerprint does not match %s's key %s; nothing changed"
                              % (name, e2e.fingerprint(der)))
        if pinned is not None and pinned[0] != der:
            self._forgetDevices(name, der)
        self._unblock(name)
        return e2e.fingerprint(der)

    async def trust(self, user, lastFour):
        """
        Accept C{user}'s new key once the person has compared it with the
        person it belongs to: C{lastFour}, the last 4 characters of its
        fingerprint as the person typed them, must match. One confirmation
        would be clicked through; typing what was compared is a real check.
        """
        name, der = await self._keyToAccept(user)
        typed = "".join(lastFour.split()).lower()
        expected = e2e.fingerprint(der).replace(" ", "")[-TRUST_CODE_LENGTH:]
        if typed != expected:
            raise ClientError("%s are not the last 4 characters of %s's new fingerprint; "
                              "compare it with %s again; nothing changed"
                              % (lastFour, name, name))
        self._newIdentity(name, der)
        self.home.knownKeys.trust(name, der)
        self._unblock(name)
        return e2e.fingerprint(der)

    def _newIdentity(self, name, der):
        """
        The person is accepting C{der} as C{name}'s key: when it is not the
        one pinned, C{name} reset its identity, and its device lists start a
        new chain, signed by the new key.
        """
        pinned = self.home.knownKeys.pinned(name)
        if pinned is not None and pinned[0] != der:
            self._forgetDevices(name, der)

    def _forgetDevices(self, name, der):
        """
        C{name}'s new identity key C{der} starts a new chain of lists: the
        one held is dropped, and the list that came with the key is judged.
        """
        self.deviceLists.forget(name)
        self.verdicts.pop(fold(name), None)
        self._judgeWaitingList(name, der)

    def reject(self, user):
        """
        Refuse C{user}'s new key: what was held from them is dropped, and
        they stay blocked (the pinned key is kept) until their key changes
        again.
        """
        if fold(user) not in self.blocked:
            raise ClientError("%s's key has not changed; there is nothing to reject" % (user,))
        name, der = self.changes[fold(user)]
        self._rejected.add(fold(user))
        for _blob, sender, to, _show in self._held.pop(fold(user), []):
            where = "in room %s" % (to[1],) if to is not None else "(direct)"
            self._tell(self.ui.dropped, "dropped a message from %s %s: you rejected %s's new key"
                       % (sender, where, name))
        return e2e.fingerprint(der)

    async def _keyToAccept(self, user):
        """
        The key a C{/verify} or C{/trust} of C{user} is about: while a change
        is pending, the new key the person was shown (and compared); otherwise
        the one the server holds now.
        """
        change = self.changes.get(fold(user))
        if change is None:
            return await self._currentKey(user)
        return change

    async def _userKey(self, user):
        """
        The server's C{(name, key)} for one user, the name spelled as its owner
        spells it.
        """
        (members,) = await self.call(Op.GET_KEYS, KIND_USER, user)
        [(name, der)] = self._members(members)
        return name, der

    async def _currentKey(self, user):
        """
        The key the server holds for C{user} now, which is the one we will
        encrypt to; our rooms are told of it too.
        """
        if self.isGuest(user):
            raise ClientError("%s is a guest; guests' keys are never pinned" % (user,))
        if self._isMe(user):
            raise ClientError("that is you")
        name, der = await self._userKey(user)
        self.keys[fold(name)] = der
        self._unchecked.discard(fold(name))
        for room in self.rooms.values():
            if name in room.members:
                room.members[name] = der
        return name, der

    async def _keyOrNone(self, user):
        try:
            name, der = await self._userKey(user)
        except ServerError:
            return None
        self._sawKey(name, der)
        return self._trustedKey(name)
