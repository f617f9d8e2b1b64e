"""
An envelope cut for one reader, kept as the pieces it is made of.

Its own module because it is what travels from the core to the doors' outboxes
(L{chatd.protocols.outbox}, L{chatd.protocols.splice}), which write its pieces
without joining them; L{chatd.e2e.Envelope.sharedCut} makes them.
"""


class Cut:
    """
    An envelope cut for one reader, as the L{bytes} pieces it is made of; the
    first piece is shared with the other readers' cuts (see
    L{Envelope.sharedCut}). It equals the L{bytes} it stands for.

    @ivar pieces: a L{tuple} of L{bytes} whose concatenation is the cut.
    @ivar size: its length in bytes, counted once.
    """

    __slots__ = ("pieces", "size")

    def __init__(self, pieces, size=None):
        self.pieces = pieces
        self.size = sum(map(len, pieces)) if size is None else size

    def __bytes__(self):
        return b"".join(self.pieces)

    def __len__(self):
        return self.size

    def __eq__(self, other):
        if isinstance(other, Cut):
            other = bytes(other)
        if not isinstance(other, bytes):
            return NotImplemented
        return bytes(self) == other

    def __hash__(self):
        return hash(bytes(self))

    def __repr__(self):
        return "Cut(%r)" % (bytes(self),)
