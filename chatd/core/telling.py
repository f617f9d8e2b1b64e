# -*- test-case-name: chatd.test.test_service -*-
"""
What an event, once in the directory, means for the sessions of this node:
who is told, with which L{chatd.interfaces.IChatClient} method, and what
follows (transfers left, a room dropped, a device's mark raised).

A mixin of L{chatd.core.service.ChatService}, whose L{ChatService.happened}
and L{ChatService.remoteEvent} bring every event here through C{_tell}: its
own module because telling sessions is one idea, and running the node
(lifecycle, the cluster, transfers) is another.
"""

from typing import Any, Callable, Dict, Optional, Tuple

from chatd.core import devicetell
from chatd.core.devicebook import DeviceBook
from chatd.core.directory import ROOM, Directory
from chatd.core.events import (
    Approval,
    DevicePending,
    DevicesChanged,
    DirectMessage,
    Joined,
    KeyChanged,
    Kicked,
    Left,
    PasswordChanged,
    Renamed,
    RoleChanged,
    RoomDestroyed,
    RoomMessage,
    ShareWanted,
    TopicChanged,
    UserOffline,
)
from chatd.interfaces import ISplicingClient
from chatd.metrics import Metrics
from chatd.names import fold


class Telling:
    """
    The tellers of L{chatd.core.service.ChatService}, which this is mixed
    into: they use its C{directory}, C{devices}, C{metrics}, C{broadcast},
    C{leaveTransfers}, C{goOffline} and C{dropIfUnused}.
    """

    # What the object this is mixed into provides (for type checkers).
    directory: Directory
    devices: DeviceBook
    metrics: Metrics
    broadcast: Callable[..., None]
    leaveTransfers: Callable[..., None]
    _deliveryFailed: Callable[..., None]
    goOffline: Callable[..., None]
    dropIfUnused: Callable[..., None]

    def _tell(self, event, exclude, local):
        """
        What an event, now in the directory, means for the sessions here.

        @param local: whether it happened on this node, rather than on another.
        """
        telling = self._telling.get(type(event))
        if telling is not None:
            telling(self, event, exclude, local)

    def _toldOffline(self, event, exclude, local):
        user = self.directory.user(event.user)
        if user is not None and not user.sessions and not user.nodes:
            self.goOffline(user, local)

    def _toldRenamed(self, event, exclude, local):
        if event.new != event.old:
            user = self.directory.user(event.new)
            assert user is not None  # renamed here, or applied from another node
            self.broadcast(self.directory.audience(user, exclude), "userRenamed",
                           event.old, event.new)

    def _toldKey(self, event, exclude, local):
        user = self.directory.user(event.user)
        assert user is not None  # its key changed here, or was applied from another node
        self.leaveTransfers(user, lambda t, s: s is not t.sender, "key changed")
        self.broadcast(self.directory.audience(user, exclude), "keyChanged", user.name, event.key)

    def _toldJoined(self, event, exclude, local):
        room = self.directory.rooms[fold(event.room)]
        user = room.members[fold(event.user)]
        self.broadcast(self.directory.roomSessions(room, exclude), "userJoined", room.name,
                       user.name, user.key)

    def _toldLeft(self, event, exclude, local):
        self._out(event.room, event.user, exclude, local, "userLeft", event.user)

    def _toldKicked(self, event, exclude, local):
        if event.removed:
            user = self.directory.user(event.user)
            assert user is not None  # removed from the room, so known
            self._out(event.room, event.user, exclude, local, "kicked", user.name, event.by,
                      event.banned, event.reason)

    def _out(self, roomName, userName, exclude, local, method, *args):
        """
        A user is out of a room: it leaves its transfers there, the room's
        members and its own sessions are told with C{method}, and the room
        goes when nothing keeps it.
        """
        room = self.directory.rooms[fold(roomName)]
        user = self.directory.user(userName)
        sessions = user.sessions if user is not None else []
        if user is not None:
            self.leaveTransfers(user, lambda t, s: t.offer.kind == ROOM
                                and t.offer.target == room.name, "left the room")
        self.broadcast(self.directory.roomSessions(room, exclude)
                       + [s for s in sessions if s is not exclude], method, room.name, *args)
        self.dropIfUnused(room, local)

    def _toldRole(self, event, exclude, local):
        room = self.directory.rooms.get(fold(event.room))
        if room is not None:
            self.broadcast(self.directory.roomSessions(room, exclude), "roleChanged", room.name,
                           event.user, event.by, event.role)

    def _toldTopic(self, event, exclude, local):
        room = self.directory.rooms.get(fold(event.room))
        if room is not None:
            self.broadcast(self.directory.roomSessions(room, exclude), "topicChanged",
                           room.name, event.by, event.topic)

    def _toldPassword(self, event, exclude, local):
        """
        A room that lost its password may now be dropped (when it is empty).
        """
        self.dropIfUnused(self.directory.rooms[fold(event.room)], local)

    def _toldDestroyed(self, event, exclude, local):
        """
        The members of a destroyed room leave its transfers, and each of their
        sessions is told once.
        """
        audience = [s for member in event.members for s in member.sessions if s is not exclude]
        for member in event.members:
            self.leaveTransfers(member, lambda t, s: t.offer.kind == ROOM
                                and fold(t.offer.target) == fold(event.room), "left the room")
        self.broadcast(audience, "roomDestroyed", event.room, event.by)

    def _toldMessage(self, event, exclude, local):
        """
        Give a stored room message to the members' sessions here, each cut to
        its reader. Members who joined while it was being stored have no key
        entry in it; they can only be shown what they can read.
        """
        room = self.directory.rooms.get(fold(event.room))
        if room is None:
            return
        told = self._deliver(room.sessions(), exclude, "roomMessage", event.sequence,
                             (room.name, event.sender, event.timestamp), event.parsed())
        if told:
            self.metrics.delivered("room", told)

    def _deliver(self, sessions, exclude, method, sequence, fields, envelope):
        """
        Give each of C{sessions} but C{exclude} its own cut of C{envelope} (by
        the entry it reads the envelope by, L{chatd.e2e.Envelope.entryFor}: a
        device reads only its own entry of a version 2 envelope, every session
        of a user the user's entry of a version 1 one), when it has one, and
        raise its device's mark.

        This is the fan-out's loop, so L{chatd.e2e.Envelope.entryFor} is
        spelled out in it rather than called. The sessions of an
        L{ISplicingClient} door are gathered with their entry keys and handed
        to their door's class in one call, which makes each reader's frame
        from the envelope and the entry (no cut object in between); any other
        client is given its cut. No Deferred, no log line and no counter per
        delivery (the caller counts once per message). A session whose door
        fails is logged and disconnected, as L{broadcast} does.

        @param fields: the event's fields before the envelope.
        @return: how many sessions were given it.
        """
        entryKeyOf, delivered = self.devices.entryKeyOf, self.devices.delivered
        cutFor, readers = envelope.sharedCut, envelope.encryptedKeys
        splicerOf = _SPLICERS[method]
        byDevice = envelope.version == 2
        batches: Dict[Callable[..., None], Tuple[list, list]] = {}
        told = 0
        # The batch readers were last added to: a room's sessions are nearly
        # all of one door, so its lists' appends are looked up once.
        current: Optional[Callable[..., None]] = None
        addClient: Callable[[Any], None]
        addEntry: Callable[[str], None]
        # A copy: a door that drops its too-slow reader takes it out of the list.
        sessions = tuple(sessions)
        for session in sessions:
            if session is exclude:
                continue
            entry = entryKeyOf(session) if byDevice else session.user.name
            if entry not in readers:
                continue
            client = session.client
            splice = splicerOf[type(client)]
            if splice is None:
                try:
                    getattr(client, method)(*fields, cutFor(entry))
                except Exception:
                    self._deliveryFailed(session, method)
            else:
                if splice is not current:
                    current, batch = splice, batches.get(splice)
                    if batch is None:
                        batch = batches[splice] = ([], [])
                    addClient, addEntry = batch[0].append, batch[1].append
                addClient(client)
                addEntry(entry)
            if sequence and session.device is not None:
                delivered(session, sequence)
            told += 1
        if batches:
            def failed(client):
                self._deliveryFailed(
                    next(session for session in sessions if session.client is client), method)
            for splice, (clients, entries) in batches.items():
                try:
                    splice(clients, entries, fields, envelope, failed)
                except Exception:
                    # The door's loop itself broke: none of its readers is
                    # known to have the message, so each goes as one that failed.
                    for client in clients:
                        failed(client)
        return told

    def _toldDirect(self, event, exclude, local):
        """
        Give a direct message to the recipient's sessions here, and a copy to
        the sender's other sessions here, each cut to its own entry.
        """
        sender, peer = self.directory.user(event.sender), self.directory.user(event.peer)
        assert sender is not None  # it sent the message here, or is known from its node
        envelope = event.parsed()
        args = (sender.name, event.timestamp)
        told = 0
        if peer is not None:
            told += self._deliver(peer.sessions, exclude, "directMessage", event.sequence,
                                  args, envelope)
        if peer is not sender:
            told += self._deliver(sender.sessions, exclude, "directMessage", event.sequence,
                                  args, envelope)
        if told:
            self.metrics.delivered("direct", told)

    _telling: Dict[type, Callable[..., None]] = {
        UserOffline: _toldOffline, Renamed: _toldRenamed, KeyChanged: _toldKey,
        Joined: _toldJoined, Left: _toldLeft, RoomMessage: _toldMessage,
        DirectMessage: _toldDirect, Kicked: _toldKicked, RoleChanged: _toldRole,
        TopicChanged: _toldTopic, PasswordChanged: _toldPassword,
        RoomDestroyed: _toldDestroyed,
        DevicesChanged: devicetell.devicesChanged, DevicePending: devicetell.devicePending,
        Approval: devicetell.approval, ShareWanted: devicetell.shareWanted,
    }


class _Splicers(Dict[type, Optional[Callable[..., None]]]):
    """
    For each class of client, its L{ISplicingClient} method standing for one
    L{IChatClient} method (C{splicing}), or L{None} when it has none: looked
    up once per class, not once per delivery.
    """

    def __init__(self, splicing: str) -> None:
        super().__init__()
        self._name = splicing

    def __missing__(self, kind: type) -> Optional[Callable[..., None]]:
        found = getattr(kind, self._name) if ISplicingClient.implementedBy(kind) else None
        self[kind] = found
        return found


_SPLICERS = {"roomMessage": _Splicers("roomMessagesFor"),
             "directMessage": _Splicers("directMessagesFor")}
