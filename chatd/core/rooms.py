# -*- test-case-name: chatd.test.test_service -*-
"""
Requests about rooms: create, join, leave, the lists of users and rooms, and
history.
"""

from typing import List, Optional

from twisted.internet.defer import Deferred, gatherResults, succeed

from chatd.core.base import SessionBase
from chatd.core.moderation import JoinAnswer
from chatd.core.online import Room, User
from chatd.core.waiting import readable
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.names import fold, isRoomName, isUserName

# Timestamps are signed 64-bit in the database; a larger bound means the same.
MAX_TIMESTAMP = 2**63 - 1
# The most messages a room may let new members read (CREATE's history).
MAX_HISTORY_SETTING = 500


class RoomRequests(SessionBase):
    """
    The room requests of a L{chatd.core.session.Session}, mixed into it.
    """

    def listUsers(self, roomName: str) -> List[str]:
        """
        @return: the sorted names online, or of a room's members.
        """
        user = self._greeted()
        if not roomName:
            return sorted(u.name for u in self.service.directory.users.values())
        room = self.service.directory.room(roomName)
        if room.passwordHash is not None and fold(user.name) not in room.members:
            raise Forbidden("the members of %s are private" % (room.name,))
        return sorted(u.name for u in room.members.values())

    def listRooms(self) -> List[str]:
        """
        @return: the sorted names of every room.
        """
        self._greeted()
        return sorted(r.name for r in self.service.directory.rooms.values())


    def _checkRoomPassword(self, password):
        if len(password.encode("utf-8")) > 72:
            raise BadRequest("room passwords are at most 72 bytes")

    def create(self, roomName: str, password: str, history: int = 0) -> "Deferred[None]":
        """
        Create a room without joining it.

        @param history: how many of its latest messages a new member may be
            given (0-500; L{chatd.core.sharing}).
        @return: a L{Deferred} that fires when the room is stored.
        """
        user = self._greeted()
        if not isRoomName(roomName):
            raise BadRequest("invalid room name %r" % (roomName,))
        self._checkRoomPassword(password)
        self._checkHistory(history)
        return Deferred.fromCoroutine(self._createAlone(user, roomName, password, history))

    async def _createAlone(self, user: User, roomName: str, password: str,
                           history: int) -> None:
        settling = self.service.settling
        if await settling.settled(roomName) is not None:
            raise Conflict("room exists: %s" % (roomName,))
        settling.begin(roomName)
        try:
            await self._newRoom(user, roomName, password, history)
        finally:
            settling.end(roomName)

    async def _newRoom(self, user: User, roomName: str, password: str,
                       history: int = 0) -> Room:
        """
        Create a room under the create limits (see L{chatd.quotas}); the
        caller has begun it in the service's L{chatd.core.settling}.
        """
        quotas = self.service.quotas
        quotas.checkGuestCreate(user, password)
        await quotas.checkCreate(self._owner(user), self.address)
        room = await self._create(user, roomName, password, history)
        quotas.created(user)
        return room

    async def _create(self, user: User, roomName: str, password: str, history: int) -> Room:
        # A room named like an account is that user's own room (the WebSocket
        # door's default room): only its user may make it.
        if isUserName(roomName) and fold(roomName) != fold(user.name) \
                and await self.service.store.getAccount(roomName) is not None:
            raise Forbidden("%s is the own room of the user %s" % (roomName, roomName))
        passwordHash = None
        if password:
            passwordHash = await self.service.credentials.hashPassword(password)
        # Its creator owns it; a guest holds no role, so a guest's room has no
        # owner until the operator gives it one.
        await self.service.store.createRoom(
            roomName, passwordHash, user.name if user.account else None, history)
        # Known here only once stored: until then a room of that name that
        # another node announces (it stored it first, and this store write
        # fails) is the one its members join, here too.
        created = self.service.directory.createRoom(roomName, passwordHash, history)
        if not created:
            raise Conflict("room exists: %s" % (roomName,))
        self.service.happened(created)
        return self.service.directory.rooms[fold(roomName)]

    def join(self, roomName: str, password: str, history: int = 0) -> "Deferred[JoinAnswer]":
        """
        Join a room, creating it (with C{password}) when it does not exist.

        @param history: the history setting of the room if this join creates
            it (as L{create}'s); ignored when the room exists.
        @return: a L{Deferred} firing with the members' C{(name, key)} pairs.
        """
        user = self._greeted()
        if not isRoomName(roomName):
            raise BadRequest("invalid room name %r" % (roomName,))
        self._checkRoomPassword(password)
        self._checkHistory(history)
        return Deferred.fromCoroutine(self._join(user, roomName, password, history))

    def _checkHistory(self, history):
        if not 0 <= history <= MAX_HISTORY_SETTING:
            raise BadRequest("a room's history setting is 0 to %d, not %d"
                             % (MAX_HISTORY_SETTING, history))

    async def _join(self, user: User, roomName: str, password: str,
                    history: int = 0) -> JoinAnswer:
        await self.service.quotas.checkJoin(self._owner(user), self.address)
        # A room another session here is creating is joined once it is stored
        # and its creator is in it; if that creation failed, this JOIN creates
        # the room itself.
        room = await self.service.settling.settled(roomName)
        if room is None:
            return await self._createAndEnter(user, roomName, password, history)
        return await self._enter(user, room, await self._admit(user, room, password))

    async def _admit(self, user: User, room: Room, password: str) -> Optional[str]:
        """
        Refuse C{user} entry to C{room}, which exists, unless it may join it
        with C{password}.

        @return: the room's topic, or L{None}.
        """
        service = self.service
        if fold(user.name) in room.members:
            raise Conflict("already in %s" % (room.name,))
        topic = await self._refuseBanned(user, room)
        if room.passwordHash is not None:
            attempt = await service.failures.attempt("room:" + fold(room.name), self.address)
            if not await service.credentials.checkPassword(password, room.passwordHash):
                raise Forbidden("wrong password for %s" % (room.name,))
            await attempt.succeeded()
        elif password:
            raise Forbidden("%s has no password; join it without one" % (room.name,))
        self._hasKey(user)
        return topic

    async def _createAndEnter(self, user: User, roomName: str, password: str,
                              history: int) -> JoinAnswer:
        """
        Create a room and join it, its creator first: requests here for the
        room wait meanwhile. When another node of the cluster stored the same
        new room first, join that room instead, as one that exists.
        """
        self._hasKey(user)
        settling = self.service.settling
        settling.begin(roomName)
        try:
            try:
                room = await self._newRoom(user, roomName, password, history)
            except Conflict:
                stored = await self.service.adoptStoredRoom(roomName)
                if stored is None:
                    raise
                return await self._enter(user, stored, await self._admit(user, stored, password))
            return await self._enter(user, room, None)
        finally:
            settling.end(roomName)

    async def _enter(self, user: User, room: Room, topic: Optional[str]) -> JoinAnswer:
        """
        Put C{user} in C{room}, unless what the checks awaited changed it.
        """
        service = self.service
        if self.user is not user:
            raise BadRequest("the session closed meanwhile")
        if fold(user.name) in room.members:
            raise Conflict("already in %s" % (room.name,))
        if service.directory.rooms.get(fold(room.name)) is not room:
            raise NotFound("%s was removed meanwhile" % (room.name,))
        service.happened(service.directory.join(room, user), self)
        if user.account:
            await service.store.addMember(room.name, user.name)
        self._wantShares(room, user)
        return JoinAnswer(await self._membersFor(room), topic, room.history)

    def leave(self, roomName: str) -> "Deferred[bool]":
        """
        Leave one room, or every room for an empty name.

        @return: a L{Deferred} firing with L{True} when the connection should now
            be closed (an empty name while in no room), else L{False}.
        """
        user = self._greeted()
        if not roomName:
            if not user.rooms:
                return succeed(True)
            rooms = list(user.rooms.values())
        else:
            room = self.service.directory.room(roomName)
            if fold(user.name) not in room.members:
                raise BadRequest("not a member of %s" % (room.name,))
            rooms = [room]
        stored = []
        for room in rooms:
            # The store forgets an account's membership before it is asked
            # whether the emptied room may go (its writes run in call order),
            # and others hear of the leave before they can hear the room is gone.
            if user.account:
                stored.append(self.service.store.removeMember(room.name, user.name))
            self.service.happened(self.service.directory.leave(room, user), self)
        return gatherResults(stored).addCallback(lambda _: False)


    def history(self, roomName: str, limit: int, before: int) -> "Deferred[list]":
        """
        The newest messages of a room that this session's entry key has an
        entry in; C{@user} names the stored direct messages with C{user}.

        @param limit: how many (0: the configured default; capped at the maximum).
        @param before: a server timestamp (exclusive), 0 for the newest.
        @return: a L{Deferred} firing with C{(sender, timestamp, envelope)}
            triples, oldest first, each envelope cut down to this user.
        """
        settings = self.service.settings
        user = self._greeted()
        limit = min(limit or settings.historyLimit, settings.historyMax)
        before = min(before, MAX_TIMESTAMP)
        if roomName.startswith("@"):
            if not isUserName(roomName[1:]):
                raise BadRequest("invalid user name %r" % (roomName[1:],))
            return self._directHistory(user, roomName[1:], limit, before)
        room = self.service.directory.room(roomName)
        if fold(user.name) not in room.members:
            raise BadRequest("not a member of %s" % (room.name,))
        # Read by this session's entry key: a device reads its own entries.
        entry = self.service.devices.entryKeyOf(self)
        d = self.service.store.history(room.name, entry, limit, before)
        return d.addCallback(readable, entry)
