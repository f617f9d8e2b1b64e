# -*- test-case-name: chatd.test.test_splice -*-
"""
Room and direct message event frames of the binary door, built once per
message and spliced per reader.

A room message goes to every member's sessions one after another, and all
that differs between their frames is the reader's own key entry (see
L{chatd.e2e.Envelope.sharedCut}) and so the two lengths. So the frame up to
the reader's entries is made once per message and length of those entries
(L{Prefixes}), and every reader costs a lookup and one write of that prefix
and its entries: this is the fan-out's inner loop, where an encoder run per
reader cost more than the rest of the delivery together.
"""

import struct
from typing import Any, Dict, Optional

from chatd.cut import Cut
from chatd.protocols.layouts import encode
from chatd.protocols.opcodes import EVENTS, MAGIC, Op
from chatd.protocols.outbox import framed

_U32 = struct.Struct(">I").pack

# An envelope longer than this stays a piece of its own in each reader's
# frame rather than being copied into the prefix of each length of entries:
# what those copies of a large message would cost outweighs the join it saves.
SHARED_ABOVE = 4096


class Prefixes(Dict[int, Any]):
    """
    One message's frames up to each reader's own entries, keyed by the
    length of the reader's tail (L{chatd.e2e.Envelope.tailFor}), made on
    first use: every reader whose tail is as long (whose name is as long)
    shares one, so a reader costs a lookup here and its tail.

    A prefix is L{bytes}: the frame's lengths, its fields and the envelope's
    common part, up to the tail. For an envelope over C{SHARED_ABOVE} bytes
    it is the L{tuple} of the lengths and fields, and the common part as it
    is, which a large message's frames then keep as a piece of their own.
    """

    def __init__(self, op: Op, fields: tuple, common: bytes) -> None:
        super().__init__()
        self.op, self.fields, self.common = op, fields, common
        self._head = MAGIC + bytes((op,)) + encode(EVENTS[op][:-1], fields)

    def __missing__(self, tailLength: int) -> Any:
        common = self.common
        size = len(common) + tailLength
        lengthsAndFields = _U32(len(self._head) + 4 + size) + self._head + _U32(size)
        if size > SHARED_ABOVE:
            prefix: Any = (lengthsAndFields, common)
        else:
            prefix = lengthsAndFields + common
        self[tailLength] = prefix
        return prefix


# The last message framed: its readers come one after another, so one is
# enough to make each prefix once per message.
_last: Optional[Prefixes] = None


def prefixesFor(op: Op, fields: tuple, common: bytes) -> Prefixes:
    """
    The L{Prefixes} of the event frame C{op} of C{fields} and an envelope
    whose cuts start with C{common}: the last one made, when it is this
    message's.
    """
    global _last
    last = _last
    if last is None or last.common is not common or last.op != op or last.fields != fields:
        last = _last = Prefixes(op, fields, common)
    return last


def envelopeFrame(op, fields, envelope):
    """
    The event frame C{op} (ROOM_MSG or DM) of C{fields} and C{envelope}.

    @param fields: the fields before the envelope, in the event's layout.
    @param envelope: a L{chatd.cut.Cut} (or L{bytes}, made one L{bytes} frame).
    @return: what L{chatd.protocols.outbox.chain} makes of the frame: one
        L{bytes} unless the envelope is over C{SHARED_ABOVE} bytes.
    """
    if type(envelope) is Cut:
        return spliced(op, fields, *envelope.pieces)
    frame = spliced(op, fields, b"", envelope)
    return frame if type(frame) is bytes else b"".join(frame)


def spliced(op, fields, common, tail):
    """
    The event frame C{op} of C{fields} and the envelope cut C{common} +
    C{tail} (L{chatd.e2e.Envelope.common} and a reader's
    L{chatd.e2e.Envelope.tailFor}), as L{envelopeFrame} makes it: the part
    up to C{tail} is made once per message and tail length.
    """
    return framed(prefixesFor(op, fields, common)[len(tail)], tail)
