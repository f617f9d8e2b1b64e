"""
Tests for L{chatd.protocols.opcodes}, the binary protocol's sans-IO codec.

The expected layouts and byte strings below are transcribed from the design's
section 2 (frames, field types, requests, responses, events) and section 5
(file-transfer opcodes 0x50-0x58), not derived from the module under test, so a
layout that drifts from the design fails here even when encoder and decoder agree.
"""

import struct
from functools import partial
from typing import Any, Callable, Dict, List, Tuple

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd.protocols import layouts, opcodes
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import (
    EVENTS,
    GREETING,
    KIND_ROOM,
    KIND_USER,
    OK_RESPONSES,
    REQUESTS,
    WARNING_IDLE,
    BadMagic,
    Op,
)

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)

# Response statuses (section 2); 0x03 is not one.
OK, ERROR, RATE_LIMITED, AUTH_REQUIRED, FORBIDDEN, NOT_FOUND, CONFLICT, TOO_LARGE = (
    0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08)
STALE = 0x09
MESSAGE_STATUSES = (ERROR, RATE_LIMITED, AUTH_REQUIRED, FORBIDDEN, NOT_FOUND,
                    CONFLICT, TOO_LARGE)


def wire(op, payload=b""):
    """
    A whole frame built independently of the codec: the Int32 length prefix
    (counting magic, opcode and payload), the magic, the opcode and the payload.
    """
    return struct.pack("!I", 3 + len(payload)) + b"\x04\x17" + bytes([op]) + payload


# -- the design, transcribed ------------------------------------------------

SPEC_REQUESTS = {
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

SPEC_OK_RESPONSES = {
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

SPEC_EVENTS = {
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

# -- representative values, one row per opcode -------------------------------

KEY = b"\x30\x82\x01\xa2\x30\x0d" + bytes(range(40))
ENVELOPE = b'{"v": 1, "id": "q83vEjRWeJA", "to": {"room": "#rebels"}}'
TS = 1700000000123  # 00 00 01 8b cf e5 68 7b

REQUEST_VALUES: Dict[Op, tuple] = {
    Op.HEARTBEAT: ("stayin alive...",),
    Op.NICK: ("Luke_Skywalker",),
    Op.LIST_USERS: ("#cantina",),
    Op.LIST_ROOMS: (),
    Op.CREATE: ("#rebels", "hoth"),
    Op.JOIN: ("#g\u00e9n\u00e9ral", ""),
    Op.LEAVE: ("",),
    Op.ROOM_MSG: ("#rebels", ENVELOPE),
    Op.DM: ("leia", b"\x00\xff" * 3),
    Op.HISTORY: ("#rebels", 500, TS),
    Op.REGISTER: ("han.solo", "kessel-run-12", KEY),
    Op.LOGIN: ("han.solo", "p\u00e4ssw\u00f6rd \u2713"),
    Op.CHALLENGE: (),
    Op.AUTH: ("han.solo", bytes(range(256))),
    Op.SET_KEY: (KEY,),
    Op.GET_KEYS: (KIND_USER, "chewie"),
    Op.OFFER: (KIND_ROOM, "#rebels", 10_000_000, 153, 65536, ENVELOPE),
    Op.ANSWER: (7, 1),
    Op.CHUNK: (7, 152, b"\xde\xad" * 8),
    Op.ACK: (7, 152),
    Op.DONE: (7,),
    Op.CANCEL: (7, "d\u00e9clin\u00e9 \u2014 user left"),
    Op.KICK: ("#rebels", "jabba", "no bounty hunters"),
    Op.BAN: ("#rebels", "boba", ""),
    Op.UNBAN: ("#rebels", "boba"),
    Op.SET_ROLE: ("#rebels", "leia", 2),
    Op.SET_TOPIC: ("#rebels", "Hoth \u2744 base"),
    Op.SET_PASSWORD: ("#rebels", ""),
    Op.DESTROY: ("#alderaan",),
    Op.ROOM_INFO: ("#rebels",),
}

EVENT_VALUES: Dict[Op, tuple] = {
    Op.ROOM_MSG: ("#rebels", "leia", TS, ENVELOPE),
    Op.DM: ("leia", 2 ** 64 - 1, b"{}"),
    Op.JOINED: ("#rebels", "chewie", KEY),
    Op.LEFT: ("#rebels", "chewie"),
    Op.RENAMED: ("rand0", "Rey"),
    Op.WARNING: (WARNING_IDLE, "idle: you will be disconnected in 10 s"),
    Op.KEY_CHANGED: ("leia", KEY),
    Op.OFFERED: (9, "leia", KIND_USER, "han.solo", 0, 1, 1, b"{}"),
    Op.START: (9, 3, 8),
    Op.CHUNK: (9, 0, b""),
    Op.NEXT: (9, 7),
    Op.DONE: (9,),
    Op.CANCEL: (9, "offer expired"),
    Op.KICKED: ("#rebels", "jabba", "leia", 1, ""),
    Op.TOPIC: ("#rebels", "leia", "Hoth \u2744 base"),
    Op.ROLE: ("#rebels", "han.solo", "leia", 0),
    Op.DESTROYED: ("#alderaan", "tarkin"),
}

OK_VALUES: Dict[Op, tuple] = {
    Op.HELLO: ("rand0",),
    Op.NICK: ("Rey",),
    Op.LIST_USERS: (["Rey", "leia", "rand3", "\u00e9t\u00e9"],),
    Op.LIST_ROOMS: ([],),
    Op.JOIN: ([("han.solo", KEY), ("leia", b"\x30")],),
    Op.ROOM_MSG: (TS,),
    Op.DM: (0,),
    Op.HISTORY: ([("leia", 1, b'{"a": 1}'), ("han.solo", 2, b"")],),
    Op.CHALLENGE: (bytes(range(32)),),
    Op.GET_KEYS: ([("chewie", KEY)],),
    Op.OFFER: (0xFFFFFFFF,),
    Op.ROOM_INFO: ("", ["leia"], [], ["boba", "jabba"]),
}

STALE_MEMBERS = [("alice", b"\x30\x82"), ("bob", b"K")]


def extreme(kind, big):
    """
    A value of C{kind} at the bottom (zero, empty) or top (largest integer,
    longest string or list the length prefix allows, or a long one) of its range.
    """
    if not big:
        return {"u8": 0, "u16": 0, "u32": 0, "u64": 0, "str8": "", "str16": "",
                "bytes16": b"", "bytes32": b"", "names": [], "keys": [],
                "history": []}[kind]
    return {
        "u8": 0xFF,
        "u16": 0xFFFF,
        "u32": 0xFFFFFFFF,
        "u64": 0xFFFFFFFFFFFFFFFF,
        "str8": "\u00e9" * 127 + "z",             # 255 UTF-8 bytes
        "str16": "\u20ac" * 21845,                # 65535 UTF-8 bytes
        "bytes16": b"\xab" * 0xFFFF,
        "bytes32": b"\xcd" * 0x10001,             # needs more than 16 bits
        "names": ["n%d" % i for i in range(300)],  # count above 255
        "keys": [("u%d" % i, b"k") for i in range(300)],
        "history": [("u%d" % i, 2 ** 64 - 1 - i, b"e") for i in range(300)],
    }[kind]


def label(direction, op):
    """
    A readable name for an opcode in a failure message.
    """
    name = "KEY_CHANGED" if direction == "event" and op == Op.KEY_CHANGED else Op(op).name
    return "%s %s (0x%02x)" % (direction, name, op)


def splitFrame(data):
    """
    Check a whole frame's Int32 length prefix and return its body.
    """
    (length,) = struct.unpack("!I", data[:4])
    assert length == len(data) - 4, (length, len(data))
    return data[4:]


# Every (description, decoder, a valid payload, the values it decodes to), for
# the truncation, trailing-byte and fuzzing tests.
def validPayloads():
    cases: List[Tuple[str, Callable[[bytes], Any], bytes, Any]] = []
    for op, values in REQUEST_VALUES.items():
        payload = layouts.encode(REQUESTS[op], values)
        cases.append((label("request", op), partial(opcodes.decodeRequest, op),
                      payload, values))
    for op, values in EVENT_VALUES.items():
        payload = layouts.encode(EVENTS[op], values)
        cases.append((label("event", op), partial(opcodes.decodeEvent, op),
                      payload, values))
    for op, values in OK_VALUES.items():
        payload = b"\x00" + layouts.encode(OK_RESPONSES[op], values)
        cases.append((label("ok response to", op), partial(opcodes.decodeResponse, op),
                      payload, (OK, values)))
    for status in MESSAGE_STATUSES:
        payload = bytes([status]) + b"\x00\x05oops!"
        cases.append(("error response 0x%02x" % status,
                      lambda p: opcodes.decodeResponse(Op.JOIN, p),
                      payload, (status, ("oops!",))))
    cases.append(("stale response 0x09", lambda p: opcodes.decodeResponse(Op.ROOM_MSG, p),
                  splitFrame(opcodes.errorResponse(STALE, "stale", STALE_MEMBERS))[3:],
                  (STALE, (STALE_MEMBERS,))))
    return cases


VALID_PAYLOADS = validPayloads()


class SpecTests(SynchronousTestCase):
    """
    The codec's constants and layout tables match the design.
    """

    def test_constants(self):
        """The magic, greeting and the two fixed opcodes are the design's bytes."""
        self.assertEqual(opcodes.MAGIC, b"\x04\x17")
        self.assertEqual(GREETING, b"A long time ago in a galaxy far, far away....")
        self.assertEqual(len(GREETING), 45)
        self.assertEqual(Op.RESPONSE, 0x9A)
        self.assertEqual(Op.HELLO, 0x9B)
        self.assertEqual(WARNING_IDLE, 0x03)
        self.assertEqual((KIND_ROOM, KIND_USER), (0, 1))

    def test_opcodeNumbers(self):
        """Every opcode has the number sections 2 and 5 give it."""
        expected = {
            "HELLO": 0x9B, "HEARTBEAT": 0x13, "NICK": 0x0F, "LIST_USERS": 0x0C,
            "LIST_ROOMS": 0x09, "CREATE": 0x31, "JOIN": 0x03, "LEAVE": 0x06,
            "ROOM_MSG": 0x15, "DM": 0x12, "HISTORY": 0x30, "REGISTER": 0x20,
            "LOGIN": 0x21, "CHALLENGE": 0x22, "AUTH": 0x23, "SET_KEY": 0x81,
            "GET_KEYS": 0x83, "JOINED": 0x40, "LEFT": 0x41, "RENAMED": 0x42,
            "WARNING": 0x43, "KEY_CHANGED": 0x81, "OFFER": 0x50, "OFFERED": 0x51,
            "ANSWER": 0x52, "START": 0x53, "CHUNK": 0x54, "ACK": 0x55, "NEXT": 0x56,
            "DONE": 0x57, "CANCEL": 0x58, "RESPONSE": 0x9A,
            "KICKED": 0x44, "TOPIC": 0x45, "ROLE": 0x46, "DESTROYED": 0x47,
            "KICK": 0x60, "BAN": 0x61, "UNBAN": 0x62, "SET_ROLE": 0x63,
            "SET_TOPIC": 0x64, "SET_PASSWORD": 0x65, "DESTROY": 0x66, "ROOM_INFO": 0x67,
        }
        self.assertEqual({name: getattr(Op, name) for name in expected}, expected)

    def test_requestLayouts(self):
        """REQUESTS lists exactly the design's requests (HELLO aside) with their payloads."""
        self.assertEqual(dict(REQUESTS), SPEC_REQUESTS)

    def test_okResponseLayouts(self):
        """OK_RESPONSES lists exactly the design's non-empty ok payloads."""
        self.assertEqual(dict(OK_RESPONSES), SPEC_OK_RESPONSES)

    def test_versionTwoJoin(self):
        """
        A session that said version 2 gets JOIN's member list with each
        member's flags, then the room's topic; version 1 gets the list alone,
        as before.
        """
        members = [("leia", KEY, opcodes.GUEST)]
        two = opcodes.okResponse(Op.JOIN, members, "Hoth", version=2)
        self.assertEqual(two, wire(0x9A, b"\x00\x00\x01\x04leia" + len(KEY).to_bytes(2, "big") + KEY
                                   + b"\x01" + b"\x00\x04Hoth"))
        self.assertEqual(opcodes.decodeResponse(Op.JOIN, two[7:], version=2),
                         (OK, (members, "Hoth")))
        self.assertEqual(opcodes.okResponse(Op.JOIN, [("leia", KEY)]),
                         wire(0x9A, b"\x00" + layouts.encode(("keys",), ([("leia", KEY)],))))

    def test_versionTwoFlagsGuests(self):
        """
        Version 2 puts a user's flags after each user of LIST_USERS and
        GET_KEYS and a 0x09 refusal, and last in JOINED, RENAMED and
        KEY_CHANGED; version 1's layouts are unchanged.
        """
        users = opcodes.okResponse(Op.LIST_USERS, [("leia", 0), ("rand1", 1)], version=2)
        self.assertEqual(users, wire(0x9A, b"\x00\x00\x02\x04leia\x00\x05rand1\x01"))
        self.assertEqual(opcodes.decodeResponse(Op.LIST_USERS, users[7:], version=2),
                         (OK, ([("leia", 0), ("rand1", 1)],)))
        members = [("rand1", KEY, 1)]
        for built in (opcodes.okResponse(Op.GET_KEYS, members, version=2),
                      opcodes.errorResponse(STALE, "", members, version=2)):
            keyField = len(KEY).to_bytes(2, "big") + KEY
            self.assertTrue(built.endswith(b"\x00\x01\x05rand1" + keyField + b"\x01"))
            self.assertEqual(opcodes.decodeResponse(Op.GET_KEYS, built[7:], version=2)[1],
                             (members,))
        for op, values in [(Op.JOINED, ("#a", "rand1", KEY)), (Op.RENAMED, ("rand1", "luke")),
                           (Op.KEY_CHANGED, ("rand1", KEY))]:
            two = opcodes.event(op, *values, 1, version=2)
            self.assertEqual(two, wire(op, layouts.encode(EVENTS[op], values) + b"\x01"))
            self.assertEqual(opcodes.decodeEvent(op, two[7:], version=2), values + (1,))
            self.assertEqual(opcodes.decodeEvent(op, opcodes.event(op, *values)[7:]), values)

    def test_eventLayouts(self):
        """EVENTS lists exactly the design's events with their payloads."""
        self.assertEqual(dict(EVENTS), SPEC_EVENTS)

    def test_valueTablesCoverEveryOpcode(self):
        """This module's value tables have a row for every opcode of each table."""
        self.assertEqual(set(REQUEST_VALUES), set(REQUESTS))
        self.assertEqual(set(EVENT_VALUES), set(EVENTS))
        self.assertEqual(set(OK_VALUES), set(OK_RESPONSES))


class RoundTripTests(SynchronousTestCase):
    """
    What the encoders write, the decoders read back unchanged.
    """

    def checkFrame(self, data, op, what):
        """
        Check a whole frame's prefix, magic and opcode and return its payload.
        """
        (length,) = struct.unpack("!I", data[:4])
        self.assertEqual(length, len(data) - 4, "%s: length prefix" % (what,))
        parsedOp, payload = opcodes.parseBody(data[4:])
        self.assertEqual(parsedOp, op, "%s: opcode" % (what,))
        self.assertEqual(data[4:7], b"\x04\x17" + bytes([op]), what)
        return payload

    def assertRoundTrips(self, table, values, encoder, decoder, direction):
        """
        Encode every row of C{values}, decode it back and list every opcode
        whose values differ.
        """
        failures = []
        for op in table:
            what = label(direction, op)
            for row in values(op):
                payload = self.checkFrame(encoder(op, *row), op, what)
                decoded = decoder(op, payload)
                if decoded != tuple(row):
                    failures.append("%s: %r != %r" % (what, decoded[:3], tuple(row)[:3]))
        self.assertEqual(failures, [])

    def rows(self, table, examples):
        return lambda op: [examples[op],
                           tuple(extreme(kind, False) for kind in table[op]),
                           tuple(extreme(kind, True) for kind in table[op])]

    def test_requests(self):
        """
        Every request in REQUESTS survives request(), parseBody and decodeRequest, at typical, zero
        and maximal values.
        """
        self.assertRoundTrips(REQUESTS, self.rows(REQUESTS, REQUEST_VALUES),
                              opcodes.request, opcodes.decodeRequest, "request")

    def test_events(self):
        """
        Every event in EVENTS survives event(), parseBody and decodeEvent, at typical, zero and
        maximal values.
        """
        self.assertRoundTrips(EVENTS, self.rows(EVENTS, EVENT_VALUES),
                              opcodes.event, opcodes.decodeEvent, "event")

    def test_okResponses(self):
        """Every OK_RESPONSES layout survives okResponse() and decodeResponse with status 0x00."""
        failures = []
        for op in OK_RESPONSES:
            what = label("ok response to", op)
            for row in self.rows(OK_RESPONSES, OK_VALUES)(op):
                payload = self.checkFrame(opcodes.okResponse(op, *row), Op.RESPONSE, what)
                self.assertEqual(payload[:1], b"\x00", what)
                decoded = opcodes.decodeResponse(op, payload)
                if decoded != (OK, tuple(row)):
                    failures.append("%s: %r" % (what, decoded[1][:1]))
        self.assertEqual(failures, [])

    def test_emptyOkResponses(self):
        """
        A request without a listed ok payload is answered by the bare status byte, decoded as no
        values.
        """
        for op in sorted(set(REQUESTS) - set(OK_RESPONSES)):
            frame = opcodes.okResponse(op)
            self.assertEqual(frame, wire(0x9A, b"\x00"), label("request", op))
            self.assertEqual(opcodes.decodeResponse(op, b"\x00"), (OK, ()),
                             label("request", op))

    def test_errorResponses(self):
        """Each refusal status carries a str16 message, UTF-8 and empty ones included."""
        for status in MESSAGE_STATUSES:
            for message in ["", "not a member of #rebels", "\u00e9\u2713\U0001f600",
                            "x" * 0xFFFF]:
                payload = splitFrame(opcodes.errorResponse(status, message))[3:]
                data = message.encode("utf-8")
                self.assertEqual(payload, bytes([status]) + struct.pack("!H", len(data)) + data)
                for op in (Op.JOIN, Op.HELLO, Op.CREATE):
                    self.assertEqual(opcodes.decodeResponse(op, payload),
                                     (status, (message,)), "status 0x%02x" % status)

    def test_staleResponse(self):
        """
        Status 0x09 carries the current members and keys, whatever the message, even when the list
        is empty.
        """
        for members in (STALE_MEMBERS, [], extreme("keys", True)):
            payload = splitFrame(opcodes.errorResponse(STALE, "ignored", members))[3:]
            self.assertEqual(payload[:1], b"\x09")
            for op in (Op.ROOM_MSG, Op.DM, Op.OFFER):
                self.assertEqual(opcodes.decodeResponse(op, payload), (STALE, (members,)))

    def test_helloWithoutVersion(self):
        """HELLO without a version byte is the bare greeting and asks for version 1."""
        data = opcodes.request(Op.HELLO)
        self.assertEqual(opcodes.encodeHello(), GREETING)
        op, payload = opcodes.parseBody(splitFrame(data))
        self.assertEqual((op, payload), (Op.HELLO, GREETING))
        self.assertEqual(opcodes.decodeHello(payload), 1)

    def test_helloWithVersion(self):
        """HELLO with a version byte asks for that version, whichever it is."""
        for version in (1, 2, 0, 255):
            data = opcodes.request(Op.HELLO, version)
            op, payload = opcodes.parseBody(splitFrame(data))
            self.assertEqual(payload, GREETING + bytes([version]))
            self.assertEqual(opcodes.decodeHello(payload), version)

    def test_parseBody(self):
        """parseBody splits a body into its opcode and the rest, an empty payload included."""
        self.assertEqual(opcodes.parseBody(b"\x04\x17\x09"), (0x09, b""))
        self.assertEqual(opcodes.parseBody(b"\x04\x17\x03\x01a\x00"), (0x03, b"\x01a\x00"))
        self.assertEqual(opcodes.parseBody(b"\x04\x17\x9a\x00"), (0x9A, b"\x00"))

    def test_frame(self):
        """frame() prefixes magic, opcode and payload with their length, not its own."""
        self.assertEqual(opcodes.frame(0x22), b"\x00\x00\x00\x03\x04\x17\x22")
        self.assertEqual(opcodes.frame(0x13, b"\x00"), b"\x00\x00\x00\x04\x04\x17\x13\x00")
        self.assertEqual(opcodes.frame(0x15, b"x" * 300), wire(0x15, b"x" * 300))

    @DETERMINISTIC
    @given(st.one_of(st.text(max_size=255),
                     st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
                             max_size=255))
           .map(lambda s: s.encode("utf-8")[:255].decode("utf-8", "ignore")))
    @example("")
    @example("\u00e9" * 127 + "z")
    @example("\U0001f600" * 63 + "abc")
    @example("\x00\n\u2028")
    def test_str8Property(self, text):
        """
        Any text of at most 255 UTF-8 bytes, non-ASCII included, round-trips as str8 and as a NICK.
        """
        data = text.encode("utf-8")
        self.assertLessEqual(len(data), 255)
        encoded = layouts.encode(("str8",), (text,))
        self.assertEqual(encoded, bytes([len(data)]) + data)
        self.assertEqual(layouts.decode(("str8",), encoded), (text,))
        op, payload = opcodes.parseBody(splitFrame(opcodes.request(Op.NICK, text)))
        self.assertEqual(opcodes.decodeRequest(op, payload), (text,))


# Hypothesis strategies for every field type.
_str8 = st.text(max_size=40).map(lambda s: s.encode("utf-8")[:255].decode("utf-8", "ignore"))
FIELDS = {
    "u8": st.integers(0, 2 ** 8 - 1),
    "u16": st.integers(0, 2 ** 16 - 1),
    "u32": st.integers(0, 2 ** 32 - 1),
    "u64": st.integers(0, 2 ** 64 - 1),
    "str8": _str8,
    "str16": st.text(max_size=60),
    "bytes16": st.binary(max_size=60),
    "bytes32": st.binary(max_size=60),
    "names": st.lists(_str8, max_size=4),
    "keys": st.lists(st.tuples(_str8, st.binary(max_size=20)), max_size=4),
    "history": st.lists(st.tuples(_str8, st.integers(0, 2 ** 64 - 1), st.binary(max_size=20)),
                        max_size=3),
}

ALL_LAYOUTS = ([("request", op, layout) for op, layout in REQUESTS.items()]
               + [("event", op, layout) for op, layout in EVENTS.items()]
               + [("ok response to", op, layout) for op, layout in OK_RESPONSES.items()])


@st.composite
def layoutAndValues(draw):
    direction, op, layout = draw(st.sampled_from(ALL_LAYOUTS))
    return direction, op, layout, draw(st.tuples(*[FIELDS[kind] for kind in layout]))


class PropertyTests(SynchronousTestCase):
    """
    Properties over generated values and generated bytes.
    """

    @DETERMINISTIC
    @given(layoutAndValues())
    def test_anyValuesRoundTrip(self, case):
        """Generated values for every request, event and ok layout decode back to themselves."""
        direction, op, layout, values = case
        payload = layouts.encode(layout, values)
        self.assertEqual(layouts.decode(layout, payload), values, label(direction, op))

    def assertOnlyMalformed(self, payload):
        """
        Every decoder, for every opcode number, returns or raises
        L{MalformedFrame} on C{payload}.
        """
        for op in range(256):
            for name, decoder in (("decodeRequest", opcodes.decodeRequest),
                                  ("decodeEvent", opcodes.decodeEvent),
                                  ("decodeResponse", opcodes.decodeResponse)):
                try:
                    result = decoder(op, payload)
                except MalformedFrame:
                    continue
                except Exception as e:
                    self.fail("%s(0x%02x, %r) raised %r" % (name, op, payload, e))
                self.assertIsInstance(result, tuple)
        try:
            opcodes.decodeHello(payload)
        except MalformedFrame:
            pass

    @DETERMINISTIC
    @given(st.binary(max_size=80))
    @example(b"")
    @example(b"\x00")
    @example(b"\xff" * 16)
    def test_arbitraryBytes(self, payload):
        """Arbitrary bytes under every opcode decode or raise MalformedFrame, nothing else."""
        self.assertOnlyMalformed(payload)

    @DETERMINISTIC
    @given(st.sampled_from(VALID_PAYLOADS), st.data())
    def test_mutatedPayloads(self, case, data):
        """
        Valid payloads with a byte changed, inserted or removed decode or raise MalformedFrame,
        nothing else.
        """
        payload = bytearray(case[2])
        how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if how == "delete" and payload:
            del payload[data.draw(st.integers(0, len(payload) - 1))]
        elif how == "replace" and payload:
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
        else:
            payload.insert(data.draw(st.integers(0, len(payload))), data.draw(st.integers(0, 255)))
        self.assertOnlyMalformed(bytes(payload))


class ByteExactTests(SynchronousTestCase):
    """
    Representative frames compared with literal bytes written from the design.
    """

    def test_helloFrame(self):
        """HELLO is 48 bytes after the prefix, 49 with a version byte."""
        self.assertEqual(
            opcodes.request(Op.HELLO),
            struct.pack("!I", 48) + b"\x04\x17\x9b"
            + b"A long time ago in a galaxy far, far away....")
        self.assertEqual(
            opcodes.request(Op.HELLO, 1),
            struct.pack("!I", 49) + b"\x04\x17\x9b"
            + b"A long time ago in a galaxy far, far away....\x01")

    def test_joinFrame(self):
        """JOIN is a str8 room then a str8 password, an empty one being a single zero byte."""
        expected = struct.pack("!I", 13) + b"\x04\x17\x03" + b"\x08#general" + b"\x00"
        self.assertEqual(opcodes.request(Op.JOIN, "#general", ""), expected)
        self.assertEqual(wire(0x03, b"\x08#general\x00"), expected)
        self.assertEqual(opcodes.decodeRequest(*opcodes.parseBody(expected[4:])),
                         ("#general", ""))

    def test_joinFrameUtf8(self):
        """A str8 length counts UTF-8 bytes, not characters."""
        expected = (struct.pack("!I", 3 + 9 + 5) + b"\x04\x17\x03"
                    + b"\x08caf\xc3\xa9\xe2\x9c\x93" + b"\x04hoth")
        self.assertEqual(opcodes.request(Op.JOIN, "caf\u00e9\u2713", "hoth"), expected)

    def test_roomMessageEventFrame(self):
        """The ROOM_MSG event is str8 room, str8 from, u64 timestamp and bytes32 envelope."""
        expected = (struct.pack("!I", 3 + 3 + 6 + 8 + 4 + 7) + b"\x04\x17\x15"
                    + b"\x02#a" + b"\x05alice"
                    + b"\x00\x00\x01\x8b\xcf\xe5\x68\x7b"
                    + b"\x00\x00\x00\x07" + b'{"v":1}')
        self.assertEqual(opcodes.event(Op.ROOM_MSG, "#a", "alice", TS, b'{"v":1}'), expected)
        self.assertEqual(opcodes.decodeEvent(*opcodes.parseBody(expected[4:])),
                         ("#a", "alice", TS, b'{"v":1}'))

    def test_staleResponseFrame(self):
        """A 0x09 response is 9a 09, a u16 count, then str8 user and bytes16 key per member."""
        expected = (struct.pack("!I", 3 + 1 + 2 + 6 + 4 + 4 + 3) + b"\x04\x17\x9a\x09"
                    + b"\x00\x02"
                    + b"\x05alice" + b"\x00\x02\x30\x82"
                    + b"\x03bob" + b"\x00\x01K")
        self.assertEqual(opcodes.errorResponse(STALE, "stale", STALE_MEMBERS), expected)
        self.assertEqual(opcodes.decodeResponse(Op.ROOM_MSG, opcodes.parseBody(expected[4:])[1]),
                         (STALE, (STALE_MEMBERS,)))

    def test_errorResponseFrame(self):
        """An error response is 9a, the status, then a str16 message."""
        expected = struct.pack("!I", 3 + 1 + 2 + 10) + b"\x04\x17\x9a\x07" + b"\x00\x0aname taken"
        self.assertEqual(opcodes.errorResponse(CONFLICT, "name taken"), expected)

    def test_okResponseFrame(self):
        """An ok response to ROOM_MSG is 9a 00 then the u64 server timestamp."""
        expected = (struct.pack("!I", 3 + 1 + 8) + b"\x04\x17\x9a\x00"
                    + b"\x00\x00\x01\x8b\xcf\xe5\x68\x7b")
        self.assertEqual(opcodes.okResponse(Op.ROOM_MSG, TS), expected)

    def test_historyResponseFrame(self):
        """
        An ok HISTORY response is a u16 count then str8 from, u64 ts and bytes32 envelope per row.
        """
        expected = wire(0x9A, b"\x00" + b"\x00\x01" + b"\x04leia"
                        + b"\x00\x00\x00\x00\x00\x00\x00\x2a" + b"\x00\x00\x00\x02{}")
        self.assertEqual(opcodes.okResponse(Op.HISTORY, [("leia", 42, b"{}")]), expected)


class MalformedTests(SynchronousTestCase):
    """
    Payloads off their layout raise L{MalformedFrame} and nothing else.
    """

    def assertMalformed(self, what, decoder, payload):
        """
        C{decoder(payload)} raises L{MalformedFrame}; anything else fails naming C{what}.
        """
        try:
            result = decoder(payload)
        except MalformedFrame:
            return
        except Exception as e:
            self.fail("%s: %r raised %r, not MalformedFrame" % (what, payload, e))
        self.fail("%s: %r decoded to %r" % (what, payload, result))

    def test_validPayloadsDecode(self):
        """Every payload the following tests damage decodes when intact."""
        for what, decoder, payload, values in VALID_PAYLOADS:
            self.assertEqual(decoder(payload), values, what)

    def test_truncatedEverywhere(self):
        """
        Every request, event, ok, error and 0x09 payload cut short at any byte raises
        MalformedFrame.
        """
        for what, decoder, payload, _ in VALID_PAYLOADS:
            for cut in range(len(payload)):
                self.assertMalformed("%s cut to %d bytes" % (what, cut), decoder, payload[:cut])

    def test_truncatedExtremes(self):
        """
        Payloads of maximal fields cut one byte short or right after a length prefix raise
        MalformedFrame.
        """
        for direction, op, layout in ALL_LAYOUTS:
            payload = layouts.encode(layout, tuple(extreme(kind, True) for kind in layout))
            for cut in {0, 1, 2, 4, 5, len(payload) - 1}:
                if 0 <= cut < len(payload):
                    self.assertMalformed(label(direction, op),
                                         lambda p, layout=layout: layouts.decode(layout, p),
                                         payload[:cut])

    def test_trailingByte(self):
        """One byte after a complete payload raises MalformedFrame, for empty layouts too."""
        for what, decoder, payload, _ in VALID_PAYLOADS:
            self.assertMalformed(what + " + 1 byte", decoder, payload + b"\x00")
        for op in (Op.LIST_ROOMS, Op.CHALLENGE):
            self.assertMalformed(label("request", op),
                                 lambda p, op=op: opcodes.decodeRequest(op, p), b"\x00")
        for op in sorted(set(REQUESTS) - set(OK_RESPONSES)):
            self.assertMalformed(label("ok response to", op),
                                 lambda p, op=op: opcodes.decodeResponse(op, p), b"\x00\x00")

    def test_responseWithoutStatus(self):
        """An empty response payload has no status and raises MalformedFrame."""
        self.assertMalformed("empty response", lambda p: opcodes.decodeResponse(Op.JOIN, p), b"")

    def test_invalidUtf8(self):
        """Invalid UTF-8 in any str8, str16 or list entry of any layout raises MalformedFrame."""
        badSequences = [b"\xff", b"\x80", b"\xc3\x28", b"\xc0\xaf", b"\xe2\x82",
                        b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xfe"]
        textKinds = {"str8", "str16", "names", "keys", "history"}
        checked = 0
        for direction, op, layout in ALL_LAYOUTS:
            decoder = {"request": lambda p, op=op: opcodes.decodeRequest(op, p),
                       "event": lambda p, op=op: opcodes.decodeEvent(op, p),
                       "ok response to": lambda p, op=op: opcodes.decodeResponse(op, b"\x00" + p),
                       }[direction]
            values = tuple(extreme(kind, False) for kind in layout)
            for i, kind in enumerate(layout):
                if kind not in textKinds:
                    continue
                for bad in badSequences:
                    payload = (layouts.encode(layout[:i], values[:i]) + self.badField(kind, bad)
                               + layouts.encode(layout[i + 1:], values[i + 1:]))
                    self.assertMalformed("%s field %d (%s)" % (label(direction, op), i, kind),
                                         decoder, payload)
                    checked += 1
        for status in MESSAGE_STATUSES:
            for bad in badSequences:
                self.assertMalformed("error 0x%02x" % status,
                                     lambda p: opcodes.decodeResponse(Op.JOIN, p),
                                     bytes([status]) + self.badField("str16", bad))
        for bad in badSequences:
            self.assertMalformed("stale 0x09", lambda p: opcodes.decodeResponse(Op.DM, p),
                                 b"\x09" + self.badField("keys", bad))
        self.assertGreater(checked, 0)

    def badField(self, kind, bad):
        """
        A field of C{kind} whose (first) text is the invalid UTF-8 C{bad}.
        """
        str8 = bytes([len(bad)]) + bad
        return {
            "str8": str8,
            "str16": struct.pack("!H", len(bad)) + bad,
            "names": b"\x00\x02" + b"\x01a" + str8,
            "keys": b"\x00\x01" + str8 + b"\x00\x01k",
            "history": b"\x00\x01" + str8 + b"\x00" * 8 + b"\x00\x00\x00\x00",
        }[kind]

    def test_listCountTooHigh(self):
        """
        A names, keys or history list whose count promises more entries than present raises
        MalformedFrame.
        """
        cases = [
            (Op.LIST_USERS, b"\x00\x03" + b"\x01a" + b"\x01b"),
            (Op.LIST_ROOMS, b"\x00\x01"),
            (Op.LIST_ROOMS, b"\xff\xff" + b"\x01a"),
            (Op.JOIN, b"\x00\x02" + b"\x01a\x00\x01k"),
            (Op.GET_KEYS, b"\x00\x01"),
            (Op.HISTORY, b"\x00\x02" + b"\x01a" + b"\x00" * 8 + b"\x00\x00\x00\x01e"),
            (Op.HISTORY, b"\x00\x01"),
        ]
        for op, payload in cases:
            self.assertMalformed(label("ok response to", op),
                                 lambda p, op=op: opcodes.decodeResponse(op, p), b"\x00" + payload)
        self.assertMalformed("stale 0x09", lambda p: opcodes.decodeResponse(Op.DM, p),
                             b"\x09\x00\x02\x05alice\x00\x01k")

    def test_listCountTooLow(self):
        """
        A list whose count promises fewer entries than present leaves bytes over and raises
        MalformedFrame.
        """
        self.assertMalformed("names", lambda p: opcodes.decodeResponse(Op.LIST_ROOMS, p),
                             b"\x00\x00\x01\x01a\x01b")

    def test_lengthPrefixTooLong(self):
        """
        A str8, str16, bytes16 or bytes32 length beyond the payload's end raises MalformedFrame.
        """
        self.assertMalformed("str8", lambda p: opcodes.decodeRequest(Op.NICK, p), b"\x05abcd")
        self.assertMalformed("str16", lambda p: opcodes.decodeRequest(Op.CANCEL, p),
                             b"\x00\x00\x00\x01\xff\xffabc")
        self.assertMalformed("bytes16", lambda p: opcodes.decodeRequest(Op.SET_KEY, p),
                             b"\x00\x03ab")
        self.assertMalformed("bytes32", lambda p: opcodes.decodeRequest(Op.ROOM_MSG, p),
                             b"\x01r\xff\xff\xff\xffx")

    def test_unknownRequestOpcode(self):
        """
        decodeRequest refuses every opcode not in REQUESTS, HELLO and RESPONSE included, with
        MalformedFrame.
        """
        unknown = [op for op in range(256) if op not in REQUESTS]
        self.assertIn(Op.HELLO, unknown)
        self.assertIn(Op.JOINED, unknown)
        for op in unknown:
            self.assertMalformed("request 0x%02x" % op,
                                 lambda p, op=op: opcodes.decodeRequest(op, p), b"")

    def test_unknownEventOpcode(self):
        """
        decodeEvent refuses every opcode not in EVENTS, requests such as JOIN included, with
        MalformedFrame.
        """
        unknown = [op for op in range(256) if op not in EVENTS]
        self.assertIn(Op.JOIN, unknown)
        self.assertIn(Op.RESPONSE, unknown)
        for op in unknown:
            self.assertMalformed("event 0x%02x" % op,
                                 lambda p, op=op: opcodes.decodeEvent(op, p), b"")


class ParseBodyTests(SynchronousTestCase):
    """
    L{opcodes.parseBody} separates untrustworthy streams from malformed frames.
    """

    def test_badMagic(self):
        """A body not starting 04 17 raises BadMagic."""
        for body in (b"\x05\x17\x03\x00\x00", b"\x17\x04\x03", b"\x04\x18\x09",
                     b"\x00\x00\x00\x03\x04\x17\x09", b"HELLO"):
            self.assertRaises(BadMagic, opcodes.parseBody, body)

    def test_emptyAndOneByteBodies(self):
        """An empty body and any 1-byte body, even 04 alone, raise BadMagic."""
        self.assertRaises(BadMagic, opcodes.parseBody, b"")
        for byte in range(256):
            self.assertRaises(BadMagic, opcodes.parseBody, bytes([byte]))

    def test_magicOnly(self):
        """
        A body of only the magic raises MalformedFrame, not BadMagic: the connection stays open.
        """
        error = self.assertRaises(MalformedFrame, opcodes.parseBody, b"\x04\x17")
        self.assertNotIsInstance(error, BadMagic)

    def test_badMagicIsMalformed(self):
        """BadMagic is a MalformedFrame, so one handler may catch both."""
        self.assertTrue(issubclass(BadMagic, MalformedFrame))
        self.assertTrue(issubclass(MalformedFrame, ValueError))


class HelloTests(SynchronousTestCase):
    """
    L{opcodes.decodeHello} accepts the greeting and at most one version byte.
    """

    def test_wrongGreeting(self):
        """A greeting that differs in any way raises MalformedFrame."""
        for payload in (b"", b"A long time ago in a galaxy far, far away...",
                        b"a long time ago in a galaxy far, far away....",
                        b"A long time ago in a galaxy far far away....",
                        b" " + GREETING, b"\x01" + GREETING, GREETING[:-1] + b"!",
                        b"\x00" * 45):
            self.assertRaises(MalformedFrame, opcodes.decodeHello, payload)

    def test_truncatedGreeting(self):
        """The greeting cut short at any byte raises MalformedFrame."""
        for cut in range(len(GREETING)):
            self.assertRaises(MalformedFrame, opcodes.decodeHello, GREETING[:cut])

    def test_greetingPlusTwoBytes(self):
        """The greeting with two bytes after it raises MalformedFrame: a version is one byte."""
        for extra in (b"\x01\x01", b"\x01\x00", b"\x00\x01", b"\xff\xff"):
            self.assertRaises(MalformedFrame, opcodes.decodeHello, GREETING + extra)
        self.assertRaises(MalformedFrame, opcodes.decodeHello, GREETING + b"\x01" * 10)

    def test_helloOkResponse(self):
        """The ok answer to HELLO is the assigned guest name as a str8."""
        frame = opcodes.okResponse(Op.HELLO, "rand0")
        self.assertEqual(frame, wire(0x9A, b"\x00\x05rand0"))
        self.assertEqual(opcodes.decodeResponse(Op.HELLO, splitFrame(frame)[3:]),
                         (OK, ("rand0",)))


class EncoderRefusalTests(SynchronousTestCase):
    """
    The encoders refuse values that do not fit, with L{ValueError}.
    """

    def assertValueError(self, what, f, *args):
        """
        C{f(*args)} raises L{ValueError}; anything else fails naming C{what}.
        """
        try:
            result = f(*args)
        except ValueError:
            return
        except Exception as e:
            self.fail("%s raised %r, not ValueError" % (what, e))
        self.fail("%s encoded to %d bytes" % (what, len(result)))

    def test_str8Limit(self):
        """A str8 is limited to 255 UTF-8 bytes, not 255 characters."""
        self.assertEqual(len(opcodes.request(Op.NICK, "\u00e9" * 127 + "z")), 4 + 3 + 256)
        self.assertEqual(len(opcodes.request(Op.NICK, "z" * 255)), 4 + 3 + 256)
        for text in ("\u00e9" * 128, "\U0001f600" * 64, "z" * 256, "\u2713" * 86):
            self.assertValueError("NICK %d chars" % len(text), opcodes.request, Op.NICK, text)
            self.assertValueError("JOIN password", opcodes.request, Op.JOIN, "#a", text)
            self.assertValueError("names entry", opcodes.okResponse, Op.LIST_USERS, ["a", text])
            self.assertValueError("keys user", opcodes.okResponse, Op.JOIN, [(text, b"k")])

    def test_str16Limit(self):
        """A str16 is limited to 65535 UTF-8 bytes."""
        opcodes.request(Op.CANCEL, 1, "\u20ac" * 21845)
        self.assertValueError("CANCEL reason", opcodes.request, Op.CANCEL, 1, "\u00e9" * 32768)
        self.assertValueError("WARNING message", opcodes.event, Op.WARNING, 3, "x" * 65536)

    def test_bytes16Limit(self):
        """A bytes16 takes 65535 bytes and refuses 65536."""
        self.assertEqual(len(opcodes.request(Op.SET_KEY, b"k" * 0xFFFF)), 4 + 3 + 2 + 0xFFFF)
        self.assertValueError("SET_KEY", opcodes.request, Op.SET_KEY, b"k" * 0x10000)
        self.assertValueError("AUTH", opcodes.request, Op.AUTH, "u", b"s" * 0x10000)
        self.assertValueError("CHALLENGE ok", opcodes.okResponse, Op.CHALLENGE, b"c" * 0x10000)
        self.assertValueError("0x09 key", opcodes.errorResponse, STALE, "",
                              [("a", b"k" * 0x10000)])

    def test_wrongNumberOfValues(self):
        """encode and the frame builders refuse too few or too many values."""
        self.assertValueError("encode", layouts.encode, ("u8",), ())
        self.assertValueError("encode", layouts.encode, (), (1,))
        self.assertValueError("encode", layouts.encode, ("str8", "str8"), ("a", "b", "c"))
        self.assertValueError("JOIN", opcodes.request, Op.JOIN, "#a")
        self.assertValueError("JOIN", opcodes.request, Op.JOIN, "#a", "", "extra")
        self.assertValueError("LIST_ROOMS", opcodes.request, Op.LIST_ROOMS, "x")
        self.assertValueError("LEFT", opcodes.event, Op.LEFT, "#a")
        self.assertValueError("ROOM_MSG ok", opcodes.okResponse, Op.ROOM_MSG)
        self.assertValueError("CREATE ok", opcodes.okResponse, Op.CREATE, "x")

    def test_integerOutOfRange(self):
        """An integer outside its field's range is refused with ValueError."""
        for kind, value in [("u8", 256), ("u8", -1), ("u16", 0x10000), ("u32", 2 ** 32),
                            ("u64", 2 ** 64), ("u64", -1)]:
            self.assertValueError("%s %d" % (kind, value), layouts.encode, (kind,), (value,))
        self.assertValueError("HISTORY limit", opcodes.request, Op.HISTORY, "#a", 70000, 0)


    def test_listTooLong(self):
        """A names, keys or history list of more than 65535 entries is refused with ValueError."""
        self.assertValueError("names", opcodes.okResponse, Op.LIST_ROOMS, [""] * 0x10000)
        self.assertValueError("keys", opcodes.okResponse, Op.GET_KEYS, [("", b"")] * 0x10000)
        self.assertValueError("history", opcodes.okResponse, Op.HISTORY,
                              [("", 0, b"")] * 0x10000)


    def test_longErrorMessageTruncated(self):
        """
        An error message over 65535 UTF-8 bytes is cut on a character boundary, so it still decodes.
        """
        message = "\u00e9" * 40000  # 80000 bytes; 65535 would split a character
        payload = splitFrame(opcodes.errorResponse(ERROR, message))[3:]
        status, (decoded,) = opcodes.decodeResponse(Op.JOIN, payload)
        self.assertEqual(status, ERROR)
        self.assertTrue(message.startswith(decoded))
        self.assertLessEqual(len(decoded.encode("utf-8")), 0xFFFF)
        self.assertGreaterEqual(len(decoded.encode("utf-8")), 0xFFFF - 3)


    def test_longAsciiErrorMessageTruncated(self):
        """An ASCII error message over 65535 bytes is cut to 65535 bytes and decodes."""
        payload = splitFrame(opcodes.errorResponse(TOO_LARGE, "x" * 70000))[3:]
        self.assertEqual(opcodes.decodeResponse(Op.JOIN, payload), (TOO_LARGE, ("x" * 0xFFFF,)))
