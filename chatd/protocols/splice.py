# -*- test-case-name: chatd.test.test_splice -*-
"""
Room and direct message event frames of the binary door, built once per
message and spliced per reader.

A room message goes to every member's sessions one after another, and all
that differs between their frames is the reader's own key entry (see
L{chatd.e2e.Envelope.sharedCut}) and so the two lengths. So the fields
before the envelope are encoded once, for the first reader, and every reader
costs one join of the pieces and one write: this is the fan-out's inner
loop, where an encoder run per reader cost more than the rest of the
delivery together.
"""

import struct
from typing import Dict, Optional

from chatd.cut import Cut
from chatd.protocols.layouts import encode
from chatd.protocols.opcodes import EVENTS, MAGIC

_U32 = struct.Struct(">I").pack

# An envelope longer than this stays pieces in each reader's frame rather
# than being copied into it: what one copy per reader of a large message
# would cost a room of slow readers in memory outweighs the join it saves.
SHARED_ABOVE = 4096


class _Head:
    """
    The last message framed: the readers of one message come one after
    another, so one entry is enough. For it, the encoded fields before the
    envelope, and per cut size the frame up to the reader's own entries
    (readers whose names are as long share it).
    """

    def __init__(self) -> None:
        self.op = 0
        self.fields: tuple = ()
        self.common: Optional[bytes] = None
        self.head = b""
        self.prefixes: Dict[int, bytes] = {}


# Read by the binary door's inner loop too (BinaryProtocol.roomMessageFor),
# which takes a reader's frame from the prefixes without a call into here.
lastMessage = _Head()


def envelopeFrame(op, fields, envelope):
    """
    The event frame C{op} (ROOM_MSG or DM) of C{fields} and C{envelope}.

    @param fields: the fields before the envelope, in the event's layout.
    @param envelope: a L{chatd.cut.Cut} (or L{bytes}).
    @return: what L{chatd.protocols.outbox.chain} makes of the frame: one
        L{bytes} unless the envelope is over C{SHARED_ABOVE} bytes.
    """
    if type(envelope) is Cut:
        return spliced(op, fields, *envelope.pieces)
    size = len(envelope)
    head = _head(lastMessage, op, fields, None)
    return b"".join((_U32(len(head) + 4 + size), head, _U32(size), envelope))


def spliced(op, fields, common, tail):
    """
    The event frame C{op} of C{fields} and the envelope cut C{common} +
    C{tail} (L{chatd.e2e.Envelope.common} and a reader's
    L{chatd.e2e.Envelope.tailFor}), as L{envelopeFrame} makes it: the part
    up to C{tail} is made once per message and cut size.
    """
    last = lastMessage
    if last.common is not common or last.op != op or last.fields != fields:
        _head(last, op, fields, common)
    size = len(common) + len(tail)
    if size > SHARED_ABOVE:
        head = last.head
        return (_U32(len(head) + 4 + size) + head + _U32(size), common, tail)
    prefix = last.prefixes.get(size)
    if prefix is None:
        head = last.head
        prefix = last.prefixes[size] = b"".join(
            (_U32(len(head) + 4 + size), head, _U32(size), common))
    return prefix + tail


def _head(last, op, fields, common):
    """
    Make C{last} the message of C{op}, C{fields} and shared part C{common}
    (L{None} for an envelope that is not a cut, whose frame is not kept).

    @return: the encoded fields before the envelope.
    """
    if last.op != op or last.fields != fields:
        last.head = MAGIC + bytes((op,)) + encode(EVENTS[op][:-1], fields)
        last.op, last.fields = op, fields
    last.common, last.prefixes = common, {}
    return last.head
