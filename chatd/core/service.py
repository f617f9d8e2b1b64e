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
from chatd.core import remotefiles
from chatd.core.devicebook import DeviceBook
from chatd.core.directory import Directory
from chatd.core.events import (
    Event,
    FileEvent,
    UserOffline,
)
from chatd.core.online import Room, User
from chatd.core.replay import ReplayCache
from chatd.core.session import Session
from chatd.core.settling import Settling
from chatd.core.telling import Telling
from chatd.core.view import DirectoryView
from chatd.credentials import Credentials
from chatd.errors import BadRequest, ChatError, Conflict, Forbidden, StaleRecipients, Unavailable
from chatd.failures import FailureLimits
from chatd.fanout.local import LocalFanout
from chatd.interfaces import IChatClient, IChatService, IFanout
from chatd.istore import IMessageStore
from chatd.metrics import Metrics
from chatd.names import fold
from chatd.observer import OneShotObserver
from chatd.quotas import Quotas
from chatd.shutdown import Sessions
from chatd.startup import keepTrying

log = Logger()


@implementer(IChatService)
class ChatService(Telling, Service):
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

    def __init__(self, store: IMessageStore, settings: Settings, clock: IReactorTime,
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
        # The rooms being created or dropped here, which requests wait for.
        self.settling = Settling(self.directory)
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
        if self.settling.busy(room.name):
            # A session here is creating it (its creator joins it next), or
            # the store is deciding already.
            return
        # A JOIN here waits until the store has decided: the store may drop
        # the room before this node hears so.
        self.settling.begin(room.name)

        def deleted(gone):
            if not gone:
                return
            if room.members:
                # Someone on another node joined while the store was
                # deciding: the room lives on.
                return self.store.createRoom(room.name, None)
            self.happened(self.directory.dropRoom(room))
        d = self.store.deleteRoom(room.name).addCallback(deleted)
        d.addErrback(self._notDeleted, room).addBoth(lambda _: self.settling.end(room.name))

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
