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
    Persistent accounts, rooms, memberships and room history.

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
