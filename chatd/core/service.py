# -*- test-case-name: chatd.test.test_service -*-
"""
The protocol-free core shared by every front door: one L{ChatService} per node.

State lives in the L{Directory}, which alone changes it and returns the events
each change made. The service applies an event the same way wherever it
happened: a session's request makes a change here and hands its events to
L{ChatService.happened}, which publishes them to the other nodes; the fan-out
hands another node's events to L{ChatService.remoteEvent}, which makes the same
change in this node's directory. Either way L{ChatService._tell} then tells the
sessions here that the event concerns, once.
"""

import os
from typing import Any, Callable, Dict, Iterable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from chatd import e2e
from chatd.config import Settings
from chatd.core import devicetell, remotefiles
from chatd.core.devicebook import DeviceBook
from chatd.core.directory import ROOM, Directory, Room, User
from chatd.core.events import (
    Approval,
    DevicePending,
    DevicesChanged,
    DirectMessage,
    Event,
    FileEvent,
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
from chatd.core.replay import ReplayCache
from chatd.core.session import Session
from chatd.core.view import DirectoryView
from chatd.credentials import Credentials
from chatd.errors import BadRequest, ChatError, Conflict, Forbidden, StaleRecipients, Unavailable
from chatd.failures import FailureLimits
from chatd.fanout.local import LocalFanout
from chatd.interfaces import IChatClient, IChatService, IFanout
from chatd.metrics import Metrics
from chatd.names import fold
from chatd.observer import OneShotObserver
from chatd.quotas import Quotas
from chatd.shutdown import Sessions
from chatd.startup import keepTrying

log = Logger()


@implementer(IChatService)
class ChatService(Service):
    """
    The protocol-free core shared by every front door.

    @param store: an L{chatd.istore.IMessageStore}.
    @param settings: a L{chatd.config.Settings}.
    @param clock: an L{IReactorTime}, for timestamps, idle timers and limits.
    @param credentials: bcrypt and RSA checks; by default run in threads.
    @param fanout: the L{IFanout} to the other nodes of the cluster; by default
        this node is the whole cluster.
    @param metrics: the L{Metrics} that counts what happens; a private one by
        default.
    """

    def __init__(self, store, settings: Settings, clock: IReactorTime,
                 credentials: Optional[Credentials] = None,
                 randomBytes: Callable[[int], bytes] = os.urandom,
                 fanout: Optional[IFanout] = None, metrics: Optional[Metrics] = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.fanout = fanout if fanout is not None else LocalFanout(clock)
        self.metrics.watchFanout(self.fanout)
        self.settings = settings
        self.clock = clock
        self.credentials = credentials or Credentials(settings.bcryptCost)
        self.randomBytes = randomBytes
        self.directory = Directory()
        # Accounts' device lists, pending devices, marks (chatd.core.devices).
        self.devices = DeviceBook(store, clock)
        # What the fan-out reads of the directory (and the store), read-only.
        self.view = DirectoryView(self.directory, store)
        self._ready = OneShotObserver()
        self.messageLimit = self.fanout.window("messages", *settings.rateLimit)
        self.failures = FailureLimits(self.fanout, clock, settings)
        self.registrations = self.fanout.window("registrations", *settings.registerLimit)
        # One second past the widest accepted skew: an id is forgotten only once
        # its envelope would be refused for its timestamp.
        self.replays = ReplayCache(clock, 2 * settings.clockSkew + 1, settings.replayEntries)
        self.quotas = Quotas(self.fanout, settings)
        self.sessions = Sessions(clock)
        # Transfer id -> its Transfer (or a Mirror of one on another node),
        # and how many transfers each owner has open.
        self.transfers: Dict[int, Any] = {}
        self.transferCounts: Dict[Any, int] = {}

    # -- lifecycle --------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        d = Deferred.fromCoroutine(self._load())
        d.addBoth(self._ready.fire)

    async def _load(self):
        await keepTrying(self.store.open, self.clock, self.settings.startTimeout,
                         "the database")
        for record in await self.store.loadRooms():
            self.directory.loadRoom(record.name, record.passwordHash, record.lastTimestamp,
                                    record.history)
        await self.fanout.start(self)
        log.info("chatd core ready: {rooms} stored rooms, node {node}",
                 rooms=len(self.directory.rooms), node=self.fanout.nodeId)

    def whenReady(self) -> "Deferred[None]":
        """
        @return: a L{Deferred} that fires once the store is open and the stored
            rooms are loaded (or fails if that failed).
        """
        return self._ready.whenFired()

    def stopService(self) -> "Deferred[None]":
        """
        Tell every connection the server is going away and let it finish (for
        at most C{stop-timeout} seconds), then leave the cluster and close the
        store.
        """
        Service.stopService(self)
        d = self.sessions.stop(self.settings.stopTimeout)
        d.addBoth(lambda _: self.fanout.stop())
        return d.addBoth(lambda _: self.store.close())

    def connect(self, client: IChatClient, address: str) -> Session:
        """
        @raise RateLimited: when C{address} holds as many connections as allowed.
        @raise ChatError: when the server is stopping.
        """
        if self.sessions.stopping:
            raise ChatError("the server is shutting down; reconnect in a few seconds")
        self.quotas.connect(address)
        session = Session(self, client, address)
        self.metrics.connected(session.door)
        self.sessions.add(session)
        return session

    # -- helpers shared by sessions ---------------------------------------

    def now(self) -> int:
        """
        The server clock in whole milliseconds since the epoch.
        """
        return int(self.clock.seconds() * 1000)

    def nextGuestName(self) -> str:
        while True:
            name = "rand%d" % self.fanout.guestNumber()
            if not self.directory.nameInUse(name):
                return name

    def broadcast(self, sessions: Iterable[Any], method: str, *args: Any) -> None:
        """
        Send one event to many sessions; a session that fails is logged and
        disconnected, and the others still get the event.
        """
        for session in sessions:
            try:
                getattr(session.client, method)(*args)
            except Exception:
                self._deliveryFailed(session, method)

    def _deliveryFailed(self, session, method):
        """
        Log why C{session}'s door could not take an event (called in the
        C{except} clause) and disconnect it.
        """
        log.failure("delivering {method} to {name}", method=method,
                    name=session.user.name if session.user else None)
        session.client.disconnect()

    # -- events: one path for what happened here and elsewhere ------------

    def happened(self, events: Iterable[Event], exclude: object = None) -> None:
        """
        Events made here by a change to the directory: publish each to the
        other nodes, then tell the sessions here.

        @param exclude: the session whose request made them, which hears of
            them in its response instead.
        """
        for event in events:
            self.fanout.publish(event)
            self._tell(event, exclude, True)

    def remoteEvent(self, node: str, event: Event) -> None:
        """
        An event from another node: make the change here and tell the local
        sessions it concerns. A bad event is logged and dropped; it never stops
        the node.

        @type event: L{chatd.core.events.Event}
        """
        try:
            if isinstance(event, FileEvent):
                remotefiles.remoteFileEvent(self, node, event)
                return
            for change in self.directory.apply(node, event):
                self._tell(change, None, False)
        except ChatError as e:
            # Refused as a client's request would be: a bad event, not a bug here.
            log.warn("refused {kind} from node {node}: {error}", kind=event.KIND, node=node,
                     error=e.message)
        except Exception:
            log.failure("applying {kind} from node {node}", kind=event.KIND, node=node)

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
        envelope = event.parsed()
        readers = envelope.encryptedKeys
        args = (room.name, event.sender, event.timestamp)
        told = 0
        for member in room.members.values():
            if member.sessions:
                told += self._deliver(member.sessions, exclude, readers, "roomMessage",
                                      event.sequence, args, envelope)
        if told:
            self.metrics.delivered("room", told)

    def _deliver(self, sessions, exclude, readers, method, sequence, args, envelope):
        """
        Give each of C{sessions} but C{exclude} its own cut of C{envelope} (by
        the entry it reads the envelope by, L{chatd.e2e.Envelope.entryFor}: a
        device reads only its own entry of a version 2 envelope), when it has
        one, and raise its device's mark.

        This is the fan-out's inner loop: a session costs its entry key, its
        cut (kept by the envelope for the reader's other sessions), one call
        into its door and its mark; no Deferred, no log line and no counter
        per delivery (the caller counts once per message). A session whose
        door fails is logged and disconnected, as L{broadcast} does.

        @return: how many sessions were given it.
        """
        entryKeyOf, delivered = self.devices.entryKeyOf, self.devices.delivered
        entryFor, cutFor = envelope.entryFor, envelope.sharedCut
        told = 0
        # A copy: a door that drops its too-slow reader takes it out of the list.
        for session in tuple(sessions):
            if session is exclude:
                continue
            entry = entryFor(entryKeyOf(session))
            if entry not in readers:
                continue
            try:
                getattr(session.client, method)(*args, cutFor(entry))
            except Exception:
                self._deliveryFailed(session, method)
            delivered(session, sequence)
            told += 1
        return told

    def _toldDirect(self, event, exclude, local):
        """
        Give a direct message to the recipient's sessions here, and a copy to
        the sender's other sessions here, each cut to its own entry.
        """
        sender, peer = self.directory.user(event.sender), self.directory.user(event.peer)
        assert sender is not None  # it sent the message here, or is known from its node
        envelope = event.parsed()
        readers = envelope.encryptedKeys
        args = (sender.name, event.timestamp)
        told = 0
        if peer is not None:
            told += self._deliver(peer.sessions, exclude, readers, "directMessage",
                                  event.sequence, args, envelope)
        if peer is not sender:
            told += self._deliver(sender.sessions, exclude, readers, "directMessage",
                                  event.sequence, args, envelope)
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

    def goOffline(self, user: User, local: bool = True) -> None:
        """
        The last session of C{user} in the cluster is gone: it leaves every room
        (memberships of accounts stay stored, to be restored at its next login).
        Every node makes these changes itself on hearing the user went offline,
        so they are told here, not published.
        """
        for room in list(user.rooms.values()):
            for event in self.directory.leave(room, user):
                self._tell(event, None, local)
        self.directory.forget(user)

    def dropIfUnused(self, room: Room, local: bool = True) -> None:
        """
        Remove an empty room unless a password or history keeps it, or an
        account is remembered in it. The store decides (it alone knows the
        memberships of accounts that are offline); only the node where the room
        emptied asks it, and tells the others when the room is gone.
        """
        if not local or room.members or room.passwordHash is not None or room.hasHistory:
            return

        def deleted(gone):
            if not gone:
                return
            if room.members:
                # Someone joined while the store was deciding: the room lives on.
                return self.store.createRoom(room.name, None)
            self.happened(self.directory.dropRoom(room))
        self.store.deleteRoom(room.name).addCallback(deleted).addErrback(
            self._notDeleted, room)

    def _notDeleted(self, failure, room):
        """
        An unused room could not be dropped: it stays stored, which is
        harmless. A database outage is logged by the store, once.
        """
        if not failure.check(Unavailable):
            log.failure("deleting room {room}", failure, room=room.name)

    # -- the cluster ------------------------------------------------------

    async def adoptStoredRoom(self, roomName: str) -> Optional[Room]:
        """
        Learn a room that another node of the cluster stored, when this node has
        not heard of it yet.

        @return: the L{Room}, or L{None} when the store has none of that name.
        """
        if fold(roomName) not in self.directory.rooms:
            for record in await self.store.loadRooms():
                if fold(record.name) == fold(roomName):
                    self.directory.loadRoom(record.name, record.passwordHash,
                                            record.lastTimestamp, record.history)
        return self.directory.rooms.get(fold(roomName))

    def nodeGone(self, node: str) -> None:
        """
        Node C{node} left the cluster (or died): its users' sessions there are gone.

        Rooms that its users' going leaves empty are dropped as if emptied
        here (when nothing keeps them): the node where they emptied cannot do
        it any more. Every surviving node asks the store, which removes a room
        at most once, so exactly one of them tells the others.
        """
        rooms = {}
        for user in self.directory.usersOn(node):
            rooms.update(user.rooms)
            self.remoteEvent(node, UserOffline(user.name))
        for room in rooms.values():
            if self.directory.rooms.get(fold(room.name)) is room:
                self.dropIfUnused(room)
        remotefiles.filesNodeGone(self, node)

    def leaveTransfers(self, user: User, applies: Callable[[Any, Any], bool],
                       reason: str) -> None:
        """
        Take C{user}'s sessions out of the transfers for which C{applies(transfer,
        session)} holds.
        """
        for session in user.sessions:
            for transfer in list(session.transfers):
                if applies(transfer, session):
                    transfer.sessionGone(session, reason)

    def addTransfer(self, transfer: Any, owner: Any) -> None:
        """
        Track a new transfer until it ends, counted against C{owner}'s limit.
        """
        self.transfers[transfer.id] = transfer
        self.metrics.transferOffered()
        self.transferCounts[owner] = self.transferCounts.get(owner, 0) + 1
        participants = [transfer.sender, *transfer.recipients]
        for session in participants:
            session.transfers.add(transfer)

        def ended(_):
            del self.transfers[transfer.id]
            self.transferCounts[owner] -= 1
            if not self.transferCounts[owner]:
                del self.transferCounts[owner]
            for session in participants:
                session.transfers.discard(transfer)
        transfer.whenDone().addCallback(ended)

    def newTransferId(self) -> int:
        """
        A random u32 no running transfer has, so that ids tell nothing.
        """
        while True:
            transferId = int.from_bytes(self.randomBytes(4), "big")
            if transferId not in self.transfers:
                return transferId

    def checkEnvelope(self, user: User, data: bytes, kind: str, target: str,
                      expectedKeys: Dict[str, Optional[str]], members: Callable[[], Any],
                      domain: bytes = e2e.MESSAGE, envelope: Optional[e2e.Envelope] = None,
                      signer: Optional[bytes] = None) -> e2e.Envelope:
        """
        Check an envelope the way section 6 ranks its rules, once.

        @param expectedKeys: member name -> key id, exactly the target's members.
        @param members: a callable giving the target's C{(name, key)} pairs, for
            the refusal that lists them.
        @param domain: the header domain, message or file.
        @param envelope: C{data} parsed already, or L{None}.
        @param signer: the key the envelope must be signed with (the sending
            device's), or L{None} for the user's.
        @return: the parsed L{e2e.Envelope}.
        """
        if envelope is None:
            envelope = e2e.Envelope.parse(data)
        if envelope.sender != user.name:
            raise Forbidden("envelope 'from' is %r, not you (%s)" % (envelope.sender, user.name))
        if envelope.toKind != kind or envelope.toName != target:
            raise BadRequest("envelope is addressed to %s:%s, not %s:%s"
                             % (envelope.toKind, envelope.toName, kind, target))
        skew = abs(envelope.ts - self.now()) / 1000.0
        if skew > self.settings.clockSkew:
            raise BadRequest("envelope timestamp is %d s off the server clock (at most %d s)"
                             % (skew, self.settings.clockSkew))
        if not envelope.verifySignature(signer or user.key, domain):
            raise Forbidden("envelope signature does not verify with your current key")
        if (fold(user.name), envelope.id) in self.replays:
            raise Conflict("replayed envelope id %s" % (envelope.id,))
        if envelope.keyIds != expectedKeys or envelope.encryptedKeys.keys() != expectedKeys.keys():
            raise StaleRecipients("envelope recipients do not match the current members and keys",
                                  members())
        return envelope
