# -*- test-case-name: chatd.test.test_store -*-
"""
The interface of the message store (L{IMessageStore}): persistent accounts,
rooms, memberships, history, devices and waiting messages, every method
returning a L{Deferred}, so that the SQLite, PostgreSQL and in-memory stores
are interchangeable.

Its own module because the store is one side of the core on its own; the
interfaces between the core, the doors and the fan-out are in
L{chatd.interfaces}.
"""

from zope.interface import Attribute, Interface


class IMessageStore(Interface):
    """
    Persistent accounts, rooms, memberships and room history; devices and
    the messages that wait for them.

    Names are unique ignoring ASCII case (L{chatd.names.fold}) and returned as they
    were first written. Every method returns a L{Deferred}; a write has been
    committed when its L{Deferred} fires.
    """

    numbering = Attribute(
        """
        Once open, the L{chatd.store.numbering.Numbering} that hands out the
        timestamps and sequence numbers of room messages before they are
        stored, on a store that alone writes its messages (in memory;
        SQLite); L{None} on a store shared by several nodes (PostgreSQL),
        which takes them inside the transaction that stores the message.
        """
    )

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

    def createAccount(name, passwordHash, publicKey, invite=None, devices=None, recovery=b""):
        """
        @param passwordHash: L{bytes}, or L{None} for a key-only account.
        @param invite: an invite token to use up one registration of, in the
            same transaction, or L{None}.
        @param devices: the first L{chatd.model.DeviceList} of an account
            registered by a device (protocol version 3), stored in the same
            transaction, or L{None} for none.
        @param recovery: its recovery blob (L{getRecovery}), C{b""} for none.
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

    def createRoom(name, passwordHash, owner=None, history=0):
        """
        @param owner: the account that owns the new room (its creator), or
            L{None} for a room without owner (one a guest made).
        @param history: how many of its latest messages a new member may be
            given (SHARE_HISTORY; L{latestMessages}), 0 for none.
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

    def appendMessage(room, sender, timestamp, envelopeId, envelope, readers, sequence=0):
        """
        Store one room message, encrypted at rest.

        @param envelopeId: the envelope's C{id}; the pair (sender, id) is unique.
        @param envelope: the whole envelope, UTF-8 JSON L{bytes}.
        @param readers: the names that have a key entry in it.
        @param timestamp: the server timestamp asked for. A room's timestamps
            stay unique: on a store with a L{numbering}, one above the room's
            latest is taken when the room has one as late; on a shared store,
            when another message of the room has it already (nodes of a
            cluster that cannot reach their fan-out count on their own), the
            next free one.
        @param sequence: a sequence number C{numbering} handed out with
            C{timestamp} (L{chatd.store.numbering.Numbering.take}): the
            message is then stored with exactly these two; 0 for the store to
            take them.
        @return: a L{Deferred} that fires with the timestamp stored (a
            L{chatd.store.entries.Stamp}, carrying the sequence) once
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

    # -- devices (protocol version 3) ------------------------------------

    def getDevices(user):
        """
        @return: a L{Deferred} that fires with the account's current
            L{chatd.model.DeviceList}, or L{chatd.model.NO_DEVICES} when it
            has none (or there is no such account).
        """

    def removedDevices(user):
        """
        @return: a L{Deferred} that fires with the C{frozenset} of the key
            hashes the account's lists have removed (a removed device is
            never admitted again), empty when none.
        """

    def publishDevices(user, devices, prev, removed):
        """
        Store the account's next device list, if its list is still the one
        C{prev} names, in one transaction: the pending requests of the devices
        it names are answered (forgotten), and C{removed} joins the removed
        key hashes.

        @param devices: the new, checked L{chatd.model.DeviceList}.
        @param prev: the C{(version, digest)} head of the list it follows
            (L{chatd.model.DeviceList.head}; C{NO_DEVICES.head} for the first).
        @param removed: the key hashes of the devices it drops.
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.devicelist.HeadConflict}, carrying the stored head, when
            the list changed meanwhile (another node stored one).
        """

    def resetIdentity(user, publicKey, devices, recovery):
        """
        A new identity key and a list of version 1 for an account that lost
        its identity device, in one transaction: its public key becomes
        C{publicKey}, its list C{devices}, its recovery blob C{recovery}, and
        its removed key hashes, pending devices and read marks are forgotten.

        @return: a L{Deferred} that fires with L{None}, or fails with
            L{chatd.errors.NotFound} when there is no such account.
        """

    def addPending(user, pending):
        """
        Remember a device waiting for the identity device's approval (a
        L{chatd.model.PendingDevice}), replacing any of the same device id.

        @return: a L{Deferred} that fires with L{None}.
        """

    def pendingDevices(user):
        """
        The account's devices waiting for approval; the expired are forgotten
        first.

        @return: a L{Deferred} that fires with a list of
            L{chatd.model.PendingDevice}, sorted by device id.
        """

    def getRecovery(user):
        """
        @return: a L{Deferred} that fires with the account's recovery blob
            (opaque L{bytes}, sealed by its client), or C{b""} when none.
        """

    def setRecovery(user, blob):
        """
        Replace the account's recovery blob; C{b""} removes it.

        @return: a L{Deferred} that fires with L{None}.
        """

    # -- messages that wait --------------------------------------------------

    def appendDirect(sender, peer, timestamp, envelopeId, envelope, readers):
        """
        Store a direct message between two accounts, sealed at rest, with the
        next store-wide sequence number (shared with room messages, so that a
        device catches up on both in one order).

        @param envelope: the whole envelope, UTF-8 JSON L{bytes}.
        @param readers: the entry keys (L{chatd.e2e.entryKey}) it has an
            entry for.
        @return: a L{Deferred} that fires with a L{chatd.store.entries.Stamp}
            (the timestamp, carrying the sequence) once committed, or fails
            with L{chatd.errors.Conflict} when the sender's envelope id is
            already stored.
        """

    def directHistory(user, peer, reader, limit, before):
        """
        The newest C{limit} direct messages between C{user} and C{peer} that
        C{reader} (an entry key) has an entry in, with timestamps below
        C{before} (0: no bound). A stored message that does not open at rest
        is left out (and logged once).

        @return: a L{Deferred} that fires with a list of
            L{chatd.model.HistoryRow}, oldest first; empty when C{limit} is
            not positive.
        """

    def catchUp(user, reader, after, limit):
        """
        The oldest C{limit} stored messages with sequence numbers above
        C{after}, of the rooms account C{user} is remembered in and of its
        direct conversations, that C{reader} (an entry key) has an entry in,
        shared entries (L{addShares}) merged in: what a device missed.

        @return: a L{Deferred} that fires with a list of
            L{chatd.model.StoredMessage} in sequence order; empty when
            C{limit} is not positive.
        """

    def latestMessages(room, latest):
        """
        The latest C{latest} messages of C{room}, for SHARE_HISTORY.

        @return: a L{Deferred} that fires with a dict of envelope id to
            C{(message id, sender, envelope with its shares merged in)}; the
            message id is the store's own, to be given back to L{addShares}
            and nothing else. Empty when C{latest} is not positive.
        """

    def addShares(shares):
        """
        Add key entries that members wrapped for a newcomer to stored room
        messages: C{(message id, entry key, encrypted key, key id)} each, the
        message id as L{latestMessages} gave it. The first share of an entry
        wins; later ones are ignored.

        @return: a L{Deferred} that fires with how many were added.
        """

    def currentSequence():
        """
        @return: a L{Deferred} that fires with the latest store-wide sequence
            number taken (on a store with a L{numbering}, also those handed out
            and not yet committed): where a new device starts, owed nothing
            before it.
        """

    def getMark(user, device):
        """
        @return: a L{Deferred} that fires with the sequence number up to which
            the device has been given the stored messages, or L{None} for a
            device never seen.
        """

    def setMarks(marks):
        """
        Raise each C{(user, device, sequence)} mark; a mark never goes back.

        @return: a L{Deferred} that fires with L{None}.
        """

    def membersOf(room):
        """
        @return: a L{Deferred} that fires with the names (as written) of the
            accounts remembered in C{room}, sorted ignoring case; empty for a
            room with none or no such room.
        """
