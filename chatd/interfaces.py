"""
The interfaces between chatd's core, its front doors and its storage.

The core (L{IChatService}) knows no protocol: each front door adapts one wire
format to it, makes its requests through the L{chatd.isession.ISession} it is
given and receives events through L{IChatClient}. Storage sits behind
L{chatd.istore.IMessageStore}, whose every method returns a L{Deferred} even in
memory, so the SQLite, PostgreSQL and in-memory stores are interchangeable.

Those two, each long enough for a module, have one of their own; the terminal
client's L{chatd.client.ui.IClientUI}, which is none of these, lives with it.
"""

from zope.interface import Attribute, Interface


class IChatClient(Interface):
    """
    One connected session as the core sees it: something events can be sent to.

    Each method is called on the reactor thread, once per event, and must not
    raise; a client that cannot take an event any more disconnects itself. Names
    are as their owners wrote them; envelopes are UTF-8 JSON already cut down to
    this session's user, as an L{chatd.cut.Cut} whose pieces a door should keep
    as pieces (see L{chatd.protocols.outbox.chain}), so that every reader's
    queue shares one copy of the ciphertext.
    """

    def roomMessage(room, sender, timestamp, envelope):
        """
        A message was posted to C{room}, of which this session's user is a member.

        @param timestamp: the server timestamp in ms since the epoch.
        @type envelope: L{chatd.cut.Cut}
        """

    def directMessage(sender, timestamp, envelope):
        """
        A direct message to this session's user (or, in another session of the
        sender, a copy of one it sent).
        """

    def userJoined(room, user, publicKey):
        """
        C{user} joined C{room}. When C{user} is this session's own user, the
        session has been put in the room without asking (memberships restored at
        login, or joined from another session of the same account).
        """

    def userLeft(room, user):
        """
        C{user} left C{room}: by request, by disconnecting, or by being dropped.
        """

    def userRenamed(old, new):
        """
        A user sharing a room with this session changed name.
        """

    def keyChanged(user, publicKey):
        """
        A user sharing a room or a direct conversation with this session has a new
        public key (SubjectPublicKeyInfo DER).
        """

    def kicked(room, user, by, banned, reason):
        """
        C{user} was kicked, or banned (C{banned}), from C{room} by C{by}: it
        is not a member any more. Sent to the room's members and to the
        user's own sessions.
        """

    def topicChanged(room, by, topic):
        """
        C{by} set C{room}'s topic (empty: none).
        """

    def roleChanged(room, user, by, role):
        """
        C{by} made account C{user} C{"owner"} or C{"operator"} of C{room}, or
        took its role away (L{None}).
        """

    def roomDestroyed(room, by):
        """
        C{by} destroyed C{room}: nobody is in it any more.
        """

    def warning(code, message):
        """
        A warning from the server, such as C{0x03}: idle, about to be disconnected.
        """

    def disconnect():
        """
        The server ends this session (idle timeout, or a requested close).
        """

    def goAway(code, message):
        """
        The server is stopping: send the client C{warning(code, message)} (or
        the door's own form of it), take no further requests, answer those
        already taken, and then close the connection, which ends the session
        as any disconnect does.
        """


class IFileClient(IChatClient):
    """
    A session that can take part in file transfers (a door without them, such
    as the text door, does not provide this and is never offered a file).
    """

    def fileOffered(transfer):
        """
        A file is offered to this session: a L{chatd.transfer.Transfer}, whose
        C{offer} holds the sizes and the file envelope to cut for this user.
        """

    def fileStarted(transferId, accepted, window):
        """
        To the sender: C{accepted} recipients accepted; send chunks 0 to
        C{window} - 1.
        """

    def fileChunk(transferId, index, data):
        """
        To a recipient: chunk C{index} of the file (still encrypted).
        """

    def fileNext(transferId, limit):
        """
        To the sender: chunks up to index C{limit} may now be sent.
        """

    def fileDone(transferId):
        """
        The transfer is complete for this session.
        """

    def fileCancelled(transferId, reason):
        """
        The transfer is over for this session without completing.
        """


class IDeviceClient(IChatClient):
    """
    The events of protocol version 3 (devices, docs/protocol.rst). The core
    sends DEVICES_CHANGED to every session whose client provides this
    (a door that also speaks versions 1 and 2, the binary one, drops it for
    those sessions itself), and DEVICE_PENDING, APPROVAL, SHARE_WANTED and
    CAUGHT_UP to device sessions only. JOINED and KEY_CHANGED of version 3
    carry the user's list: a door reads it with L{ISession.devicesOf} when
    it encodes them.
    """

    def devicesChanged(user, devices):
        """
        C{user} published a new device list (a L{chatd.model.DeviceList}).
        """

    def devicePending(pending):
        """
        A new device of this session's account waits to be approved (a
        L{chatd.model.PendingDevice}).
        """

    def approval(reply):
        """
        The identity device approved this (pending) device: its reply, bytes
        the server passes on unread.
        """

    def shareWanted(room, newcomer, history):
        """
        Account C{newcomer} joined C{room}, whose history setting is
        C{history}: this session may re-wrap the latest messages for it
        (SHARE_HISTORY).
        """

    def caughtUp(count):
        """
        The catch-up after login (or approval) is over: C{count} stored
        messages were replayed as ordinary room and direct messages.
        """


class ISplicingClient(IChatClient):
    """
    A door that makes each reader's message frame itself, from the parsed
    envelope and the reader's entry key, rather than from a
    L{chatd.cut.Cut}: for such a door the fan-out calls these, on the
    door's class, once per message with every reader of that class, instead
    of L{IChatClient.roomMessage} and L{IChatClient.directMessage} per
    reader. That spares every delivery the cut's object, a call and the
    call's argument tuple (bench/README.rst, "The fan-out in one call per
    door").
    """

    def roomMessagesFor(clients, entries, fields, envelope, failed):
        """
        L{IChatClient.roomMessage}, for each of C{clients}.

        @param clients: a L{list} of clients of this class.
        @param entries: a L{list} as long: the key of each client's reader's
            entries in the envelope.
        @param fields: C{(room, sender, timestamp)}, one L{tuple} shared by
            every reader of the message.
        @param envelope: the message's L{chatd.e2e.Envelope}; a reader's
            cut is its L{chatd.e2e.Envelope.common} followed by its
            L{chatd.e2e.Envelope.tailFor} C{entry}.
        @param failed: to be called, in the C{except} clause, with a client
            whose delivery raised; the others are still given theirs.
        """

    def directMessagesFor(clients, entries, fields, envelope, failed):
        """
        L{IChatClient.directMessage}, as L{roomMessagesFor}.

        @param fields: C{(sender, timestamp)}.
        """


class IChatService(Interface):
    """
    The protocol-free chat core.
    """

    settings = Attribute("The L{chatd.config.Settings} the service runs with.")
    metrics = Attribute("The L{chatd.metrics.Metrics} the doors count refusals in.")

    def connect(client, address):
        """
        Open a session for a newly connected client.

        @param client: an L{IChatClient} provider.
        @param address: a string naming the peer's host, used for per-address limits.
        @return: an L{chatd.isession.ISession}, on which the front door calls one method per
            request.
        """


class IFanout(Interface):
    """
    What one chatd node shares with the other nodes of its cluster: the events
    its users cause, and the counters and limits that must hold cluster-wide.

    A node applies its own events itself and publishes them; the fan-out hands
    other nodes' events to L{chatd.core.service.ChatService.remoteEvent}. Both
    ways the events are typed (L{chatd.core.events.Event}); on the wire they
    travel in their one wire form (L{chatd.core.events.Event.toWire}, read
    back with L{chatd.core.events.fromWire}). The in-process
    L{chatd.fanout.local.LocalFanout} has no other nodes.
    """

    nodeId = Attribute("This node's id, unique in the cluster (a string).")

    def start(service):
        """
        Join the cluster: learn who is online elsewhere (through C{service}'s
        C{remoteEvent}) and start receiving events.

        @return: a L{Deferred} that fires when the node may serve clients.
        """

    def stop():
        """
        Leave the cluster.

        @return: a L{Deferred} that fires when done.
        """

    def publish(event):
        """
        Send one L{chatd.core.events.Event} that happened here to every other
        node, fire and forget.
        """

    def guestNumber():
        """
        @return: the next guest number, unique in the cluster (synchronously:
            guests are named at once).
        """

    def window(name, count, seconds):
        """
        A sliding-window limit shared by the cluster; a C{count} of L{None}
        counts without limit.

        @return: an object with C{reserve(key)} (a L{Deferred} firing with a
            L{chatd.ratelimit.Reservation}: checking and counting are one step
            for the whole cluster), C{release(key, token)} and C{hit(key)},
            each returning a L{Deferred} (see L{chatd.ratelimit.SlidingWindow}
            for their meaning).
        """

    def timestamp(room, now, last):
        """
        The server timestamp of the next message in C{room}: at least C{now},
        and above every timestamp the room has had in the cluster.

        @param last: the newest timestamp this node knows for the room.
        @return: a L{Deferred} firing with the timestamp in ms.
        """


class IDirectoryView(Interface):
    """
    The few read-only questions the cluster fan-out asks about this node's
    picture of who is online and in which room, so that it never holds the
    core's dictionaries. Answers are frozen snapshots
    (L{chatd.model.UserView}, L{chatd.model.RoomView}): nothing the fan-out
    does with them can change the core.
    """

    def user(name):
        """
        @param name: a user name, in any case.
        @return: the L{chatd.model.UserView} of the user of that name online
            here or on another node, or L{None}.
        """

    def localUsers():
        """
        @return: a L{list} of the L{chatd.model.UserView}s of the users with
            sessions on this node.
        """

    def usersOn(node):
        """
        @return: a L{list} of the L{chatd.model.UserView}s of the users this
            node knows to have sessions on node C{node}.
        """

    def room(name):
        """
        @param name: a room name, in any case.
        @return: the L{chatd.model.RoomView} of the room of that name this
            node knows, or L{None}.
        """

    def storedRooms():
        """
        @return: a L{Deferred} firing with the L{chatd.model.RoomRecord}s of
            every stored room, including those this node has not heard of.
        """

    def messagesSince(room, after, limit):
        """
        The stored messages of C{room} with timestamps above C{after} (ms),
        oldest first, at most C{limit}.

        @return: a L{Deferred} firing with L{chatd.model.HistoryRow}s.
        """
