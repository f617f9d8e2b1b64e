# -*- test-case-name: chatd.test.test_moderation -*-
"""
Requests that keep a room civil: kick, ban, unban, roles, topic, room password,
destroy, and the room's moderation info (docs/protocol.rst, Room moderation).

Who may do what is decided from the roles the store holds, read at each
request, so that a role given on another node or by C{chatd-admin owner}
counts at once. A kick or a ban takes the user out of the room's members
before the request is answered: the next envelope to the room must then leave
it out (the exact-recipients rule of L{chatd.core.service.ChatService.checkEnvelope}),
so it receives nothing more of the room. The other nodes of a cluster are told
through the fan-out and do the same to their picture of the room.
"""

from typing import Iterable, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.core.base import SessionBase
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.names import fold, isRoomName, isUserName
from chatd.store.moderation import OPERATOR, OWNER, ROLES

log = Logger()

# The longest topic or reason, in bytes of UTF-8.
MAX_TEXT = 512


def _checkText(text, what):
    if len(text.encode("utf-8")) > MAX_TEXT:
        raise BadRequest("a %s is at most %d bytes" % (what, MAX_TEXT))
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise BadRequest("a %s holds no control characters" % (what,))


def _checkNames(roomName, userName=None):
    if not isRoomName(roomName):
        raise BadRequest("invalid room name %r" % (roomName,))
    if userName is not None and not isUserName(userName):
        raise BadRequest("invalid user name %r" % (userName,))


class JoinAnswer(list):
    """
    JOIN's answer: the members' C{(name, key)} pairs, as a list, the
    room's C{topic} (L{None}: none) for the doors that show it, and its
    C{history} setting (version 3).
    """

    def __init__(self, members: Iterable[Tuple[str, Optional[bytes]]], topic: Optional[str],
                 history: int = 0) -> None:
        list.__init__(self, members)
        self.topic = topic
        self.history = history


class ModerationRequests(SessionBase):
    """
    The moderation requests of a L{chatd.core.session.Session}, mixed into it.
    """

    async def _authority(self, user, room, owner=False):
        """
        The room's L{chatd.model.Moderation} and this user's role there, once
        it is known to be enough.

        @raise Forbidden: when the user is not an operator or owner (an owner,
            when C{owner} is set) of C{room}.
        """
        info = await self.service.store.moderation(room.name)
        role = info.roleOf(user.name) if user.account else None
        if owner and role != OWNER:
            raise Forbidden("you are not an owner of %s" % (room.name,))
        if role is None:
            raise Forbidden("you are not an operator of %s" % (room.name,))
        return info, role

    def _moderate(self, roomName, userName, *texts):
        """
        The checks every moderation request starts with, in the order of
        docs/protocol.rst: a user, valid names and texts, the room.

        @param texts: C{(text, what)} pairs.
        @return: the user and the room.
        """
        user = self._greeted()
        _checkNames(roomName, userName)
        for text, what in texts:
            _checkText(text, what)
        return user, self.service.directory.room(roomName)

    def kick(self, roomName: str, userName: str, reason: str) -> "Deferred[None]":
        """
        Take a member out of a room; it may come back.

        @return: a L{Deferred} that fires once the member is out.
        """
        user, room = self._moderate(roomName, userName, (reason, "reason"))
        return Deferred.fromCoroutine(self._kick(user, room, userName, reason))

    async def _mayExpel(self, verb, user, room, name):
        """
        The checks a kick and a ban share: the authority to do it, not on
        oneself, and an operator not on an owner.

        @return: the room's L{chatd.model.Moderation}.
        """
        info, role = await self._authority(user, room)
        if fold(name) == fold(user.name):
            raise BadRequest("you cannot %s yourself; leave the room instead" % (verb,))
        if role == OPERATOR and info.roleOf(name) == OWNER:
            raise Forbidden("an operator cannot %s an owner of %s" % (verb, room.name))
        return info

    async def _kick(self, user, room, userName, reason):
        await self._mayExpel("kick", user, room, userName)
        target = room.members.get(fold(userName))
        if target is None:
            raise NotFound("%s is not in %s" % (userName, room.name))
        if target.account:
            await self.service.store.removeMember(room.name, target.name)
        self._expel(user, room, target.name, reason, False)

    def _expel(self, user, room, name, reason, banned):
        """
        Take C{name} out of C{room} here and on the other nodes, and log who
        did it from where.
        """
        service = self.service
        service.happened(service.directory.kick(room.name, name, user.name, reason, banned),
                         self)
        log.info("{actor} {what} {target} from {room} (from {address})", actor=user.name,
                 what="banned" if banned else "kicked", target=name, room=room.name,
                 address=self.address)

    def ban(self, roomName: str, userName: str, reason: str) -> "Deferred[None]":
        """
        Ban a name from a room, and take it out if it is in.

        @return: a L{Deferred} that fires once the ban is stored.
        """
        user, room = self._moderate(roomName, userName, (reason, "reason"))
        return Deferred.fromCoroutine(self._ban(user, room, userName, reason))

    async def _ban(self, user, room, userName, reason):
        info = await self._mayExpel("ban", user, room, userName)
        if info.banOf(userName) is not None:
            raise Conflict("%s is banned from %s already" % (userName, room.name))
        target = room.members.get(fold(userName))
        await self.service.store.addBan(room.name, target.name if target else userName,
                                        user.name, reason)
        self._expel(user, room, target.name if target else userName, reason, True)

    def unban(self, roomName: str, userName: str) -> "Deferred[None]":
        """
        Lift a ban.

        @return: a L{Deferred} that fires once the ban is gone.
        """
        user, room = self._moderate(roomName, userName)
        return Deferred.fromCoroutine(self._unban(user, room, userName))

    async def _unban(self, user, room, userName):
        await self._authority(user, room)
        try:
            await self.service.store.removeBan(room.name, userName)
        except NotFound:
            raise NotFound("%s is not banned from %s" % (userName, room.name)) from None
        self.service.happened(self.service.directory.unban(room.name, userName))
        log.info("{actor} unbanned {target} from {room} (from {address})", actor=user.name,
                 target=userName, room=room.name, address=self.address)

    def setRole(self, roomName: str, userName: str,
                role: Optional[str]) -> "Deferred[None]":
        """
        Make an account an owner or operator of a room, or take its role away
        (L{None}).

        @return: a L{Deferred} that fires once the role is stored.
        """
        user, room = self._moderate(roomName, userName)
        if role is not None and role not in ROLES:
            raise BadRequest("a role is owner, operator or none")
        return Deferred.fromCoroutine(self._setRole(user, room, userName, role))

    async def _setRole(self, user, room, userName, role):
        service = self.service
        info, _ = await self._authority(user, room, owner=True)
        account = await service.store.getAccount(userName)
        if account is None:
            raise NotFound("no such account: %s" % (userName,))
        current = info.roleOf(account.name)
        if current == role:
            raise Conflict("%s is %s of %s already" % (account.name, role or "no operator",
                                                       room.name))
        if current == OWNER and len(info.owners) == 1:
            raise Forbidden("%s is the last owner of %s; make another owner first"
                            % (account.name, room.name))
        await service.store.setRole(room.name, account.name, role)
        service.happened(service.directory.setRole(room.name, account.name, user.name, role),
                         self)

    def setTopic(self, roomName: str, topic: str) -> "Deferred[None]":
        """
        Set a room's topic (empty: none).

        @return: a L{Deferred} that fires once it is stored.
        """
        user, room = self._moderate(roomName, None, (topic, "topic"))
        return Deferred.fromCoroutine(self._setTopic(user, room, topic))

    async def _setTopic(self, user, room, topic):
        service = self.service
        await self._authority(user, room)
        await service.store.setTopic(room.name, topic or None)
        service.happened(service.directory.setTopic(room.name, user.name, topic), self)

    def setRoomPassword(self, roomName: str, password: str) -> "Deferred[None]":
        """
        Set a room's password, or remove it (empty). Its members stay.

        @return: a L{Deferred} that fires once it is stored.
        """
        user, room = self._moderate(roomName, None)
        self._checkRoomPassword(password)
        return Deferred.fromCoroutine(self._setRoomPassword(user, room, password))

    async def _setRoomPassword(self, user, room, password):
        service = self.service
        await self._authority(user, room)
        passwordHash = await service.credentials.hashPassword(password) if password else None
        await service.store.setRoomPassword(room.name, passwordHash)
        service.happened(service.directory.setPassword(room, passwordHash))

    def destroy(self, roomName: str) -> "Deferred[None]":
        """
        Delete a room with its history, memberships, roles and bans.

        @return: a L{Deferred} that fires once it is gone.
        """
        user, room = self._moderate(roomName, None)
        return Deferred.fromCoroutine(self._destroy(user, room))

    async def _destroy(self, user, room):
        service = self.service
        await self._authority(user, room, owner=True)
        await service.store.destroyRoom(room.name)
        service.happened(service.directory.destroy(room, user.name), self)
        log.info("{actor} destroyed {room} (from {address})", actor=user.name,
                 room=room.name, address=self.address)

    def roomInfo(self, roomName: str
                 ) -> "Deferred[Tuple[str, List[str], List[str], List[str]]]":
        """
        A room's topic, owners and operators, and the names banned from it for
        its operators and owners.

        @return: a L{Deferred} firing with C{(topic, owners, operators,
            banned)}; the topic is empty when there is none.
        """
        user = self._greeted()
        room = self.service.directory.room(roomName)
        if room.passwordHash is not None and fold(user.name) not in room.members:
            raise Forbidden("the moderation of %s is for its members" % (room.name,))
        d = self.service.store.moderation(room.name)

        def answer(info):
            moderator = user.account and info.roleOf(user.name) is not None
            banned = [ban.name for ban in info.bans] if moderator else []
            return (info.topic or "", list(info.owners), list(info.operators), banned)
        return d.addCallback(answer)

    async def _refuseBanned(self, user, room):
        """
        Refuse C{user} entry to C{room} when it is banned from it, by name or,
        for a guest that renamed, as the user it was.

        @return: the room's topic, or L{None}.
        """
        info = await self.service.store.moderation(room.name)
        if info.banOf(user.name) is not None or fold(room.name) in user.bans:
            raise Forbidden("you are banned from %s" % (room.name,))
        return info.topic

    async def _refuseBannedName(self, user, name):
        """
        Refuse a guest a new name banned from a room it is in: it would be in
        a room its name may not enter.
        """
        for room in list(user.rooms.values()):
            info = await self.service.store.moderation(room.name)
            if info.banOf(name) is not None:
                raise Forbidden("%s is banned from %s, which you are in" % (name, room.name))

    async def _leaveBannedRooms(self, user, name):
        """
        A guest logging in as account C{name} leaves the rooms it is in that
        C{name} is banned from, rather than bring the account into them.
        """
        service = self.service
        for room in list(user.rooms.values()):
            info = await service.store.moderation(room.name)
            if info.banOf(name) is not None and fold(room.name) in user.rooms:
                service.happened(service.directory.leave(room, user))
