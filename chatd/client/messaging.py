# -*- test-case-name: chatd.test.test_client -*-
"""
Sealing and sending, receiving and opening: the terminal client's end-to-end
encrypted messages.

Outgoing messages are sealed to the readers the client knows and sealed again
when the server says those changed (0x09), up to L{SEND_ATTEMPTS} attempts;
sent again as they are when it could not store them (0x0a,
L{chatd.client.resend}).
Incoming envelopes are checked against who the server says sent them and
where, the replay set, and the sender's pinned key (the signature before
anything is decrypted), and opened one after another so that they are shown
in the order they arrived. This is also the public messaging API that file
transfers use (L{audience}, L{sealAndCall}, L{openIncoming}, L{inOrder}).
"""

from typing import Any, List

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from chatd import e2e
from chatd.client.connection import ServerError
from chatd.client.errors import ClientError, Duplicate, Held
from chatd.client.replay import signedDigest
from chatd.client.resend import sendUntilStored
from chatd.names import fold
from chatd.protocols.opcodes import Op

log = Logger()

STALE = 0x09

# How many times a message is sealed and sent when the server keeps saying its
# readers changed (0x09): the browser client's number too (docs/client.rst).
SEND_ATTEMPTS = 4


class Messaging:
    """
    The messaging part of L{chatd.client.chat.ChatClient}, which it is mixed
    into (a mixin so that splitting the module changed no behaviour); it uses
    the client's C{ui}, C{clock}, C{runInThread}, C{user}, C{privateKey},
    C{ownKey}, C{call}, C{room}, C{withKey}, the keys of L{chatd.client.trust}
    and C{_isMe}.

    @ivar seenEnvelopes: the L{chatd.client.replay.SeenEnvelopes} that catch
        replays, kept with the account's key once logged in.
    """

    # What the object this is mixed into provides (for type checkers).
    _checkRenamed: Any
    _held: Any
    _isMe: Any
    _keyOrNone: Any
    _members: Any
    _rejected: Any
    _sawKey: Any
    _setMembers: Any
    _trustedKey: Any
    _userKey: Any
    _withOurKey: Any
    blocked: Any
    catchingUp: Any
    entryKey: Any
    newerHead: Any
    readersOf: Any
    rooms: Any
    sealing: Any
    senderKey: Any
    verdicts: Any
    call: Any
    clock: Any
    ownKey: Any
    privateKey: Any
    publicKey: Any
    room: Any
    runInThread: Any
    ui: Any
    user: Any
    withKey: Any

    def _initMessaging(self, seenEnvelopes):
        self.seenEnvelopes = seenEnvelopes
        self._inbound = succeed(None)

    def inOrder(self, opening, opened, refused, what):
        """
        Run C{opening} (which returns a L{Deferred}) after every envelope
        still being opened, then C{opened} with its result or C{refused} with
        its failure: how incoming messages and file offers keep the order the
        server sent them in.

        @param what: what is being shown, for the log when showing fails.
        """
        self._inbound.addCallback(lambda _: opening()).addCallbacks(opened, refused).addErrback(
            lambda f: log.failure("showing {what}", f, what=what))

    async def send(self, text, room=None):
        """
        Encrypt C{text} to the members of a room (the active one by default) and
        post it; when the server says the members changed, update them and try
        once more.

        @return: the signed time of the message and the room's name.
        """
        name, to, recipients, update = await self.audience("room", room)
        timestamp = await self._post(Op.ROOM_MSG, name, to, recipients, update, text)
        return timestamp, name

    async def pm(self, user, text):
        """
        Encrypt C{text} to C{user} (and ourselves, for our other sessions).

        @return: the signed time of the message and the user's name as the
            server spells it.
        """
        name, to, recipients, update = await self.audience("user", user)
        timestamp = await self._post(Op.DM, name, to, recipients, update, text)
        return timestamp, name

    async def audience(self, kind, name):
        """
        Whom an envelope to a room (the active one when C{name} is L{None}) or
        to a user goes to.

        @return: C{(name, to, recipients, update)}: the target's name as the
            server spells it, the envelope's C{to}, a function giving the
            current readers and their keys (for a user: that user and us, for
            our other sessions), and a function taking the server's 0x09
            member list.
        """
        if kind == "room":
            target = self.room(name)

            def update(members):
                self._setMembers(target, members)
            return target.name, ("room", target.name), lambda: dict(target.members), update
        await self.withKey()
        name, der = await self._userKey(name)
        self._sawKey(name, der)
        peer = {name: der}

        def recipients():
            return dict(peer, **{self.user: self.publicKey})

        def updatePeer(members):
            for member, key in self._members(members):
                self._sawKey(member, key)
                if not self._isMe(member):
                    peer.clear()
                    peer[member] = key
        return name, ("user", name), recipients, updatePeer

    async def _post(self, op, target, to, recipients, update, text):
        """
        Seal and send a message; the server may refuse it as stale (seal it
        again) or as not stored, or not answer (send the same envelope again:
        L{chatd.client.resend}).

        @return: the signed time of the envelope the server took.
        """
        sent = []

        def resending(pause, lost):
            why = ("the connection was lost before the server answered" if lost
                   else "the server could not store")
            self.ui.notice("%s your message to %s %s; sending it again in %g s"
                           % (why, to[0], to[1], pause))

        def request(blob):
            sent.append(blob)
            return sendUntilStored(lambda: self.call(op, target, blob), self.clock, resending)
        await self.sealAndCall(to, recipients, update, text.encode("utf-8"), request)
        return e2e.Envelope.parse(sent[-1]).ts

    async def sealAndCall(self, to, recipients, update, plaintext, request, domain=e2e.MESSAGE):
        """
        Seal C{plaintext} to the current C{recipients()} and hand the envelope
        to C{request}; when the server says the readers changed (0x09), take
        its list (C{update}), seal again and try once more.

        @param request: takes the envelope, returns a L{Deferred} of the
            response's values.
        @param domain: L{e2e.MESSAGE}, or L{e2e.FILE} for a file envelope.
        @return: what C{request} gave.
        """
        await self.withKey()
        for attempt in range(1, SEND_ATTEMPTS + 1):
            refusal = self.ownKey.refusal()
            if refusal is not None:
                raise ClientError(refusal)
            members = self._withOurKey(recipients())
            self._checkRenamed(members)
            refused = sorted(m for m in members if fold(m) in self.blocked)
            if refused:
                raise ClientError("not sent: the key of %s changed; compare fingerprints and "
                                  "/verify USER FINGERPRINT, or /trust USER"
                                  % (", ".join(refused),))
            # File offers stay version 1 (the server checks their readers
            # by name): only messages are sealed to devices.
            v2 = self.sealing(self._historySetting(to)) if domain == e2e.MESSAGE else {}
            readers = self._readers(members) if v2 else members
            blob = await self.runInThread(e2e.seal, self.user, self.privateKey, to, readers,
                                          plaintext, domain=domain,
                                          ts=int(self.clock.seconds() * 1000), **v2)
            try:
                result = await request(blob)
            except ServerError as e:
                if e.status != STALE or attempt == SEND_ATTEMPTS:
                    raise
                update(e.members)
                continue
            # Our own envelope, seen again from the server, is a replay (or,
            # identical, nothing new: L{chatd.client.replay}).
            self._remember(e2e.Envelope.parse(blob), domain)
            return result

    def _readers(self, members):
        """
        The entry keys and keys to seal to for C{members} (name to identity
        key): in a device session, each member's verified devices
        (L{chatd.client.devices}); else the members themselves.
        """
        if not self.sealing():
            return members
        readers = {}
        for name, der in members.items():
            readers.update(self.readersOf(name, der))
        return readers

    def _historySetting(self, to):
        """
        The C{hist} a message to C{to} signs: its room's history setting.
        """
        kind, name = to
        room = self.rooms.get(fold(name)) if kind == "room" else None
        return room.history if room is not None else 0

    def _onRoomMessage(self, room, sender, timestamp, blob):
        # The time shown is the one the sender signed; the server's is only
        # its word.
        def show(text, envelope):
            self.ui.messageReceived(room, sender, envelope.ts, text)
        self._openInOrder(blob, sender, ("room", room), show)

    def _onDirectMessage(self, sender, timestamp, blob):
        def show(text, envelope):
            peer = envelope.toName if self._isMe(sender) else sender
            self.ui.directMessageReceived(sender, peer, envelope.ts, text)
        self._openInOrder(blob, sender, None, show)

    def _openInOrder(self, blob, sender, to, show):
        """
        Open an incoming envelope after every earlier one, then show it; drop
        (and say so) what fails any check.

        @param to: C{("room", name)} for a room message; L{None} for a direct
            message, which must be addressed to us unless it is our own copy.
        """
        def open_():
            return Deferred.fromCoroutine(self.openIncoming(blob, sender, to))

        def shown(result):
            envelope, data = result
            show(data.decode("utf-8", "replace"), envelope)

        def refused(failure):
            where = "in room %s" % (to[1],) if to is not None else "(direct)"
            if failure.check(Duplicate):
                # Shown once already: the same envelope again, from its
                # sender's retry or from the catch-up after a login (which
                # replays what the mark had not recorded yet).
                return
            if failure.check(Held):
                self._held.setdefault(fold(sender), []).append((blob, sender, to, show))
                self.ui.held("held a message from %s %s until you accept or reject %s's new key"
                             % (sender, where, sender))
                return
            self.ui.dropped("dropped a message from %s %s: %s"
                            % (sender, where, failure.getErrorMessage()))

        self.inOrder(open_, shown, refused, "a message from %s" % (sender,))

    async def openIncoming(self, blob, sender, to, domain=e2e.MESSAGE):
        """
        Check and decrypt one incoming envelope (a file envelope when C{domain}
        is L{e2e.FILE}: file and message ids share one replay set).

        @return: the envelope and its plaintext.
        @raise Exception: whatever check fails.
        """
        envelope = e2e.Envelope.parse(blob)
        if envelope.sender != sender:
            raise ClientError("envelope claims to be from %s" % (envelope.sender,))
        if to is not None and (envelope.toKind, envelope.toName) != to:
            raise ClientError("envelope is addressed to %s %s" % (envelope.toKind, envelope.toName))
        if to is None and (envelope.toKind != "user"
                           or not (self._isMe(sender) or self._isMe(envelope.toName))):
            raise ClientError("direct message addressed to %s %s"
                              % (envelope.toKind, envelope.toName))
        self._refuseReplay(envelope, domain)
        self._checkRenamed([sender])
        key = self._trustedKey(sender)
        if key is None and envelope.version == 2 and self.verdicts.get(fold(sender)) is None:
            await self._keyOrNone(sender)
            key = self._trustedKey(sender)
        if key is None:
            # A direct message from someone we share no room with: this is
            # our first contact with them.
            name, der = await self._userKey(sender)
            self._sawKey(name, der)
            key = self._trustedKey(sender)
        if fold(sender) in self._rejected:
            raise ClientError("you rejected %s's new key" % (sender,))
        if fold(sender) in self.blocked:
            raise Held("%s's key changed and is not trusted yet" % (sender,))
        self._refuseReplay(envelope, domain)
        if envelope.version == 2:
            key = await self._deviceKey(envelope)
        reader = self.entryKey() if envelope.version == 2 else self.user
        data = await self.runInThread(e2e.openEnvelope, envelope, reader, self.privateKey, key,
                                      domain)
        self._remember(envelope, domain)
        self._checkHead(envelope)
        return envelope, data

    async def _deviceKey(self, envelope):
        """
        The key of the device that sent a version-2 envelope, from its
        sender's verified list; fetched (and verified) once more when the
        held list does not name it yet.

        @raise ClientError: when no verified list names that device.
        """
        key = self.senderKey(envelope)
        if key is None and not self._isMe(envelope.sender):
            await self._keyOrNone(envelope.sender)
            key = self.senderKey(envelope)
        if key is None:
            raise ClientError("sent from device %s of %s, which no device list signed by %s's "
                              "identity key names" % (envelope.device or "(none)",
                                                      envelope.sender, envelope.sender))
        return key

    def _checkHead(self, envelope):
        """
        A signed head newer than the sender's list held means: fetch and
        verify that list before sending to the sender again; the held
        version with another hash is a fork, said loudly.
        """
        if envelope.version != 2 or envelope.head is None:
            return
        newer = self.newerHead(envelope.sender, envelope.head)
        if isinstance(newer, str):
            self._tell(self.ui.dropped, "WARNING: %s" % (newer,))
        elif newer and not self._isMe(envelope.sender):
            d = Deferred.fromCoroutine(self._keyOrNone(envelope.sender))
            d.addErrback(lambda f: log.failure("fetching {user}'s devices", f,
                                               user=envelope.sender))

    def _refuseReplay(self, envelope, domain):
        """
        Raise L{Duplicate} for a message this run showed or sent, identical
        (dropped without a word), L{ClientError} for a replay (the rule of
        L{chatd.client.replay}).
        """
        same = None
        if domain == e2e.MESSAGE:
            same = self.seenEnvelopes.repeats(envelope.sender, envelope.id,
                                              signedDigest(envelope, domain))
            if same and not self.seenEnvelopes.older(envelope.ts):
                raise Duplicate("message id %s was shown already" % (envelope.id,))
        replayed = self.seenEnvelopes.replayed(envelope.sender, envelope.id, envelope.ts)
        if replayed is not None:
            # The catch-up repeats what an earlier run showed, which it
            # cannot compare; not what this run knows to differ.
            if (self.catchingUp and same is None
                    and self.seenEnvelopes.seen(envelope.sender, envelope.id)):
                raise Duplicate(replayed)
            raise ClientError(replayed)

    def _remember(self, envelope, domain):
        digest = signedDigest(envelope, domain) if domain == e2e.MESSAGE else None
        self.seenEnvelopes.remember(envelope.sender, envelope.id, envelope.ts,
                                    int(self.clock.seconds() * 1000), digest)

    def _tell(self, f, *args):
        """
        Show something after every message still being opened, so that the
        person sees events in the order the server sent them (a member's LEFT
        after the last message it sent, not before).
        """
        self._inbound.addCallback(lambda _: f(*args)).addErrback(
            lambda failure: log.failure("showing an event", failure))

    async def history(self, room=None, limit=0):
        """
        The room's stored messages we can read, decrypted: C{[(sender, timestamp,
        text, problem)]}, oldest first, with the time the sender signed (the
        server's, for one that cannot be shown); C{text} is L{None} and
        C{problem} says why for one that fails its checks. C{room} C{@user}
        asks for the direct messages between us and that user (a device
        session's stored direct messages).

        @return: the room's name (C{@user} for direct messages) and the rows.
        """
        if room is not None and room.startswith("@"):
            peer = room[1:]
            (rows,) = await self.call(Op.HISTORY, room, limit, 0)
            between = {fold(peer), fold(self.user)}
            return room, await self._openStored(
                rows, lambda sender, envelope: envelope.toKind == "user"
                and {fold(sender), fold(envelope.toName)} == between)
        target = self.room(room)
        (rows,) = await self.call(Op.HISTORY, target.name, limit, 0)
        return target.name, await self._openStored(
            rows, lambda sender, envelope: (envelope.toKind, envelope.toName)
            == ("room", target.name))

    async def _openStored(self, rows, inPlace):
        """
        Open stored messages one by one; each that fails a check (C{inPlace}
        of its sender and envelope among them: a message moved from elsewhere)
        is a row that says why.
        """
        # (sender, signed time, text or None, why it could not be shown or None)
        shown: List[tuple] = []
        for sender, timestamp, blob in rows:
            self._checkRenamed([sender])
            key = self._trustedKey(sender) or await self._keyOrNone(sender)
            try:
                envelope = e2e.Envelope.parse(blob)
                if envelope.sender != sender or not inPlace(sender, envelope):
                    raise ClientError("envelope does not match its place in the history")
                reader = self.user
                if envelope.version == 2:
                    key = await self._deviceKey(envelope)
                    reader = self.entryKey()
                if key is None:
                    raise ClientError("no key known for %s" % (sender,))
                data = await self.runInThread(e2e.openEnvelope, envelope, reader,
                                              self.privateKey, key)
                shown.append((sender, envelope.ts, data.decode("utf-8", "replace"), None))
            except Exception as e:
                shown.append((sender, timestamp, None, str(e)))
        return shown
