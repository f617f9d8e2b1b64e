# -*- test-case-name: chatd.test.test_events,chatd.test.test_service -*-
"""
The users online and the rooms, with their memberships: the directory that
alone changes them, and reports each change as events.
"""

from typing import Any, Dict, List, Optional, Set

from chatd import e2e
from chatd.core.events import (
    Approval,
    DevicePending,
    DevicesChanged,
    DirectMessage,
    Event,
    Joined,
    KeyChanged,
    Kicked,
    Left,
    PasswordChanged,
    Renamed,
    RoleChanged,
    RoomCreated,
    RoomDestroyed,
    RoomDropped,
    RoomMessage,
    ShareWanted,
    TopicChanged,
    Unbanned,
    UserOffline,
    UserOnline,
)
from chatd.core.online import Room, User
from chatd.errors import BadRequest, NotFound
from chatd.names import fold, isRoomName

# The two kinds of target a request names (GET_KEYS, OFFER).
ROOM, USER = 0, 1


class Directory:
    """
    Who is online (here or on other nodes of the cluster), which rooms exist,
    and who is in which: the one place that changes them.

    Every change returns the events it made (L{chatd.core.events}), empty when
    nothing changed, so that the service can tell the sessions concerned and
    publish what happened here. L{apply} makes the change another node
    published.

    @ivar users: folded name -> L{User}, for reading.
    @ivar rooms: folded name -> L{Room}, for reading.
    """

    def __init__(self) -> None:
        self.users: Dict[str, User] = {}
        self.rooms: Dict[str, Room] = {}
        self._claimed: Set[str] = set()

    # -- queries ---------------------------------------------------------

    def user(self, name: str) -> Optional[User]:
        """
        @return: the L{User} online under C{name} (ignoring case), or L{None}.
        """
        return self.users.get(fold(name))

    def nameInUse(self, name: str) -> bool:
        """
        Whether C{name} is online, or being registered by a session.
        """
        key = fold(name)
        return key in self.users or key in self._claimed

    def claim(self, name: str) -> None:
        """
        Hold C{name} while an account of that name is being stored.
        """
        self._claimed.add(fold(name))

    def unclaim(self, name: str) -> None:
        self._claimed.discard(fold(name))

    def room(self, name: str) -> Room:
        """
        The room named C{name} (ignoring case).

        @raise BadRequest: for a name no room can have.
        @raise NotFound: when there is no such room.
        """
        if not isRoomName(name):
            raise BadRequest("invalid room name %r" % (name,))
        room = self.rooms.get(fold(name))
        if room is None:
            raise NotFound("no such room: %s" % (name,))
        return room

    def usersOn(self, node: str) -> List[User]:
        """
        @return: the users this node knows to have sessions on node C{node}.
        """
        return [user for user in self.users.values() if node in user.nodes]

    def audience(self, user: User, exclude: object = None) -> List[Any]:
        """
        Every session here that must hear of a change to C{user}: the sessions
        of everyone sharing a room or a direct conversation with it, and its
        own other sessions.
        """
        users = {user}
        users.update(user.peers)
        for room in user.rooms.values():
            users.update(room.members.values())
        return [s for u in users for s in u.sessions if s is not exclude]

    def roomSessions(self, room: Room, exclude: object = None) -> List[Any]:
        """
        The sessions here of C{room}'s members.
        """
        return [s for s in room.sessions() if s is not exclude]

    # -- changes ---------------------------------------------------------

    def loadRoom(self, name: str, passwordHash: Optional[bytes], lastTimestamp: int,
                 history: int = 0) -> Room:
        """
        Know a stored room (at start, or one another node stored): nothing
        happened to it, so there is no event.

        @return: the L{Room}.
        """
        if fold(name) not in self.rooms:
            self.rooms[fold(name)] = Room(name, passwordHash, lastTimestamp, history)
        return self.rooms[fold(name)]

    def attach(self, session: object, user: User) -> List[Event]:
        """
        C{session} belongs to C{user} now; its first session here brings it
        online here.
        """
        first = not user.sessions
        user.sessions.append(session)
        for room in user.rooms.values():
            room.sessionsChanged()
        self.users[fold(user.name)] = user
        return [UserOnline(user.name, user.key, user.account)] if first else []

    def detach(self, session: object, user: User) -> List[Event]:
        """
        C{session} no longer belongs to C{user}; with its last session here
        gone, it is offline here (and offline everywhere when no other node has
        it: see L{forget}).
        """
        user.sessions.remove(session)
        for room in user.rooms.values():
            room.sessionsChanged()
        return [] if user.sessions else [UserOffline(user.name)]

    def forget(self, user: User) -> List[Event]:
        """
        C{user}, in no room any more, is offline in the whole cluster.
        """
        for peer in user.peers:
            peer.peers.discard(user)
        user.peers.clear()
        if self.users.get(fold(user.name)) is user:
            del self.users[fold(user.name)]
        return []

    def rename(self, user: User, new: str, account: bool) -> List[Event]:
        """
        C{user} is called C{new} now, and is an account or not.
        """
        old = user.name
        user.account = account
        if new != old:
            del self.users[fold(old)]
            for room in user.rooms.values():
                del room.members[fold(old)]
                room.members[fold(new)] = user
                room.changed()
            user.name = new
            self.users[fold(new)] = user
        return [Renamed(old, new, account)]

    def changeKey(self, user: User, key: bytes) -> List[Event]:
        user.setKey(key)
        for room in user.rooms.values():
            room.changed()
        return [KeyChanged(user.name, key)]

    def createRoom(self, name: str, passwordHash: Optional[bytes],
                   history: int = 0) -> List[Event]:
        """
        A new room; none if one of that name exists.
        """
        if fold(name) in self.rooms:
            return []
        self.rooms[fold(name)] = Room(name, passwordHash, history=history)
        return [RoomCreated(name, passwordHash, history)]

    def dropRoom(self, room: Room) -> List[Event]:
        """
        C{room} is gone, unless it is not the room of that name any more.
        """
        if self.rooms.get(fold(room.name)) is not room:
            return []
        del self.rooms[fold(room.name)]
        return [RoomDropped(room.name)]

    def join(self, room: Room, user: User) -> List[Event]:
        room.members[fold(user.name)] = user
        user.rooms[fold(room.name)] = room
        room.changed()
        return [Joined(room.name, user.name)]

    def leave(self, room: Room, user: User) -> List[Event]:
        del room.members[fold(user.name)]
        del user.rooms[fold(room.name)]
        room.changed()
        return [Left(room.name, user.name)]

    def advance(self, room: Room, timestamp: int) -> None:
        """
        C{room} has had a message at C{timestamp}: the next gets a later one.
        """
        room.lastTimestamp = max(room.lastTimestamp, timestamp)

    def roomMessage(self, room: Room, sender: str, timestamp: int, data: bytes,
                    envelope: Optional[e2e.Envelope] = None, sequence: int = 0) -> List[Event]:
        """
        C{sender} posted C{data} (whose parsed form is C{envelope}, when known)
        to C{room} at C{timestamp}, stored as C{sequence}.
        """
        self.advance(room, timestamp)
        return [RoomMessage(room.name, sender, timestamp, data, envelope, sequence)]

    def directMessage(self, sender: User, peer: Optional[User], timestamp: int, data: bytes,
                      envelope: Optional[e2e.Envelope] = None, sequence: int = 0,
                      peerName: Optional[str] = None) -> List[Event]:
        """
        C{sender} wrote to C{peer}: each must hear of the other's key changes
        from now on. A stored message may be to an account nobody has online
        (C{peer} L{None}, C{peerName} its name).
        """
        if peer is not None and peer is not sender:
            sender.peers.add(peer)
            peer.peers.add(sender)
        name = peer.name if peer is not None else peerName
        assert name is not None, "a direct message names its peer"
        return [DirectMessage(sender.name, name, timestamp, data, envelope, sequence)]

    # -- room moderation (chatd.core.moderation) -----------------------

    def kick(self, roomName: str, name: str, by: str, reason: str,
             banned: bool) -> List[Event]:
        """
        C{by} kicked (or banned) C{name} from room C{roomName}: the user online
        under that name is out of the room, and a banned one stays out as the
        user it is (a guest that renames is still banned).
        """
        target = self.user(name)
        removed = False
        kept = self.rooms.get(fold(roomName))
        if kept is not None:
            # An offline account banned is no longer remembered in it either.
            kept.changed()
        if target is not None:
            if banned:
                target.bans.add(fold(roomName))
            room = self.rooms.get(fold(roomName))
            if room is not None and room.members.get(fold(target.name)) is target:
                self.leave(room, target)
                removed = True
        return [Kicked(roomName, name, by, reason, banned, removed)]

    def _forgive(self, roomName, name):
        """
        The user online under C{name}, if any, is no longer kept out of the
        room as the user it was.
        """
        target = self.user(name)
        if target is not None:
            target.bans.discard(fold(roomName))

    def unban(self, roomName: str, name: str) -> List[Event]:
        self._forgive(roomName, name)
        return [Unbanned(roomName, name)]

    def setRole(self, roomName: str, name: str, by: str,
                role: Optional[str]) -> List[Event]:
        """
        An owner or operator is no longer kept out as the user it was.
        """
        if role is not None:
            self._forgive(roomName, name)
        return [RoleChanged(roomName, name, by, role)]

    def setTopic(self, roomName: str, by: str, topic: str) -> List[Event]:
        """
        The topic is the store's; only the event is the directory's.
        """
        return [TopicChanged(roomName, by, topic)]

    def setPassword(self, room: Room, passwordHash: Optional[bytes]) -> List[Event]:
        room.passwordHash = passwordHash
        return [PasswordChanged(room.name, passwordHash)]

    def destroy(self, room: Room, by: str) -> List[Event]:
        """
        C{room} is gone with its memberships.
        """
        members = tuple(room.members.values())
        for member in members:
            del member.rooms[fold(room.name)]
        room.members.clear()
        room.changed()
        if self.rooms.get(fold(room.name)) is room:
            del self.rooms[fold(room.name)]
        return [RoomDestroyed(room.name, by, members)]

    # -- changes made on other nodes -------------------------------------

    def apply(self, node: str, event: Event) -> List[Event]:
        """
        Make here the change that C{event}, published by C{node}, says
        happened there, as far as this node's picture allows (an event about a
        user or room this node does not know changes nothing).

        @return: the events that changed something here.
        """
        return self._applying[type(event)](self, node, event)

    def _online(self, node, event):
        user = self.users.get(fold(event.user))
        if user is None:
            user = User(event.user, event.key, event.account)
            self.users[fold(user.name)] = user
        user.nodes.add(node)
        return [event]

    def _offline(self, node, event):
        user = self.users.get(fold(event.user))
        if user is None:
            return []
        user.nodes.discard(node)
        return [UserOffline(user.name)]

    def _renamed(self, node, event):
        user = self.users.get(fold(event.old))
        if user is None:
            return []
        return self.rename(user, event.new, event.account)

    def _key(self, node, event):
        user = self.users.get(fold(event.user))
        if user is None or user.key == event.key:
            return []
        return self.changeKey(user, event.key)

    def _room(self, node, event):
        return self.createRoom(event.room, event.passwordHash, event.history)

    def _unroom(self, node, event):
        room = self.rooms.get(fold(event.room))
        if room is None or room.members:
            return []
        return self.dropRoom(room)

    def _member(self, event):
        room = self.rooms.get(fold(event.room))
        user = self.users.get(fold(event.user))
        if room is None or user is None:
            return None, None, False
        return room, user, fold(user.name) in room.members

    def _joined(self, node, event):
        room, user, member = self._member(event)
        return self.join(room, user) if room is not None and not member else []

    def _left(self, node, event):
        room, user, member = self._member(event)
        return self.leave(room, user) if member else []

    def _message(self, node, event):
        room = self.rooms.get(fold(event.room))
        if room is None:
            return []
        return self.roomMessage(room, event.sender, event.timestamp, event.envelope,
                                sequence=event.sequence)

    def _direct(self, node, event):
        sender = self.users.get(fold(event.sender))
        peer = self.users.get(fold(event.peer))
        if sender is None:
            return []
        return self.directMessage(sender, peer, event.timestamp, event.envelope,
                                  sequence=event.sequence, peerName=event.peer)

    def _kicked(self, node, event):
        if self.user(event.user) is None:
            return []
        return self.kick(event.room, event.user, event.by, event.reason, event.banned)

    def _unbanned(self, node, event):
        return self.unban(event.room, event.user)

    def _role(self, node, event):
        return self.setRole(event.room, event.user, event.by, event.role)

    def _topic(self, node, event):
        return self.setTopic(event.room, event.by, event.topic)

    def _password(self, node, event):
        room = self.rooms.get(fold(event.room))
        return [] if room is None else self.setPassword(room, event.passwordHash)

    def _passOn(self, node, event):
        return [event]

    def _destroyed(self, node, event):
        room = self.rooms.get(fold(event.room))
        return [] if room is None else self.destroy(room, event.by)

    _applying = {
        UserOnline: _online, UserOffline: _offline, Renamed: _renamed, KeyChanged: _key,
        RoomCreated: _room, RoomDropped: _unroom, Joined: _joined, Left: _left,
        RoomMessage: _message, DirectMessage: _direct,
        Kicked: _kicked, Unbanned: _unbanned, RoleChanged: _role, TopicChanged: _topic,
        PasswordChanged: _password, RoomDestroyed: _destroyed,
        # Device events change no directory: the service tells them (and
        # updates its chatd.core.devicebook).
        DevicesChanged: _passOn, DevicePending: _passOn, Approval: _passOn,
        ShareWanted: _passOn,
    }
