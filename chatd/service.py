# -*- test-case-name: chatd.test.test_service -*-
"""
The chat core: users, sessions, rooms, messages and their rules, knowing no protocol.

Front doors call L{ChatService.connect} for each connection and then one
L{Session} method per request; each method returns its result, or a L{Deferred}
of it, or raises a L{chatd.errors.ChatError}. Events reach sessions through their
L{IChatClient}.

Vocabulary: a I{user} is a name online (a guest, or an account with one or more
sessions); a I{session} is one connection. Membership is per user: every session
of a member receives the room's events, except that the session whose request
caused an event gets the response instead.

Checks run in the order docs/protocol.rst ranks them, so that when several
apply the client hears about the first.
"""

import os
from collections import deque
from dataclasses import replace

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from zope.interface import implementer

from chatd import e2e, registration
from chatd.credentials import Credentials
from chatd.errors import (AuthRequired, BadRequest, ChatError, Conflict, Forbidden, NotFound,
                          RateLimited, StaleRecipients, TooLarge, Unavailable)
from chatd.failures import FailureLimits
from chatd.interfaces import IChatService, IFileClient
from chatd.metrics import Metrics
from chatd.names import fold, isGuestName, isRoomName, isUserName
from chatd.fanout.local import LocalFanout
from chatd.observer import OneShotObserver
from chatd.startup import keepTrying
from chatd.quotas import WARNING_NO_HELLO, Quotas
from chatd.ratelimit import inWholeSeconds
from chatd.shutdown import Sessions
from chatd.transfer import Offer, Transfer

log = Logger()

WARNING_IDLE = 0x03
PROTOCOL_VERSIONS = (1,)
# Timestamps are signed 64-bit in the database; a larger bound means the same.
MAX_TIMESTAMP = 2**63 - 1
ROOM, USER = 0, 1


class User:
    """
    A name online: a guest with its one session, or an account with all of its.

    @ivar key: the public key (SubjectPublicKeyInfo DER), or L{None} for a guest
        that has not published one.
    @ivar rooms: the rooms it is in, by folded name.
    @ivar peers: users it has exchanged direct messages with while online, who
        must hear of its key changes.
    @ivar nodes: the other cluster nodes where it has sessions; a user known
        only from other nodes has no C{sessions} here.
    """

    def __init__(self, name, key=None, account=False):
        self.name = name
        self.account = account
        self.sessions = []
        self.nodes = set()
        self.rooms = {}
        self.peers = set()
        self.setKey(key)

    def setKey(self, key):
        self.key = key
        self.keyId = e2e.keyId(key) if key is not None else None


class Room:
    """
    A room and its online members.

    @ivar lastTimestamp: the newest server timestamp given to one of its messages;
        the next is strictly greater, so that HISTORY pages without gaps.
    """

    def __init__(self, name, passwordHash=None, lastTimestamp=0):
        self.name = name
        self.passwordHash = passwordHash
        self.lastTimestamp = lastTimestamp
        self.members = {}
        self._keyIds = None

    @property
    def hasHistory(self):
        return self.lastTimestamp > 0

    def keyIds(self):
        """
        The key map an envelope to this room must carry: member name -> key id.
        Cached until membership or a member's key changes.
        """
        if self._keyIds is None:
            self._keyIds = {u.name: u.keyId for u in self.members.values()}
        return self._keyIds

    def changed(self):
        self._keyIds = None

    def memberKeys(self):
        return sorted((u.name, u.key) for u in self.members.values())


class ReplayCache:
    """
    Envelope ids accepted from each sender within the clock-skew horizon.

    An envelope older than the horizon is refused for its timestamp before its id
    is looked at, so ids need only be kept that long. The store's unique index on
    (sender, id) backs this up for room messages across restarts.

    At most C{capacity} ids are kept, so that memory stays bounded whatever the
    message rate: past it the oldest are forgotten first (each sender's message
    rate limit keeps a full cache rare; see docs/security.rst).
    """

    def __init__(self, clock, horizon, capacity):
        self.clock = clock
        self.horizon = horizon
        self.capacity = capacity
        self._expiry = {}
        self._order = deque()

    def __contains__(self, key):
        self._prune()
        return key in self._expiry

    def add(self, key):
        expires = self.clock.seconds() + self.horizon
        self._expiry[key] = expires
        self._order.append((expires, key))
        while len(self._order) > self.capacity:
            expires, key = self._order.popleft()
            if self._expiry.get(key) == expires:
                del self._expiry[key]

    def __len__(self):
        return len(self._expiry)

    def discard(self, key):
        self._expiry.pop(key, None)

    def _prune(self):
        now = self.clock.seconds()
        while self._order and self._order[0][0] <= now:
            expires, key = self._order.popleft()
            if self._expiry.get(key) == expires:
                del self._expiry[key]


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

    def removeMember(self, room, user, exclude=None, local=True):
        """
        Take C{user} out of C{room}, tell the others, and let the room go when
        nothing keeps it.

        @param local: whether it happened on this node (which then deletes an
            unused room from the store), rather than being mirrored from another.
        """
        self.leaveTransfers(user, lambda t, s: t.offer.kind == ROOM and t.offer.target == room.name,
                            "left the room")
        del room.members[fold(user.name)]
        del user.rooms[fold(room.name)]
        room.changed()
        self.broadcast(self.roomSessions(room) + [s for s in user.sessions if s is not exclude],
                       "userLeft", room.name, user.name)
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


class Session:
    """
    One connection's state and the requests it can make.

    Methods are named for the requests; each returns a value or a L{Deferred}, or
    raises L{ChatError}. The front door serialises a connection's requests, so a
    session never runs two at once.
    """

    def __init__(self, service, client, address):
        self.service = service
        self.client = client
        self.address = address
        # The door's name, for the metrics: a client may say which it is.
        self.door = getattr(client, "door", "other")
        self.user = None
        self.greeted = False
        self.ended = False
        self.transfers = set()
        self._challenge = None
        self._lastReceived = service.clock.seconds()
        self._warned = False
        self._timer = service.clock.callLater(service.settings.idleWarning, self._idleCheck)
        self._helloTimer = service.clock.callLater(service.settings.helloTimeout, self._noHello)

    # -- connection events ------------------------------------------------

    def received(self):
        """
        Bytes arrived from the client: the idle clock starts again.
        """
        self._lastReceived = self.service.clock.seconds()
        if self._warned:
            self._warned = False
            if self._timer is not None and self._timer.active():
                self._timer.reset(self.service.settings.idleWarning)

    def _idleCheck(self):
        settings = self.service.settings
        idle = self.service.clock.seconds() - self._lastReceived
        if idle >= settings.idleTimeout:
            self._timer = None
            log.info("closing idle session {name}", name=self.user and self.user.name)
            self.client.disconnect()
            return
        if idle >= settings.idleWarning:
            if not self._warned:
                self._warned = True
                self.client.warning(WARNING_IDLE, "idle for %s; disconnecting at %s without traffic"
                                    % (inWholeSeconds(idle),
                                       inWholeSeconds(settings.idleTimeout)))
            due = self._lastReceived + settings.idleTimeout
        else:
            self._warned = False
            due = self._lastReceived + settings.idleWarning
        self._timer = self.service.clock.callLater(
            max(0, due - self.service.clock.seconds()), self._idleCheck)

    def _noHello(self, late=False):
        if not late:
            # A server too busy to run for the whole deadline runs its timers
            # before it reads: give bytes that came meanwhile (the HELLO) one
            # turn of the reactor before closing.
            self._helloTimer = self.service.clock.callLater(0, self._noHello, True)
            return
        self._helloTimer = None
        log.info("closing a connection from {address} that never said HELLO",
                 address=self.address)
        self.client.warning(WARNING_NO_HELLO, "no HELLO within %s; closing the connection"
                            % inWholeSeconds(self.service.settings.helloTimeout))
        self.client.disconnect()

    def _cancelHelloTimer(self):
        if self._helloTimer is not None and self._helloTimer.active():
            self._helloTimer.cancel()
        self._helloTimer = None

    def closed(self):
        """
        The connection is gone: forget the session, and the user with its last one.
        """
        if not self.ended:
            self.service.quotas.disconnect(self.address)
            self.service.metrics.disconnected(self.door)
        self.ended = True
        self._cancelHelloTimer()
        for transfer in list(self.transfers):
            transfer.sessionGone(self, "disconnected")
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        user, self.user = self.user, None
        if user is not None:
            self._detach(user)
        self.service.sessions.discard(self)

    # -- checks -----------------------------------------------------------

    def _hello(self):
        if not self.greeted:
            raise AuthRequired("say HELLO first")
        return self.user

    def _greeted(self):
        if self._hello() is None:
            raise AuthRequired("authentication required: register or log in first")
        return self.user

    def _notLoggedIn(self):
        user = self._hello()
        if user is not None and user.account:
            raise Conflict("already logged in as %s" % (self.user.name,))

    def _hasKey(self, user):
        if user.key is None:
            raise BadRequest("publish a public key first (SET_KEY)")

    @staticmethod
    def _owner(user):
        """
        The key of a user's limits: an account's outlive its sessions; a guest's
        go with it (keyed by the guest itself, so that renaming does not reset
        them).
        """
        return fold(user.name) if user.account else "guest:%d" % (id(user),)

    async def _underMessageLimit(self, user, check):
        """
        Run C{check} (the envelope checks of a message, DM or offer) under the
        user's message limit. A request over the limit is refused before
        anything else and does not count; every other request counts, except
        one refused only because the recipients changed (0x09), which the client
        retries at once through no fault of its own.

        @return: what C{check} returns.
        """
        limit, seconds = self.service.settings.rateLimit
        window, owner = self.service.messageLimit, self._owner(user)
        slot = await window.reserve(owner)
        if not slot.granted:
            raise RateLimited("more than %d messages in %s; retry in %s"
                              % (limit, inWholeSeconds(seconds), inWholeSeconds(slot.wait)))
        try:
            return check()
        except (StaleRecipients, RateLimited):
            await window.release(owner, slot.token)
            raise

    # -- requests: session ------------------------------------------------

    def hello(self, version, guest=True):
        """
        Greet the server.

        @param guest: whether the session becomes a guest now; a door without
            guests greets with L{False}, leaving the session nobody until it
            registers or logs in (so does every door when the server allows no
            guests).
        @return: the assigned guest name, or L{None}.
        """
        if self.greeted:
            raise Conflict("already greeted")
        if version not in PROTOCOL_VERSIONS:
            raise BadRequest("protocol version %d is not spoken here; this server speaks %s"
                             % (version, ", ".join(map(str, PROTOCOL_VERSIONS))))
        self.greeted = True
        self._cancelHelloTimer()
        if not (guest and self.service.settings.allowGuests):
            return None
        user = User(self.service.nextGuestName())
        self._attach(user)
        return user.name

    def _attach(self, user):
        first = not user.sessions
        user.sessions.append(self)
        self.user = user
        self.service.users[fold(user.name)] = user
        if first:
            self.service.publish("online", user=user.name, key=user.key, account=user.account)

    def _detach(self, user):
        """
        This session no longer belongs to C{user}; with its last session in the
        cluster gone, the user goes offline.
        """
        user.sessions.remove(self)
        if not user.sessions:
            self.service.publish("offline", user=user.name)
            if not user.nodes:
                self.service.goOffline(user)

    def heartbeat(self):
        """
        Nothing to do: the bytes themselves reset the idle clock.
        """

    def nick(self, name):
        """
        A guest takes another name.

        @return: a L{Deferred} firing with the new name.
        """
        user = self._greeted()
        if user.account:
            raise Forbidden("an account cannot change its name")
        if not isUserName(name):
            raise BadRequest("invalid name %r: 1-32 of A-Z a-z 0-9 _ . -" % (name,))
        if fold(name) == fold(user.name):
            if name != user.name:
                self._rename(user, name)
            return succeed(name)
        if isGuestName(name):
            raise Conflict("names like %s are reserved for guests" % (name,))
        if self.service.nameInUse(name):
            raise Conflict("name in use: %s" % (name,))
        return Deferred.fromCoroutine(self._nick(user, name))

    async def _nick(self, user, name):
        if await self.service.store.getAccount(name) is not None or self.service.nameInUse(name):
            raise Conflict("name in use: %s" % (name,))
        if self.user is not user:
            raise BadRequest("the session closed meanwhile")
        self._rename(user, name)
        return name

    def _rename(self, user, name):
        old = user.name
        self.service.rename(user, name, self)
        self.service.publish("renamed", old=old, new=name, account=user.account)

    def listUsers(self, roomName):
        """
        @return: the sorted names online, or of a room's members.
        """
        user = self._greeted()
        if not roomName:
            return sorted(u.name for u in self.service.users.values())
        room = self.service.room(roomName)
        if room.passwordHash is not None and fold(user.name) not in room.members:
            raise Forbidden("the members of %s are private" % (room.name,))
        return sorted(u.name for u in room.members.values())

    def listRooms(self):
        """
        @return: the sorted names of every room.
        """
        self._greeted()
        return sorted(r.name for r in self.service.rooms.values())

    # -- requests: rooms --------------------------------------------------

    def _checkRoomPassword(self, password):
        if len(password.encode("utf-8")) > 72:
            raise BadRequest("room passwords are at most 72 bytes")

    def create(self, roomName, password):
        """
        Create a room without joining it.

        @return: a L{Deferred} that fires when the room is stored.
        """
        user = self._greeted()
        if not isRoomName(roomName):
            raise BadRequest("invalid room name %r" % (roomName,))
        self._checkRoomPassword(password)
        if fold(roomName) in self.service.rooms:
            raise Conflict("room exists: %s" % (roomName,))
        return Deferred.fromCoroutine(self._newRoom(user, roomName, password)).addCallback(
            lambda _: None)

    async def _newRoom(self, user, roomName, password):
        """
        Create a room under the create limits (see L{chatd.quotas}).
        """
        quotas = self.service.quotas
        quotas.checkGuestCreate(user, password)
        await quotas.checkCreate(self._owner(user), self.address)
        room = await self._create(roomName, password)
        quotas.created(user)
        return room

    async def _create(self, roomName, password):
        # A room named like an account is that user's own room (the WebSocket
        # door's default room): only its user may make it.
        if isUserName(roomName) and fold(roomName) != fold(self.user.name) \
                and await self.service.store.getAccount(roomName) is not None:
            raise Forbidden("%s is the own room of the user %s" % (roomName, roomName))
        passwordHash = None
        if password:
            passwordHash = await self.service.credentials.hashPassword(password)
        if fold(roomName) in self.service.rooms:
            raise Conflict("room exists: %s" % (roomName,))
        room = Room(roomName, passwordHash)
        self.service.rooms[fold(roomName)] = room
        try:
            await self.service.store.createRoom(roomName, passwordHash)
        except Exception:
            if self.service.rooms.get(fold(roomName)) is room:
                del self.service.rooms[fold(roomName)]
            raise
        self.service.publish("room", room=roomName, password=passwordHash)
        return room

    def join(self, roomName, password):
        """
        Join a room, creating it (with C{password}) when it does not exist.

        @return: a L{Deferred} firing with the members' C{(name, key)} pairs.
        """
        user = self._greeted()
        if not isRoomName(roomName):
            raise BadRequest("invalid room name %r" % (roomName,))
        self._checkRoomPassword(password)
        return Deferred.fromCoroutine(self._join(user, roomName, password))

    async def _join(self, user, roomName, password):
        service = self.service
        await service.quotas.checkJoin(self._owner(user), self.address)
        room = service.rooms.get(fold(roomName))
        if room is not None and fold(user.name) in room.members:
            raise Conflict("already in %s" % (room.name,))
        if room is not None and room.passwordHash is not None:
            attempt = await service.failures.attempt("room:" + fold(room.name), self.address)
            if not await service.credentials.checkPassword(password, room.passwordHash):
                raise Forbidden("wrong password for %s" % (room.name,))
            await attempt.succeeded()
        elif room is not None and password:
            raise Forbidden("%s has no password; join it without one" % (room.name,))
        self._hasKey(user)
        if room is None:
            try:
                room = await self._newRoom(user, roomName, password)
            except Conflict:
                # Another node stored the same new room first: join that one.
                if await service.adoptStoredRoom(roomName) is None:
                    raise
                return await self._join(user, roomName, password)
        if self.user is not user:
            raise BadRequest("the session closed meanwhile")
        if fold(user.name) in room.members:
            raise Conflict("already in %s" % (room.name,))
        if service.rooms.get(fold(room.name)) is not room:
            raise NotFound("%s was removed meanwhile" % (room.name,))
        service.addMember(room, user, self)
        service.publish("joined", room=room.name, user=user.name)
        if user.account:
            await service.store.addMember(room.name, user.name)
        return room.memberKeys()

    def leave(self, roomName):
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
            room = self.service.room(roomName)
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
            self.service.publish("left", room=room.name, user=user.name)
            self.service.removeMember(room, user, self)
        return gatherResults(stored).addCallback(lambda _: False)

    # -- requests: messages -----------------------------------------------

    def roomMessage(self, roomName, data):
        """
        Post an envelope to a room.

        @return: a L{Deferred} firing with the server timestamp once the message
            is stored; it has been delivered to the other members by then.
        """
        user = self._greeted()
        room = self.service.room(roomName)
        if fold(user.name) not in room.members:
            raise BadRequest("not a member of %s" % (room.name,))
        return Deferred.fromCoroutine(self._roomMessage(user, room, data))

    async def _roomMessage(self, user, room, data):
        service = self.service
        envelope = await self._underMessageLimit(user, lambda: service.checkEnvelope(
            user, data, "room", room.name, room.keyIds(), room.memberKeys))
        replayKey = (fold(user.name), envelope.id)
        service.replays.add(replayKey)
        try:
            timestamp = await service.fanout.timestamp(room.name, service.now(),
                                                       room.lastTimestamp)
            room.lastTimestamp = max(room.lastTimestamp, timestamp)
            timestamp = await service.store.appendMessage(
                room.name, user.name, timestamp, envelope.id, data, envelope.readers())
            room.lastTimestamp = max(room.lastTimestamp, timestamp)
        except Conflict:
            raise
        except Unavailable:
            # The store's outage is logged once, by the store, not per message.
            service.replays.discard(replayKey)
            raise
        except Exception:
            service.replays.discard(replayKey)
            log.failure("storing a message to {room}", room=room.name)
            raise BadRequest("the message could not be stored; try again")
        service.metrics.message("room")
        service.deliverRoomMessage(room, user.name, timestamp, envelope, self)
        service.publish("message", room=room.name, sender=user.name, ts=timestamp, envelope=data)
        return timestamp

    def directMessage(self, userName, data):
        """
        Send an envelope to one online user. Direct messages are not stored.

        @return: a L{Deferred} firing with the server timestamp.
        """
        service = self.service
        user = self._greeted()
        if not isUserName(userName):
            raise BadRequest("invalid user name %r" % (userName,))
        peer = service.users.get(fold(userName))
        if peer is None:
            raise NotFound("%s is not online" % (userName,))
        self._hasKey(user)
        if peer.key is None:
            raise BadRequest("%s has not published a key" % (peer.name,))
        return Deferred.fromCoroutine(self._directMessage(user, peer, data))

    async def _directMessage(self, user, peer, data):
        service = self.service
        expected = {user.name: user.keyId, peer.name: peer.keyId}
        envelope = await self._underMessageLimit(user, lambda: service.checkEnvelope(
            user, data, "user", peer.name, expected,
            lambda: sorted({(user.name, user.key), (peer.name, peer.key)})))
        service.replays.add((fold(user.name), envelope.id))
        timestamp = service.now()
        service.metrics.message("direct")
        service.deliverDirect(user, peer, timestamp, envelope, self)
        service.publish("direct", sender=user.name, peer=peer.name, ts=timestamp, envelope=data)
        return timestamp

    def history(self, roomName, limit, before):
        """
        The newest messages of a room that this user has a key entry in.

        @param limit: how many (0: the configured default; capped at the maximum).
        @param before: a server timestamp (exclusive), 0 for the newest.
        @return: a L{Deferred} firing with C{(sender, timestamp, envelope)}
            triples, oldest first, each envelope cut down to this user.
        """
        settings = self.service.settings
        user = self._greeted()
        room = self.service.room(roomName)
        if fold(user.name) not in room.members:
            raise BadRequest("not a member of %s" % (room.name,))
        limit = min(limit or settings.historyLimit, settings.historyMax)
        before = min(before, MAX_TIMESTAMP)
        d = self.service.store.history(room.name, user.name, limit, before)
        return d.addCallback(lambda rows: [
            (row.sender, row.timestamp, e2e.Envelope.parse(row.envelope).cutFor(user.name))
            for row in rows])

    # -- requests: accounts -----------------------------------------------

    def register(self, name, password, publicKey, invite=None):
        """
        Create an account and log this session in as it. An empty password makes
        an account that logs in by challenge-response only.

        @param invite: an invite token, which C{--registration invite} needs
            (L{chatd.registration}); ignored otherwise.
        @return: a L{Deferred} that fires when the account is stored.
        """
        self._notLoggedIn()
        return Deferred.fromCoroutine(self._register(name, password, publicKey, invite))

    async def _register(self, name, password, publicKey, invite):
        service = self.service
        wait = await service.registrations.hit(self.address)
        if wait is not None:
            raise RateLimited("too many registrations from your address; retry in %s"
                              % inWholeSeconds(wait))
        if not isUserName(name):
            raise BadRequest("invalid name %r: 1-32 of A-Z a-z 0-9 _ . -" % (name,))
        if isGuestName(name):
            raise Conflict("names like %s are reserved for guests" % (name,))
        size = len(password.encode("utf-8"))
        if password and not 8 <= size <= 72:
            raise BadRequest("passwords are 8 to 72 bytes")
        e2e.loadPublicKey(publicKey)
        invite = registration.admit(service.settings.registration, invite)
        if service.nameInUse(name) and (self.user is None or fold(name) != fold(self.user.name)):
            raise Conflict("name in use: %s" % (name,))
        service._claimed.add(fold(name))
        try:
            passwordHash = None
            if password:
                passwordHash = await service.credentials.hashPassword(password)
            await service.store.createAccount(name, passwordHash, publicKey, invite)
        finally:
            service._claimed.discard(fold(name))
        service.metrics.registered()
        log.info("registered {name} from {address}", name=name, address=self.address)
        await self._becomeAccount(name, publicKey)

    def login(self, name, password):
        """
        Log in with a password.

        @return: a L{Deferred} that fires once logged in; an unknown name and a
            wrong password fail alike, after the same work.
        """
        self._notLoggedIn()
        return Deferred.fromCoroutine(self._login(name, password))

    async def _login(self, name, password):
        service = self.service
        try:
            attempt = await service.failures.attempt("user:" + fold(name), self.address)
        except RateLimited:
            log.info("login as {name!r} from {address} refused: too many failures",
                     name=name, address=self.address)
            raise
        account = await service.store.getAccount(name) if isUserName(name) else None
        ok = await service.credentials.checkPassword(
            password, account.passwordHash if account else None)
        if not (ok and account):
            service.metrics.loggedIn("password", False)
            log.info("failed login as {name!r} from {address}", name=name, address=self.address)
            raise Forbidden("wrong user name or password")
        await attempt.succeeded()
        registration.checkNotBanned(account)
        service.metrics.loggedIn("password", True)
        log.info("{name} logged in from {address}", name=account.name, address=self.address)
        await self._becomeAccount(account.name, account.publicKey)

    def challenge(self):
        """
        A fresh challenge for AUTH, replacing any earlier one.
        """
        self._hello()
        value = self.service.randomBytes(32)
        self._challenge = (value, self.service.clock.seconds() + self.service.settings.challengeLifetime)
        return value

    def auth(self, name, signature):
        """
        Log in by signing the outstanding challenge; the challenge is used up
        whatever the outcome.

        @return: a L{Deferred} that fires once logged in.
        """
        self._notLoggedIn()
        challenge, self._challenge = self._challenge, None
        return Deferred.fromCoroutine(self._auth(name, signature, challenge))

    async def _auth(self, name, signature, challenge):
        # A valid signature is never limited (it cannot be guessed, and costs
        # little to check): only failures are counted, after the check.
        service = self.service
        account = await service.store.getAccount(name) if isUserName(name) else None
        live = challenge is not None and challenge[1] > service.clock.seconds()
        ok = await service.credentials.verifyAuth(
            account.publicKey if account else None,
            challenge[0] if challenge else bytes(32), name, signature)
        if not (ok and account and live):
            service.metrics.loggedIn("key", False)
            log.info("failed key login as {name!r} from {address}", name=name,
                     address=self.address)
            await service.failures.failed("user:" + fold(name), self.address)
            raise Forbidden("authentication failed")
        registration.checkNotBanned(account)
        service.metrics.loggedIn("key", True)
        log.info("{name} logged in by key from {address}", name=account.name,
                 address=self.address)
        await self._becomeAccount(account.name, account.publicKey)

    async def _becomeAccount(self, name, publicKey):
        """
        Make this session a session of account C{name}.

        When the account is online already, the session joins it (a guest
        leaves its rooms first). Otherwise a guest becomes the account:
        co-members see RENAMED (and KEY_CHANGED when the key differs) and its
        rooms become the account's. Either way the session then hears a JOINED
        for each room of the account it did not ask for.
        """
        service = self.service
        if self.ended:
            raise BadRequest("the session closed meanwhile")
        # An account made by the operator (chatd.admin create-user) has no
        # key until its first login publishes one (SET_KEY).
        publicKey = publicKey or None
        guest = self.user
        online = service.users.get(fold(name))
        if online is not None and online is not guest:
            if guest is not None:
                service.publish("offline", user=guest.name)
                service.goOffline(guest)
                guest.sessions.remove(self)
            self._attach(online)
            for room in online.rooms.values():
                service.broadcast([self], "userJoined", room.name, online.name, online.key)
            return
        if guest is None:
            user = User(name, publicKey, account=True)
            self._attach(user)
        else:
            user = guest
            guest.account = True
            if guest.name != name:
                self._rename(guest, name)
            else:
                service.publish("renamed", old=name, new=name, account=True)
            if publicKey is not None and guest.key != publicKey:
                self._changeKey(guest, publicKey)
            for room in list(user.rooms.values()):
                await service.store.addMember(room.name, user.name)
        for roomName in await service.store.roomsOf(name):
            room = service.rooms.get(fold(roomName))
            if room is not None and fold(name) not in room.members and self.user is user:
                service.addMember(room, user, None)
                service.publish("joined", room=room.name, user=user.name)

    def setKey(self, publicKey):
        """
        Publish (a guest) or replace (an account) this user's public key.

        @return: a L{Deferred} that fires when the key is stored.
        """
        user = self._greeted()
        e2e.loadPublicKey(publicKey)
        if publicKey == user.key:
            return succeed(None)
        self._changeKey(user, publicKey)
        if user.account:
            return self.service.store.setPublicKey(user.name, publicKey)
        return succeed(None)

    def _changeKey(self, user, publicKey):
        self.service.changeKey(user, publicKey, self)
        self.service.publish("key", user=user.name, key=publicKey)

    def getKeys(self, kind, name):
        """
        The public keys of a room's members, or of one user.

        @return: a L{Deferred} firing with sorted C{(name, key)} pairs.
        """
        user = self._greeted()
        if kind == ROOM:
            room = self.service.room(name)
            if room.passwordHash is not None and fold(user.name) not in room.members:
                raise Forbidden("the members of %s are private" % (room.name,))
            return succeed(room.memberKeys())
        if kind != USER:
            raise BadRequest("GET_KEYS kind must be 0 (room) or 1 (user), not %d" % (kind,))
        if not isUserName(name):
            raise BadRequest("invalid user name %r" % (name,))
        online = self.service.users.get(fold(name))
        if online is not None:
            if online.key is None:
                raise BadRequest("%s has not published a key" % (online.name,))
            return succeed([(online.name, online.key)])

        def found(account):
            if account is None:
                raise NotFound("no such user: %s" % (name,))
            return [(account.name, account.publicKey)]
        return self.service.store.getAccount(name).addCallback(found)

    # -- requests: file transfer ------------------------------------------

    def offer(self, kind, target, size, chunks, chunkSize, data):
        """
        Offer a file to a room or a user: the sizes are checked first (they rank
        with malformed requests), then the target and the file envelope as for a
        message, under the file header.

        @return: the transfer id.
        """
        service, settings = self.service, self.service.settings
        if kind not in (ROOM, USER):
            raise BadRequest("OFFER target kind must be 0 (room) or 1 (user), not %d" % (kind,))
        if not 1 <= chunkSize <= settings.maxFrame - 64:
            raise TooLarge("chunk size must be 1 to %d bytes" % (settings.maxFrame - 64,))
        if chunks != max(1, -(-size // chunkSize)):
            raise BadRequest("%d bytes in chunks of %d make %d chunks, not %d"
                             % (size, chunkSize, max(1, -(-size // chunkSize)), chunks))
        if chunks > 1 << 20:
            raise TooLarge("at most %d chunks" % (1 << 20,))
        if settings.maxFileSize and size > settings.maxFileSize:
            raise TooLarge("files are at most %d bytes here" % (settings.maxFileSize,))
        user = self._greeted()
        if service.transferCounts.get(self._owner(user), 0) >= settings.maxTransfers:
            raise RateLimited("at most %d transfers at once; wait for one to end"
                              % (settings.maxTransfers,))
        if kind == ROOM:
            room = service.room(target)
            if fold(user.name) not in room.members:
                raise BadRequest("not a member of %s" % (room.name,))
            toKind, name, expected, members = "room", room.name, room.keyIds(), room.memberKeys
            receivers = [u for u in room.members.values() if u is not user]
        else:
            if not isUserName(target):
                raise BadRequest("invalid user name %r" % (target,))
            peer = service.users.get(fold(target))
            if peer is None:
                raise NotFound("%s is not online" % (target,))
            if peer.key is None:
                raise BadRequest("%s has not published a key" % (peer.name,))
            toKind, name = "user", peer.name
            expected = {user.name: user.keyId, peer.name: peer.keyId}
            members = lambda: sorted({(user.name, user.key), (peer.name, peer.key)})  # noqa: E731
            receivers = [peer] if peer is not user else []
        self._hasKey(user)
        return Deferred.fromCoroutine(self._offer(
            user, Offer(kind, name, size, chunks, chunkSize, None), data, toKind, expected,
            members, receivers))

    async def _offer(self, user, offer, data, toKind, expected, members, receivers):
        service, settings = self.service, self.service.settings
        name = offer.target

        def check():
            if self.ended:
                raise BadRequest("the session closed meanwhile")
            if service.transferCounts.get(self._owner(user), 0) >= settings.maxTransfers:
                raise RateLimited("at most %d transfers at once; wait for one to end"
                                  % (settings.maxTransfers,))
            return service.checkEnvelope(user, data, toKind, name, expected, members,
                                         domain=e2e.FILE)
        envelope = await self._underMessageLimit(user, check)
        sessions = [s for u in receivers for s in u.sessions if IFileClient.providedBy(s.client)]
        if not sessions:
            raise NotFound("nobody in %s can receive files" % (name,))
        service.replays.add((fold(user.name), envelope.id))
        transfer = Transfer(service.newTransferId(), self, replace(offer, envelope=envelope),
                            sessions,
                            service.clock, settings.window, settings.offerTimeout,
                            settings.chunkTimeout)
        service.addTransfer(transfer, self._owner(user))
        transfer.begin()
        return transfer.id

    def _transfer(self, transferId):
        self._greeted()
        transfer = self.service.transfers.get(transferId)
        if transfer is None or (transfer.sender is not self and self not in transfer.recipients):
            raise NotFound("no such transfer: %d" % (transferId,))
        return transfer

    def answer(self, transferId, accept):
        """
        Accept (1) or decline (0) an offered file.
        """
        if accept not in (0, 1):
            raise BadRequest("ANSWER takes 1 (accept) or 0 (decline), not %d" % (accept,))
        self._transfer(transferId).answer(self, bool(accept))

    def fileChunk(self, transferId, index, data):
        """
        The sender's chunk C{index}, relayed to the accepting recipients.
        """
        self._transfer(transferId).chunk(self, index, data)
        self.service.metrics.chunkRelayed(len(data))

    def fileAck(self, transferId, index):
        """
        A recipient acknowledges chunk C{index}.
        """
        self._transfer(transferId).ack(self, index)

    def fileDone(self, transferId):
        """
        The sender has sent every chunk.
        """
        self._transfer(transferId).done(self)

    def fileCancel(self, transferId, reason):
        """
        The sender cancels the transfer, or a recipient leaves it.
        """
        self._transfer(transferId).cancel(self, reason)

