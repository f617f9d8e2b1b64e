# -*- test-case-name: chatd.test.test_devicewire -*-
"""
Protocol version 3 of the binary door (devices), without I/O: its opcodes, its
field types and the layouts it changes (docs/protocol.rst, Protocol version 3:
devices).

A session that said version 3 in HELLO uses these layouts; a version 1 or 2
session keeps L{chatd.protocols.opcodes}' unchanged. Decoding is as strict as
there: too few bytes, bytes left over and invalid UTF-8 raise
L{MalformedFrame}. This module only adds what version 3 adds, so that
L{chatd.protocols.opcodes} stays the one description of versions 1 and 2.

Field types version 3 adds::

    devicelist  bytes32 canonical list (empty: no list) + bytes16 signature
                (empty: none) + u8 n + n x (str8 device id + bytes16 SPKI DER)
    devmembers  u16 n + n x (str8 name + u8 flags + bytes16 IK + devicelist)
    devices     u8 n + n x (str8 device id + bytes16 SPKI DER)
    pending     u8 n + n x (str8 device id + bytes16 SPKI DER + bytes16 tag
                + u64 expiry, ms since the epoch), each a L{Pending}
    shares      u16 n + n x (str8 envelope id + bytes32 JSON key maps)
"""

from enum import IntEnum
from typing import Any, Dict, NamedTuple, Sequence, Tuple

from chatd.protocols import layouts, opcodes
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import Op

VERSION = 3


class DeviceOp(IntEnum):
    """
    The opcodes version 3 adds: requests 0x70-0x77, events 0x48-0x4c.
    """

    GET_DEVICES = 0x70
    REQUEST_DEVICE = 0x71
    PUBLISH_DEVICES = 0x72
    APPROVE = 0x73
    GET_RECOVERY = 0x74
    SET_RECOVERY = 0x75
    SHARE_HISTORY = 0x76
    RESET_IDENTITY = 0x77
    DEVICES_CHANGED = 0x48
    DEVICE_PENDING = 0x49
    APPROVAL = 0x4A
    SHARE_WANTED = 0x4B
    CAUGHT_UP = 0x4C


class DeviceList(NamedTuple):
    """
    An account's device list as the wire carries it: the canonical bytes and
    IK's signature over them, as stored (the server vouches for neither), and
    the devices' keys, C{(device id, SPKI DER)} in list order.
    """

    text: bytes
    signature: bytes
    devices: Sequence[Tuple[str, bytes]]


# The list of an account that has none (a legacy account, a guest).
NO_LIST = DeviceList(b"", b"", ())


class Pending(NamedTuple):
    """
    A device waiting to be approved, as GET_DEVICES and DEVICE_PENDING carry
    it: its id, SPKI DER, approval tag and expiry (ms since the epoch).
    """

    device: str
    key: bytes
    tag: bytes
    expires: int

# Client -> server in version 3: the requests whose layout changes, and the new ones.
REQUESTS: Dict[Any, Tuple[str, ...]] = {
    **opcodes.REQUESTS,
    Op.REGISTER: ("str8", "str8", "bytes16", "str8", "bytes32", "bytes16", "bytes32"),
    Op.LOGIN: ("str8", "str8", "str8", "bytes16"),
    Op.AUTH: ("str8", "str8", "bytes16"),
    Op.CREATE: ("str8", "str8", "u16"),
    DeviceOp.GET_DEVICES: ("str8",),
    DeviceOp.REQUEST_DEVICE: ("bytes16",),
    DeviceOp.PUBLISH_DEVICES: ("bytes32", "bytes16", "devices"),
    DeviceOp.APPROVE: ("str8", "bytes32"),
    DeviceOp.GET_RECOVERY: (),
    DeviceOp.SET_RECOVERY: ("bytes32",),
    DeviceOp.SHARE_HISTORY: ("str8", "str8", "shares"),
    DeviceOp.RESET_IDENTITY: ("bytes16", "str8", "bytes32", "bytes16", "bytes32"),
}

# The payload of a status-0x00 response in version 3, by the request it answers.
OK_RESPONSES: Dict[Any, Tuple[str, ...]] = {
    **opcodes.OK_RESPONSES_V2,
    Op.LOGIN: ("u8",),
    Op.JOIN: ("devmembers", "str16", "u16"),
    Op.GET_KEYS: ("devmembers",),
    DeviceOp.GET_DEVICES: ("devicelist", "pending"),
    DeviceOp.GET_RECOVERY: ("bytes32",),
    DeviceOp.SHARE_HISTORY: ("u16",),
}

# Server -> client in version 3: JOINED and KEY_CHANGED end with the user's
# list, and the new events.
EVENTS: Dict[Any, Tuple[str, ...]] = {
    **opcodes.EVENT_LAYOUTS_V2,
    Op.JOINED: opcodes.EVENT_LAYOUTS_V2[Op.JOINED] + ("devicelist",),
    Op.KEY_CHANGED: opcodes.EVENT_LAYOUTS_V2[Op.KEY_CHANGED] + ("devicelist",),
    DeviceOp.DEVICES_CHANGED: ("str8", "devicelist"),
    DeviceOp.DEVICE_PENDING: ("str8", "bytes16", "bytes16", "u64"),
    DeviceOp.APPROVAL: ("bytes32",),
    DeviceOp.SHARE_WANTED: ("str8", "str8", "u16"),
    DeviceOp.CAUGHT_UP: ("u32",),
}

# LOGIN's answer: the device's state.
APPROVED, PENDING = 0, 1
# The refusal of a PUBLISH_DEVICES built on another head carries that head.
CONFLICT = 0x07
_HEAD = ("u32", "str8")

_U8, _U16, _U32 = layouts._FIXED["u8"], layouts._FIXED["u16"], layouts._FIXED["u32"]


class _Reader(layouts._Reader):
    """
    L{layouts._Reader} with version 3's field types.
    """

    __slots__ = ()

    def _deviceKeys(self):
        return [(self.text(_U8), self.blob(_U16)) for _ in range(self.fixed(_U8))]

    def _deviceList(self):
        return DeviceList(self.blob(_U32), self.blob(_U16), tuple(self._deviceKeys()))

    def field(self, kind):
        if kind == "devicelist":
            return self._deviceList()
        if kind == "devices":
            return self._deviceKeys()
        if kind == "devmembers":
            return [(self.text(_U8), self.fixed(_U8), self.blob(_U16), self._deviceList())
                    for _ in range(self.fixed(_U16))]
        if kind == "pending":
            return [Pending(self.text(_U8), self.blob(_U16), self.blob(_U16),
                            self.fixed(layouts._FIXED["u64"])) for _ in range(self.fixed(_U8))]
        if kind == "shares":
            return [(self.text(_U8), self.blob(_U32)) for _ in range(self.fixed(_U16))]
        return layouts._Reader.field(self, kind)


def _count(n, limit):
    if n > limit:
        raise ValueError("%d entries do not fit a count of at most %d" % (n, limit))


def _encodeDeviceKeys(devices):
    _count(len(devices), 0xFF)
    return _U8.pack(len(devices)) + b"".join(
        layouts._encodeField("str8", device) + layouts._encodeField("bytes16", key)
        for device, key in devices)


def _encodeDeviceList(value):
    """
    A list: a L{DeviceList}, or anything with its attributes (the core's).
    """
    return (layouts._encodeField("bytes32", value.text)
            + layouts._encodeField("bytes16", value.signature)
            + _encodeDeviceKeys(value.devices))


def _encodeField(kind, value):
    if kind == "devicelist":
        return _encodeDeviceList(value)
    if kind == "devices":
        return _encodeDeviceKeys(value)
    if kind == "devmembers":
        _count(len(value), 0xFFFF)
        return _U16.pack(len(value)) + b"".join(
            layouts._encodeField("str8", name) + _U8.pack(flags)
            + layouts._encodeField("bytes16", key) + _encodeDeviceList(devices)
            for name, flags, key, devices in value)
    if kind == "pending":
        _count(len(value), 0xFF)
        return _U8.pack(len(value)) + b"".join(
            layouts.encode(("str8", "bytes16", "bytes16", "u64"),
                           (entry.device, entry.key, entry.tag, entry.expires))
            for entry in value)
    if kind == "shares":
        _count(len(value), 0xFFFF)
        return _U16.pack(len(value)) + b"".join(
            layouts.encode(("str8", "bytes32"), entry) for entry in value)
    return layouts._encodeField(kind, value)


def decode(layout, payload):
    """
    L{layouts.decode} with version 3's field types.
    """
    return layouts.decode(layout, payload, _Reader)


def encode(layout, values):
    """
    L{layouts.encode} with version 3's field types.

    @raise ValueError: when a value does not fit its field.
    """
    return layouts.encode(layout, values, _encodeField)


def _withTail(op, values, layout):
    """
    REGISTER's optional invite token, as in L{opcodes.OPTIONAL_TAILS}.
    """
    if op in opcodes.OPTIONAL_TAILS and len(values) == len(layout) + 1:
        return layout + (opcodes.OPTIONAL_TAILS[op],)
    return layout


def request(op, *values):
    """
    A whole version-3 request frame (for clients).
    """
    layout = _withTail(op, values, REQUESTS[op])
    return opcodes.frame(op, encode(layout, values))


def decodeRequest(op, payload, version=VERSION):
    """
    The fields of a request from a session that said C{version} (for the
    server): below 3, exactly L{opcodes.decodeRequest}.

    @raise MalformedFrame: on an unknown opcode or a payload off its layout.
    """
    if version < VERSION:
        return opcodes.decodeRequest(op, payload)
    try:
        layout = REQUESTS[op]
    except KeyError:
        raise MalformedFrame("unknown opcode 0x%02x" % (op,)) from None
    tail = opcodes.OPTIONAL_TAILS.get(op)
    if tail is None:
        return decode(layout, payload)
    return layouts.decodeWithTail(layout, tail, payload, _Reader)


def okResponse(op, *values):
    """
    A status-0x00 response to request C{op} laid out by version 3's L{OK_RESPONSES}.
    """
    return opcodes.response(0, encode(OK_RESPONSES.get(op, ()), values))


def event(op, *values):
    """
    A whole version-3 event frame (for the server).
    """
    return opcodes.frame(op, encode(EVENTS[op], values))


def staleResponse(members):
    """
    The 0x09 refusal to a version-3 session: the members as C{devmembers}.
    """
    return opcodes.response(opcodes.STALE_RECIPIENTS, encode(("devmembers",), (members,)))


def headConflict(version, digest):
    """
    The 0x07 refusal of a PUBLISH_DEVICES that does not build on the current
    head: that head's version and hex hash, for the signer to rebuild on.
    """
    return opcodes.response(CONFLICT, encode(_HEAD, (version, digest)))


def decodeEvent(op, payload):
    """
    The fields of a version-3 event (for clients).

    @raise MalformedFrame: on an unknown opcode or a payload off its layout.
    """
    try:
        layout = EVENTS[op]
    except KeyError:
        raise MalformedFrame("unknown event opcode 0x%02x" % (op,)) from None
    return decode(layout, payload)


def decodeResponse(op, payload):
    """
    Split a version-3 response payload (for clients) into status and fields.

    @param op: the request this response answers.
    @return: C{(status, values)}: the ok payload's fields; C{(members,)} for
        status 0x09; C{(head version, head hash)} for a 0x07 refusal of
        PUBLISH_DEVICES; C{(message,)} for other refusals.
    """
    if not payload:
        raise MalformedFrame("response without a status")
    status, rest = payload[0], payload[1:]
    if status == 0:
        return status, decode(OK_RESPONSES.get(op, ()), rest)
    if status == opcodes.STALE_RECIPIENTS:
        return status, decode(("devmembers",), rest)
    if status == CONFLICT and op == DeviceOp.PUBLISH_DEVICES:
        return status, decode(_HEAD, rest)
    return status, decode(("str16",), rest)
