"""
Tests for file transfer through L{chatd.protocols.binary}: OFFER, OFFERED,
ANSWER, START, CHUNK, ACK, NEXT, DONE and CANCEL byte for byte over a
L{StringTransport}, with the statuses docs/protocol.rst gives for misuse.

The expected frames are built here with C{struct}, not with the codec under
test, so that a codec mistake cannot hide in both halves.
"""

import json
import struct

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from chatd import e2e
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.test.fakes import makeService, privateKey, publicDer
from chatd.test.test_binary import ProtocolTestCase
from chatd.test.test_transfer import LoopGuardClock

OK, ERR, RATE, AUTHREQ, FORBIDDEN, NOTFOUND, CONFLICT, TOOLARGE = 0, 1, 2, 4, 5, 6, 7, 8
OFFER, OFFERED, ANSWER, START, CHUNK, ACK, NEXT, DONE, CANCEL = range(0x50, 0x59)
RESPONSE = 0x9A

NO_IDLE = dict(idleWarning=3600.0, idleTimeout=7200.0)

# A fixed file key, so that the tests are deterministic.
FILE_KEY = bytes(range(32))


def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def u64(n):
    return struct.pack("!Q", n)


def str8(text):
    data = text.encode("utf-8")
    return u8(len(data)) + data


def str16(text):
    data = text.encode("utf-8")
    return u16(len(data)) + data


def bytes32(data):
    return u32(len(data)) + data


def frame(op, payload=b""):
    """
    A whole frame: length, magic C{04 17}, opcode, payload.
    """
    return u32(len(payload) + 3) + b"\x04\x17" + u8(op) + payload


def ok(payload=b""):
    return frame(RESPONSE, b"\x00" + payload)


def split(data):
    """
    The frames in C{data} as C{(op, payload)} pairs.
    """
    frames = []
    while data:
        (n,) = struct.unpack("!I", data[:4])
        body, data = data[4:4 + n], data[4 + n:]
        assert body[:2] == b"\x04\x17", body
        frames.append((body[2], body[3:]))
    return frames


class TransferWireTestCase(ProtocolTestCase):
    """
    Guests alice, bob and carol in C{#r}, on binary connections to one core
    whose clock refuses to spin.
    """

    settings = NO_IDLE

    def setUp(self):
        self.service = makeService(clock=LoopGuardClock(), **self.settings)
        self.clock = self.service.clock
        self.factory = BinaryFactory(self.service)
        self.alice, self.bob, self.carol = (self.guest(n) for n in ("alice", "bob", "carol"))
        self.room("#r", self.alice, self.bob, self.carol)
        self.everyone = [self.alice, self.bob, self.carol]
        for wire in self.everyone:
            self.drain(wire)

    def drain(self, wire):
        """
        The bytes written to C{wire} since the last call.
        """
        data = wire.transport.value()
        wire.transport.clear()
        return data

    def drainAll(self):
        return [self.drain(wire) for wire in self.everyone]

    def status(self, wire, op, payload):
        """
        Send one request frame and return the status of its single response;
        the connection must stay open.
        """
        wire.sendRaw(frame(op, payload))
        [(rop, body)] = [f for f in split(self.drain(wire)) if f[0] == RESPONSE]
        self.assertEqual(rop, RESPONSE)
        if body[0] != OK:
            (n,) = struct.unpack("!H", body[1:3])
            self.assertEqual(len(body), 3 + n, "a refusal carries exactly one str16")
            self.assertTrue(n)
        self.assertFalse(wire.transport.disconnecting)
        return body[0]

    def fileEnvelope(self, sender, to, readers, size, chunks, chunkSize, **kw):
        kw.setdefault("ts", self.service.now())
        kw.setdefault("domain", e2e.FILE)
        meta = json.dumps({"name": "report.pdf", "size": size, "sha256": "00" * 32,
                           "chunk_size": chunkSize, "chunks": chunks,
                           "file_key": "A" * 43 + "="}).encode()
        keys = {name: publicDer(name) for name in set(readers) | {sender}}
        return e2e.seal(sender, privateKey(sender), to, keys, meta, **kw)

    def offerPayload(self, kind, target, size, chunks, chunkSize, blob):
        return u8(kind) + str8(target) + u64(size) + u32(chunks) + u32(chunkSize) + bytes32(blob)

    def offer(self, size=30, chunks=3, chunkSize=10, kind=0, target="#r",
              readers=("bob", "carol"), sender=None):
        """
        Offer a file from C{sender} (alice) and return its id and envelope;
        the OFFERED events stay unread.
        """
        sender = sender or self.alice
        to = ("room" if kind == 0 else "user", target)
        blob = self.fileEnvelope(sender.name, to, readers, size, chunks, chunkSize)
        sender.sendRaw(frame(OFFER, self.offerPayload(kind, target, size, chunks, chunkSize, blob)))
        response = self.drain(sender)
        self.assertEqual(len(response), 4 + 3 + 1 + 4, response)
        (tid,) = struct.unpack("!I", response[-4:])
        self.assertEqual(response, ok(u32(tid)))
        return tid, blob

    def started(self, chunks=3, chunkSize=10, accept=("bob", "carol")):
        """
        A transfer to C{#r} that bob and carol answered (accepting those in
        C{accept}), with everything written so far read.
        """
        tid, _ = self.offer(size=chunks * chunkSize, chunks=chunks, chunkSize=chunkSize)
        for wire in (self.bob, self.carol):
            wire.sendRaw(frame(ANSWER, u32(tid) + u8(1 if wire.name in accept else 0)))
        self.drainAll()
        return tid

    def chunk(self, tid, index, data=None):
        data = b"%d" % index if data is None else data
        self.alice.sendRaw(frame(CHUNK, u32(tid) + u32(index) + bytes32(data)))
        return data


class WholeTransferTests(TransferWireTestCase):
    """
    A transfer from offer to DONE, every frame checked.
    """

    def test_offerAndOffered(self):
        """
        OFFER is answered with ok and a u32 id; each other member gets OFFERED
        with the sender, target, sizes and the file envelope cut to its own key
        entry; the sender gets nothing else.
        """
        tid, blob = self.offer(size=25, chunks=3, chunkSize=10)
        for wire in (self.bob, self.carol):
            cut = e2e.Envelope.parse(blob).cutFor(wire.name)
            self.assertEqual(set(json.loads(cut)["encrypted_keys"]), {wire.name})
            self.assertEqual(self.drain(wire), frame(
                OFFERED, u32(tid) + str8("alice") + u8(0) + str8("#r") + u64(25) + u32(3)
                + u32(10) + bytes32(cut)))
        self.assertEqual(self.drain(self.alice), b"")

    def test_directOffered(self):
        """
        An OFFER to one user reaches only that user, as kind 1 with its name as
        target.
        """
        tid, blob = self.offer(kind=1, target="bob", readers=("bob",))
        self.assertEqual(self.drainAll(), [
            b"",
            frame(OFFERED, u32(tid) + str8("alice") + u8(1) + str8("bob") + u64(30) + u32(3)
                  + u32(10) + bytes32(e2e.Envelope.parse(blob).cutFor("bob"))),
            b""])

    def test_encryptedFileToTwoRecipients(self):
        """
        Both recipients accept; START tells the sender 2 recipients and window 8;
        each CHUNK is relayed as a CHUNK event byte for byte, so each recipient
        decrypts the file; after the ACKs and the sender's DONE each recipient
        gets DONE, then the sender does.
        """
        plaintext = bytes(range(256)) * 100
        chunkSize, chunks = 10000, 3
        tid, blob = self.offer(size=len(plaintext), chunks=chunks, chunkSize=chunkSize)
        envelopeId = e2e.Envelope.parse(blob).id
        self.drainAll()

        self.bob.sendRaw(frame(ANSWER, u32(tid) + u8(1)))
        self.assertEqual(self.drainAll(), [b"", ok(), b""])
        self.carol.sendRaw(frame(ANSWER, u32(tid) + u8(1)))
        self.assertEqual(self.drainAll(), [frame(START, u32(tid) + u16(2) + u16(8)), b"", ok()])

        for index in range(chunks):
            sealed = e2e.sealChunk(FILE_KEY, envelopeId, index,
                                   plaintext[index * chunkSize:(index + 1) * chunkSize])
            self.chunk(tid, index, sealed)
            relayed = frame(CHUNK, u32(tid) + u32(index) + bytes32(sealed))
            self.assertEqual(self.drainAll(), [ok(), relayed, relayed])
            received = split(relayed)[0][1][12:]
            self.assertEqual(e2e.openChunk(FILE_KEY, envelopeId, index, received),
                             plaintext[index * chunkSize:(index + 1) * chunkSize])

        for wire in (self.bob, self.carol):
            for index in range(chunks):
                wire.sendRaw(frame(ACK, u32(tid) + u32(index)))
        self.assertEqual(self.drainAll(), [b"", ok() * 3, ok() * 3])

        self.alice.sendRaw(frame(DONE, u32(tid)))
        done = frame(DONE, u32(tid))
        self.assertEqual(self.drainAll(), [done + ok(), done, done])
        self.assertEqual(self.service.transfers, {})

    def test_doneAfterTheLastAck(self):
        """
        When the sender's DONE comes first, a recipient gets DONE with the
        response to its last ACK, and the sender gets DONE after the last
        recipient's.
        """
        tid = self.started(chunks=1)
        self.chunk(tid, 0)
        self.alice.sendRaw(frame(DONE, u32(tid)))
        self.drainAll()
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        done = frame(DONE, u32(tid))
        self.assertEqual(self.drainAll(), [b"", done + ok(), b""])
        self.carol.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.assertEqual(self.drainAll(), [done, b"", done + ok()])

    def test_emptyFile(self):
        """
        An empty file is offered as one chunk of chunk size 1 and sent as one
        CHUNK of no bytes.
        """
        tid, _ = self.offer(size=0, chunks=1, chunkSize=1, kind=1, target="bob", readers=("bob",))
        self.bob.sendRaw(frame(ANSWER, u32(tid) + u8(1)))
        self.drainAll()
        self.chunk(tid, 0, b"")
        self.assertEqual(self.drainAll(), [ok(), frame(CHUNK, u32(tid) + u32(0) + u32(0)), b""])
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.alice.sendRaw(frame(DONE, u32(tid)))
        done = frame(DONE, u32(tid))
        self.assertEqual(self.drainAll(), [done + ok(), ok() + done, b""])


class WindowWireTests(TransferWireTestCase):
    """
    START's window and NEXT frames with the default window of 8.
    """

    def test_windowOfEight(self):
        """
        Chunks 0-7 may go at once and chunk 8 gets 0x01 and is not relayed; NEXT
        comes when both recipients acknowledged chunk 0, then chunk 1, and
        stops at the last chunk.
        """
        tid = self.started(chunks=10)
        for index in range(8):
            self.chunk(tid, index)
        self.drainAll()
        self.assertEqual(self.status(self.alice, CHUNK, u32(tid) + u32(8) + bytes32(b"8")), ERR)
        self.assertEqual(self.drainAll(), [b"", b"", b""])
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.assertEqual(self.drain(self.alice), b"")
        self.carol.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.assertEqual(self.drain(self.alice), frame(NEXT, u32(tid) + u32(8)))
        for wire in (self.bob, self.carol):
            for index in (1, 2, 3):
                wire.sendRaw(frame(ACK, u32(tid) + u32(index)))
        self.assertEqual(self.drain(self.alice), frame(NEXT, u32(tid) + u32(9)))


class StopAndWaitTests(TransferWireTestCase):
    """
    Window 1: stop-and-wait.
    """

    settings = dict(NO_IDLE, window=1)

    def test_stopAndWait(self):
        """
        START carries window 1; after each chunk the sender must wait for the
        ACK, which brings NEXT for the following chunk.
        """
        tid, _ = self.offer(kind=1, target="bob", readers=("bob",))
        self.bob.sendRaw(frame(ANSWER, u32(tid) + u8(1)))
        self.assertEqual(self.drain(self.alice), frame(START, u32(tid) + u16(1) + u16(1)))
        self.drainAll()
        for index in range(3):
            self.chunk(tid, index)
            relayed = frame(CHUNK, u32(tid) + u32(index) + bytes32(b"%d" % index))
            self.assertEqual(self.drainAll(), [ok(), relayed, b""])
            ahead = u32(tid) + u32(index + 1) + bytes32(b"x")
            self.assertEqual(self.status(self.alice, CHUNK, ahead), ERR)
            self.assertEqual(self.drainAll(), [b"", b"", b""])
            self.bob.sendRaw(frame(ACK, u32(tid) + u32(index)))
            self.assertEqual(self.drainAll(),
                             [frame(NEXT, u32(tid) + u32(index + 1)) if index < 2 else b"",
                              ok(), b""])


class CancelWireTests(TransferWireTestCase):
    """
    CANCEL frames: from the sender, from a recipient, from timeouts and lost
    connections.
    """

    def test_senderCancels(self):
        """
        The sender's CANCEL is answered ok and every recipient gets CANCEL with
        the reason.
        """
        tid = self.started()
        self.alice.sendRaw(frame(CANCEL, u32(tid) + str16("changed my mind")))
        cancel = frame(CANCEL, u32(tid) + str16("cancelled by the sender: changed my mind"))
        self.assertEqual(self.drainAll(), [ok(), cancel, cancel])
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(0)), NOTFOUND)

    def test_recipientCancels(self):
        """
        A recipient's CANCEL is answered ok and tells nobody; the last one's
        brings the sender CANCEL "no recipients left".
        """
        tid = self.started()
        self.bob.sendRaw(frame(CANCEL, u32(tid) + str16("")))
        self.assertEqual(self.drainAll(), [b"", ok(), b""])
        self.carol.sendRaw(frame(CANCEL, u32(tid) + str16("bye")))
        self.assertEqual(self.drainAll(),
                         [frame(CANCEL, u32(tid) + str16("no recipients left")), b"", ok()])

    def test_offerExpires(self):
        """
        Nobody answering: at 60 s each recipient gets CANCEL "offer expired" and
        the sender CANCEL; a late ANSWER is not found.
        """
        tid, _ = self.offer()
        self.drainAll()
        self.clock.advance(59)
        self.assertEqual(self.drainAll(), [b"", b"", b""])
        self.clock.advance(1)
        expired = frame(CANCEL, u32(tid) + str16("offer expired"))
        refused = frame(CANCEL, u32(tid) + str16("no recipient accepted"))
        self.assertEqual(self.drainAll(), [refused, expired, expired])
        self.assertEqual(self.status(self.bob, ANSWER, u32(tid) + u8(1)), NOTFOUND)

    def test_stalledRecipient(self):
        """
        A recipient that does not acknowledge within 30 s of the relay gets
        CANCEL "chunk timeout"; the other finishes and the sender only sees
        DONE.
        """
        tid = self.started(chunks=2)
        self.chunk(tid, 0)
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.clock.advance(10)
        self.chunk(tid, 1)
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(1)))
        self.drainAll()
        self.clock.advance(20)
        timedOut = frame(CANCEL, u32(tid) + str16("chunk timeout"))
        self.assertEqual(self.drainAll(), [b"", b"", timedOut])
        self.alice.sendRaw(frame(DONE, u32(tid)))
        done = frame(DONE, u32(tid))
        self.assertEqual(self.drainAll(), [done + ok(), done, b""])

    def test_lastRecipientDroppedAfterAnotherFinished(self):
        """
        When one recipient has the whole file and DONE, and the other is then
        dropped, the sender gets DONE, not CANCEL.
        """
        tid = self.started(chunks=1)
        self.chunk(tid, 0)
        self.alice.sendRaw(frame(DONE, u32(tid)))
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.drainAll()
        self.clock.advance(30)
        self.assertEqual(self.drainAll(), [frame(DONE, u32(tid)), b"",
                                           frame(CANCEL, u32(tid) + str16("chunk timeout"))])


    def test_senderStalls(self):
        """
        A sender that sends nothing for 30 s after START gets CANCEL "sender
        stalled", as does every recipient.
        """
        tid = self.started()
        self.clock.advance(30)
        stalled = frame(CANCEL, u32(tid) + str16("sender stalled"))
        self.assertEqual(self.drainAll(), [stalled, stalled, stalled])

    def test_recipientConnectionLost(self):
        """
        A recipient whose connection is lost is dropped: the sender only hears
        that it left the room, and the other recipient finishes.
        """
        tid = self.started(chunks=1)
        self.chunk(tid, 0)
        self.drainAll()
        self.carol.protocol.connectionLost(Failure(ConnectionDone()))
        left = frame(Op.LEFT, str8("#r") + str8("carol"))
        self.assertEqual(self.drainAll()[:2], [left, left])
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.alice.sendRaw(frame(DONE, u32(tid)))
        done = frame(DONE, u32(tid))
        self.assertEqual(self.drainAll()[:2], [done + ok(), ok() + done])

    def test_senderConnectionLost(self):
        """
        A sender whose connection is lost cancels the transfer: every recipient
        gets CANCEL "the sender is gone" (then LEFT).
        """
        tid = self.started()
        self.alice.protocol.connectionLost(Failure(ConnectionDone()))
        gone = frame(CANCEL, u32(tid) + str16("the sender is gone"))
        left = frame(Op.LEFT, str8("#r") + str8("alice"))
        self.assertEqual(self.drainAll()[1:], [gone + left, gone + left])
        self.assertEqual(self.service.transfers, {})

    def test_recipientLeavesTheRoom(self):
        """
        A recipient that LEAVEs the room gets CANCEL "left the room" before its
        LEAVE response.
        """
        tid = self.started()
        self.carol.sendRaw(frame(Op.LEAVE, str8("#r")))
        self.assertEqual(self.drain(self.carol),
                         frame(CANCEL, u32(tid) + str16("left the room")) + ok())


class MisuseStatusTests(TransferWireTestCase):
    """
    The statuses of section 5 for requests out of turn, out of range or from
    the wrong session.
    """

    def test_unknownAndForeignIds(self):
        """
        An id nobody has, and a transfer the session takes no part in, both get
        0x06 for every transfer request.
        """
        eve = self.guest("eve")
        self.drain(eve)
        tid = self.started()
        for transferId in (tid, (tid + 1) % 2**32):
            for op, rest in [(ANSWER, u8(1)), (CHUNK, u32(0) + bytes32(b"x")),
                             (ACK, u32(0)), (DONE, b""), (CANCEL, str16(""))]:
                self.assertEqual(self.status(eve, op, u32(transferId) + rest), NOTFOUND,
                                 (hex(op), transferId == tid))
        self.assertEqual(self.drainAll(), [b"", b"", b""])

    def test_roleErrors(self):
        """
        The sender's ANSWER and ACK, a recipient's CHUNK and DONE, and a
        decliner's ACK get 0x01.
        """
        tid = self.started(accept=("bob",))
        self.chunk(tid, 0)
        self.drainAll()
        self.assertEqual(self.status(self.alice, ANSWER, u32(tid) + u8(1)), ERR)
        self.assertEqual(self.status(self.alice, ACK, u32(tid) + u32(0)), ERR)
        self.assertEqual(self.status(self.bob, CHUNK, u32(tid) + u32(1) + bytes32(b"x")), ERR)
        self.assertEqual(self.status(self.bob, DONE, u32(tid)), ERR)
        self.assertEqual(self.status(self.carol, ACK, u32(tid) + u32(0)), ERR)
        self.assertEqual(self.drainAll(), [b"", b"", b""])

    def test_answers(self):
        """
        An ANSWER other than 0 or 1 gets 0x01; a second ANSWER 0x07; an ANSWER
        after the offer expired while the transfer runs 0x07.
        """
        tid, _ = self.offer()
        self.assertEqual(self.status(self.bob, ANSWER, u32(tid) + u8(2)), ERR)
        self.assertEqual(self.status(self.bob, ANSWER, u32(tid) + u8(1)), OK)
        self.assertEqual(self.status(self.bob, ANSWER, u32(tid) + u8(0)), CONFLICT)
        self.clock.advance(60)
        self.assertEqual(self.status(self.carol, ANSWER, u32(tid) + u8(1)), CONFLICT)

    def test_chunkStatuses(self):
        """
        A CHUNK over the window, past the last index or longer than the chunk
        size + 16 gets 0x01, one already sent 0x07; none of them is relayed.
        """
        tid = self.started(chunks=10, chunkSize=10)
        self.assertEqual(self.status(self.alice, CHUNK, u32(tid) + u32(0) + bytes32(b"x" * 26)), OK)
        self.drainAll()
        for index, data, expected in [(8, b"x", ERR), (10, b"x", ERR), (1, b"x" * 27, ERR),
                                      (0, b"x", CONFLICT)]:
            self.assertEqual(self.status(self.alice, CHUNK, u32(tid) + u32(index) + bytes32(data)),
                             expected, index)
        self.assertEqual(self.drainAll(), [b"", b"", b""])

    def test_ackStatuses(self):
        """
        An ACK past the last index or of a chunk not relayed yet gets 0x01; a
        repeated ACK gets 0x00 and brings no second NEXT.
        """
        tid = self.started(chunks=10, accept=("bob",))
        self.chunk(tid, 0)
        self.drainAll()
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(10)), ERR)
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(1)), ERR)
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(0)), OK)
        self.assertEqual(self.drain(self.alice), frame(NEXT, u32(tid) + u32(8)))
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(0)), OK)
        self.assertEqual(self.drain(self.alice), b"")

    def test_finishedRecipientAckPastTheLastChunk(self):
        """
        An ACK past the last chunk gets 0x01 also from a recipient that already
        got DONE.
        """
        tid = self.started(chunks=1)
        self.chunk(tid, 0)
        self.alice.sendRaw(frame(DONE, u32(tid)))
        self.bob.sendRaw(frame(ACK, u32(tid) + u32(0)))
        self.drainAll()
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(1)), ERR)


    def test_doneStatuses(self):
        """
        DONE while chunks are unsent gets 0x01; once every chunk is sent, ok;
        repeated while recipients are still acknowledging, 0x07.
        """
        tid = self.started(chunks=2)
        self.chunk(tid, 1)
        self.drainAll()
        self.assertEqual(self.status(self.alice, DONE, u32(tid)), ERR)
        self.chunk(tid, 0)
        self.drainAll()
        self.assertEqual(self.status(self.alice, DONE, u32(tid)), OK)
        self.assertEqual(self.status(self.alice, DONE, u32(tid)), CONFLICT)

    def test_requestsBeforeStart(self):
        """
        CHUNK and DONE during the offer get 0x01, as does an accepted
        recipient's ACK.
        """
        tid, _ = self.offer()
        self.status(self.bob, ANSWER, u32(tid) + u8(1))
        self.assertEqual(self.status(self.alice, CHUNK, u32(tid) + u32(0) + bytes32(b"x")), ERR)
        self.assertEqual(self.status(self.alice, DONE, u32(tid)), ERR)
        self.assertEqual(self.status(self.bob, ACK, u32(tid) + u32(0)), ERR)

    def test_malformedTransferFrames(self):
        """
        Transfer frames with missing or extra bytes get 0x01 and the connection
        stays.
        """
        tid = self.started()
        for op, payload in [(ANSWER, u32(tid)), (ACK, u32(tid) + u32(0) + b"!"),
                            (CHUNK, u32(tid) + u32(0) + u32(5) + b"abc"), (DONE, b"\x00"),
                            (CANCEL, u32(tid) + u16(3) + b"\xff\xfe\xfd")]:
            self.assertEqual(self.status(self.alice, op, payload), ERR, hex(op))


class OfferWireTests(TransferWireTestCase):
    """
    OFFER's statuses, ranked as section 5 says.
    """

    def offerStatus(self, wire, size, chunks, chunkSize, blob=None, target="#r", **kw):
        if blob is None:
            blob = self.fileEnvelope(getattr(wire, "name", "alice"), ("room", target),
                                     ("bob", "carol"), size, chunks, chunkSize, **kw)
        return self.status(wire, OFFER, self.offerPayload(0, target, size, chunks, chunkSize, blob))

    def test_sizeStatuses(self):
        """
        A wrong chunk count gets 0x01; a chunk size of 0 or over the frame limit
        less 64, or more than 2^20 chunks, gets 0x08.
        """
        limit = self.service.settings.maxFrame - 64
        for size, chunks, chunkSize, expected in [
                (30, 2, 10, ERR), (0, 0, 10, ERR), (10, 1, 0, TOOLARGE),
                (limit + 1, 1, limit + 1, TOOLARGE), (2**20 + 1, 2**20 + 1, 1, TOOLARGE),
                (limit, 1, limit, OK)]:
            self.assertEqual(self.offerStatus(self.alice, size, chunks, chunkSize), expected,
                             (size, chunks, chunkSize))

    def test_sizeChecksBeforeHello(self):
        """
        Before HELLO, a wrong chunk count still gets 0x01 and a bad chunk size
        0x08; a well-sized OFFER gets 0x04.
        """
        wire = self.connect()
        self.assertEqual(self.offerStatus(wire, 30, 2, 10, blob=b"{}"), ERR)
        self.assertEqual(self.offerStatus(wire, 30, 3, 0, blob=b"{}"), TOOLARGE)
        self.assertEqual(self.offerStatus(wire, 30, 3, 10, blob=b"{}"), AUTHREQ)

    def test_messageEnvelopeForbidden(self):
        """
        An envelope under the message header gets 0x05.
        """
        self.assertEqual(self.offerStatus(self.alice, 30, 3, 10, domain=e2e.MESSAGE), FORBIDDEN)

    def test_replayedEnvelopeId(self):
        """
        An OFFER reusing the id of an accepted file envelope gets 0x07.
        """
        self.assertEqual(self.offerStatus(self.alice, 30, 3, 10, envelopeId="C" * 21 + "A"), OK)
        self.assertEqual(self.offerStatus(self.alice, 30, 3, 10, envelopeId="C" * 21 + "A"),
                         CONFLICT)

    def test_fourTransfersAtOnce(self):
        """
        A fifth pending transfer of one user gets 0x02.
        """
        for _ in range(4):
            self.assertEqual(self.offerStatus(self.alice, 30, 3, 10), OK)
        self.assertEqual(self.offerStatus(self.alice, 30, 3, 10), RATE)

    def test_unknownTarget(self):
        """
        An OFFER to a room that does not exist gets 0x06, to a user offline 0x06.
        """
        self.assertEqual(self.offerStatus(self.alice, 30, 3, 10, target="#nowhere"), NOTFOUND)
        blob = self.fileEnvelope("alice", ("user", "nobody"), (), 30, 3, 10)
        self.assertEqual(self.status(self.alice, OFFER,
                                     self.offerPayload(1, "nobody", 30, 3, 10, blob)), NOTFOUND)
