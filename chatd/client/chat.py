# -*- test-case-name: chatd.test.test_client -*-
"""
The terminal client's logic, without a terminal: one person's chat, put
together from its parts, each in a module of its own:

- L{chatd.client.reconnect}: the connection, redialled with backoff;
- L{chatd.client.identity}: who we are (identity key, account, guest key);
- L{chatd.client.trust}: whose keys we trust (pins, key changes, guests);
- L{chatd.client.messaging}: sealing and sending, opening and showing;
- L{chatd.client.files}: file transfers, through messaging's public API;

and, here, the rooms we are in, the events the server sends, and how a new
connection is brought back to where the last one was (C{_resume}).

RSA private-key work (signing, unwrapping, key generation) runs through an
injected C{runInThread}.
"""

from collections import OrderedDict

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from chatd import e2e
from chatd.client.approving import IdentityDevice
from chatd.client.connection import PROTOCOL_VERSIONS, ServerError
from chatd.client.devices import Devices
from chatd.client.errors import ClientError, Held
from chatd.client.files import CHUNK_SIZE, FileTransfers
from chatd.client.identity import Identity
from chatd.client.messaging import SEND_ATTEMPTS, Messaging
from chatd.client.ownkey import OwnKey
from chatd.client.reconnect import Reconnecting
from chatd.client.replay import SeenEnvelopes
from chatd.client.sharing import Sharing
from chatd.client.trust import Trust
from chatd.names import fold, isGuestName
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import KIND_ROOM, Op

BAD_REQUEST = 0x01

# Kept importable from here, where the client's users have always found them.
__all__ = ["ChatClient", "ClientError", "Held", "Room", "SEND_ATTEMPTS"]


class Room:
    """
    A room we are in: its name as the server spells it, and its members' keys.
    """

    def __init__(self, name, password=""):
        self.name = name
        self.password = password
        self.members = {}
        # The room's history setting (version 3's JOIN says it): signed as
        # C{hist} in what we send there.
        self.history = 0


class ChatClient(Reconnecting, Identity, Trust, Messaging, Devices, IdentityDevice,
                 Sharing):
    """
    One person's chat: the connection (reconnected with backoff), identity,
    rooms, pins and the commands the console offers.

    @param home: a L{chatd.client.keystore.Home}.
    @param ui: an L{chatd.client.ui.IClientUI}.
    @param endpoint: the L{IStreamClientEndpoint} of the server.
    @param clock: an L{IReactorTime}: heartbeats, redials, envelope times.
    @param checkPeer: called with the server's certificate on TLS connections;
        raises to refuse it, may return a sentence to show. L{None} when nothing
        needs checking.
    @param passphrase: the identity key's passphrase, when known in advance
        (C{CHATD_PASSPHRASE}); otherwise the UI is asked when a key needs one.
    @param runInThread: runs slow RSA work, and the disk and cipher work of
        file transfers; C{maybeDeferred} in tests.
    @param downloads: the folder accepted files go to by default
        (C{~/Downloads/chatd} when L{None}).
    @param chunkSize: the size of the chunks of files we send.
    @param device: the device id to log in with (C{--device}); L{None} for
        the one this home used for the account, else one from the host name.

    @ivar user: our name on the server (a guest name until logged in).
    @ivar account: whether we are logged in to an account.
    @ivar active: the name of the room plain text goes to, or L{None}.
    @ivar rooms: our rooms, by folded name.
    @ivar blocked: folded names whose pinned key changed and is not yet trusted.
    @ivar changes: folded name to C{(name, key)}: the new key a blocked user
        was last seen with, the one the person is shown and may accept.
    @ivar ownKey: the L{OwnKey} that checks what the server says our key is.
    @ivar seenEnvelopes: the L{SeenEnvelopes} that catch replays, kept with
        the account's key once logged in.
    @ivar files: the L{FileTransfers}: offers, sending and receiving.
    """

    def __init__(self, home, ui, endpoint, clock, checkPeer=None, passphrase=None,
                 runInThread=deferToThread, retryPolicy=None, downloads=None,
                 chunkSize=CHUNK_SIZE, device=None):
        self.home = home
        self.ui = ui
        self.clock = clock
        self.checkPeer = checkPeer
        self.passphrase = passphrase
        self.runInThread = runInThread
        self._initIdentity()
        self._initTrust()
        self._initDevices(device)
        self._initMessaging(SeenEnvelopes())
        self.rooms = OrderedDict()
        self._whilePending = []
        self.active = None
        self._restoredNames = set()
        self.ownKey = OwnKey(lambda *told: self._tell(self.ui.ownKeyChanged, *told))
        self.files = FileTransfers(self, downloads, chunkSize)
        self._initConnection(endpoint, retryPolicy)

    # -- resuming -----------------------------------------------------------

    async def _resume(self, protocol):
        """
        Bring a new connection to where the last one was: greeted, logged in (by
        challenge-response with our key), key published, rooms joined.
        """
        guestName = await self._hello(protocol)
        resuming, self._everConnected = self._everConnected, True
        if self.pending is not None:
            self.pending = None
            self.ui.notice("the connection was lost while this device waited for approval; "
                           "/login again for a new code")
        if self.account:
            self._restoredNames = set()
            await self._authenticate(protocol, self.user, self.privateKey)
            # The server put us back in our stored rooms (JOINED came before
            # the response); a room that went away while empty is made again.
            await self._rejoin(protocol, [room for room in self.rooms.values()
                                          if fold(room.name) not in self._restoredNames])
        else:
            named = self.user is not None and not isGuestName(self.user)
            if named and fold(self.user) != fold(guestName):
                try:
                    await protocol.request(Op.NICK, self.user)
                except ServerError as e:
                    self.ui.notice("could not take the name %s again (%s); you are %s"
                                   % (self.user, e.message, guestName))
                    self._renamed(self.user, guestName)
            elif self.user != guestName:
                if self.user is not None:
                    self._renamed(self.user, guestName)
                self.user = guestName
            protocol.keyPublished = False
            if self.privateKey is not None or self.rooms:
                await self._publishGuestKey(protocol)
            await self._rejoin(protocol, list(self.rooms.values()))
        if resuming:
            self._tell(self.ui.notice, "reconnected as %s" % (self.user,))

    async def _hello(self, protocol):
        """
        Greet the server in the newest protocol version both speak.

        @return: the guest name the server gave.
        """
        for version in PROTOCOL_VERSIONS:
            try:
                (guestName,) = await protocol.request(Op.HELLO, version)
            except ServerError as e:
                if e.status != BAD_REQUEST:
                    raise
            else:
                protocol.version = version
                return guestName
        (guestName,) = await protocol.request(Op.HELLO)
        return guestName

    async def _rejoin(self, protocol, rooms):
        for room in rooms:
            try:
                await self._joinOn(protocol, room.name, room.password)
            except ServerError as e:
                self._forget(room.name)
                self.ui.notice("could not rejoin %s: %s" % (room.name, e.message))

    # -- rooms ------------------------------------------------------------

    def room(self, name=None):
        """
        The room named C{name} (ignoring case), or the active room.
        """
        if name is None:
            if self.active is None:
                raise ClientError("no active room: /join or /switch to one")
            name = self.active
        try:
            return self.rooms[fold(name)]
        except KeyError:
            raise ClientError("not in %s" % (name,)) from None

    async def create(self, name, password="", history=0):
        """
        Create a room; in a device session with C{history} (0 to 500): how
        many of its latest messages members' devices share with newcomers.
        """
        protocol = await self._connected()
        if self.deviceSession(protocol):
            await protocol.request(Op.CREATE, name, password, history)
        elif history:
            raise ClientError("this server cannot keep history for newcomers")
        else:
            await protocol.request(Op.CREATE, name, password)

    async def join(self, name, password=""):
        """
        Join (or create) a room and make it the active one.
        """
        room = await self._joinOn(await self.withKey(), name, password)
        self.active = room.name
        return room

    async def _joinOn(self, protocol, name, password):
        # Version 2 adds the room's topic, version 3 its history setting.
        (members, *topic) = await protocol.request(Op.JOIN, name, password)
        (names,) = await protocol.request(Op.LIST_ROOMS)
        spelled = next((n for n in names if fold(n) == fold(name)), name)
        room = self.rooms.get(fold(name)) or Room(spelled, password)
        room.name = spelled
        room.password = password
        room.history = topic[1] if len(topic) > 1 else 0
        self.rooms[fold(name)] = room
        self._setMembers(room, members)
        return room

    def _setMembers(self, room, members):
        room.members = {}
        for user, der in self._members(members):
            self._sawKey(user, der)
            room.members[user] = der
        room.members = self._withOurKey(room.members)

    async def leave(self, name=None):
        room = self.room(name)
        await self.call(Op.LEAVE, room.name)
        self._forget(room.name)
        return room.name

    def _forget(self, name):
        self.rooms.pop(fold(name), None)
        if self.active is not None and fold(self.active) == fold(name):
            self.active = next(iter(self.rooms.values())).name if self.rooms else None

    def switch(self, name):
        self.active = self.room(name).name
        return self.active

    async def listRooms(self):
        (names,) = await self.call(Op.LIST_ROOMS)
        return names

    async def listUsers(self, room=""):
        """
        Who is online, or in C{room}: their names, noting the guest flags
        that a version-2 answer carries (C{(name, flags)} entries).
        """
        (entries,) = await self.call(Op.LIST_USERS, room)
        names = []
        for entry in entries:
            if isinstance(entry, tuple):
                name, flags = entry
                self._noteGuest(name, flags)
                entry = name
            names.append(entry)
        return names

    # -- files ------------------------------------------------------------

    async def sendFile(self, kind, name, path):
        """
        Offer a file to a room (C{kind} C{"room"}) or a user; it is sent in the
        background once recipients accept, and the UI hears how it goes.

        @return: the L{chatd.client.files.Outgoing} transfer.
        """
        return await self.files.send(kind, name, path)

    async def acceptFile(self, number=None, folder=None):
        """
        Accept file offer C{number} (the newest when L{None}) into C{folder}
        (the download folder when L{None}).

        @return: the L{chatd.client.files.Incoming} transfer.
        """
        return await self.files.accept(number, folder)

    async def declineFile(self, number=None):
        """
        Decline file offer C{number} (the newest when L{None}).
        """
        return await self.files.decline(number)

    async def cancelFile(self, number):
        """
        Stop file transfer C{number}: one we send, for everyone; one we
        receive, for us.
        """
        return await self.files.cancel(number)

    def fileTransfers(self):
        """
        The running transfers and pending offers, oldest first.
        """
        return self.files.running()

    # -- receiving --------------------------------------------------------

    def _event(self, op, values, protocol=None):
        """
        An event from the server, on C{protocol} (the current connection when
        L{None}).
        """
        if op in _FILE_EVENTS:
            protocol = protocol or self.protocol
            if op == Op.OFFERED:
                self.files.offered(protocol, *values)
            else:
                self.files.event(protocol, op, *values)
            return
        if ((self.pending is not None and op != DeviceOp.APPROVAL)
                or (self._becoming is not None and op in _AFTER_LOGIN)):
            # Nothing from the server is used before the approval verifies;
            # and messages (a device's catch-up) that come while a login
            # runs are opened once it is done, with the account's key. What
            # came meanwhile follows, in order.
            self._whilePending.append((op, values, protocol))
            return
        handler = self._events.get(op)
        if handler is not None:
            getattr(self, handler)(*values)

    def _approved(self, user, key):
        """
        This device was approved: log in as after a password login (which
        takes what the server sent meanwhile).
        """
        self._becomeAccount(user, key)

    def _loggedIn(self):
        """
        A login is over: take the events that waited for it.
        """
        events, self._whilePending = self._whilePending, []
        for event in events:
            self._event(*event)

    def _onJoined(self, room, user, der, flags=None, wireList=None):
        self._noteGuest(user, flags)
        if self._isMe(user):
            self.ownKey.check(user, der, self._ourKey(user))
            if wireList is not None:
                self._memberDevices(user, der, wireList)
            self._restoredNames.add(fold(room))
            d = Deferred.fromCoroutine(self._restored(room, user, der))
            d.addErrback(self._restoreFailed, room)
            return
        target = self.rooms.get(fold(room))
        if target is not None:
            self._sawKey(user, der)
            target.members[user] = der
        if wireList is not None:
            self._memberDevices(user, der, wireList)
        self._tell(self.ui.memberJoined, room, user, e2e.fingerprint(der))

    def _restoreFailed(self, failure, room):
        if not self._stopping:
            self.ui.notice("could not load the members of %s: %s"
                           % (room, failure.getErrorMessage()))

    async def _restored(self, name, user, der):
        """
        The server put us in a room (memberships restored at login, or a join
        from another session of ours): learn its members.
        """
        room = self.rooms.get(fold(name)) or Room(name)
        self.rooms[fold(name)] = room
        (members,) = await self.call(Op.GET_KEYS, KIND_ROOM, name)
        self._setMembers(room, members)
        if self.active is None:
            self.active = room.name
        self._tell(self.ui.memberJoined, room.name, user, e2e.fingerprint(der))

    def _onLeft(self, room, user):
        if self._isMe(user):
            self._forget(room)
        else:
            target = self.rooms.get(fold(room))
            if target is not None:
                target.members.pop(user, None)
        self._tell(self.ui.memberLeft, room, user)

    def _renamed(self, old, new):
        if self.user is not None and fold(old) == fold(self.user):
            self.user = new
        key = self.keys.pop(fold(old), None)
        if key is not None:
            self.keys[fold(new)] = key
        self.guests.pop(fold(old), None)
        for room in self.rooms.values():
            if old in room.members:
                room.members[new] = room.members.pop(old)

    def _onRenamed(self, old, new, flags=None):
        self._renamed(old, new)
        self._noteGuest(new, flags)
        if not self.isGuest(new) and not self._isMe(new) and fold(new) in self.keys:
            self._unchecked.add(fold(new))
        self._tell(self.ui.renamed, old, new)

    def _onKeyChanged(self, user, der, flags=None, wireList=None):
        self._noteGuest(user, flags)
        self._sawKey(user, der)
        if wireList is not None:
            self._memberDevices(user, der, wireList)
        if self._isMe(user):
            return
        for room in self.rooms.values():
            if user in room.members:
                room.members[user] = der

    def _onWarning(self, code, message):
        self._tell(self.ui.notice, "server: %s" % (message,))

    def _onKicked(self, room, user, by, banned, reason):
        what = "banned from" if banned else "kicked from"
        why = ": %s" % (reason,) if reason else ""
        if self._isMe(user):
            self._forget(room)
            self._tell(self.ui.notice, "you were %s %s by %s%s" % (what, room, by, why))
            return
        target = self.rooms.get(fold(room))
        if target is not None:
            target.members.pop(user, None)
        self._tell(self.ui.notice, "%s was %s %s by %s%s" % (user, what, room, by, why))

    def _onDestroyed(self, room, by):
        self._forget(room)
        self._tell(self.ui.notice, "%s was closed for good by %s" % (room, by))

    def _onTopic(self, room, by, topic):
        self._tell(self.ui.notice, "%s set the topic of %s: %s" % (by, room, topic)
                   if topic else "%s cleared the topic of %s" % (by, room))

    def _onRole(self, room, account, by, role):
        self._tell(self.ui.notice, "%s made %s %s in %s"
                   % (by, account, _ROLES.get(role, "role %d" % (role,)), room))

    # By name: the message handlers live in L{Messaging}.
    _events = {
        Op.ROOM_MSG: "_onRoomMessage",
        Op.DM: "_onDirectMessage",
        Op.JOINED: "_onJoined",
        Op.LEFT: "_onLeft",
        Op.RENAMED: "_onRenamed",
        Op.KEY_CHANGED: "_onKeyChanged",
        Op.WARNING: "_onWarning",
        Op.KICKED: "_onKicked",
        Op.DESTROYED: "_onDestroyed",
        Op.TOPIC: "_onTopic",
        Op.ROLE: "_onRole",
        DeviceOp.DEVICES_CHANGED: "_onDevicesChanged",
        DeviceOp.DEVICE_PENDING: "_onDevicePending",
        DeviceOp.APPROVAL: "_onApproval",
        DeviceOp.SHARE_WANTED: "_onShareWanted",
        DeviceOp.CAUGHT_UP: "_onCaughtUp",
    }


# SET_ROLE's roles (docs/protocol.rst), as ROLE events name them.
_ROLES = {0: "a plain member", 1: "an operator", 2: "an owner"}

# Events that wait while a login runs: what they carry is opened with the
# account's key.
_AFTER_LOGIN = frozenset({Op.ROOM_MSG, Op.DM, Op.OFFERED, DeviceOp.CAUGHT_UP,
                          DeviceOp.SHARE_WANTED})

_FILE_EVENTS = frozenset({Op.OFFERED, Op.START, Op.CHUNK, Op.NEXT, Op.DONE, Op.CANCEL})
