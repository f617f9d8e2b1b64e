# -*- test-case-name: chatd.test.test_binary -*-
"""
The binary front door: C{Int32StringReceiver} frames to and from the core.

This module only parses, calls the core and encodes; the rules live in
L{chatd.core}, the frame layouts in L{chatd.protocols.opcodes}, and what
every door does alike (outbox, lifecycle, refusals, the request pipeline) in
L{chatd.protocols.door}.

Ordering: each request gets exactly one response, in request order. While a
request waits on asynchronous work (bcrypt, SQL) the protocol stops parsing and
stops reading from the socket, so later requests wait their turn and a client that
pipelines cannot make the server buffer without bound; only room messages and
direct messages may wait together (the core's C{Session.overlapping}). Events may
be written between responses.

Slow readers: outgoing frames go through an L{Outbox} that holds what the
transport will not take yet; past the configured send queue, or the send
budget of all connections, the connection is aborted (see
L{chatd.protocols.outbox}).
"""

from typing import Any, Callable, Dict

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import BadRequest, TooLarge
from chatd.interfaces import IDeviceClient, IFileClient, ISplicingClient
from chatd.protocols import DoorFactory, devicewire, opcodes, tuneSocket
from chatd.protocols.devicedoor import REQUESTS_V3, BinaryDevices
from chatd.protocols.door import Door, Final
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import Op
from chatd.protocols.splice import envelopeFrame, prefixesFor

_ROOM_MSG, _DM = Op.ROOM_MSG, Op.DM

# A HISTORY response frame holds magic, opcode, status and row count besides rows.
_HISTORY_FRAME_OVERHEAD = 2 + 1 + 1 + 2

# Each request opcode's name in L{chatd.protocols.requests.REQUESTS}.
_REQUEST_OF = {
    Op.HELLO: "hello",
    Op.NICK: "nick",
    Op.LIST_USERS: "list_users",
    Op.LIST_ROOMS: "list_rooms",
    Op.CREATE: "create",
    Op.JOIN: "join",
    Op.LEAVE: "leave",
    Op.ROOM_MSG: "room_message",
    Op.DM: "direct_message",
    Op.HISTORY: "history",
    Op.REGISTER: "register",
    Op.LOGIN: "login",
    Op.CHALLENGE: "challenge",
    Op.AUTH: "auth",
    Op.SET_KEY: "set_key",
    Op.GET_KEYS: "get_keys",
    Op.OFFER: "file_offer",
    Op.ANSWER: "file_answer",
    Op.CHUNK: "file_chunk",
    Op.ACK: "file_ack",
    Op.DONE: "file_done",
    Op.CANCEL: "file_cancel",
    Op.KICK: "kick",
    Op.BAN: "ban",
    Op.UNBAN: "unban",
    Op.SET_ROLE: "set_role",
    Op.SET_TOPIC: "set_topic",
    Op.SET_PASSWORD: "set_password",
    Op.DESTROY: "destroy_room",
    Op.ROOM_INFO: "room_info",
}


@implementer(IFileClient, IDeviceClient, ISplicingClient)
class BinaryProtocol(BinaryDevices, Door, Int32StringReceiver):
    """
    One binary-protocol connection: frames in, core calls, frames out.
    """

    door = "binary"
    malformed = (MalformedFrame,)

    def __init__(self, service):
        Door.__init__(self, service)
        self.MAX_LENGTH = service.settings.maxFrame

    def connectionMade(self):
        tuneSocket(self.transport)
        peer = self.transport.getPeer()
        self.open(self.transport, getattr(peer, "host", str(peer)))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost()

    def _encodeRefusal(self, error, context):
        members, version = getattr(error, "members", None), self._version()
        if version >= devicewire.VERSION:
            return self._encodeRefusalV3(error)
        if members is not None and version >= 2:
            members = self._flagged(members)
        return opcodes.errorResponse(error.status, error.message, members, version=version)

    # -- what version 2 adds: guests marked ---------------------------------

    def _version(self):
        """
        The protocol version the client said in HELLO (1 until it has).
        """
        return self.session.version if self.session is not None else 1

    def _flags(self, name):
        """
        The C{flags} of the user C{name}: L{opcodes.GUEST} for a guest.
        """
        return opcodes.GUEST if self.session is not None and self.session.isGuest(name) else 0

    def _flagged(self, members):
        """
        C{(name, key)} pairs as the C{members} of version 2: with flags.
        """
        return [(name, key, self._flags(name)) for name, key in members]

    def _userEvent(self, op, user, *values):
        """
        Send an event that names C{user} with a key; a version-2 session gets
        the user's flags after the fields a version-1 session gets.
        """
        if self._version() >= devicewire.VERSION and op in (Op.JOINED, Op.KEY_CHANGED):
            self._userEventV3(op, user, *values)
        elif self._version() >= 2:
            self._send(opcodes.event(op, *values, self._flags(user), version=2))
        else:
            self._send(opcodes.event(op, *values))

    # -- input ------------------------------------------------------------

    def dataReceived(self, data):
        if data:
            self.received()
        Int32StringReceiver.dataReceived(self, data)

    def lengthLimitExceeded(self, length):
        self._refuse(TooLarge("frame of %d bytes is over the limit of %d"
                              % (length, self.MAX_LENGTH)))
        self._closeAfterWriting()

    def stringReceived(self, body):
        try:
            op, payload = opcodes.parseBody(body)
        except opcodes.BadMagic as e:
            self.refuseInTurn(BadRequest(str(e)), final=True)
            return
        except MalformedFrame as e:
            self.refuseInTurn(BadRequest(str(e)))
            return
        if op == Op.HEARTBEAT:
            return
        request = _REQUEST_OF.get(op)
        if self._version() >= devicewire.VERSION:
            request = REQUESTS_V3.get(op, request)
        self.submit(request, lambda: self._dispatch(op, request, payload))

    def _dispatch(self, op, request, payload):
        """
        Decode one request, call the core, and return the response frame (or a
        L{Deferred} of it).
        """
        if request is None:
            raise MalformedFrame("unknown opcode 0x%02x" % op)
        if op == Op.HELLO:
            name = self.call(request, opcodes.decodeHello(payload))
            return opcodes.okResponse(op, name or "")
        fields = devicewire.decodeRequest(op, payload, self._version())
        special = self._special.get(op)
        result = special(self, *fields) if special else self.call(request, *fields)
        if isinstance(result, Deferred):
            return result.addCallback(self._encodeOk, op)
        return self._encodeOk(result, op)

    def _encodeOk(self, value, op):
        if isinstance(value, Final):
            return value
        version = self._version()
        if version >= devicewire.VERSION:
            return self._encodeOkV3(value, op)
        if version >= 2:
            if op == Op.JOIN:
                value = (self._flagged(value), getattr(value, "topic", None) or "")
            elif op == Op.GET_KEYS:
                value = self._flagged(value)
            elif op == Op.LIST_USERS:
                value = [(name, self._flags(name)) for name in value]
        if op in opcodes.OK_RESPONSES:
            # A value of several fields (ROOM_INFO, JOIN in version 2) is a tuple.
            values = value if isinstance(value, tuple) else (value,)
            return opcodes.okResponse(op, *values, version=version)
        return opcodes.okResponse(op)

    # -- requests whose answer is more than the core's value ----------------

    def _leave(self, room):
        return self.call("leave", room).addCallback(
            lambda close: Final(opcodes.okResponse(Op.LEAVE)) if close else None)

    def _history(self, room, limit, before):
        budget = self.MAX_LENGTH - _HISTORY_FRAME_OVERHEAD
        return self.call("history", room, limit, before).addCallback(self._fitHistory, budget)

    @staticmethod
    def _fitHistory(rows, budget):
        """
        Keep the newest rows that fit one frame, so that paging with C{before}
        from the oldest row returned loses nothing.
        """
        first = len(rows)
        for sender, _, envelope in reversed(rows):
            budget -= 1 + len(sender.encode("utf-8")) + 8 + 4 + len(envelope)
            if budget < 0:
                break
            first -= 1
        return rows[first:]

    def _setRole(self, room, user, code):
        if code not in opcodes.ROLES:
            raise MalformedFrame("role %d is none of 0, 1 and 2" % (code,))
        return self.call("set_role", room, user, opcodes.ROLES[code])

    _special: Dict[int, Callable[..., Any]] = {
        Op.LEAVE: _leave, Op.HISTORY: _history, Op.SET_ROLE: _setRole}

    # -- IChatClient --------------------------------------------------------

    def roomMessage(self, room, sender, timestamp, envelope):
        self._send(envelopeFrame(Op.ROOM_MSG, (room, sender, timestamp), envelope))

    def directMessage(self, sender, timestamp, envelope):
        self._send(envelopeFrame(Op.DM, (sender, timestamp), envelope))

    # -- ISplicingClient: the fan-out's inner loop ---------------------------

    @staticmethod
    def roomMessagesFor(protocols, entries, fields, envelope, failed):
        _spliceAll(_ROOM_MSG, protocols, entries, fields, envelope, failed)

    @staticmethod
    def directMessagesFor(protocols, entries, fields, envelope, failed):
        _spliceAll(_DM, protocols, entries, fields, envelope, failed)

    def userJoined(self, room, user, publicKey):
        self._userEvent(Op.JOINED, user, room, user, publicKey)

    def userLeft(self, room, user):
        self._send(opcodes.event(Op.LEFT, room, user))

    def userRenamed(self, old, new):
        self._userEvent(Op.RENAMED, new, old, new)

    def keyChanged(self, user, publicKey):
        self._userEvent(Op.KEY_CHANGED, user, user, publicKey)

    # The moderation events go to sessions that said version 2; a version-1
    # session hears that a user is out of a room as it always has, by LEFT.

    def kicked(self, room, user, by, banned, reason):
        if self._live.version >= 2:
            self._send(opcodes.event(Op.KICKED, room, user, by, int(banned), reason))
        else:
            self.userLeft(room, user)

    def topicChanged(self, room, by, topic):
        if self._live.version >= 2:
            self._send(opcodes.event(Op.TOPIC, room, by, topic))

    def roleChanged(self, room, user, by, role):
        if self._live.version >= 2:
            self._send(opcodes.event(Op.ROLE, room, user, by, opcodes.ROLE_CODES[role]))

    def roomDestroyed(self, room, by):
        if self._live.version >= 2:
            self._send(opcodes.event(Op.DESTROYED, room, by))
        elif self._live.name is not None:
            self.userLeft(room, self._live.name)

    def warning(self, code, message):
        self._send(opcodes.event(Op.WARNING, code, message))

    # -- IFileClient --------------------------------------------------------

    def fileOffered(self, transfer):
        offer = transfer.offer
        self._send(opcodes.event(Op.OFFERED, transfer.id, transfer.sender.name, offer.kind,
                                 offer.target, offer.size, offer.chunks, offer.chunkSize,
                                 offer.envelope.cutAs(self._live.entryKey)))

    def fileStarted(self, transferId, accepted, window):
        self._send(opcodes.event(Op.START, transferId, accepted, window))

    def fileChunk(self, transferId, index, data):
        self._send(opcodes.event(Op.CHUNK, transferId, index, data))

    def fileNext(self, transferId, limit):
        self._send(opcodes.event(Op.NEXT, transferId, limit))

    def fileDone(self, transferId):
        self._send(opcodes.event(Op.DONE, transferId))

    def fileCancelled(self, transferId, reason):
        self._send(opcodes.event(Op.CANCEL, transferId, reason))


def _spliceAll(op, protocols, entries, fields, envelope, failed):
    """
    The fan-out's inner loop for the binary door: each of C{protocols} is
    written its frame C{op} of C{fields} and its cut of C{envelope}, by its
    entry key in C{entries}. The readers' tails are made in one pass
    (L{chatd.e2e.Envelope.tailsFor}) and the frame up to them once per
    message and tail length (L{chatd.protocols.splice.Prefixes}), so a
    reader costs a lookup and one call into its outbox with the two: this
    runs for every reader of every message.

    @param failed: called, in the C{except} clause, with a protocol that
        could not take its frame.
    """
    prefixes = prefixesFor(op, fields, envelope.common)
    for protocol, tail in zip(protocols, envelope.tailsFor(entries)):
        if protocol._closing:
            continue
        try:
            protocol.outbox.writeSpliced(prefixes[len(tail)], tail)
        except Exception:
            failed(protocol)


class BinaryFactory(DoorFactory):
    """
    Builds a L{BinaryProtocol} per connection, all on one core.
    """

    protocol = BinaryProtocol
