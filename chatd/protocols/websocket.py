# -*- test-case-name: chatd.test.test_websocket -*-
"""
The WebSocket front door: JSON text frames at C{/ws}, served by the
same C{twisted.web} site as the browser client.

Each frame is one JSON object with a string C{"type"}. A request may carry
C{"id"}, echoed in its response (errors included); events never carry one.
Public keys are PEM, timestamps ISO 8601 UTC (C{2023-11-14T22:13:20.000Z}),
C{envelope} the envelope object of section 6. Requests and their responses::

    -> get_challenge                          <- challenge {challenge}
    -> register {userId, publicKey, password?, invite?} <- registered {userId}
    -> authenticate {userId, signature}       <- authenticated {userId}
    -> login {userId, password}               <- authenticated {userId}
    -> join {roomId?, password?, history?}    <- joined {roomId, members}
    -> switch_room {roomId, password?, history?} <- joined {roomId, members}
    -> leave {roomId}                         <- left {roomId}
    -> chat_message {roomId, envelope}        <- sent {roomId, timestamp}
    -> dm {to, envelope}                      <- sent {to, timestamp}
    -> history {roomId, limit?, before?}      <- history {roomId, messages}
    -> list_rooms                             <- rooms {rooms}
    -> list_users {roomId?}                   <- users {users}
    -> get_keys {roomId} | {userId}           <- keys {members}
    -> set_key {publicKey}                    <- key_set
    -> ping                                   <- pong
    any refused request                       <- error {code, message, members?}

Devices (protocol version 3; docs/protocol.rst, Protocol version 3: devices)
add C{device} to register (with C{list} and C{blob}), login (with
C{deviceKey}) and authenticate, and the requests get_devices, request_device,
publish_devices, approve, get_recovery, set_recovery, share_history and
reset_identity (L{chatd.protocols.jsondevicedoor}).

File transfer mirrors the binary door's (docs/protocol.rst), with the
transfer id as C{transferId} (C{id} is the request's) and chunks in base64;
every file request that succeeds is answered C{file_ok {transferId}}::

    -> file_offer {roomId | to, size, chunks, chunkSize, envelope}
    -> file_answer {transferId, accept}       (accept: true or false)
    -> file_chunk {transferId, index, data}
    -> file_ack {transferId, index}
    -> file_done {transferId}
    -> file_cancel {transferId, reason}

Events, between responses::

    <- chat_message {userId, roomId, envelope, timestamp}
    <- dm {userId, envelope, timestamp}
    <- user_joined {userId, roomId, publicKey}
    <- user_left {userId, roomId}
    <- renamed {old, new}
    <- key_changed {userId, publicKey}
    <- warning {code, message}
    <- file_offered {transferId, from, roomId | to, size, chunks, chunkSize, envelope}
    <- file_start {transferId, accepted, window}
    <- file_chunk {transferId, index, data}
    <- file_next {transferId, limit}
    <- file_done {transferId}
    <- file_cancel {transferId, reason}

Rules: until C{register}, C{authenticate} or C{login} succeeds every request
but those, C{get_challenge} and C{ping} gets C{error auth_required}; there are
no WebSocket guests. C{join} without C{roomId} joins the room named as the user.
C{switch_room} joins the new room first and only then leaves the current one
(the room last joined or switched to), so a refused switch changes nothing.
A binary frame or a malformed request gets C{error bad_request} and the
connection stays open; a message over C{max-frame} bytes gets C{error
too_large} and close code 1009, as soon as its size is known to be over,
without waiting for the rest of it.

Ordering and flow control come from L{chatd.protocols.door}: one request at a
time (messages do not overlap on this door), one response per request, in
request order, reading paused while a request waits on asynchronous work; the
replies wait in an L{Outbox} bounded by C{send-queue}.
"""

from typing import Any, Callable, Dict

from zope.interface import implementer

from chatd.core.directory import ROOM, USER
from chatd.errors import AuthRequired, BadRequest, TooLarge
from chatd.interfaces import IDeviceClient, IFileClient
from chatd.names import fold
from chatd.protocols import jsondevicedoor, jsondevices, jsonrequests, jsonwire, tuneSocket
from chatd.protocols.door import NO_CONTEXT, Door
from chatd.protocols.jsondevicedoor import JSONDevices
from chatd.protocols.jsondoor import JSONDoor, then
from chatd.protocols.moderationdoor import WEBSOCKET_HANDLERS, JSONModeration
from chatd.protocols.wsframes import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    MessageSizeGuard,
    TextFrames,
)

# Requests a session may make before it has logged in (a pending device's
# included: the core says what such a session may ask).
_BEFORE_LOGIN = frozenset({"get_challenge", "register", "authenticate", "login", "ping"}
                          ) | jsondevicedoor.WEBSOCKET_BEFORE_LOGIN

# Each message type's name in L{chatd.protocols.requests.REQUESTS}; the others
# (switch_room, ping) are the door's own.
_REQUEST_OF = {
    "get_challenge": "challenge", "register": "register", "authenticate": "auth",
    "login": "login", "join": "join", "leave": "leave", "chat_message": "room_message",
    "dm": "direct_message", "history": "history", "list_rooms": "list_rooms",
    "list_users": "list_users", "get_keys": "get_keys", "set_key": "set_key",
    "file_offer": "file_offer", "file_answer": "file_answer", "file_chunk": "file_chunk",
    "file_ack": "file_ack", "file_done": "file_done", "file_cancel": "file_cancel",
    **jsondevicedoor.WEBSOCKET_REQUESTS,
}

@implementer(IFileClient, IDeviceClient)
class WebSocketChatProtocol(JSONDevices, JSONModeration, JSONDoor, Door):
    """
    One WebSocket connection: JSON messages in, core calls, JSON messages out.

    A L{twisted.web.websocket.WebSocketProtocol}.

    @ivar activeRoom: the room C{switch_room} leaves, named as the core names
        it: the last one joined or switched to, unless left since.
    """

    door = "web"
    # One request at a time, messages included, as docs/protocol.rst promises
    # for this door: raising this lets messages overlap as on the binary door.
    maxOverlapping = 1

    def __init__(self, service, address):
        Door.__init__(self, service)
        self.address = address
        self.maxMessage = service.settings.maxFrame
        # The WebSocket transport and the size guard on its wsproto
        # connection, from negotiationStarted on.
        self.wire: Any = None
        self.guard: Any = None
        self.activeRoom = None

    # -- WebSocketProtocol ------------------------------------------------

    def negotiationStarted(self, transport):
        tuneSocket(transport)
        self.wire = transport
        self.guard = MessageSizeGuard(transport._wsconn, self.maxMessage, self.received,
                                       self._messageTooLarge, self._closeReceived)
        transport._wsconn = self.guard

    def negotiationFinished(self):
        if self.open(TextFrames(self.wire), self.address):
            self.call("hello", 1, guest=False)

    def connectionLost(self, reason):
        self.lost()

    def textMessageReceived(self, message):
        try:
            request = jsondevices.parseRequest(message)
        except jsonrequests.MalformedRequest as e:
            self.refuseInTurn(e, e.requestId)
            return
        self.submit(_REQUEST_OF.get(request.type, request.type),
                    lambda: self._dispatch(request), request.id)

    def bytesMessageReceived(self, data):
        self.refuseInTurn(BadRequest("binary frames are not understood; send JSON text"))

    def pongReceived(self, payload):
        """
        Pongs carry nothing for chatd; their bytes already reset the idle clock.
        """

    def _dispatch(self, request):
        """
        Call the core for one request and return its response (or a
        L{Deferred} of it).
        """
        # A pending device is nobody yet, but the core says what it may ask
        # (0x05 "device not approved yet" for the rest).
        if self._live.name is None and not self._live.pending \
                and request.type not in _BEFORE_LOGIN:
            raise AuthRequired("Authentication required")
        return self._handlers[request.type](self, request.id, **request.fields)

    # -- the door's hooks -------------------------------------------------

    def _encodeRefusal(self, error, requestId):
        members = getattr(error, "members", None)
        requestId = jsonwire.NO_ID if requestId is NO_CONTEXT else requestId
        return self._deviceRefusal(error, requestId) or jsonwire.error(
            error.status, error.message, members, requestId,
            guests=self._guests(members or ()), devices=self._lists(members or ()))

    def _produce(self, outbox):
        # The HTTP channel that served the upgrade is still registered as the
        # connection's producer, and a transport takes only one: without this,
        # attaching the outbox raises on a real connection.
        self.wire.detachProducer()
        self.wire.attachProducer(outbox)

    def _pauseReading(self):
        self.wire.transport.pauseProducing()

    def _resumeReading(self):
        self.wire.transport.resumeProducing()

    def _hangUp(self, code=CLOSE_NORMAL, reason=""):
        """
        Send a close frame with C{code} and C{reason}, then hang up.
        """
        self.guard.stopped = True
        self.wire.detachProducer()
        self.wire.loseConnection(code, reason)

    def _abort(self):
        self.guard.stopped = True
        self.wire.transport.abortConnection()

    def _closeRefused(self):
        self._closeAfterWriting(CLOSE_TRY_LATER)

    def _closeGoingAway(self, message):
        self._closeAfterWriting(CLOSE_GOING_AWAY, message)

    def _messageTooLarge(self):
        self._refuse(TooLarge("a message holds at most %d bytes" % (self.maxMessage,)))
        self._closeAfterWriting(CLOSE_TOO_BIG)

    def _closeReceived(self):
        """
        The client sent a close frame: Twisted answers it and hangs up, and
        nothing more may be sent, so what is queued is dropped.

        The outbox is detached before Twisted hangs up, because a TLS transport
        does not start its shutdown while a producer is registered.
        """
        self._closing = True
        assert self.outbox is not None, "a close frame before the connection opened"
        self.outbox.stopProducing()
        self.wire.detachProducer()

    # -- requests ---------------------------------------------------------

    def _getChallenge(self, requestId):
        return jsonwire.challenge(self.call("challenge"), requestId)

    def _register(self, requestId, userId, publicKey, password="", invite=None, device=None,
                  list=None, blob=b""):
        if device is not None:
            return self._devRegister(requestId, userId, publicKey, password, invite, device,
                                     list, blob)
        session = self._live
        return self.call("register", userId, password, publicKey, invite).addCallback(
            lambda _: jsonwire.registered(session.name, requestId))

    def _authenticate(self, requestId, userId, signature, device=None):
        if device is not None:
            return self._devAuth(requestId, userId, signature, device)
        session = self._live
        return self.call("auth", userId, signature).addCallback(
            lambda _: jsonwire.authenticated(session.name, requestId))

    def _login(self, requestId, userId, password, device=None, deviceKey=None):
        if device is not None:
            return self._devLogin(requestId, userId, password, device, deviceKey)
        session = self._live
        return self.call("login", userId, password).addCallback(
            lambda _: jsonwire.authenticated(session.name, requestId))

    def _join(self, requestId, roomId=None, password="", history=0):
        if roomId is None:
            roomId = self._live.name
        name = self._roomName(roomId)

        def joined(members):
            self.activeRoom = name
            return jsonwire.joined(name, members, requestId, guests=self._guests(members),
                                   devices=self._lists(members))
        return self.call("join", roomId, password, history).addCallback(joined)

    def _switchRoom(self, requestId, roomId, password="", history=0):
        name = self._roomName(roomId)

        def joined(members):
            old, self.activeRoom = self.activeRoom, name
            response = jsonwire.joined(name, members, requestId, guests=self._guests(members),
                                       devices=self._lists(members))
            if old is None:
                return response
            return self.call("leave", old).addCallback(lambda _: response)
        return self.call("join", roomId, password, history).addCallback(joined)

    def _leave(self, requestId, roomId):
        if not roomId:
            # The core reads an empty name as "every room".
            raise BadRequest("leave needs a roomId")
        name = self._roomName(roomId)

        def left(_):
            if self.activeRoom is not None and fold(roomId) == fold(self.activeRoom):
                self.activeRoom = None
            return jsonwire.left(name, requestId)
        return self.call("leave", roomId).addCallback(left)

    def _chatMessage(self, requestId, roomId, envelope):
        name = self._roomName(roomId)
        return self.call("room_message", roomId, envelope).addCallback(
            lambda timestamp: jsonwire.sentToRoom(name, timestamp, requestId))

    def _directMessage(self, requestId, to, envelope):
        name = self._userName(to)
        return then(self.call("direct_message", to, envelope),
                     lambda timestamp: jsonwire.sentToUser(name, timestamp, requestId))

    def _history(self, requestId, roomId, limit=0, before=0):
        name = self._historyName(roomId)
        return self.call("history", roomId, limit, before).addCallback(
            lambda rows: jsonwire.history(name, rows, requestId, budget=self.maxMessage))

    def _listRooms(self, requestId):
        return jsonwire.rooms(self.call("list_rooms"), requestId)

    def _listUsers(self, requestId, roomId=""):
        names = self.call("list_users", roomId)
        return jsonwire.users(names, requestId, guests=self._guests(names))

    def _getKeys(self, requestId, roomId=None, userId=None):
        kind, name = (ROOM, roomId) if roomId is not None else (USER, userId)
        return then(self.call("get_keys", kind, name),
                     lambda members: jsonwire.keys(members, requestId,
                                                   guests=self._guests(members),
                                                   devices=self._lists(members)))

    def _setKey(self, requestId, publicKey):
        return self.call("set_key", publicKey).addCallback(lambda _: jsonwire.keySet(requestId))

    def _ping(self, requestId):
        return jsonwire.pong(requestId)

    def _fileOffer(self, requestId, size, chunks, chunkSize, envelope, roomId=None, to=None):
        kind, target = (ROOM, roomId) if roomId is not None else (USER, to)
        return then(self.call("file_offer", kind, target, size, chunks, chunkSize, envelope),
                     lambda transferId: jsonwire.fileOk(transferId, requestId))

    def _fileAnswer(self, requestId, transferId, accept):
        self.call("file_answer", transferId, accept)
        return jsonwire.fileOk(transferId, requestId)

    def _fileChunk(self, requestId, transferId, index, data):
        self.call("file_chunk", transferId, index, data)
        return jsonwire.fileOk(transferId, requestId)

    def _fileAck(self, requestId, transferId, index):
        self.call("file_ack", transferId, index)
        return jsonwire.fileOk(transferId, requestId)

    def _fileDone(self, requestId, transferId):
        self.call("file_done", transferId)
        return jsonwire.fileOk(transferId, requestId)

    def _fileCancel(self, requestId, transferId, reason):
        self.call("file_cancel", transferId, reason)
        return jsonwire.fileOk(transferId, requestId)

    _handlers: Dict[str, Callable[..., Any]] = {
        "get_challenge": _getChallenge,
        "register": _register,
        "authenticate": _authenticate,
        "login": _login,
        "join": _join,
        "switch_room": _switchRoom,
        "leave": _leave,
        "chat_message": _chatMessage,
        "dm": _directMessage,
        "history": _history,
        "list_rooms": _listRooms,
        "list_users": _listUsers,
        "get_keys": _getKeys,
        "set_key": _setKey,
        "ping": _ping,
        "file_offer": _fileOffer,
        "file_answer": _fileAnswer,
        "file_chunk": _fileChunk,
        "file_ack": _fileAck,
        "file_done": _fileDone,
        "file_cancel": _fileCancel,
        **WEBSOCKET_HANDLERS,
        **jsondevicedoor.WEBSOCKET_HANDLERS,
    }

    # -- IChatClient --------------------------------------------------------

    def _event(self, obj):
        self._send(obj)

    # -- IFileClient --------------------------------------------------------

    def fileOffered(self, transfer):
        offer = transfer.offer
        self._send(jsonwire.fileOffered(
            transfer.id, transfer.sender.name, offer.kind == ROOM, offer.target, offer.size,
            offer.chunks, offer.chunkSize, offer.envelope.cutAs(self._live.entryKey)))

    def fileStarted(self, transferId, accepted, window):
        self._send(jsonwire.fileStart(transferId, accepted, window))

    def fileChunk(self, transferId, index, data):
        self._send(jsonwire.fileChunk(transferId, index, data))

    def fileNext(self, transferId, limit):
        self._send(jsonwire.fileNext(transferId, limit))

    def fileDone(self, transferId):
        self._send(jsonwire.fileDone(transferId))

    def fileCancelled(self, transferId, reason):
        self._send(jsonwire.fileCancel(transferId, reason))


def peerHost(request):
    """
    The host of the peer that sent C{request}.
    """
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))


class WebSocketChatFactory:
    """
    Builds a L{WebSocketChatProtocol} per upgraded request, all on one core.

    A L{twisted.web.websocket.WebSocketServerFactory}.

    @param addressOf: gives the client address of a request, which the core's
        per-address limits count; L{peerHost} unless the site knows better
        (see L{chatd.protocols.website.clientAddress}).
    """

    def __init__(self, service, addressOf=peerHost):
        self.service = service
        self.addressOf = addressOf

    def buildProtocol(self, request):
        return WebSocketChatProtocol(self.service, self.addressOf(request))
