# -*- test-case-name: chatd.test.test_service -*-
"""
The interface of one connection's session with the core (L{ISession}): every
request a front door can make of it, and what each answers or refuses.

Its own module because it is the longest of the interfaces between the core
and the doors (L{chatd.interfaces} holds the others), and one idea: what a
door may ask.
"""

from zope.interface import Attribute, Interface


class ISession(Interface):
    """
    One connection's session with the core: what a front door calls.

    Each request method (the right column of L{chatd.protocols.requests})
    returns its result or a L{Deferred} of it, or raises a
    L{chatd.errors.ChatError} (with the status code and a message in words
    every door's user reads). Requests are answered in the order they came,
    and a door runs one at a time, except those named in C{overlapping}.
    Events reach the door through the L{IChatClient} given to
    L{chatd.interfaces.IChatService.connect}.
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

    def join(roomName, password, history=0):
        """
        Join a room, creating it when it does not exist (with the history
        setting C{history}, as L{create}'s; ignored when it exists).

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

    entryKey = Attribute(
        "The entry key this session reads envelopes by (L{chatd.e2e.entryKey}): "
        "C{user/device} for a device of an account with a list, the bare name "
        "otherwise; a door cuts an envelope with L{chatd.e2e.Envelope.cutAs}.")

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
