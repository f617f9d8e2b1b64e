# -*- test-case-name: chatd.test.test_text -*-
"""
The text front door: UTF-8 lines, usable by hand with
C{openssl s_client} or netcat.

Lines end in LF; a CR just before it is ignored; the server ends its lines with
LF. A line holds at most C{max-frame} bytes (default 1,048,576) without its
ending; a longer one gets C{ERR::08::...} and the connection is closed.

On connect, before reading anything, the server greets with the guest name it
gave the session::

    <- OK::{"type":"welcome","name":"rand0","protocol":1}

Then every client line gets exactly one C{OK::} or C{ERR::} line, in order;
C{EVT::} lines may come in between. Arguments are separated by single spaces
and hold no whitespace::

    -> CMD::/register NAME PASSWORD KEY [INVITE]    <- OK::{"type":"registered","userId"}
    -> CMD::/login NAME PASSWORD             <- OK::{"type":"authenticated","userId"}
    -> CMD::/challenge                       <- OK::{"type":"challenge","challenge"}
    -> CMD::/auth NAME SIGNATURE             <- OK::{"type":"authenticated","userId"}
    -> CMD::/nick NAME                       <- OK::{"type":"renamed","old","new"}
    -> CMD::/key KEY                         <- OK::{"type":"key_set"}
    -> CMD::/create ROOM [PASSWORD]          <- OK::{"type":"created","roomId"}
    -> CMD::/join ROOM [PASSWORD]            <- OK::{"type":"joined","roomId","members"}
    -> CMD::/switch ROOM                     <- OK::{"type":"switched","roomId"}
    -> CMD::/leave ROOM                      <- OK::{"type":"left","roomId"}
    -> CMD::/pm USER ENVELOPE                <- OK::{"type":"sent","to","timestamp"}
    -> MSG::ENVELOPE                         <- OK::{"type":"sent","roomId","timestamp"}
    -> CMD::/history ROOM [N [BEFORE]]       <- OK::{"type":"history","roomId","messages"}
    -> CMD::/users [ROOM]                    <- OK::{"type":"users","users"}
    -> CMD::/rooms                           <- OK::{"type":"rooms","rooms"}
    -> CMD::/keys room|user NAME             <- OK::{"type":"keys","members"}
    -> CMD::/ping                            <- OK::{"type":"pong"}
    -> CMD::/help                            <- OK::{"type":"help","commands"}
    -> CMD::/exit                            <- OK::{"type":"bye"}, then the server closes

Devices (protocol version 3; docs/protocol.rst, Protocol version 3: devices):
C{/login NAME PASSWORD DEVICE KEY}, C{/auth NAME SIGNATURE DEVICE}, C{/create
ROOM [PASSWORD] [history=N]}, and the commands of
L{chatd.protocols.jsondevicedoor}: C{/register-device JSON}, C{/devices
[USER]}, C{/device-request TAG}, C{/device-publish JSON}, C{/approve DEVICE
REPLY}, C{/recovery}, C{/recovery-set BLOB}, C{/share ROOM USER JSON} and
C{/reset-identity JSON}.

KEY is base64 SubjectPublicKeyInfo DER and SIGNATURE base64; ENVELOPE is the
envelope JSON (section 6) on one line, the rest of the line for C{/pm}. BEFORE
is milliseconds or an ISO 8601 timestamp. C{/join} makes the room the active
room, C{MSG::} posts to it (its envelope must be addressed to it), C{/switch}
makes another room the session is in active, and leaving the active room
clears it.

Refusals are C{ERR::<status as two lowercase hex digits>::<message>}, for
example C{ERR::06::no such room: #x}; for status 09 the message is a JSON
object C{{"message", "members":[{"userId","publicKey"}]}} to re-encrypt for.
Events are C{EVT::} and the WebSocket door's event object: C{chat_message},
C{dm}, C{user_joined}, C{user_left}, C{renamed}, C{key_changed}, C{warning}.

Ordering and flow control come from L{chatd.protocols.door}: one line is
handled at a time (messages do not overlap on this door), the protocol stops
reading while a request waits on asynchronous work, and replies go through an
L{Outbox} bounded by C{send-queue}, past which a reader that does not read is
aborted.
"""

import re

from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.core.directory import ROOM, USER
from chatd.errors import AuthRequired, BadRequest, ChatError, Status, TooLarge
from chatd.interfaces import IChatClient, IDeviceClient
from chatd.names import fold
from chatd.protocols import DoorFactory, jsondevicedoor, jsondevices, jsonwire, tuneSocket
from chatd.protocols.door import Door, Final
from chatd.protocols.jsondevicedoor import JSONDevices
from chatd.protocols.jsondoor import JSONDoor, then
from chatd.protocols.moderationdoor import (
    TEXT_REQUESTS,
    TEXT_REST_OF_LINE,
    JSONModeration,
    textCommands,
)
from chatd.protocols.outbox import chain

# Each command's name in L{chatd.protocols.requests.REQUESTS}; the others
# (/switch, /ping, /help, /exit) are the door's own.
_REQUEST_OF = {
    "/register": "register", "/login": "login", "/challenge": "challenge", "/auth": "auth",
    "/nick": "nick", "/key": "set_key", "/create": "create", "/join": "join",
    "/leave": "leave", "/pm": "direct_message", "/history": "history",
    "/users": "list_users", "/rooms": "list_rooms", "/keys": "get_keys",
    **TEXT_REQUESTS,
    **jsondevicedoor.TEXT_REQUESTS,
}
_KINDS = {"room": ROOM, "user": USER}
# Commands whose last argument is the rest of the line, spaces and all.
_REST_OF_LINE = frozenset({"/pm"}) | TEXT_REST_OF_LINE | jsondevicedoor.TEXT_REST_OF_LINE
# More digits than any u64 has: refused before int() spends time on them.
_MAX_DIGITS = 20
# The core's refusals that name a request, in this door's words: whether the
# core names the binary request (SET_KEY) or says it in plain words (publish a
# key), a text user reads the command to type.
_OWN_WORDS = [
    (re.compile(r"\bsay hello first\b", re.I), "wait for the server's OK::welcome line"),
    (re.compile(r"\bpublish a (?:public )?key first(?: \(SET_KEY\))?"),
     "publish a public key first (CMD::/key KEY)"),
    (re.compile(r"\bjoin requests\b", re.I), "CMD::/join requests"),
    (re.compile(r"\bregister or log in\b"), "CMD::/register or CMD::/login"),
]
_HELP_HINT = "; CMD::/help lists the commands"


def ownWords(message):
    """
    A refusal of the core on one line, naming this door's commands.
    """
    message = message.replace("\r", " ").replace("\n", " ")
    for pattern, own in _OWN_WORDS:
        message = pattern.sub(own, message)
    return message


def _isWord(text):
    """
    Whether C{text} can be an argument: not empty, no whitespace.
    """
    return text.split() == [text]


def _isDecimal(text):
    """
    Whether C{text} is ASCII decimal digits (C{str.isdigit} alone takes other
    scripts' digits too).
    """
    return text.isascii() and text.isdigit()


def _count(text, what):
    """
    A whole number written in ASCII decimal digits.
    """
    if not _isDecimal(text) or len(text) > _MAX_DIGITS:
        raise BadRequest("%s must be a whole number, not %r" % (what, text[:40]))
    return int(text)


def _before(text):
    """
    A history bound written as milliseconds or as an ISO 8601 timestamp.
    """
    if _isDecimal(text):
        return jsonwire.parseBefore(_count(text, "before"))
    return jsonwire.parseTimestamp(text)


@implementer(IChatClient, IDeviceClient)
class TextProtocol(JSONDevices, JSONModeration, JSONDoor, Door, LineReceiver):
    """
    One text-protocol connection: lines in, core calls, lines out.

    @ivar activeRoom: the room C{MSG::} posts to, named as the core names it,
        or L{None}.
    """

    delimiter = b"\n"
    door = "text"
    # One request at a time, messages included, as docs/protocol.rst promises
    # for this door: raising this lets messages overlap as on the binary door.
    maxOverlapping = 1

    def __init__(self, service):
        Door.__init__(self, service)
        self.maxLine = service.settings.maxFrame
        # LineReceiver counts the CR that may precede the LF; lineReceived
        # applies the limit to the line without it.
        self.MAX_LENGTH = self.maxLine + 1
        self.activeRoom = None

    def connectionMade(self):
        tuneSocket(self.transport)
        peer = self.transport.getPeer()
        if self.open(self.transport, getattr(peer, "host", str(peer))):
            self._send(b"OK::" + jsonwire.welcome(self.call("hello", 1)))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost()

    # -- output -----------------------------------------------------------

    def _send(self, line):
        Door._send(self, chain(line, b"\n"))

    def _encodeRefusal(self, error, context):
        head = getattr(error, "head", None)
        if head is not None:
            text = jsonwire.dumps({"message": error.message,
                                   "head": jsondevices.headObject(head)})
        elif error.status == Status.STALE_RECIPIENTS:
            text = jsonwire.staleRecipients(error.message, error.members,
                                            guests=self._guests(error.members),
                                            devices=self._lists(error.members))
        else:
            text = ownWords(error.message).encode("utf-8", "backslashreplace")
        return b"ERR::%02x::%s" % (error.status, text)

    # -- input ------------------------------------------------------------

    def dataReceived(self, data):
        if data:
            self.received()
        LineReceiver.dataReceived(self, data)

    def lineLengthExceeded(self, line):
        self._tooLong()

    def _tooLong(self):
        self._refuse(TooLarge("line longer than %d bytes" % (self.maxLine,)))
        self._closeAfterWriting()

    def lineReceived(self, line):
        if self._closing or self._leaving is not None:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.maxLine:
            self._tooLong()
            return
        try:
            request, handle = self._parse(line)
        except ChatError as e:
            self.refuseInTurn(e)
            return
        self.submit(request, handle)

    def _parse(self, line):
        """
        Parse one line.

        @return: the request's name and what makes it and encodes the
            C{OK::} line of its answer.
        """
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the line is not UTF-8") from None
        if "\r" in text:
            raise BadRequest("a CR may only come just before the LF")
        if text.startswith("MSG::"):
            return "room_message", lambda: self._ok(self._roomMessage(line[5:]))
        if not text.startswith("CMD::"):
            raise BadRequest(("empty line" if not text else "a line starts with CMD:: or MSG::")
                             + _HELP_HINT)
        command = text[5:].split(" ", 1)[0]
        if not command:
            raise BadRequest("CMD:: needs a command, such as CMD::/rooms" + _HELP_HINT)
        spec = self._commands.get(command)
        if spec is None:
            raise BadRequest("unknown command %s%s" % (command[:40], _HELP_HINT))
        handler, low, high, usage, _ = spec
        rest = command in _REST_OF_LINE
        args = text[5:].split(" ", high if rest else -1)[1:]
        words = args[:-1] if rest else args
        if not low <= len(args) <= high or not all(args) or not all(map(_isWord, words)):
            raise BadRequest("usage: %s" % (usage,))
        return _REQUEST_OF.get(command, command), lambda: self._ok(handler(self, *args))

    @staticmethod
    def _ok(payload):
        """
        The C{OK::} line of an answer, now or once its L{Deferred} fires.
        """
        return then(payload, lambda payload: (
            Final(b"OK::" + payload.frame) if isinstance(payload, Final) else b"OK::" + payload))

    # -- commands ---------------------------------------------------------

    def _register(self, name, password, key, invite=None):
        der = jsonwire.decodeBase64(key, "the public key")
        session = self._live
        return self.call("register", name, password, der, invite).addCallback(
            lambda _: jsonwire.registered(session.name))

    def _login(self, name, password, device=None, key=None):
        if key is None and device is not None:
            raise BadRequest("usage: /login NAME PASSWORD [DEVICE KEY]")
        if device is not None:
            return self._devLogin(jsonwire.NO_ID, name, password, device,
                                  jsonwire.decodeBase64(key, "the device key"))
        session = self._live
        return self.call("login", name, password).addCallback(
            lambda _: jsonwire.authenticated(session.name))

    def _challenge(self):
        return jsonwire.challenge(self.call("challenge"))

    def _auth(self, name, signature, device=None):
        signature = jsonwire.decodeBase64(signature, "the signature")
        if device is not None:
            return self._devAuth(jsonwire.NO_ID, name, signature, device)
        session = self._live
        return self.call("auth", name, signature).addCallback(
            lambda _: jsonwire.authenticated(session.name))

    def _nick(self, name):
        old = self._live.name
        return self.call("nick", name).addCallback(
            lambda new: jsonwire.renamed(old, new, guest=self._isGuest(new)))

    def _key(self, key):
        der = jsonwire.decodeBase64(key, "the public key")
        return self.call("set_key", der).addCallback(lambda _: jsonwire.keySet())

    def _create(self, room, *rest):
        history = 0
        if rest and rest[-1].startswith("history="):
            history = _count(rest[-1][len("history="):], "history")
            rest = rest[:-1]
        if len(rest) > 1:
            raise BadRequest("usage: /create ROOM [PASSWORD] [history=N]")
        password = rest[0] if rest else ""
        return self.call("create", room, password, history).addCallback(
            lambda _: jsonwire.created(room))

    def _join(self, room, password=""):
        name = self._roomName(room)

        def joined(members):
            self.activeRoom = name
            return jsonwire.joined(name, members, guests=self._guests(members),
                                   devices=self._lists(members))
        return self.call("join", room, password).addCallback(joined)

    def _switch(self, room):
        if self._live.name is None:
            raise AuthRequired("authentication required: register or log in first")
        member = self._live.isMember(room)
        name = self._live.roomSpelling(room)
        if not member:
            raise BadRequest("not a member of %s; /join it first" % (name,))
        self.activeRoom = name
        return jsonwire.switched(name)

    def _leave(self, room):
        name = self._roomName(room)

        def left(_):
            if self.activeRoom is not None and fold(room) == fold(self.activeRoom):
                self.activeRoom = None
            return jsonwire.left(name)
        return self.call("leave", room).addCallback(left)

    def _directMessage(self, user, envelope):
        name = self._userName(user)
        return then(self.call("direct_message", user, envelope.encode("utf-8")),
                     lambda timestamp: jsonwire.sentToUser(name, timestamp))

    def _roomMessage(self, envelope):
        room = self.activeRoom
        if room is None:
            raise BadRequest("no active room: /join or /switch to one first")
        return self.call("room_message", room, envelope).addCallback(
            lambda timestamp: jsonwire.sentToRoom(room, timestamp))

    def _history(self, room, limit="0", before="0"):
        limit = _count(limit, "the number of messages")
        before = _before(before)
        budget = self.maxLine - len(b"OK::")
        name = self._historyName(room)
        return self.call("history", room, limit, before).addCallback(
            lambda rows: jsonwire.history(name, rows, budget=budget))

    def _users(self, room=""):
        names = self.call("list_users", room)
        return jsonwire.users(names, guests=self._guests(names))

    def _rooms(self):
        return jsonwire.rooms(self.call("list_rooms"))

    def _keys(self, kind, name):
        if kind not in _KINDS:
            raise BadRequest("usage: /keys room|user NAME")
        return then(self.call("get_keys", _KINDS[kind], name),
                    lambda members: jsonwire.keys(members, guests=self._guests(members),
                                                  devices=self._lists(members)))

    def _ping(self):
        return jsonwire.pong()

    def _exit(self):
        return Final(jsonwire.bye())

    def _help(self):
        commands = [{"usage": "CMD::" + usage, "what": what}
                    for usage, what in (spec[3:] for spec in self._commands.values())]
        commands.append({"usage": "MSG::ENVELOPE",
                         "what": "post an envelope (JSON, one line) to the active room"})
        return jsonwire.commandList(commands)

    # Each command: handler, fewest and most arguments, usage, what it does
    # (for /help).
    _commands = {
        "/register": (_register, 3, 4, "/register NAME PASSWORD KEY [INVITE]",
                      "create an account; KEY is base64 SubjectPublicKeyInfo DER, INVITE "
                      "the token a server with --registration invite needs"),
        "/login": (_login, 2, 4, "/login NAME PASSWORD [DEVICE KEY]",
                   "log in with a password (as a device: KEY base64 SPKI DER)"),
        "/challenge": (_challenge, 0, 0, "/challenge", "get a challenge to sign for /auth"),
        "/auth": (_auth, 2, 3, "/auth NAME SIGNATURE [DEVICE]",
                  "log in with the base64 signature of the challenge"),
        "/nick": (_nick, 1, 1, "/nick NAME", "take another guest name"),
        "/key": (_key, 1, 1, "/key KEY", "publish your public key (base64 DER)"),
        "/create": (_create, 1, 3, "/create ROOM [PASSWORD] [history=N]",
                    "create a room; N latest messages may be shared with new members"),
        "/join": (_join, 1, 2, "/join ROOM [PASSWORD]",
                  "join a room (created if need be); it becomes the active room"),
        "/switch": (_switch, 1, 1, "/switch ROOM", "make another of your rooms the active one"),
        "/leave": (_leave, 1, 1, "/leave ROOM", "leave a room"),
        "/pm": (_directMessage, 2, 2, "/pm USER ENVELOPE",
                "send USER an envelope (JSON, the rest of the line)"),
        "/history": (_history, 1, 3, "/history ROOM [N [BEFORE]]",
                     "a room's last N messages, before BEFORE (ms or ISO 8601)"),
        "/users": (_users, 0, 1, "/users [ROOM]", "who is online, or in ROOM"),
        "/rooms": (_rooms, 0, 0, "/rooms", "list the rooms"),
        "/keys": (_keys, 2, 2, "/keys room|user NAME", "the public keys of a room or a user"),
        "/ping": (_ping, 0, 0, "/ping", "answered with pong"),
        "/help": (_help, 0, 0, "/help", "this list"),
        "/exit": (_exit, 0, 0, "/exit", "say goodbye; the server closes the connection"),
        **textCommands(),
        **jsondevicedoor.textCommands(),
    }

    # -- IChatClient --------------------------------------------------------

    def _event(self, obj):
        self._send(chain(b"EVT::", obj))


class TextFactory(DoorFactory):
    """
    Builds a L{TextProtocol} per connection, all on one core.
    """

    protocol = TextProtocol
