"""
The interfaces between chatd's core, its front doors and its storage.

The core (L{IChatService}) knows no protocol: each front door adapts one wire
format to it and receives events through L{IChatClient}. Storage sits behind
L{IMessageStore}, whose every method returns a L{Deferred} even in memory, so the
SQLite, PostgreSQL and in-memory stores are interchangeable.
"""

from zope.interface import Attribute, Interface


class IChatClient(Interface):
    """
    One connected session as the core sees it: something events can be sent to.

    Each method is called on the reactor thread, once per event, and must not
    raise; a client that cannot take an event any more disconnects itself. Names
    are as their owners wrote them; envelopes are UTF-8 JSON already cut down to
    this session's user, as an L{chatd.e2e.Cut} whose pieces a door should keep
    as pieces (see L{chatd.protocols.outbox.chain}), so that every reader's
    queue shares one copy of the ciphertext.
    """

    def roomMessage(room, sender, timestamp, envelope):
        """
        A message was posted to C{room}, of which this session's user is a member.

        @param timestamp: the server timestamp in ms since the epoch.
        @type envelope: L{chatd.e2e.Cut}
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
        @return: an L{ISession}, on which the front door calls one method per
            request.
        """


class ISession(Interface):
    """
    One connection's session with the core: what a front door calls.

    Each request method (the right column of L{chatd.protocols.requests})
    returns its result or a L{Deferred} of it, or raises a
    L{chatd.errors.ChatError} (with the status code and a message in words
    every door's user reads). Requests are answered in the order they came,
    and a door runs one at a time, except those named in C{overlapping}.
    Events reach the door through the L{IChatClient} given to
    L{IChatService.connect}.
    """

    name = Attribute("The logged-in (or guest) name, or L{None} before one.")
    version = Attribute("The protocol version the client said in hello.")
    overlapping = Attribute(
        "A frozenset of the request method names whose answers a door may "
        "await together; every other request waits for those before it and "
        "holds up those after it.")

    # -- the connection ---------------------------------------------------

    def received():
        """
        Bytes arrived from the client: the idle clock starts again.
        """

    def closed():
        """
        The connection is gone: forget the session.
        """

    def heartbeat():
        """
        Nothing to do: the bytes themselves reset the idle clock.
        """

    # -- queries doors make without a request -----------------------------

    def isMember(roomName):
        """
        @return: whether the session's user is in room C{roomName}.
        @raise chatd.errors.BadRequest: for a name no room can have.
        @raise chatd.errors.NotFound: when there is no such room.
        """

    def roomSpelling(name):
        """
        @return: the core's spelling of room C{name}, or C{name} itself when
            there is no such room.
        """

    def userSpelling(name):
        """
        @return: the spelling of the online user C{name}, or C{name} itself.
        """

    def isGuest(name):
        """
        @return: whether C{name} is a guest: a name online without an account
            (an account never is, online or not), as the doors mark users in
            their events and lists.
        """

    # -- requests: accounts -----------------------------------------------

    def hello(version, guest=True):
        """
        Greet the server. @return: the assigned guest name, or L{None}.
        """

    def register(name, password, publicKey, invite=None):
        """
        Create an account and log in as it. @return: a L{Deferred}.
        """

    def login(name, password):
        """
        Log in with a password. @return: a L{Deferred}.
        """

    def challenge():
        """
        @return: a fresh challenge (bytes) for L{auth}.
        """

    def auth(name, signature):
        """
        Log in by signing the challenge. @return: a L{Deferred}.
        """

    def nick(name):
        """
        A guest takes another name. @return: a L{Deferred} firing with it.
        """

    def setKey(publicKey):
        """
        Publish or replace this user's public key. @return: a L{Deferred}.
        """

    def getKeys(kind, name):
        """
        @return: a L{Deferred} firing with the sorted C{(name, key)} pairs of a
            room's members (C{kind} 0) or of one user (1).
        """

    # -- requests: rooms ----------------------------------------------------

    def listUsers(roomName):
        """
        @return: the sorted names online, or of a room's members.
        """

    def listRooms():
        """
        @return: the sorted names of every room.
        """

    def create(roomName, password, history=0):
        """
        Create a room without joining it; C{history} (0-500) is how many of
        its latest messages a new member may be given (SHARE_WANTED).
        @return: a L{Deferred}.
        """

    def join(roomName, password):
        """
        Join a room, creating it when it does not exist.

        @return: a L{Deferred} firing with the members' C{(name, key)} pairs
            (a L{chatd.core.moderation.JoinAnswer}, which also has the room's
            C{topic} and C{history} setting).
        """

    def leave(roomName):
        """
        Leave one room, or every room for an empty name.

        @return: a L{Deferred} firing with whether to close the connection.
        """

    def history(roomName, limit, before):
        """
        C{roomName} may be C{@user}: the stored direct messages between this
        account and C{user}.

        @return: a L{Deferred} firing with C{(sender, timestamp, envelope)}
            triples, oldest first.
        """

    # -- requests: messages -------------------------------------------------

    def roomMessage(roomName, data):
        """
        Post an envelope to a room. @return: a L{Deferred} firing with its
        server timestamp.
        """

    def directMessage(userName, data):
        """
        Send an envelope to one online user. @return: a L{Deferred} firing
        with its server timestamp.
        """

    # -- requests: file transfers -------------------------------------------

    def offer(kind, target, size, chunks, chunkSize, data):
        """
        Offer a file to a room (C{kind} 0) or a user (1). @return: a
        L{Deferred} firing with the transfer id.
        """

    def answer(transferId, accept):
        """
        Accept (1) or decline (0) an offered file.
        """

    def fileChunk(transferId, index, data):
        """
        The sender's chunk C{index}.
        """

    def fileAck(transferId, index):
        """
        A recipient acknowledges chunk C{index}.
        """

    def fileDone(transferId):
        """
        The sender has sent every chunk.
        """

    def fileCancel(transferId, reason):
        """
        The sender cancels, or a recipient leaves, a transfer.
        """

    # -- requests: room moderation --------------------------------------------

    def kick(roomName, userName, reason):
        """
        Take a member out of a room. @return: a L{Deferred}.
        """

    def ban(roomName, userName, reason):
        """
        Ban a name from a room. @return: a L{Deferred}.
        """

    def unban(roomName, userName):
        """
        Lift a ban. @return: a L{Deferred}.
        """

    def setRole(roomName, userName, role):
        """
        Give or take an account's role in a room. @return: a L{Deferred}.
        """

    def setTopic(roomName, topic):
        """
        Set a room's topic. @return: a L{Deferred}.
        """

    def setRoomPassword(roomName, password):
        """
        Set or remove a room's password. @return: a L{Deferred}.
        """

    def destroy(roomName):
        """
        Delete a room with its history. @return: a L{Deferred}.
        """

    def roomInfo(roomName):
        """
        @return: a L{Deferred} firing with C{(topic, owners, operators,
            banned)}.
        """

    # -- devices (protocol version 3, chatd.core.devices) ------------------

    device = Attribute(
        "The device this session logged in as (a device session), or L{None} "
        "for a legacy session (a version 1/2 login, a guest).")
    pending = Attribute(
        "Whether this device session waits to be approved; it may then send "
        "only heartbeat, requestDevice, getDevices (its own), getRecovery and "
        "resetIdentity.")

    def devicesOf(name):
        """
        @return: the L{chatd.model.DeviceList} of user C{name} as the core
            holds it (every user an answer or event names is held), or
            L{chatd.model.NO_DEVICES} for a legacy account, a guest or an
            unknown name. Doors read it for version 3's C{devmembers},
            JOINED and KEY_CHANGED.
        """

    def registerDevice(name, password, publicKey, device, listText, signature, recovery,
                       invite=None):
        """
        Create an account whose first device is C{device} with key
        C{publicKey} (the identity key), its list version 1 C{listText}
        signed with C{signature}, and the sealed recovery C{recovery} (may be
        empty); log in as that device, approved. @return: a L{Deferred}.
        """

    def loginDevice(name, password, device, deviceKey):
        """
        Log in with a password as C{device} with key C{deviceKey}.

        @return: a L{Deferred} firing with 0 (approved: the device is in the
            list with that key, or a legacy account's key is C{deviceKey}) or
            1 (pending: a new device).
        @raise chatd.errors.Conflict: the list has C{device} with another key.
        """

    def authDevice(name, device, signature):
        """
        Log in as C{device} by its key's signature over the challenge
        (L{chatd.devicelist}'s auth message). @return: a L{Deferred}.
        """

    def getDevices(name):
        """
        @return: a L{Deferred} firing with C{(list, pending)}: user C{name}'s
            L{chatd.model.DeviceList} and, for one's own account only, the
            L{chatd.model.PendingDevice}s (empty for anyone else's).
        """

    def requestDevice(tag):
        """
        A pending session asks to be approved, with the approval C{tag} (32
        bytes). @return: a L{Deferred}.
        """

    def publishDevices(text, signature, devices):
        """
        The identity device publishes the account's next list: C{text} signed
        with C{signature}, C{devices} its C{(id, SPKI DER)} pairs.

        @return: a L{Deferred}.
        @raise chatd.devicelist.HeadConflict: the list does not build on the
            current head (which the error carries).
        """

    def approve(device, reply):
        """
        Relay C{reply} to the pending device C{device}'s sessions (identity
        device only). @return: a L{Deferred}; fails with
        L{chatd.errors.NotFound} when none is online.
        """

    def getRecovery():
        """
        @return: a L{Deferred} firing with the account's sealed recovery blob
            (empty: none).
        """

    def setRecovery(blob):
        """
        Replace the account's recovery blob (identity device only).
        @return: a L{Deferred}.
        """

    def shareHistory(roomName, newcomer, entries):
        """
        Add key entries for C{newcomer}'s devices to stored messages of
        C{roomName}: C{entries} are C{(envelope id, JSON bytes)} pairs, the
        JSON C{{"encrypted_keys": {...}, "key_ids": {...}}}.

        @return: a L{Deferred} firing with how many entries were added.
        """

    def resetIdentity(publicKey, device, text, signature, blob):
        """
        A password session whose account lost every device starts again: a
        new identity key C{publicKey}, device C{device}, list version 1
        C{text} with C{signature}, recovery blob C{blob}; the session becomes
        that device, approved. @return: a L{Deferred}.
        """


class IMessageStore(Interface):
    """
    Persistent accounts, rooms, memberships and room history.

    Names are unique ignoring ASCII case (L{chatd.names.fold}) and returned as they
    were first written. Every method returns a L{Deferred}; a write has been
    committed when its L{Deferred} fires.
    """

    def open():
        """
        Create or upgrade the schema.

        @return: a L{Deferred} that fires with L{None} when the store is usable.
        """

    def close():
        """
        Release connections and threads.

        @return: a L{Deferred} that fires when closed.
        """

    def getAccount(name):
        """
        @return: a L{Deferred} that fires with the L{chatd.model.Account} of that
            name, or L{None}.
        """

    def createAccount(name, passwordHash, publicKey, invite=None):
        """
        @param passwordHash: L{bytes}, or L{None} for a key-only account.
        @param invite: an invite token to use up one registration of, in the
            same transaction, or L{None}.
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.Conflict} when the name is taken, or
            L{chatd.errors.Forbidden} when the invite is unknown, used up or
            expired (and then uses nothing up).
        """

    def createInvite(token, uses, expiresMs):
        """
        Store an invite token good for C{uses} registrations until
        C{expiresMs} (ms since the epoch; L{None} for no expiry).

        @return: a L{Deferred} that fires with L{None}.
        """

    def deleteHistoryBefore(timestampMs):
        """
        Delete every room message stored with a timestamp before C{timestampMs}.

        @return: a L{Deferred} that fires with how many were deleted.
        """

    def setPublicKey(name, publicKey):
        """
        Replace an account's public key.

        @return: a L{Deferred} that fires with L{None}.
        """

    def loadRooms():
        """
        @return: a L{Deferred} that fires with a list of every stored
            L{chatd.model.RoomRecord}.
        """

    def createRoom(name, passwordHash, owner=None):
        """
        @param owner: the account that owns the new room (its creator), or
            L{None} for a room without owner (one a guest made).
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.Conflict} when the room exists.
        """

    def deleteRoom(name):
        """
        Remove a room that nothing keeps any more: it has no password, no
        topic, no ban, no account remembered in it and no history. The store decides, in one
        transaction, so that no node drops a room another still holds.

        @return: a L{Deferred} that fires with L{True} when the room was removed.
        """

    def addMember(room, user):
        """
        Remember that account C{user} is in C{room} (idempotent).
        """

    def removeMember(room, user):
        """
        Forget that account C{user} is in C{room} (idempotent).
        """

    def roomsOf(user):
        """
        @return: a L{Deferred} that fires with the sorted names of the rooms
            account C{user} is remembered in.
        """

    def moderation(room):
        """
        @return: a L{Deferred} that fires with the room's
            L{chatd.model.Moderation} (topic, owners, operators, bans), or
            fails with L{chatd.errors.NotFound} when there is no such room.
        """

    def setRole(room, user, role):
        """
        Make account C{user} C{"owner"} or C{"operator"} of C{room}, or take
        its role away (L{None}); a role lifts a ban of that name there.

        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when there is no such room or account.
        """

    def addBan(room, name, by, reason):
        """
        Ban C{name} (any user name, ignoring case) from C{room}, forgetting
        its stored membership and role there in the same transaction.

        @param by: who banned it.
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} (no such room) or
            L{chatd.errors.Conflict} (banned already).
        """

    def removeBan(room, name):
        """
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when C{name} is not banned from C{room}.
        """

    def setTopic(room, topic):
        """
        Set a room's topic (L{None}: none).

        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when there is no such room.
        """

    def setRoomPassword(room, passwordHash):
        """
        Set or remove (L{None}) a room's password.

        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when there is no such room.
        """

    def destroyRoom(room):
        """
        Delete a room and its history, memberships, roles and bans.

        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when there is no such room.
        """

    def appendMessage(room, sender, timestamp, envelopeId, envelope, readers):
        """
        Store one room message, encrypted at rest.

        @param envelopeId: the envelope's C{id}; the pair (sender, id) is unique.
        @param envelope: the whole envelope, UTF-8 JSON L{bytes}.
        @param readers: the names that have a key entry in it.
        @param timestamp: the server timestamp asked for; when another message
            of the room has it already (nodes of a cluster that cannot reach
            their fan-out count on their own), the next free one is taken, so
            that a room's timestamps stay unique.
        @return: a L{Deferred} that fires with the timestamp stored once
            committed, or fails with L{chatd.errors.Conflict} when the sender's
            id is already stored.
        """

    def messagesAfter(room, after, limit):
        """
        The oldest C{limit} messages of C{room} with server timestamps above
        C{after}, whoever their readers: for a node catching its members up on
        what it missed while cut off from its cluster.

        @return: a L{Deferred} that fires with a list of
            L{chatd.model.HistoryRow}, oldest first (ties in the order stored).
        """

    def history(room, reader, limit, before):
        """
        The newest C{limit} messages of C{room} that C{reader} has a key entry in,
        with server timestamps below C{before} (0: no bound).

        @return: a L{Deferred} that fires with a list of
            L{chatd.model.HistoryRow}, oldest first.
        """


class IClientUI(Interface):
    """
    What the terminal client's logic tells the person using it. Every call is one
    thing to show; texts are already decrypted and verified.
    """

    def messageReceived(room, sender, timestamp, text):
        """
        A room message, decrypted and its signature verified.

        @param timestamp: the time the sender signed (the envelope's C{ts}),
            ms since the epoch; the server's own timestamp is not shown.
        """

    def directMessageReceived(sender, peer, timestamp, text):
        """
        A direct message between this user and C{peer}: from C{peer}, or (when
        C{sender} is this user) a copy of one sent from another session.
        C{timestamp} is the signed one, as for L{messageReceived}.
        """

    def memberJoined(room, user, fingerprint):
        """
        C{user} is now in C{room} (this user too, when the server put it there).
        """

    def memberLeft(room, user):
        """
        C{user} left C{room}.
        """

    def renamed(old, new):
        """
        A user changed name.
        """

    def keyChanged(user, old, new):
        """
        A pinned key changed: loud, and sending to C{user} is refused until the
        person verifies or trusts the new key. C{old} and C{new} are fingerprints.
        """

    def ownKeyChanged(user, ours, claimed):
        """
        The server gives our own name C{user} another key than the one this
        device holds: the server lies, or someone with our password (perhaps
        another device of ours) published a key. Loud, and nothing more is
        sent. C{ours} and C{claimed} are fingerprints.
        """

    def notice(text):
        """
        Something to tell the person: a first-contact pin, a reconnect, a
        server warning.
        """

    def dropped(text):
        """
        Something that arrived and was refused: a bad signature, a replay, an
        envelope that does not open.
        """

    def held(text):
        """
        A message from a user whose key changed was kept back: it is shown once
        the person accepts the new key, and dropped if the person rejects it.
        """

    def askSecret(prompt, optional=False):
        """
        Ask the person for a secret (a password, a key's passphrase) without
        showing it as it is typed.

        @param optional: whether going without is fine (a new key's passphrase):
            where nobody can be asked (a script), the answer is then empty
            instead of a failure.
        @return: a L{Deferred} that fires with the secret, L{str}; or fails with
            L{chatd.client.chat.ClientError} when nobody can be asked.
        """

    def fatal(text):
        """
        The client stopped for good and will not reconnect (the server's
        certificate changed, the server refused to resume the session): say so
        loudly and end with a non-zero status.
        """

    def fileOffered(number, sender, room, name, size):
        """
        Someone offers us a file; its envelope opened and verified with the
        sender's pinned key, and its sizes are the signed ones.

        @param number: the local number C{/accept} and C{/decline} take.
        @param room: the room it was offered in, or L{None} for a direct offer.
        @param name: the file name the sender chose, unchecked (show it
            cleaned; it is made safe only when the file is saved).
        @param size: its size in bytes.
        """

    def fileProgress(number, direction, name, done, total):
        """
        File transfer C{number} moved on: C{done} of C{total} bytes sent
        (C{direction} C{"sending"}) or written (C{"receiving"}). Called for
        every chunk; showing it is the UI's to pace.
        """

    def fileEnded(number, text, failed):
        """
        The last word on file transfer or offer C{number}: C{text} says how it
        ended (delivered, saved and where, declined, cancelled and why);
        C{failed} tells success from the rest.
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
