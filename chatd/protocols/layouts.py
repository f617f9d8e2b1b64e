# -*- test-case-name: chatd.test.test_opcodes -*-
"""
The field types of the binary protocol's payloads: one strict reader and one
encoder, without I/O.

A payload layout is a tuple of these field types, so every request, response
and event of L{chatd.protocols.opcodes} (and version 3's in
L{chatd.protocols.devicewire}) is described once, as data, and decoded by one
strict reader: bytes left over, too few bytes and invalid UTF-8 all raise
L{MalformedFrame}. It is its own module because how a field is written is one
idea, and which opcode carries which fields is another.

Field types::

    u8 u16 u32 u64   big-endian unsigned integers
    str8 str16       u8 / u16 length + UTF-8
    bytes16 bytes32  u16 / u32 length + bytes
    names            u16 n + n x str8
    keys             u16 n + n x (str8 user + bytes16 public key)
    history          u16 n + n x (str8 from + u64 ts + bytes32 envelope)
    members          u16 n + n x (str8 user + bytes16 public key + u8 flags)
    users            u16 n + n x (str8 user + u8 flags)
"""

import struct


class MalformedFrame(ValueError):
    """
    A frame or payload that does not follow its layout.
    """


_FIXED = {"u8": struct.Struct("!B"), "u16": struct.Struct("!H"),
          "u32": struct.Struct("!I"), "u64": struct.Struct("!Q")}
_LENGTH = {"str8": _FIXED["u8"], "str16": _FIXED["u16"],
           "bytes16": _FIXED["u16"], "bytes32": _FIXED["u32"]}
_U32 = _FIXED["u32"]


class _Reader:
    """
    A strict cursor over one payload.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def fixed(self, st):
        end = self.pos + st.size
        if end > len(self.data):
            raise MalformedFrame("payload too short")
        (value,) = st.unpack_from(self.data, self.pos)
        self.pos = end
        return value

    def blob(self, lengthStruct):
        n = self.fixed(lengthStruct)
        end = self.pos + n
        if end > len(self.data):
            raise MalformedFrame("payload too short")
        value = self.data[self.pos:end]
        self.pos = end
        return value

    def text(self, lengthStruct):
        try:
            return self.blob(lengthStruct).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("invalid UTF-8") from None

    def field(self, kind):
        if kind in _FIXED:
            return self.fixed(_FIXED[kind])
        if kind == "str8" or kind == "str16":
            return self.text(_LENGTH[kind])
        if kind == "bytes16" or kind == "bytes32":
            return self.blob(_LENGTH[kind])
        count = self.fixed(_FIXED["u16"])
        u8, u16, u64 = _FIXED["u8"], _FIXED["u16"], _FIXED["u64"]
        if kind == "names":
            return [self.text(u8) for _ in range(count)]
        if kind == "keys":
            return [(self.text(u8), self.blob(u16)) for _ in range(count)]
        if kind == "members":
            return [(self.text(u8), self.blob(u16), self.fixed(u8)) for _ in range(count)]
        if kind == "users":
            return [(self.text(u8), self.fixed(u8)) for _ in range(count)]
        if kind == "history":
            return [(self.text(u8), self.fixed(u64), self.blob(_U32))
                    for _ in range(count)]
        raise AssertionError("unknown field type %r" % (kind,))


def decode(layout, payload, reader=None):
    """
    Decode C{payload} by C{layout}, refusing anything but an exact fit.

    @param reader: the L{_Reader} class that knows the field types (a later
        protocol version's adds its own); this module's when L{None}.
    @return: a tuple with one value per field.
    @raise MalformedFrame: on too few bytes, bytes left over or invalid UTF-8.
    """
    fields = (reader or _Reader)(payload)
    values = tuple(fields.field(kind) for kind in layout)
    if fields.pos != len(payload):
        raise MalformedFrame("%d unexpected bytes after the payload"
                             % (len(payload) - fields.pos))
    return values


def decodeWithTail(layout, tail, payload, reader=None):
    """
    L{decode}, where C{payload} may end with one more field of type C{tail}
    (REGISTER's invite token): present only when it is not empty.

    @raise MalformedFrame: as L{decode}, or for a tail sent empty.
    """
    fields = (reader or _Reader)(payload)
    values = tuple(fields.field(kind) for kind in layout)
    if fields.pos == len(payload):
        return values
    extra = decode((tail,), payload[fields.pos:], reader)
    if not extra[0]:
        raise MalformedFrame("an optional last field is left out, not sent empty")
    return values + extra


def _sized(lengthStruct, data):
    if len(data) >= 1 << (8 * lengthStruct.size):
        raise ValueError("field of %d bytes does not fit its length prefix" % len(data))
    return lengthStruct.pack(len(data)) + data


def _encodeField(kind, value):
    if kind in _FIXED:
        return _FIXED[kind].pack(value)
    if kind == "str8" or kind == "str16":
        return _sized(_LENGTH[kind], value.encode("utf-8"))
    if kind == "bytes16" or kind == "bytes32":
        return _sized(_LENGTH[kind], value)
    parts = [_FIXED["u16"].pack(len(value))]
    if kind == "names":
        parts.extend(_encodeField("str8", name) for name in value)
    elif kind == "keys":
        for name, key in value:
            parts.append(_encodeField("str8", name))
            parts.append(_encodeField("bytes16", key))
    elif kind == "members":
        for name, key, flags in value:
            parts.append(_encodeField("str8", name))
            parts.append(_encodeField("bytes16", key))
            parts.append(_FIXED["u8"].pack(flags))
    elif kind == "users":
        for name, flags in value:
            parts.append(_encodeField("str8", name))
            parts.append(_FIXED["u8"].pack(flags))
    elif kind == "history":
        for sender, ts, envelope in value:
            parts.append(_encodeField("str8", sender))
            parts.append(_FIXED["u64"].pack(ts))
            parts.append(_encodeField("bytes32", envelope))
    else:
        raise AssertionError("unknown field type %r" % (kind,))
    return b"".join(parts)


def encode(layout, values, encodeField=None):
    """
    Encode C{values} by C{layout}; the inverse of L{decode}.

    @param encodeField: encodes one field from its type and value (a later
        protocol version's knows more types); this module's when L{None}.
    @raise ValueError: when a value does not fit its field.
    """
    if len(layout) != len(values):
        raise ValueError("layout has %d fields, got %d values" % (len(layout), len(values)))
    encodeField = encodeField or _encodeField
    try:
        return b"".join(encodeField(kind, value) for kind, value in zip(layout, values))
    except struct.error as e:
        raise ValueError("value out of range for its field: %s" % (e,)) from e
