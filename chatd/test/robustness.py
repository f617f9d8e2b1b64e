"""
Drivers that put hostile input through each of chatd's decoders and doors and
check that it comes out as a protocol error, never as another exception: shared
by the Hypothesis properties in L{chatd.test.test_robustness} and the atheris
targets under C{fuzz/}, so that both hold the code to the same rules.

Each driver raises L{AssertionError} (or lets the unexpected exception out) when
a rule is broken, and returns nothing otherwise. A door that hits an unexpected
exception answers "internal error" and logs the failure instead of raising, so
the doors' drivers watch the log for failures too.
"""

import base64
import json
from contextlib import contextmanager

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.web.server import Site
from wsproto.events import BytesMessage, TextMessage
from zope.interface import provider

from chatd import devicelist, e2e, loginsig
from chatd.protocols import devicewire, jsondevices, jsonrequests, jsonwire, opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService, privateKey, publicDer
from chatd.test.test_websocket import connectWebSocket

ADDRESS = IPv4Address("TCP", "10.0.0.1", 40000)
INTERNAL = "internal error"
# Names a driver's session takes, so that hostile input can refer to them.
USER = "fuzzer"
PASSWORD = "fuzz password"
# The WebSocket door's events; every other message it sends answers a request.
WEBSOCKET_EVENTS = frozenset({
    "chat_message", "dm", "user_joined", "user_left", "renamed", "key_changed",
    "warning", "file_offered", "file_start", "file_chunk", "file_next", "file_done",
    "file_cancel", "devices_changed", "device_pending", "approval", "share_wanted",
    "caught_up"})


@contextmanager
def noLoggedFailures():
    """
    Fail when anything logs a failure meanwhile: the doors and the fan-out log
    an unexpected exception instead of letting it out.
    """
    failures = []

    @provider(ILogObserver)
    def observe(event):
        if "log_failure" in event:
            failures.append(event["log_failure"])
    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)
    if failures:
        raise AssertionError("a failure was logged:\n" + failures[0].getTraceback())


# -- binary frames ----------------------------------------------------------

def checkBinaryPayload(op, payload):
    """
    Every binary decoder, server's and client's, decodes C{payload} under
    opcode C{op} or raises L{MalformedFrame}.
    """
    for decoder in (opcodes.decodeRequest, opcodes.decodeEvent, opcodes.decodeResponse,
                    devicewire.decodeRequest, devicewire.decodeEvent,
                    devicewire.decodeResponse):
        try:
            assert isinstance(decoder(op, payload), tuple)
        except MalformedFrame:
            pass
    try:
        opcodes.decodeHello(payload)
    except MalformedFrame:
        pass
    try:
        opcodes.parseBody(payload)
    except MalformedFrame:
        pass


def _splitFrames(data):
    frames = []
    while data:
        n = int.from_bytes(data[:4], "big")
        assert len(data) >= 4 + n, "a frame was cut short: %r" % (data,)
        op, payload = opcodes.parseBody(data[4:4 + n])
        frames.append((op, payload))
        data = data[4 + n:]
    return frames


def runBinaryDoor(frames, account=False, version=1):
    """
    Greet the binary door with protocol C{version} (and register when
    C{account}: in version 3, as a device), send C{frames} (each L{bytes},
    whole frames or not), and check that every answer is a frame the client
    decodes, none an internal error.
    """
    service = makeService()
    protocol = BinaryFactory(service).buildProtocol(ADDRESS)
    transport = StringTransport(peerAddress=ADDRESS)
    protocol.makeConnection(transport)
    with noLoggedFailures():
        protocol.dataReceived(opcodes.request(Op.HELLO, version))
        if account and version >= devicewire.VERSION:
            first = devicelist.DeviceList.first(USER, "fuzz", publicDer(USER))
            protocol.dataReceived(devicewire.request(
                Op.REGISTER, USER, PASSWORD, publicDer(USER), "fuzz", first.text(),
                first.sign(privateKey(USER)), b""))
        elif account:
            protocol.dataReceived(opcodes.request(Op.REGISTER, USER, PASSWORD, publicDer(USER)))
        for data in frames:
            protocol.dataReceived(data)
    v3 = version >= devicewire.VERSION
    for op, payload in _splitFrames(transport.value()):
        if op != Op.RESPONSE:
            devicewire.decodeEvent(op, payload) if v3 else opcodes.decodeEvent(op, payload,
                                                                               version)
        elif payload[:1] == b"\x00":
            layouts = _OK_LAYOUTS_V3 if v3 else _OK_LAYOUTS
            assert any(_fits(layout, payload[1:]) for layout in layouts), payload
        elif v3 and payload[:1] == b"\x07":
            # PUBLISH_DEVICES' carries the head, any other a message.
            assert _fits(("u32", "str8"), payload[1:]) or _fits(("str16",), payload[1:])
        elif v3 and payload[:1] == b"\x09":
            assert _fits(("devmembers",), payload[1:]), payload
        else:
            assert opcodes.decodeResponse(None, payload)[1] != (INTERNAL,), "internal error"


_OK_LAYOUTS = {()} | set(opcodes.OK_RESPONSES.values()) | set(
    opcodes.OK_RESPONSES_V2.values())
_OK_LAYOUTS_V3 = {()} | set(devicewire.OK_RESPONSES.values())


def _fits(layout, payload):
    try:
        devicewire.decode(layout, payload)
    except MalformedFrame:
        return False
    return True


# -- text lines -------------------------------------------------------------

def runTextDoor(lines, account=False):
    """
    Send C{lines} (L{bytes} without their LF) to the text door, after
    registering when C{account}; check that every line gets one C{OK::} or
    C{ERR::} line of the documented form, none an internal error, until the
    door closes the connection on purpose.
    """
    service = makeService()
    protocol = TextFactory(service).buildProtocol(ADDRESS)
    transport = StringTransport(peerAddress=ADDRESS)
    protocol.makeConnection(transport)
    sent = 0
    with noLoggedFailures():
        if account:
            key = base64.b64encode(publicDer(USER)).decode("ascii")
            protocol.dataReceived(b"CMD::/register %s %s %s\n"
                                  % (USER.encode(), b"password", key.encode()))
            sent += 1
        for line in lines:
            protocol.dataReceived(line + b"\n")
            sent += line.count(b"\n") + 1
    output = transport.value()
    assert output.endswith(b"\n"), output[-200:]
    replies = 0
    for line in output.split(b"\n")[1:-1]:
        if line.startswith(b"EVT::"):
            assert isinstance(json.loads(line[5:]), dict)
            continue
        replies += 1
        if line.startswith(b"OK::"):
            assert isinstance(json.loads(line[4:]), dict), line
        else:
            assert line[:5] == b"ERR::" and line[7:9] == b"::", line
            int(line[5:7], 16)
            assert line[9:].decode("utf-8") != INTERNAL, line
    assert replies == sent or transport.disconnecting, (replies, sent)


# -- WebSocket messages ---------------------------------------------------

def checkJSONRequest(text):
    """
    L{jsondevices.parseRequest} (the WebSocket door's, devices included)
    returns a request of a known type or raises L{jsonrequests.MalformedRequest}.
    """
    try:
        request = jsondevices.parseRequest(text)
    except jsonrequests.MalformedRequest:
        return
    assert request.type in jsondevices.REQUESTS


def runWebSocketDoor(messages, account=False):
    """
    Send C{messages} (L{str} as text messages, L{bytes} as binary ones) to the
    WebSocket door, after registering when C{account}; check that each gets one
    JSON answer, none an internal error, and that the connection stays open.
    """
    reactor = MemoryReactorClock()
    reactor.advance(1_700_000_000)
    site = Site(makeWebResource(makeService(clock=reactor)), reactor=reactor)
    with noLoggedFailures():
        client = connectWebSocket(site)
        if account:
            register = {"type": "register", "userId": USER,
                        "publicKey": jsonwire.derToPem(publicDer(USER))}
            messages = [json.dumps(register)] + list(messages)
        for message in messages:
            kind = TextMessage if isinstance(message, str) else BytesMessage
            client.sendRaw(client.connection.send(kind(message)))
    answers = [m for m in client.messages if m.get("type") not in WEBSOCKET_EVENTS]
    assert client.closeCode is None and not client.lost, client.messages[-3:]
    assert len(answers) == len(messages), (len(answers), len(messages))
    for answer in answers:
        assert answer.get("message") != INTERNAL, answer


# -- envelopes ------------------------------------------------------------

def checkEnvelope(data):
    """
    L{e2e.Envelope.parse} raises L{e2e.EnvelopeError} on C{data}, or returns an
    envelope whose header, signature check and per-reader cuts all work, each
    cut parsing back to the same header, and which a client (C{bob}, from
    C{alice}) opens or refuses with L{e2e.EnvelopeError} or L{e2e.BadSignature}.
    """
    try:
        envelope = e2e.Envelope.parse(data)
    except e2e.EnvelopeError:
        return
    envelope.header()
    envelope.verifySignature(publicDer("alice"))
    for name in envelope.readers() | {"nobody"}:
        assert e2e.Envelope.parse(envelope.cutFor(name)).header() == envelope.header()
    try:
        e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice"))
    except (e2e.EnvelopeError, e2e.BadSignature):
        pass


def checkPublicKey(der):
    """
    L{e2e.loadPublicKey} loads C{der} or refuses it with a L{chatd.errors.BadRequest},
    and a signature check with it is a plain no.
    """
    try:
        e2e.loadPublicKey(der)
    except e2e.BadRequest:
        pass
    assert not loginsig.verifyAuth(der, b"challenge", "user", b"signature")


# -- events from other nodes ----------------------------------------------

def runRedisMessage(data, channel="chatd:0:cluster"):
    """
    L{chatd.fanout.events.decodeMessage} reads C{data} or raises
    L{chatd.fanout.events.MalformedEvent}, and a node that receives C{data}
    from Redis (having heard of a user and a room first) logs no failure.
    """
    from chatd.fanout.events import MalformedEvent, decodeMessage
    from chatd.fanout.redis import RedisFanout
    try:
        decodeMessage(data)
    except MalformedEvent:
        pass
    service = makeService()
    fanout = RedisFanout("redis://127.0.0.1:1/0", service.clock, nodeId="here")
    fanout.attach(service)
    with noLoggedFailures():
        for known in KNOWN:
            fanout.receiver(channel, known)
        fanout.receiver(channel, data)


# A room and a user in it that the node has heard of from node "there", so
# that events about them reach the core's handlers.
KNOWN = [json.dumps({"n": "there", "i": "known", "s": 1,
                     "e": {"t": "room", "room": "#room", "password": None}}),
         json.dumps({"n": "there", "c": "sync", "u": {USER: {
             "user": USER, "key": None, "account": False, "rooms": ["#room"]}}})]
