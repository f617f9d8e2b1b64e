"""
Tests for L{chatd.protocols.devicewire}, the binary door's version 3 (devices)
without I/O.

The byte strings below are written out by hand from the session's wire spec
(docs/protocol.rst, Protocol version 3: devices), not derived from the module
under test, so a layout that drifts fails here even when encoder and decoder
agree.
"""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd.protocols import devicewire, opcodes
from chatd.protocols.devicewire import DeviceList, DeviceOp, Pending
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import Op
from chatd.test.robustness import checkBinaryPayload


def wire(op, payload=b""):
    return struct.pack("!I", 3 + len(payload)) + b"\x04\x17" + bytes([op]) + payload


def s8(text):
    data = text.encode("utf-8")
    return bytes([len(data)]) + data


def b16(data):
    return struct.pack("!H", len(data)) + data


def b32(data):
    return struct.pack("!I", len(data)) + data


LIST = DeviceList(b"chatd-devices-v1\0alice\n1\n\nphone\nab\n", b"SIG",
                  (("phone", b"IK-DER"), ("laptop", b"LAPTOP-DER")))
LIST_BYTES = (b32(LIST.text) + b16(b"SIG") + b"\x02" + s8("phone") + b16(b"IK-DER")
              + s8("laptop") + b16(b"LAPTOP-DER"))
EMPTY_LIST_BYTES = b32(b"") + b16(b"") + b"\x00"
MEMBERS = [("alice", 0, b"IK-DER", LIST), ("rand0", opcodes.GUEST, b"G", devicewire.NO_LIST)]
MEMBERS_BYTES = (b"\x00\x02" + s8("alice") + b"\x00" + b16(b"IK-DER") + LIST_BYTES
                 + s8("rand0") + b"\x01" + b16(b"G") + EMPTY_LIST_BYTES)


class ByteExactTests(SynchronousTestCase):
    """
    Version 3's payloads, byte for byte.
    """

    def test_opcodeNumbers(self):
        """The new requests are 0x70-0x77 and the new events 0x48-0x4c."""
        self.assertEqual(
            {op.name: op.value for op in DeviceOp},
            {"GET_DEVICES": 0x70, "REQUEST_DEVICE": 0x71, "PUBLISH_DEVICES": 0x72,
             "APPROVE": 0x73, "GET_RECOVERY": 0x74, "SET_RECOVERY": 0x75,
             "SHARE_HISTORY": 0x76, "RESET_IDENTITY": 0x77, "DEVICES_CHANGED": 0x48,
             "DEVICE_PENDING": 0x49, "APPROVAL": 0x4A, "SHARE_WANTED": 0x4B,
             "CAUGHT_UP": 0x4C})
        self.assertFalse({op.value for op in DeviceOp} & {op.value for op in Op})

    def test_register(self):
        """REGISTER: user, password, IK, device id, list, signature, recovery blob [, invite]."""
        payload = (s8("alice") + s8("pw") + b16(b"IK") + s8("phone") + b32(b"LIST")
                   + b16(b"SIG") + b32(b"BLOB"))
        values = ("alice", "pw", b"IK", "phone", b"LIST", b"SIG", b"BLOB")
        self.assertEqual(devicewire.request(Op.REGISTER, *values), wire(0x20, payload))
        self.assertEqual(devicewire.decodeRequest(Op.REGISTER, payload), values)
        self.assertEqual(devicewire.decodeRequest(Op.REGISTER, payload + s8("tok")),
                         values + ("tok",))
        self.assertRaises(MalformedFrame, devicewire.decodeRequest, Op.REGISTER,
                          payload + s8(""))

    def test_loginAndAuth(self):
        """LOGIN adds the device id and SPKI and answers a u8 state; AUTH names the device."""
        login = s8("alice") + s8("pw") + s8("laptop") + b16(b"SPKI")
        self.assertEqual(devicewire.decodeRequest(Op.LOGIN, login),
                         ("alice", "pw", "laptop", b"SPKI"))
        self.assertEqual(devicewire.okResponse(Op.LOGIN, devicewire.PENDING),
                         wire(0x9A, b"\x00\x01"))
        auth = s8("alice") + s8("laptop") + b16(b"SIG")
        self.assertEqual(devicewire.request(Op.AUTH, "alice", "laptop", b"SIG"),
                         wire(0x23, auth))

    def test_createHistory(self):
        """CREATE ends with a u16 history setting."""
        self.assertEqual(devicewire.request(Op.CREATE, "#r", "", 500),
                         wire(0x31, s8("#r") + s8("") + b"\x01\xf4"))

    def test_joinAnswer(self):
        """JOIN answers devmembers, the topic and the history setting."""
        self.assertEqual(devicewire.okResponse(Op.JOIN, MEMBERS, "hi", 20),
                         wire(0x9A, b"\x00" + MEMBERS_BYTES + struct.pack("!H", 2) + b"hi"
                              + b"\x00\x14"))
        self.assertEqual(devicewire.decodeResponse(Op.JOIN, b"\x00" + MEMBERS_BYTES
                                                   + b"\x00\x00\x00\x00"),
                         (0, (MEMBERS, "", 0)))

    def test_getDevices(self):
        """GET_DEVICES answers the devicelist and the pending devices with tag and expiry."""
        pending = [Pending("tablet", b"T", b"TAG", 1_700_000_600_000)]
        body = (LIST_BYTES + b"\x01" + s8("tablet") + b16(b"T") + b16(b"TAG")
                + struct.pack("!Q", 1_700_000_600_000))
        self.assertEqual(devicewire.okResponse(DeviceOp.GET_DEVICES, LIST, pending),
                         wire(0x9A, b"\x00" + body))
        self.assertEqual(devicewire.decodeResponse(DeviceOp.GET_DEVICES, b"\x00" + body),
                         (0, (LIST, pending)))

    def test_publish(self):
        """PUBLISH_DEVICES: list, signature, u8 n of (device id, SPKI)."""
        payload = b32(b"L") + b16(b"S") + b"\x01" + s8("phone") + b16(b"K")
        self.assertEqual(devicewire.request(DeviceOp.PUBLISH_DEVICES, b"L", b"S",
                                            [("phone", b"K")]), wire(0x72, payload))
        self.assertEqual(devicewire.decodeRequest(DeviceOp.PUBLISH_DEVICES, payload),
                         (b"L", b"S", [("phone", b"K")]))

    def test_headConflict(self):
        """A PUBLISH_DEVICES on another head is refused 0x07 with that head's version and hash."""
        frame = devicewire.headConflict(4, "ab" * 32)
        self.assertEqual(frame, wire(0x9A, b"\x07\x00\x00\x00\x04" + s8("ab" * 32)))
        self.assertEqual(devicewire.decodeResponse(DeviceOp.PUBLISH_DEVICES, frame[7:]),
                         (0x07, (4, "ab" * 32)))
        self.assertEqual(devicewire.decodeResponse(Op.LOGIN, b"\x07" + b16(b"no")),
                         (0x07, ("no",)))

    def test_shareHistory(self):
        """SHARE_HISTORY: room, newcomer, u16 n of (envelope id, bytes32 JSON); answers u16."""
        payload = s8("#r") + s8("bob") + b"\x00\x01" + s8("id1") + b32(b"{}")
        self.assertEqual(devicewire.decodeRequest(DeviceOp.SHARE_HISTORY, payload),
                         ("#r", "bob", [("id1", b"{}")]))
        self.assertEqual(devicewire.okResponse(DeviceOp.SHARE_HISTORY, 3),
                         wire(0x9A, b"\x00\x00\x03"))

    def test_staleResponse(self):
        """A 0x09 refusal to a version-3 session carries devmembers."""
        frame = devicewire.staleResponse(MEMBERS)
        self.assertEqual(frame, wire(0x9A, b"\x09" + MEMBERS_BYTES))
        self.assertEqual(devicewire.decodeResponse(Op.ROOM_MSG, frame[7:]),
                         (0x09, (MEMBERS,)))

    def test_events(self):
        """JOINED and KEY_CHANGED end with the devicelist; the new events' layouts."""
        self.assertEqual(devicewire.event(Op.JOINED, "#r", "alice", b"IK", 0, LIST),
                         wire(0x40, s8("#r") + s8("alice") + b16(b"IK") + b"\x00" + LIST_BYTES))
        self.assertEqual(devicewire.event(Op.KEY_CHANGED, "alice", b"IK", 0, devicewire.NO_LIST),
                         wire(0x81, s8("alice") + b16(b"IK") + b"\x00" + EMPTY_LIST_BYTES))
        cases = [
            (DeviceOp.DEVICES_CHANGED, ("alice", LIST), s8("alice") + LIST_BYTES),
            (DeviceOp.DEVICE_PENDING, ("tab", b"K", b"T", 5),
             s8("tab") + b16(b"K") + b16(b"T") + struct.pack("!Q", 5)),
            (DeviceOp.APPROVAL, (b"REPLY",), b32(b"REPLY")),
            (DeviceOp.SHARE_WANTED, ("#r", "bob", 50), s8("#r") + s8("bob") + b"\x00\x32"),
            (DeviceOp.CAUGHT_UP, (7,), b"\x00\x00\x00\x07"),
        ]
        for op, values, payload in cases:
            self.assertEqual(devicewire.event(op, *values), wire(op, payload), op.name)
            decoded = devicewire.decodeEvent(op, payload)
            self.assertEqual(decoded, values, op.name)

    def test_recovery(self):
        """GET_RECOVERY has no payload and answers bytes32; SET_RECOVERY and RESET_IDENTITY."""
        self.assertEqual(devicewire.request(DeviceOp.GET_RECOVERY), wire(0x74))
        self.assertEqual(devicewire.okResponse(DeviceOp.GET_RECOVERY, b""),
                         wire(0x9A, b"\x00" + b32(b"")))
        payload = b16(b"IK") + s8("d") + b32(b"L") + b16(b"S") + b32(b"B")
        self.assertEqual(devicewire.decodeRequest(DeviceOp.RESET_IDENTITY, payload),
                         (b"IK", "d", b"L", b"S", b"B"))


class StrictnessTests(SynchronousTestCase):
    """
    Version 3 refuses what does not fit, and leaves versions 1 and 2 alone.
    """

    def test_truncatedAndTrailing(self):
        """Every prefix of a devmembers payload and a byte too many are malformed."""
        payload = b"\x00" + MEMBERS_BYTES
        for end in range(len(MEMBERS_BYTES)):
            self.assertRaises(MalformedFrame, devicewire.decode, ("devmembers",),
                              MEMBERS_BYTES[:end])
        self.assertRaises(MalformedFrame, devicewire.decodeResponse, Op.GET_KEYS,
                          payload + b"\x00")

    def test_unknown(self):
        """An opcode no version has is malformed, in requests and events."""
        self.assertRaises(MalformedFrame, devicewire.decodeRequest, 0x7F, b"")
        self.assertRaises(MalformedFrame, devicewire.decodeEvent, 0x4F, b"")

    def test_olderVersionsUnchanged(self):
        """Below version 3, LOGIN keeps its version-1 layout and new opcodes are unknown."""
        login = s8("alice") + s8("pw")
        self.assertEqual(devicewire.decodeRequest(Op.LOGIN, login, version=2), ("alice", "pw"))
        self.assertRaises(MalformedFrame, devicewire.decodeRequest, Op.LOGIN, login)
        self.assertRaises(MalformedFrame, devicewire.decodeRequest, DeviceOp.GET_DEVICES,
                          s8("alice"), version=2)

    def test_tooManyDevices(self):
        """A list of more devices than a u8 counts cannot be encoded."""
        devices = [("d%d" % i, b"K") for i in range(256)]
        self.assertRaises(ValueError, devicewire.encode, ("devices",), (devices,))

    def test_everyLayoutRoundTrips(self):
        """Each request and event layout of version 3 reads back what it wrote, at small values."""
        samples = {"u8": 1, "u16": 2, "u32": 3, "u64": 4, "str8": "x", "str16": "y",
                   "bytes16": b"k", "bytes32": b"e", "names": ["a"], "keys": [("a", b"k")],
                   "members": [("a", b"k", 0)], "users": [("a", 0)],
                   "history": [("a", 1, b"e")], "devicelist": LIST,
                   "devmembers": MEMBERS, "devices": [("d", b"k")],
                   "pending": [Pending("d", b"k", b"t", 9)], "shares": [("i", b"{}")]}
        for table in (devicewire.REQUESTS, devicewire.EVENTS, devicewire.OK_RESPONSES):
            for op, layout in table.items():
                values = tuple(samples[kind] for kind in layout)
                self.assertEqual(devicewire.decode(layout, devicewire.encode(layout, values)),
                                 values, hex(op))

    @settings(max_examples=300)
    @given(st.integers(0, 255), st.binary(max_size=60)
           | st.sampled_from([b"\x00" + MEMBERS_BYTES, LIST_BYTES]).map(lambda b: b[:-1]))
    def test_arbitraryBytes(self, op, payload):
        """Any bytes under any opcode decode or raise MalformedFrame, in every version."""
        checkBinaryPayload(op, payload)
