"""
Tests for L{chatd.protocols.splice}: a room message's frame is built once and
spliced per reader, byte for byte the frame the event encoder makes.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.protocols import opcodes, splice
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.test_binary import OK, ProtocolTestCase

READERS = ["alice", "Bob", "zoë", 'qu"ote', "back\\slash"]


def referenceCut(blob, reader):
    """
    C{reader}'s cut of the envelope C{blob}, made the slow, obvious way: its
    JSON, compactly, with both key maps cut down to the reader's entry and
    put last (as the protocol's cut has them).
    """
    envelope = json.loads(blob)
    for field in ("encrypted_keys", "key_ids"):
        envelope[field] = {name: value for name, value in envelope.pop(field).items()
                           if name == reader}
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def sealed(size=100, readers=READERS, room="#r"):
    return e2e.seal("alice", privateKey("alice"), ("room", room),
                    {name: publicDer("alice") for name in readers}, b"x" * size)


class SpliceTests(SynchronousTestCase):
    """
    L{splice.envelopeFrame} and L{splice.spliced} make the frames
    L{opcodes.event} makes.
    """

    def assertSameFrame(self, op, fields, envelope, reader):
        """
        Both ways to a reader's frame, from its cut and from the envelope's
        common part and the reader's tail, make the encoder's frame.
        """
        expected = opcodes.event(op, *fields, referenceCut(envelope.raw, reader))
        for frame in (splice.envelopeFrame(op, fields, envelope.sharedCut(reader)),
                      splice.spliced(op, fields, envelope.common, envelope.tailFor(reader))):
            if not isinstance(frame, bytes):
                frame = b"".join(frame)
            self.assertEqual(frame, expected)

    def test_roomMessage(self):
        """
        Every reader's ROOM_MSG frame, names that JSON escapes included, and
        one for a session with no entry.
        """
        envelope = e2e.Envelope.parse(sealed())
        for reader in READERS + ["carol"]:
            self.assertSameFrame(Op.ROOM_MSG, ("#r", "alice", 1234), envelope, reader)

    def test_directMessage(self):
        """
        DM frames too.
        """
        envelope = e2e.Envelope.parse(sealed(readers=["alice", "Bob"]))
        for reader in ("alice", "Bob"):
            self.assertSameFrame(Op.DM, ("alice", 99), envelope, reader)

    def test_messagesInTurn(self):
        """
        The fields encoded for one message are not reused for the next, even
        when a reader of the first comes after it.
        """
        first = e2e.Envelope.parse(sealed(room="#a"))
        second = e2e.Envelope.parse(sealed(room="#b"))
        self.assertSameFrame(Op.ROOM_MSG, ("#a", "alice", 1), first, "Bob")
        self.assertSameFrame(Op.ROOM_MSG, ("#b", "alice", 2), second, "Bob")
        self.assertSameFrame(Op.ROOM_MSG, ("#a", "alice", 1), first, "alice")
        self.assertSameFrame(Op.ROOM_MSG, ("#a", "alice", 3), first, "alice")

    def test_sameFieldsNextEnvelope(self):
        """
        Two envelopes framed with the same fields (two direct messages a
        sender sent in one millisecond) each get their own frame.
        """
        first = e2e.Envelope.parse(sealed(readers=["alice", "Bob"]))
        second = e2e.Envelope.parse(sealed(readers=["alice", "Bob"]))
        self.assertSameFrame(Op.DM, ("alice", 7), first, "Bob")
        self.assertSameFrame(Op.DM, ("alice", 7), second, "Bob")

    def test_oneMapOnly(self):
        """
        A reader named in one of the two maps only (a version-1 envelope does
        not have to key both alike) gets that one entry.
        """
        blob = json.loads(sealed(readers=["alice", "Bob", "carol"]))
        del blob["encrypted_keys"]["Bob"]
        del blob["key_ids"]["carol"]
        envelope = e2e.Envelope.parse(json.dumps(blob).encode("ascii"))
        for reader in ("alice", "Bob", "carol"):
            self.assertSameFrame(Op.ROOM_MSG, ("#r", "alice", 5), envelope, reader)

    def test_tailsInOnePass(self):
        """
        L{e2e.Envelope.tailsFor} gives each reader, in order, what follows
        the common part in its cut: its entries, or none for a reader
        without them.
        """
        blob = json.loads(sealed())
        del blob["key_ids"]["Bob"]
        raw = json.dumps(blob).encode("ascii")
        envelope = e2e.Envelope.parse(raw)
        readers = READERS + ["nobody"]
        self.assertEqual([envelope.common + tail for tail in envelope.tailsFor(readers)],
                         [referenceCut(raw, reader) for reader in readers])

    def test_prefixesOfOneMessage(self):
        """
        A message's readers share its L{splice.Prefixes}, and readers whose
        tails are as long share one prefix; the next message has its own.
        """
        fields = ("#r", "alice", 1)
        envelope = e2e.Envelope.parse(sealed())
        prefixes = splice.prefixesFor(Op.ROOM_MSG, fields, envelope.common)
        self.assertIs(splice.prefixesFor(Op.ROOM_MSG, fields, envelope.common), prefixes)
        length = len(envelope.tailFor("Bob"))
        self.assertIs(prefixes[length], prefixes[length])
        self.assertEqual(list(prefixes), [length])
        later = e2e.Envelope.parse(sealed())
        self.assertIsNot(splice.prefixesFor(Op.ROOM_MSG, fields, later.common), prefixes)

    def test_smallIsOneBytes(self):
        """
        A small message's frame is one L{bytes}: one join, one write.
        """
        envelope = e2e.Envelope.parse(sealed())
        frame = splice.envelopeFrame(Op.ROOM_MSG, ("#r", "alice", 1), envelope.sharedCut("Bob"))
        self.assertIsInstance(frame, bytes)

    def test_largeKeepsPieces(self):
        """
        A large message's frame keeps the shared ciphertext as a piece, so
        that slow readers hold one copy of it.
        """
        envelope = e2e.Envelope.parse(sealed(size=2 * splice.SHARED_ABOVE))
        frames = [splice.envelopeFrame(Op.ROOM_MSG, ("#r", "alice", 1), envelope.sharedCut(name))
                  for name in ("alice", "Bob")]
        [shared] = [piece for piece in frames[0] if len(piece) > splice.SHARED_ABOVE]
        self.assertTrue(any(piece is shared for piece in frames[1]))
        self.assertSameFrame(Op.ROOM_MSG, ("#r", "alice", 1), envelope, "Bob")


class _CountingTransport:
    """
    Counts what a transport is asked to write, and passes it on.
    """

    def __init__(self, transport):
        self.transport = transport
        self.writes = []

    def write(self, data):
        self.writes.append(type(data))
        self.transport.write(data)

    def writeSequence(self, data):
        self.writes.append(type(data))
        self.transport.writeSequence(data)


class FanoutTests(ProtocolTestCase):
    """
    Each reader of a room message costs one write to its transport, and the
    delivery counter is bumped once per message.
    """

    settings = dict(rateLimit=(1000, 1.0))

    def test_oneWritePerReader(self):
        alice, bob, carol = self.guest("alice"), self.guest("bob"), self.guest("carol")
        members = self.room("#r", alice, bob, carol)
        counting = {}
        for wire in (bob, carol):
            counting[wire.name] = wire.protocol.outbox.transport = _CountingTransport(
                wire.protocol.outbox.transport)
        bumps = []
        delivered = self.service.metrics.delivered

        def counted(kind, n):
            bumps.append((kind, n))
            delivered(kind, n)

        self.service.metrics.delivered = counted
        blob = e2e.seal("alice", privateKey("alice"), ("room", "#r"), members, b"hi",
                        ts=int(self.clock.seconds() * 1000))
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", blob)[0], OK)
        self.assertEqual(counting["bob"].writes, [bytes])
        self.assertEqual(counting["carol"].writes, [bytes])
        self.assertEqual(bumps, [("room", 2)])
        for wire in (bob, carol):
            [(op, payload)] = wire.frames()
            self.assertEqual(opcodes.decodeEvent(op, payload)[3],
                             referenceCut(blob, wire.name))
