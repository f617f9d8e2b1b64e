"""
Hostile input through every decoder and every door: whatever arrives, the
answer is a protocol error (or a valid result), never another exception, an
internal error or a dropped connection.

The binary payload decoders have their own properties in
L{chatd.test.test_opcodes} and envelopes in L{chatd.test.test_e2e}; the checks
themselves live in L{chatd.test.robustness}, shared with the atheris targets
under C{fuzz/}. Each case here is also one that a fuzzer found, kept so that it
stays fixed.
"""

import json
from typing import Dict, Optional

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd.fanout.events import EVENTS, MalformedEvent, decodeMessage, dumps, encodeValue
from chatd.protocols import jsondevices, opcodes
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import Op
from chatd.test.fakes import publicDer
from chatd.test.robustness import (
    USER,
    checkJSONRequest,
    checkPublicKey,
    runBinaryDoor,
    runRedisMessage,
    runTextDoor,
    runWebSocketDoor,
)

skipRedis: Optional[str]
try:
    from chatd.fanout.nodes import parseHash
except ImportError as e:  # the redis extra is not installed
    skipRedis = "the Redis fan-out needs txredisapi: %s" % (e,)
else:
    skipRedis = None

# Under the suite's profile (chatd/test/__init__.py: derandomized, no example
# database); few examples where each builds a core and a connection.
FEW = settings(max_examples=40)
MANY = settings(max_examples=200)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)

# A word a door may take as an argument, or anything at all.
WORD = st.sampled_from(["#room", USER, "nobody", "0", "18446744073709551616", "é", ""]) | st.text(
    max_size=12)


@st.composite
def binaryFrames(draw):
    """
    Whole frames with any opcode and payload, or raw bytes.
    """
    op = st.sampled_from(sorted(set(Op) | set(DeviceOp))) | st.integers(0, 255)
    whole = st.builds(opcodes.frame, op, st.binary(max_size=40))
    return draw(st.lists(whole | st.binary(max_size=12), min_size=1, max_size=5))


@st.composite
def textLines(draw):
    """
    Known commands with any words, C{MSG::} with any text, or any bytes.
    """
    command = st.builds(lambda name, words: " ".join(["CMD::" + name] + words),
                        st.sampled_from(sorted(_textCommands())), st.lists(WORD, max_size=4))
    line = command.map(str.encode) | st.text(max_size=30).map(
        lambda t: ("MSG::" + t).encode("utf-8", "surrogatepass")) | st.binary(max_size=30)
    return draw(st.lists(line, min_size=1, max_size=5))


def _textCommands():
    from chatd.protocols.text import TextProtocol
    return TextProtocol._commands


@st.composite
def jsonRequests(draw):
    """
    A request of a known type whose fields (its own or any type's) hold any
    JSON value.
    """
    kind = draw(st.sampled_from(sorted(jsondevices.REQUESTS)))
    names = sorted({name for spec in jsondevices.REQUESTS.values() for name in spec} | {"id"})
    fields = draw(st.dictionaries(st.sampled_from(names), JSON | WORD, max_size=4))
    return json.dumps(dict(fields, type=kind))


class BinaryDoorTests(SynchronousTestCase):
    """
    The binary door answers every frame with a frame the client decodes.
    """

    @FEW
    @given(binaryFrames(), st.booleans())
    def test_anyFrames(self, frames, account):
        """
        Any run of frames, from a guest or an account, gets decodable answers
        and no internal error.
        """
        runBinaryDoor(frames, account)

    @FEW
    @given(binaryFrames(), st.booleans())
    def test_anyFramesVersion3(self, frames, account):
        """
        The same in protocol version 3, from a guest or a device of an
        account, with the device opcodes among the frames.
        """
        runBinaryDoor(frames, account, version=3)


class TextDoorTests(SynchronousTestCase):
    """
    The text door answers every line with one C{OK::} or C{ERR::} line.
    """

    @FEW
    @given(textLines(), st.booleans())
    @example([b"CMD::/history #room 1 99999999999999999999"], True)
    def test_anyLines(self, lines, account):
        """
        Any run of lines, from a guest or an account, gets one reply each and
        no internal error.
        """
        runTextDoor(lines, account)


class WebSocketTests(SynchronousTestCase):
    """
    L{jsondevices.parseRequest} and the WebSocket door on any message.
    """

    @MANY
    @given(st.text(max_size=60) | jsonRequests())
    def test_parseRequest(self, text):
        """Any text parses to a known request or raises MalformedRequest."""
        checkJSONRequest(text)

    @FEW
    @given(st.lists(jsonRequests() | st.text(max_size=20) | st.binary(max_size=8),
                    min_size=1, max_size=4), st.booleans())
    def test_anyMessages(self, messages, account):
        """
        Any run of messages, before or after logging in, gets one JSON answer
        each on an open connection.
        """
        runWebSocketDoor(messages, account)


class PublicKeyTests(SynchronousTestCase):
    """
    Public keys from clients and other nodes.
    """

    @MANY
    @given(st.binary(max_size=300) | st.builds(
        lambda der, at, byte: der[:at] + bytes([byte]) + der[at + 1:],
        st.just(publicDer("alice")), st.integers(0, 293), st.integers(0, 255)))
    def test_anyKey(self, der):
        """Any bytes load as a key or are refused with BadRequest."""
        checkPublicKey(der)


@st.composite
def redisMessages(draw):
    """
    A message from node C{there}: any text, a C{sync} of any entries, or an
    event of a known kind whose fields hold any value.
    """
    value = JSON | st.binary(max_size=20) | st.sampled_from([USER, "#room"])
    how = draw(st.integers(0, 2))
    if how == 0:
        return draw(st.text(max_size=60))
    if how == 1:
        entries = st.dictionaries(st.text(max_size=8), st.dictionaries(
            st.sampled_from(["user", "key", "account", "rooms"]), value, max_size=4), max_size=2)
        return json.dumps({"n": "there", "c": "sync", "u": encodeValue(draw(entries))})
    kind = draw(st.sampled_from(sorted(EVENTS)))
    fields = draw(st.dictionaries(st.sampled_from(sorted(EVENTS[kind])), value, max_size=4))
    return json.dumps({"n": "there", "i": "x", "s": 1, "e": encodeValue(dict(fields, t=kind))})


class RedisEventTests(SynchronousTestCase):
    """
    What a node does with a message from another node.
    """

    skip = skipRedis

    @FEW
    @given(redisMessages())
    @example(json.dumps({"n": "there", "i": "x", "s": 1, "e": encodeValue(
        {"t": "message", "room": "#room", "sender": USER, "ts": 5, "envelope": b"xx"})}))
    @example('{"n": "there", "i": "x", "s": 1, "e": {"t": "online", "user": {"$bytes": 5}}}')
    @example('{"n": "there", "c": "sync", "u": {"x": {"$dict": []}}}')
    @example("[" * 5000)
    def test_anyMessage(self, data):
        """Any message is decoded or refused with MalformedEvent, and the node logs no failure."""
        runRedisMessage(data)

    def test_malformedIsAWarning(self):
        """A message that is not an event is dropped with a warning saying why, not a traceback."""
        with self.assertRaises(MalformedEvent) as caught:
            decodeMessage('{"n": "there", "i": "x", "s": "1", "e": {}}')
        self.assertIn("'s'", str(caught.exception))
        runRedisMessage('{"n": "there", "i": "x", "s": "1", "e": {}}')

    def test_badHashEntry(self):
        """One malformed entry in a node's user hash is left out; the others are still read."""
        entry: Dict[str, object] = {"user": USER, "key": None, "account": False, "rooms": []}
        self.assertEqual(parseHash(["bad", "{not json", "bad2", '{"user": 1}',
                                    USER, dumps(entry)]),
                         {USER: entry})
