# -*- test-case-name: chatd.test.test_service -*-
"""
The protocol-free core shared by every front door: one L{ChatService} per node.
"""

import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from chatd import e2e
from chatd.core import moderation, remotefiles
from chatd.core.directory import ROOM, Room, User
from chatd.core.replay import ReplayCache
from chatd.core.session import Session
from chatd.credentials import Credentials
from chatd.errors import (BadRequest, ChatError, Conflict, Forbidden, NotFound,
                          StaleRecipients, Unavailable)
from chatd.failures import FailureLimits
from chatd.fanout.local import LocalFanout
from chatd.interfaces import IChatService
from chatd.metrics import Metrics
from chatd.names import fold, isRoomName
from chatd.observer import OneShotObserver
from chatd.quotas import Quotas
from chatd.shutdown import Sessions
from chatd.startup import keepTrying

log = Logger()


@implementer(IChatService)
class ChatService(Service):
    """
    The protocol-free core shared by every front door.

    @param store: an L{chatd.interfaces.IMessageStore}.
    @param settings: a L{chatd.config.Settings}.
    @param clock: an L{IReactorTime}, for timestamps, idle timers and limits.
    @param credentials: bcrypt and RSA checks; by default run in threads.
    @param fanout: the L{IFanout} to the other nodes of the cluster; by default
        this node is the whole cluster.
    @param metrics: the L{Metrics} that counts what happens; a private one by
        default.
    """

    def __init__(self, store, settings, clock, credentials=None, randomBytes=os.urandom,
                 fanout=None, metrics=None):
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.fanout = fanout if fanout is not None else LocalFanout(clock)
        self.metrics.watchFanout(self.fanout)
        self.settings = settings
        self.clock = clock
        self.credentials = credentials or Credentials(settings.bcryptCost)
        self.randomBytes = randomBytes
        self.users = {}
        self.rooms = {}
        self._claimed = set()
        self._ready = OneShotObserver()
        self.messageLimit = self.fanout.window("messages", *settings.rateLimit)
        self.failures = FailureLimits(self.fanout, clock, settings)
        self.registrations = self.fanout.window("registrations", *settings.registerLimit)
        # One second past the widest accepted skew: an id is forgotten only once
        # its envelope would be refused for its timestamp.
        self.replays = ReplayCache(clock, 2 * settings.clockSkew + 1, settings.replayEntries)
        self.quotas = Quotas(self.fanout, settings)
        self.sessions = Sessions(clock)
        self.transfers = {}
        self.transferCounts = {}

    # -- lifecycle --------------------------------------------------------

    def startService(self):
        Service.startService(self)
        d = Deferred.fromCoroutine(self._load())
        d.addBoth(self._ready.fire)

    async def _load(self):
        await keepTrying(self.store.open, self.clock, self.settings.startTimeout,
                         "the database")
        for record in await self.store.loadRooms():
            self.rooms[fold(record.name)] = Room(
                record.name, record.passwordHash, record.lastTimestamp)
        await self.fanout.start(self)
        log.info("chatd core ready: {rooms} stored rooms, node {node}", rooms=len(self.rooms),
                 node=self.fanout.nodeId)

    def whenReady(self):
        """
        @return: a L{Deferred} that fires once the store is open and the stored
            rooms are loaded (or fails if that failed).
        """
        return self._ready.whenFired()

    def stopService(self):
        """
        Tell every connection the server is going away and let it finish (for
        at most C{stop-timeout} seconds), then leave the cluster and close the
        store.
        """
        Service.stopService(self)
        d = self.sessions.stop(self.settings.stopTimeout)
        d.addBoth(lambda _: self.fanout.stop())
        return d.addBoth(lambda _: self.store.close())

    def connect(self, client, address):
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

    def now(self):
        """
        The server clock in whole milliseconds since the epoch.
        """
        return int(self.clock.seconds() * 1000)

    def nameInUse(self, name):
        key = fold(name)
        return key in self.users or key in self._claimed

    def nextGuestName(self):
        while True:
            name = "rand%d" % self.fanout.guestNumber()
            if not self.nameInUse(name):
                return name

    def room(self, name):
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

    def audience(self, user, exclude=None):
        """
        Every session that must hear of a change to C{user}: the sessions of
        everyone sharing a room or a direct conversation with it, and its own
        other sessions.
        """
        users = {user}
        users.update(user.peers)
        for room in user.rooms.values():
            users.update(room.members.values())
        return [s for u in users for s in u.sessions if s is not exclude]

    def broadcast(self, sessions, method, *args):
        """
        Send one event to many sessions; a session that fails is logged and
        disconnected, and the others still get the event.
        """
        for session in sessions:
            try:
                getattr(session.client, method)(*args)
            except Exception:
                log.failure("delivering {method} to {name}", method=method,
                            name=session.user.name if session.user else None)
                session.client.disconnect()

    def roomSessions(self, room, exclude=None):
        return [s for u in room.members.values() for s in u.sessions if s is not exclude]

    def addMember(self, room, user, exclude):
        """
        Put C{user} in C{room} and tell every session concerned except C{exclude}.
        """
        audience = self.roomSessions(room) + [s for s in user.sessions if s is not exclude]
        room.members[fold(user.name)] = user
        user.rooms[fold(room.name)] = room
        room.changed()
        self.broadcast([s for s in audience if s is not exclude],
                       "userJoined", room.name, user.name, user.key)

    def removeMember(self, room, user, exclude=None, local=True, event=None):
        """
        Take C{user} out of C{room}, tell the others, and let the room go when
        nothing keeps it.

        @param local: whether it happened on this node (which then deletes an
            unused room from the store), rather than being mirrored from another.
        @param event: the L{IChatClient} method and arguments that tell of it,
            when it is not C{userLeft} (a kick, a destroyed room).
        """
        self.leaveTransfers(user, lambda t, s: t.offer.kind == ROOM and t.offer.target == room.name,
                            "left the room")
        del room.members[fold(user.name)]
        del user.rooms[fold(room.name)]
        room.changed()
        method, *args = event or ("userLeft", room.name, user.name)
        self.broadcast(self.roomSessions(room, exclude)
                       + [s for s in user.sessions if s is not exclude], method, *args)
        self.dropIfUnused(room, local)

    def dropIfUnused(self, room, local=True):
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
            if self.rooms.get(fold(room.name)) is room:
                del self.rooms[fold(room.name)]
                self.publish("unroom", room=room.name)
        self.store.deleteRoom(room.name).addCallback(deleted).addErrback(
            self._notDeleted, room)

    def _notDeleted(self, failure, room):
        """
        An unused room could not be dropped: it stays stored, which is
        harmless. A database outage is logged by the store, once.
        """
        if not failure.check(Unavailable):
            log.failure("deleting room {room}", failure, room=room.name)

    def goOffline(self, user, local=True):
        """
        The last session of C{user} in the cluster is gone: it leaves every room
        (memberships of accounts stay stored, to be restored at its next login).
        """
        for room in list(user.rooms.values()):
            self.removeMember(room, user, local=local)
        for peer in user.peers:
            peer.peers.discard(user)
        user.peers.clear()
        if self.users.get(fold(user.name)) is user:
            del self.users[fold(user.name)]

    def rename(self, user, new, exclude):
        old = user.name
        audience = self.audience(user, exclude)
        del self.users[fold(old)]
        for room in user.rooms.values():
            del room.members[fold(old)]
            room.members[fold(new)] = user
            room.changed()
        user.name = new
        self.users[fold(new)] = user
        self.broadcast(audience, "userRenamed", old, new)

    def changeKey(self, user, key, exclude):
        self.leaveTransfers(user, lambda t, s: s is not t.sender, "key changed")
        user.setKey(key)
        for room in user.rooms.values():
            room.changed()
        self.broadcast(self.audience(user, exclude), "keyChanged", user.name, key)

    def deliverRoomMessage(self, room, sender, timestamp, envelope, exclude=None):
        """
        Give a stored room message to the members' sessions here, each cut to
        its reader. Members who joined while it was being stored have no key
        entry in it; they can only be shown what they can read.
        """
        readers = envelope.encryptedKeys
        for member in room.members.values():
            sessions = [s for s in member.sessions if s is not exclude]
            if sessions and member.name in readers:
                self.broadcast(sessions, "roomMessage", room.name, sender, timestamp,
                               envelope.sharedCut(member.name))
                self.metrics.delivered("room", len(sessions))

    def deliverDirect(self, sender, peer, timestamp, envelope, exclude=None):
        """
        Give a direct message to the recipient's sessions here, and a copy to the
        sender's other sessions here, each cut to its own entry.
        """
        if peer is not sender:
            sender.peers.add(peer)
            peer.peers.add(sender)
        receivers = [s for s in peer.sessions if s is not exclude]
        self.broadcast(receivers, "directMessage", sender.name, timestamp,
                       envelope.sharedCut(peer.name))
        self.metrics.delivered("direct", len(receivers))
        if peer is not sender:
            self.broadcast([s for s in sender.sessions if s is not exclude],
                           "directMessage", sender.name, timestamp,
                           envelope.sharedCut(sender.name))

    # -- the cluster ------------------------------------------------------

    def publish(self, kind, **fields):
        """
        Tell the other nodes of something that happened here.
        """
        fields["t"] = kind
        self.fanout.publish(fields)

    def remoteEvent(self, node, event):
        """
        An event from another node: mirror it here and tell the local sessions
        it concerns. A bad event is logged and dropped; it never stops the node.
        """
        handler = self._remote.get(event.get("t"))
        if handler is None:
            log.warn("unknown event {event!r} from node {node}", event=event, node=node)
            return
        try:
            handler(self, node, event)
        except ChatError as e:
            # Refused as a client's request would be: a bad event, not a bug here.
            log.warn("refused {kind} from node {node}: {error}", kind=event.get("t"), node=node,
                     error=e.message)
        except Exception:
            log.failure("applying {kind} from node {node}", kind=event.get("t"), node=node)

    async def adoptStoredRoom(self, roomName):
        """
        Learn a room that another node of the cluster stored, when this node has
        not heard of it yet.

        @return: the L{Room}, or L{None} when the store has none of that name.
        """
        if fold(roomName) not in self.rooms:
            for record in await self.store.loadRooms():
                if fold(record.name) == fold(roomName) and fold(roomName) not in self.rooms:
                    self.rooms[fold(roomName)] = Room(record.name, record.passwordHash,
                                                      record.lastTimestamp)
        return self.rooms.get(fold(roomName))

    def messagesSince(self, roomName, after, limit):
        """
        Stored messages of a room after a timestamp, for a fan-out catching this
        node's members up after it was cut off.

        @return: a L{Deferred} firing with L{chatd.model.HistoryRow}s, oldest first.
        """
        return self.store.messagesAfter(roomName, after, limit)

    def nodeGone(self, node):
        """
        Node C{node} left the cluster (or died): its users' sessions there are gone.

        Rooms that its users' going leaves empty are dropped as if emptied
        here (when nothing keeps them): the node where they emptied cannot do
        it any more. Every surviving node asks the store, which removes a room
        at most once, so exactly one of them tells the others.
        """
        rooms = {}
        for user in list(self.users.values()):
            if node in user.nodes:
                rooms.update(user.rooms)
                self._leftNode(user, node)
        for room in rooms.values():
            if self.rooms.get(fold(room.name)) is room:
                self.dropIfUnused(room)
        remotefiles.filesNodeGone(self, node)

    def _leftNode(self, user, node):
        user.nodes.discard(node)
        if not user.nodes and not user.sessions:
            self.goOffline(user, local=False)

    def _remoteOnline(self, node, event):
        user = self.users.get(fold(event["user"]))
        if user is None:
            user = User(event["user"], event["key"], event["account"])
            self.users[fold(user.name)] = user
        user.nodes.add(node)

    def _remoteOffline(self, node, event):
        user = self.users.get(fold(event["user"]))
        if user is not None:
            self._leftNode(user, node)

    def _remoteRenamed(self, node, event):
        user = self.users.get(fold(event["old"]))
        if user is not None:
            user.account = event["account"]
            if user.name != event["new"]:
                self.rename(user, event["new"], None)

    def _remoteKey(self, node, event):
        user = self.users.get(fold(event["user"]))
        if user is not None and user.key != event["key"]:
            self.changeKey(user, event["key"], None)

    def _remoteRoom(self, node, event):
        if fold(event["room"]) not in self.rooms:
            self.rooms[fold(event["room"])] = Room(event["room"], event["password"])

    def _remoteUnroom(self, node, event):
        room = self.rooms.get(fold(event["room"]))
        if room is not None and not room.members:
            del self.rooms[fold(room.name)]

    def _remoteJoined(self, node, event):
        room = self.rooms.get(fold(event["room"]))
        user = self.users.get(fold(event["user"]))
        if room is not None and user is not None and fold(user.name) not in room.members:
            self.addMember(room, user, None)

    def _remoteLeft(self, node, event):
        room = self.rooms.get(fold(event["room"]))
        user = self.users.get(fold(event["user"]))
        if room is not None and user is not None and fold(user.name) in room.members:
            self.removeMember(room, user, local=False)

    def _remoteMessage(self, node, event):
        room = self.rooms.get(fold(event["room"]))
        if room is not None:
            room.lastTimestamp = max(room.lastTimestamp, event["ts"])
            self.deliverRoomMessage(room, event["sender"], event["ts"],
                                    e2e.Envelope.parse(event["envelope"]))

    def _remoteDirect(self, node, event):
        sender = self.users.get(fold(event["sender"]))
        peer = self.users.get(fold(event["peer"]))
        if sender is not None and peer is not None:
            self.deliverDirect(sender, peer, event["ts"], e2e.Envelope.parse(event["envelope"]))

    _remote = {
        "online": _remoteOnline,
        "offline": _remoteOffline,
        "renamed": _remoteRenamed,
        "key": _remoteKey,
        "room": _remoteRoom,
        "unroom": _remoteUnroom,
        "joined": _remoteJoined,
        "left": _remoteLeft,
        "message": _remoteMessage,
        "direct": _remoteDirect,
        **moderation.REMOTE_EVENTS,
        **dict.fromkeys(remotefiles.KINDS, remotefiles.remoteFileEvent),
    }

    def leaveTransfers(self, user, applies, reason):
        """
        Take C{user}'s sessions out of the transfers for which C{applies(transfer,
        session)} holds.
        """
        for session in user.sessions:
            for transfer in list(session.transfers):
                if applies(transfer, session):
                    transfer.sessionGone(session, reason)

    def addTransfer(self, transfer, owner):
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

    def newTransferId(self):
        """
        A random u32 no running transfer has, so that ids tell nothing.
        """
        while True:
            transferId = int.from_bytes(self.randomBytes(4), "big")
            if transferId not in self.transfers:
                return transferId

    def checkEnvelope(self, user, data, kind, target, expectedKeys, members,
                      domain=e2e.MESSAGE):
        """
        Check an envelope the way section 6 ranks its rules, once.

        @param expectedKeys: member name -> key id, exactly the target's members.
        @param members: a callable giving the target's C{(name, key)} pairs, for
            the refusal that lists them.
        @param domain: the header domain, message or file.
        @return: the parsed L{e2e.Envelope}.
        """
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
        if not envelope.verifySignature(user.key, domain):
            raise Forbidden("envelope signature does not verify with your current key")
        if (fold(user.name), envelope.id) in self.replays:
            raise Conflict("replayed envelope id %s" % (envelope.id,))
        if envelope.keyIds != expectedKeys or envelope.encryptedKeys.keys() != expectedKeys.keys():
            raise StaleRecipients("envelope recipients do not match the current members and keys",
                                  members())
        return envelope
