# -*- test-case-name: chatd.test.test_opcodes -*-
"""
The binary protocol's frames, without I/O: opcodes, each one's payload layout,
encoders and decoders for both directions, shared by the server and the stdio
client.

A frame on the wire is C{uint32 length} (big-endian, counting what follows), the
magic C{04 17}, one opcode byte and the payload. Payload layouts are tuples of
the field types of L{chatd.protocols.layouts}, whose strict reader raises
L{MalformedFrame} on anything off its layout.

C{flags} say what a user is: L{GUEST} (0x01) for a name without an account;
the other bits are 0.

Protocol version 2 (said in HELLO) adds the moderation events and the topic in
JOIN's answer, and the flags that mark guests wherever a user is named with a
key or listed (JOINED, RENAMED, KEY_CHANGED, the member lists of JOIN, GET_KEYS
and a 0x09 refusal, LIST_USERS); the moderation requests are served whichever version a session
said, and a version-1 session hears of kicks, bans and destroyed rooms as
LEFT events (docs/protocol.rst, Moderation).
"""

from enum import IntEnum

from chatd.protocols.layouts import (
    _LENGTH,
    _U32,
    MalformedFrame,
    decode,
    decodeWithTail,
    encode,
)

MAGIC = b"\x04\x17"
GREETING = b"A long time ago in a galaxy far, far away...."
PROTOCOL_VERSIONS = (1, 2, 3)
MAX_FRAME_DEFAULT = 1048576


class Op(IntEnum):
    """
    Opcodes. ROOM_MSG, DM and SET_KEY/KEY_CHANGED are both a request and, with
    another payload, an event.
    """

    LIST_ROOMS = 0x09
    JOIN = 0x03
    LEAVE = 0x06
    LIST_USERS = 0x0C
    NICK = 0x0F
    DM = 0x12
    HEARTBEAT = 0x13
    ROOM_MSG = 0x15
    REGISTER = 0x20
    LOGIN = 0x21
    CHALLENGE = 0x22
    AUTH = 0x23
    HISTORY = 0x30
    CREATE = 0x31
    JOINED = 0x40
    LEFT = 0x41
    RENAMED = 0x42
    WARNING = 0x43
    KICKED = 0x44
    TOPIC = 0x45
    ROLE = 0x46
    DESTROYED = 0x47
    OFFER = 0x50
    OFFERED = 0x51
    ANSWER = 0x52
    START = 0x53
    CHUNK = 0x54
    ACK = 0x55
    NEXT = 0x56
    DONE = 0x57
    CANCEL = 0x58
    KICK = 0x60
    BAN = 0x61
    UNBAN = 0x62
    SET_ROLE = 0x63
    SET_TOPIC = 0x64
    SET_PASSWORD = 0x65
    DESTROY = 0x66
    ROOM_INFO = 0x67
    SET_KEY = 0x81
    KEY_CHANGED = 0x81
    GET_KEYS = 0x83
    RESPONSE = 0x9A
    HELLO = 0x9B


WARNING_IDLE = 0x03
STALE_RECIPIENTS = 0x09
KIND_ROOM, KIND_USER = 0, 1
# Roles in SET_ROLE and ROLE, as a u8.
ROLE_CODES = {None: 0, "operator": 1, "owner": 2}
ROLES = {code: role for role, code in ROLE_CODES.items()}

# Client -> server: the payload of each request.
REQUESTS = {
    Op.HEARTBEAT: ("str8",),
    Op.NICK: ("str8",),
    Op.LIST_USERS: ("str8",),
    Op.LIST_ROOMS: (),
    Op.CREATE: ("str8", "str8"),
    Op.JOIN: ("str8", "str8"),
    Op.LEAVE: ("str8",),
    Op.ROOM_MSG: ("str8", "bytes32"),
    Op.DM: ("str8", "bytes32"),
    Op.HISTORY: ("str8", "u16", "u64"),
    Op.REGISTER: ("str8", "str8", "bytes16"),
    Op.LOGIN: ("str8", "str8"),
    Op.CHALLENGE: (),
    Op.AUTH: ("str8", "bytes16"),
    Op.SET_KEY: ("bytes16",),
    Op.GET_KEYS: ("u8", "str8"),
    Op.OFFER: ("u8", "str8", "u64", "u32", "u32", "bytes32"),
    Op.ANSWER: ("u32", "u8"),
    Op.CHUNK: ("u32", "u32", "bytes32"),
    Op.ACK: ("u32", "u32"),
    Op.DONE: ("u32",),
    Op.CANCEL: ("u32", "str16"),
    Op.KICK: ("str8", "str8", "str16"),
    Op.BAN: ("str8", "str8", "str16"),
    Op.UNBAN: ("str8", "str8"),
    Op.SET_ROLE: ("str8", "str8", "u8"),
    Op.SET_TOPIC: ("str8", "str16"),
    Op.SET_PASSWORD: ("str8", "str8"),
    Op.DESTROY: ("str8",),
    Op.ROOM_INFO: ("str8",),
}

# The payload of a status-0x00 response, by the request it answers.
OK_RESPONSES = {
    Op.HELLO: ("str8",),
    Op.NICK: ("str8",),
    Op.LIST_USERS: ("names",),
    Op.LIST_ROOMS: ("names",),
    Op.JOIN: ("keys",),
    Op.ROOM_MSG: ("u64",),
    Op.DM: ("u64",),
    Op.HISTORY: ("history",),
    Op.CHALLENGE: ("bytes16",),
    Op.GET_KEYS: ("keys",),
    Op.OFFER: ("u32",),
    Op.ROOM_INFO: ("str16", "names", "names", "names"),
}

# Where protocol version 2 answers with more: JOIN adds the room's topic, and
# member and user lists flag guests.
OK_RESPONSES_V2 = {**OK_RESPONSES, Op.JOIN: ("members", "str16"), Op.GET_KEYS: ("members",),
                   Op.LIST_USERS: ("users",)}

# Server -> client: the payload of each event.
EVENTS = {
    Op.ROOM_MSG: ("str8", "str8", "u64", "bytes32"),
    Op.DM: ("str8", "u64", "bytes32"),
    Op.JOINED: ("str8", "str8", "bytes16"),
    Op.LEFT: ("str8", "str8"),
    Op.RENAMED: ("str8", "str8"),
    Op.WARNING: ("u8", "str16"),
    Op.KEY_CHANGED: ("str8", "bytes16"),
    Op.OFFERED: ("u32", "str8", "u8", "str8", "u64", "u32", "u32", "bytes32"),
    Op.START: ("u32", "u16", "u16"),
    Op.CHUNK: ("u32", "u32", "bytes32"),
    Op.NEXT: ("u32", "u32"),
    Op.DONE: ("u32",),
    Op.CANCEL: ("u32", "str16"),
    Op.KICKED: ("str8", "str8", "str8", "u8", "str16"),
    Op.TOPIC: ("str8", "str8", "str16"),
    Op.ROLE: ("str8", "str8", "str8", "u8"),
    Op.DESTROYED: ("str8", "str8"),
}

# The events a version-1 session is never sent.
EVENTS_V2 = frozenset({Op.KICKED, Op.TOPIC, Op.ROLE, Op.DESTROYED})

# Version 2's layouts of the events that name a user with a key: the user's flags
# come last.
EVENT_LAYOUTS_V2 = {**EVENTS, Op.JOINED: EVENTS[Op.JOINED] + ("u8",),
                    Op.RENAMED: EVENTS[Op.RENAMED] + ("u8",),
                    Op.KEY_CHANGED: EVENTS[Op.KEY_CHANGED] + ("u8",)}

# The flag bit of a guest, in C{flags}.
GUEST = 0x01


class BadMagic(MalformedFrame):
    """
    A frame body that does not start with C{04 17}: the stream cannot be trusted.
    """


def frame(op, payload=b""):
    """
    A whole frame: length prefix, magic, opcode, payload.
    """
    return _U32.pack(len(payload) + 3) + MAGIC + bytes((op,)) + payload


def parseBody(body):
    """
    Split a frame body (what follows the length prefix) into opcode and payload.

    @raise BadMagic: when the body does not start with the magic.
    @raise MalformedFrame: when the opcode is missing.
    """
    if body[:2] != MAGIC:
        raise BadMagic("frame does not start with 04 17")
    if len(body) < 3:
        raise MalformedFrame("frame has no opcode")
    return body[2], body[3:]


def decodeHello(payload):
    """
    The protocol version a HELLO asks for.

    @raise MalformedFrame: on a wrong greeting.
    """
    if payload[:len(GREETING)] != GREETING or len(payload) > len(GREETING) + 1:
        raise MalformedFrame("HELLO needs the greeting %r" % GREETING.decode())
    rest = payload[len(GREETING):]
    return rest[0] if rest else 1


def encodeHello(version=None):
    """
    The HELLO payload, naming a protocol version when one is given.
    """
    return GREETING + (b"" if version is None else bytes((version,)))


# Requests that may end with one more field, which version-1 clients do not
# send: REGISTER's invite token (docs/protocol.rst, REGISTER).
OPTIONAL_TAILS = {Op.REGISTER: "str8"}


def request(op, *values):
    """
    A whole request frame (for clients).
    """
    if op == Op.HELLO:
        return frame(op, encodeHello(*values))
    layout = REQUESTS[op]
    if op in OPTIONAL_TAILS and len(values) == len(layout) + 1:
        layout = layout + (OPTIONAL_TAILS[op],)
    return frame(op, encode(layout, values))


def _decodeBy(table, what, op, payload):
    try:
        layout = table[op]
    except KeyError:
        raise MalformedFrame("unknown %s 0x%02x" % (what, op)) from None
    tail = OPTIONAL_TAILS.get(op) if table is REQUESTS else None
    if tail is None:
        return decode(layout, payload)
    return decodeWithTail(layout, tail, payload)


def decodeRequest(op, payload):
    """
    The fields of a request (for the server).

    @raise MalformedFrame: on an unknown opcode or a payload off its layout.
    """
    return _decodeBy(REQUESTS, "opcode", op, payload)


def _events(version):
    return EVENT_LAYOUTS_V2 if version >= 2 else EVENTS


def event(op, *values, version=1):
    """
    A whole event frame (for the server), laid out for a session that said
    C{version} in HELLO.
    """
    return frame(op, encode(_events(version)[op], values))


def decodeEvent(op, payload, version=1):
    """
    The fields of an event (for clients).

    @param version: the protocol version the client said in HELLO.
    @raise MalformedFrame: on an unknown opcode or a payload off its layout.
    """
    return _decodeBy(_events(version), "event opcode", op, payload)


def response(status, payload=b""):
    """
    A whole response frame: C{0x9a}, the status byte, then the payload.
    """
    return frame(Op.RESPONSE, bytes((status,)) + payload)


def _okLayout(op, version):
    return (OK_RESPONSES_V2 if version >= 2 else OK_RESPONSES).get(op, ())


def okResponse(op, *values, version=1):
    """
    A status-0x00 response to request C{op}, its payload laid out by
    L{OK_RESPONSES} (L{OK_RESPONSES_V2} for a session that said version 2).
    """
    return response(0, encode(_okLayout(op, version), values))


def _staleLayout(version):
    return ("members",) if version >= 2 else ("keys",)


def errorResponse(status, message, members=None, version=1):
    """
    A refusal: a str16 message, or for status 0x09 the current members and keys
    (with their flags, for a session that said version 2).

    A message too long for its field is cut at a character boundary, so that the
    client can still decode it.
    """
    if status == STALE_RECIPIENTS:
        return response(status, encode(_staleLayout(version), (members,)))
    data = message.encode("utf-8")[:0xFFFF].decode("utf-8", "ignore").encode("utf-8")
    return response(status, _LENGTH["str16"].pack(len(data)) + data)


def decodeResponse(op, payload, version=1):
    """
    Split a response payload (for clients) into status and decoded fields.

    @param op: the request this response answers.
    @param version: the protocol version the client said in HELLO.
    @return: C{(status, values)}; values is a tuple of the ok payload's fields,
        C{(members,)} for status 0x09, or C{(message,)} for other refusals.
    """
    if not payload:
        raise MalformedFrame("response without a status")
    status, rest = payload[0], payload[1:]
    if status == 0:
        return status, decode(_okLayout(op, version), rest)
    if status == STALE_RECIPIENTS:
        return status, decode(_staleLayout(version), rest)
    return status, decode(("str16",), rest)
