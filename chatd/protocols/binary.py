# -*- test-case-name: chatd.test.test_binary -*-
"""
The binary front door: C{Int32StringReceiver} frames to and from the core.

This module only parses, calls the core and encodes; the rules live in
L{chatd.service}, the frame layouts in L{chatd.protocols.opcodes}.

Ordering: each request gets exactly one response, in request order. While a
request waits on asynchronous work (bcrypt, SQL) the protocol stops parsing and
stops reading from the socket, so later requests wait their turn and a client that
pipelines cannot make the server buffer without bound. Events may be written
between responses.

Slow readers: outgoing frames go through an L{Outbox} that holds what the
transport will not take yet; past the configured send queue, or the send
budget of all connections, the connection is aborted (see
L{chatd.protocols.outbox}).
"""

from collections import deque

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import ChatError, Status
from chatd.interfaces import IFileClient
from chatd.protocols import DoorFactory, noDelay, opcodes
from chatd.protocols.outbox import Outbox, budgetOf
from chatd.protocols.opcodes import Op

log = Logger()

# A HISTORY response frame holds magic, opcode, status and row count besides rows.
_HISTORY_FRAME_OVERHEAD = 2 + 1 + 1 + 2


# Requests that may overlap on one connection: each message's checks finish
# before its store write starts, so several writes can share a transaction; at
# most this many wait at once before the connection stops reading.
_OVERLAPPING = frozenset({Op.ROOM_MSG, Op.DM})
_MAX_OVERLAPPING = 64


class _Closing(bytes):
    """
    A response frame after which the connection closes.
    """


@implementer(IFileClient)
class BinaryProtocol(Int32StringReceiver):
    """
    One binary-protocol connection: frames in, core calls, frames out.
    """

    door = "binary"

    def __init__(self, service):
        self.service = service
        self.MAX_LENGTH = service.settings.maxFrame
        self.session = None
        self.outbox = None
        self._closing = False
        self._leaving = False
        self._responses = deque()
        self._pending = {"ordered": 0, "overlapping": 0}
        self._held = None

    def connectionMade(self):
        noDelay(self.transport)
        self.outbox = Outbox(self.transport, self.service.settings.sendQueue, self._sendQExceeded,
                             budgetOf(self.service))
        self.transport.registerProducer(self.outbox, True)
        peer = self.transport.getPeer()
        try:
            self.session = self.service.connect(self, getattr(peer, "host", str(peer)))
        except ChatError as e:
            self._send(self._error(e.status, e.message))
            self._closeAfterWriting()

    def connectionLost(self, reason):
        session, self.session = self.session, None
        if session is not None:
            session.closed()
        self._closing = True
        self.outbox.stopProducing()

    def _sendQExceeded(self):
        log.warn("send queue exceeded for {name}; aborting the connection",
                 name=self.session and self.session.user and self.session.user.name)
        self._closing = True
        self.transport.abortConnection()

    def _send(self, data):
        if not self._closing:
            self.outbox.write(data)

    # -- input ------------------------------------------------------------

    def dataReceived(self, data):
        if data and self.session is not None:
            self.session.received()
        Int32StringReceiver.dataReceived(self, data)

    def lengthLimitExceeded(self, length):
        self._send(self._error(
            Status.TOO_LARGE, "frame of %d bytes is over the limit of %d" % (length, self.MAX_LENGTH)))
        self._closeAfterWriting()

    def _error(self, status, message, members=None):
        """
        An error response, counted as a refusal.
        """
        self.service.metrics.refused(self.door, status)
        return opcodes.errorResponse(status, message, members)

    def _closeAfterWriting(self):
        # Hand over what waits in the outbox and let go of the transport: a TLS
        # transport waits for its producer to go before it shuts down. Only
        # once: a second over-long length prefix, arriving after the first
        # closed the connection, must not unregister the outbox again.
        if self._closing:
            return
        self._closing = True
        self.outbox.resumeProducing()
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def stringReceived(self, body):
        if self._closing or self._leaving:
            return
        try:
            op, payload = opcodes.parseBody(body)
        except opcodes.BadMagic as e:
            self._answer(_Closing(self._error(Status.ERROR, str(e))))
            return
        except opcodes.MalformedFrame as e:
            self._answer(self._error(Status.ERROR, str(e)))
            return
        if op == Op.HEARTBEAT:
            return
        if self._pending["overlapping"] and op not in _OVERLAPPING:
            # Everything but messages waits for the messages before it, so that
            # it sees their effects (a HISTORY sees the message just sent).
            self._held = (op, payload)
            self.pauseProducing()
            return
        self._request(op, payload)

    def _request(self, op, payload):
        try:
            result = self._dispatch(op, payload)
        except Exception:
            result = self._failureFrame(Failure())
        self._answer(result, op)

    def _answer(self, result, op=None):
        """
        Queue a response (a frame, or a L{Deferred} of one) behind the earlier
        ones; write every response that is ready, in request order.
        """
        slot = [result, None]
        self._responses.append(slot)
        if isinstance(result, Deferred):
            result.addBoth(self._ready, slot)
            if isinstance(slot[0], Deferred):
                slot[1] = "overlapping" if op in _OVERLAPPING else "ordered"
                self._pending[slot[1]] += 1
        self._drain()
        if self._pending["ordered"] or self._pending["overlapping"] >= _MAX_OVERLAPPING:
            self.pauseProducing()

    def _ready(self, result, slot):
        slot[0] = self._failureFrame(result) if isinstance(result, Failure) else result
        if slot[1] is not None:
            self._pending[slot[1]] -= 1
            slot[1] = None
        self._drain()
        if not self.paused or self._closing or self._pending["ordered"]:
            return
        if self._held is not None:
            if self._pending["overlapping"]:
                return
            held, self._held = self._held, None
            self._request(*held)
            if self._pending["ordered"] or self._held is not None:
                return
        if self._pending["overlapping"] < _MAX_OVERLAPPING:
            self.resumeProducing()

    def _drain(self):
        while self._responses and not isinstance(self._responses[0][0], Deferred):
            frame = self._responses.popleft()[0]
            self._send(frame)
            if isinstance(frame, _Closing):
                self._closeAfterWriting()
                return
        if self._leaving and not self._closing and not self._responses and self._held is None:
            self._closeAfterWriting()

    def _failureFrame(self, failure):
        if failure.check(ChatError):
            error = failure.value
            return self._error(error.status, error.message,
                                         getattr(error, "members", None))
        if failure.check(opcodes.MalformedFrame):
            return self._error(Status.ERROR, failure.getErrorMessage())
        log.failure("handling a request", failure)
        return self._error(Status.ERROR, "internal error")

    def _dispatch(self, op, payload):
        """
        Decode one request, call the core, and return the response frame (or a
        L{Deferred} of it).
        """
        if op == Op.HELLO:
            name = self.session.hello(opcodes.decodeHello(payload))
            return opcodes.okResponse(op, name or "")
        handler = self._handlers.get(op)
        if handler is None:
            raise opcodes.MalformedFrame("unknown opcode 0x%02x" % op)
        fields = opcodes.decodeRequest(op, payload)
        result = handler(self, *fields)
        if isinstance(result, Deferred):
            return result.addCallback(self._encodeOk, op)
        return self._encodeOk(result, op)

    def _encodeOk(self, value, op):
        if isinstance(value, _Closing):
            return value
        if op in opcodes.OK_RESPONSES:
            return opcodes.okResponse(op, value)
        return opcodes.okResponse(op)

    # -- requests ---------------------------------------------------------

    def _leave(self, room):
        return self.session.leave(room).addCallback(
            lambda close: _Closing(opcodes.okResponse(Op.LEAVE)) if close else None)

    def _history(self, room, limit, before):
        budget = self.MAX_LENGTH - _HISTORY_FRAME_OVERHEAD
        return self.session.history(room, limit, before).addCallback(self._fitHistory, budget)

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

    _handlers = {
        Op.NICK: lambda self, name: self.session.nick(name),
        Op.LIST_USERS: lambda self, room: self.session.listUsers(room),
        Op.LIST_ROOMS: lambda self: self.session.listRooms(),
        Op.CREATE: lambda self, room, password: self.session.create(room, password),
        Op.JOIN: lambda self, room, password: self.session.join(room, password),
        Op.LEAVE: _leave,
        Op.ROOM_MSG: lambda self, room, envelope: self.session.roomMessage(room, envelope),
        Op.DM: lambda self, user, envelope: self.session.directMessage(user, envelope),
        Op.HISTORY: _history,
        Op.REGISTER: lambda self, user, password, key, invite=None: self.session.register(
            user, password, key, invite),
        Op.LOGIN: lambda self, user, password: self.session.login(user, password),
        Op.CHALLENGE: lambda self: self.session.challenge(),
        Op.AUTH: lambda self, user, signature: self.session.auth(user, signature),
        Op.SET_KEY: lambda self, key: self.session.setKey(key),
        Op.GET_KEYS: lambda self, kind, name: self.session.getKeys(kind, name),
        Op.OFFER: lambda self, *offer: self.session.offer(*offer),
        Op.ANSWER: lambda self, tid, accept: self.session.answer(tid, accept),
        Op.CHUNK: lambda self, tid, index, data: self.session.fileChunk(tid, index, data),
        Op.ACK: lambda self, tid, index: self.session.fileAck(tid, index),
        Op.DONE: lambda self, tid: self.session.fileDone(tid),
        Op.CANCEL: lambda self, tid, reason: self.session.fileCancel(tid, reason),
    }

    # -- IChatClient --------------------------------------------------------

    def roomMessage(self, room, sender, timestamp, envelope):
        self._send(opcodes.envelopeEvent(Op.ROOM_MSG, room, sender, timestamp, envelope))

    def directMessage(self, sender, timestamp, envelope):
        self._send(opcodes.envelopeEvent(Op.DM, sender, timestamp, envelope))

    def userJoined(self, room, user, publicKey):
        self._send(opcodes.event(Op.JOINED, room, user, publicKey))

    def userLeft(self, room, user):
        self._send(opcodes.event(Op.LEFT, room, user))

    def userRenamed(self, old, new):
        self._send(opcodes.event(Op.RENAMED, old, new))

    def keyChanged(self, user, publicKey):
        self._send(opcodes.event(Op.KEY_CHANGED, user, publicKey))

    def warning(self, code, message):
        self._send(opcodes.event(Op.WARNING, code, message))

    def disconnect(self):
        self._closeAfterWriting()

    def goAway(self, code, message):
        self.warning(code, message)
        self._leaving = True
        self._drain()

    # -- IFileClient --------------------------------------------------------

    def fileOffered(self, transfer):
        offer = transfer.offer
        self._send(opcodes.event(Op.OFFERED, transfer.id, transfer.sender.user.name, offer.kind,
                                 offer.target, offer.size, offer.chunks, offer.chunkSize,
                                 offer.envelope.cutFor(self.session.user.name)))

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


class BinaryFactory(DoorFactory):
    """
    Builds a L{BinaryProtocol} per connection, all on one core.
    """

    protocol = BinaryProtocol
