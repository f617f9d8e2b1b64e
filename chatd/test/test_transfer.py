"""
Tests for L{chatd.transfer}: the per-transfer state machine, fed directly with
recording fake sessions and a L{Clock}, and the same machine as the core runs it
behind L{chatd.core.files.FileRequests.offer} and its sibling requests.

docs/protocol.rst is the contract; each rule there has a test here.
"""

import json
import sys
from typing import Callable

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatd import e2e
from chatd.errors import (
    AuthRequired,
    BadRequest,
    ChatError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    StaleRecipients,
    TooLarge,
)
from chatd.interfaces import IFileClient
from chatd.test.fakes import FakeChatClient, makeService, privateKey, publicDer
from chatd.transfer import Offer, Transfer

ROOM, USER = 0, 1
TID = 7

# Idle timers far away, so that tests moving the clock by minutes hear no
# warnings and lose no sessions.
NO_IDLE = dict(idleWarning=3600.0, idleTimeout=7200.0)


def chunkData(index, size=10):
    """
    Recognisable bytes for chunk C{index}.
    """
    return bytes([65 + index % 26]) * size


@implementer(IFileClient)
class FileClient(FakeChatClient):
    """
    A L{FakeChatClient} that also takes part in file transfers.

    Every call is recorded in C{events} as C{(method, args)} and, when a shared
    C{log} is given, as C{("name.method", args)} there too, so that tests can
    assert the order across participants. An offer is recorded by its transfer
    id; the transfers themselves are kept in C{offers}.
    """

    def __init__(self, name="client", log=None):
        FakeChatClient.__init__(self)
        self.name = name
        self.log = log
        self.offers = []

    def _note(self, method, args):
        self.events.append((method, args))
        if self.log is not None:
            self.log.append(("%s.%s" % (self.name, method), args))

    def fileOffered(self, transfer):
        self.offers.append(transfer)
        self._note("fileOffered", (transfer.id,))

    def fileStarted(self, transferId, accepted, window):
        self._note("fileStarted", (transferId, accepted, window))

    def fileChunk(self, transferId, index, data):
        self._note("fileChunk", (transferId, index, data))

    def fileNext(self, transferId, limit):
        self._note("fileNext", (transferId, limit))

    def fileDone(self, transferId):
        self._note("fileDone", (transferId,))

    def fileCancelled(self, transferId, reason):
        self._note("fileCancelled", (transferId, reason))


class SizeClient(FileClient):
    """
    A L{FileClient} that records the length of each chunk instead of the chunk,
    so that it holds no reference to the data.
    """

    def fileChunk(self, transferId, index, data):
        self._note("fileChunk", (transferId, index, len(data)))


class LoopGuardClock(Clock):
    """
    A L{Clock} that refuses to keep scheduling calls for the very moment it is
    at: a timer that re-arms itself for "now" over and over would otherwise make
    L{Clock.advance} spin forever, and a test hang instead of fail.
    """

    limit = 100

    def __init__(self):
        Clock.__init__(self)
        self._moment = None
        self._count = 0

    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> IDelayedCall:
        if delay <= 0:
            if self._moment != self.seconds():
                self._moment, self._count = self.seconds(), 0
            self._count += 1
            if self._count > self.limit:
                raise RuntimeError("a timer keeps re-arming itself for now (%r): livelock"
                                   % (self.seconds(),))
        return Clock.callLater(self, delay, callable, *args, **kw)


class FakeSession:
    """
    What the machine needs of a session: a C{client} providing L{IFileClient}.
    """

    def __init__(self, name, log, clientFactory=FileClient):
        self.name = name
        self.client = clientFactory(name, log)

    def __repr__(self):
        return "<FakeSession %s>" % (self.name,)


class InterfaceTests(SynchronousTestCase):
    """
    The recording client stands for what front doors give the core.
    """

    def test_fileClientProvidesIFileClient(self):
        """
        L{FileClient} provides L{IFileClient}, so the machine treats it as a door.
        """
        self.assertTrue(verifyObject(IFileClient, FileClient()))


class MachineTestCase(SynchronousTestCase):
    """
    A L{Transfer} from C{alice} to fake sessions C{bob} and C{carol}, with a
    L{Clock}, an offer timeout of 60 s and a chunk timeout of 30 s.
    """

    clientFactory = FileClient

    def setUp(self):
        self.clock = LoopGuardClock()
        self.log: list = []
        self.alice, self.bob, self.carol, self.dave = (
            FakeSession(name, self.log, self.clientFactory)
            for name in ("alice", "bob", "carol", "dave"))
        self.outcomes = []

    def makeTransfer(self, recipients=None, chunks=4, chunkSize=10, size=None, window=8):
        """
        Offer a file of C{chunks} chunks to C{recipients} (bob and carol by
        default) and begin.
        """
        if recipients is None:
            recipients = [self.bob, self.carol]
        if size is None:
            size = chunks * chunkSize
        offer = Offer(ROOM, "#r", size, chunks, chunkSize, None)
        transfer = Transfer(TID, self.alice, offer, recipients, self.clock, window=window,
                            offerTimeout=60.0, chunkTimeout=30.0)
        transfer.whenDone().addCallback(self.outcomes.append)
        transfer.begin()
        return transfer

    def started(self, **kw):
        """
        A transfer every recipient accepted, with the log emptied.
        """
        transfer = self.makeTransfer(**kw)
        for session in list(transfer.recipients):
            transfer.answer(session, True)
        self.take()
        return transfer

    def take(self):
        """
        The calls recorded since the last call, and forget them.
        """
        events, self.log[:] = self.log[:], []
        return events

    def send(self, transfer, *indices):
        for index in indices:
            transfer.chunk(self.alice, index, chunkData(index))

    def ack(self, transfer, session, *indices):
        for index in indices:
            transfer.ack(session, index)

    def relayed(self, *indices, to=("bob", "carol")):
        """
        The log entries of relaying C{indices}, each to every one of C{to}.
        """
        return [("%s.fileChunk" % name, (TID, index, chunkData(index)))
                for index in indices for name in to]


class OfferTests(MachineTestCase):
    """
    From the offer to START or CANCEL: answers and the offer timeout.
    """

    def test_offeredToEveryRecipient(self):
        """
        Beginning offers the file to each recipient and tells the sender nothing.
        """
        transfer = self.makeTransfer()
        self.assertEqual(self.take(), [("bob.fileOffered", (TID,)), ("carol.fileOffered", (TID,))])
        self.assertEqual(self.bob.client.offers, [transfer])
        self.assertEqual(transfer.state, "answering")

    def test_allAccept(self):
        """
        START goes to the sender with the number of accepting recipients and the
        window once the last recipient accepts, and not before.
        """
        transfer = self.makeTransfer(window=5)
        self.take()
        transfer.answer(self.bob, True)
        self.assertEqual(self.take(), [])
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("alice.fileStarted", (TID, 2, 5))])
        self.assertEqual(transfer.state, "started")

    def test_someDecline(self):
        """
        START counts only the accepting recipients, and chunks go only to them.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, False)
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("alice.fileStarted", (TID, 1, 8))])
        self.send(transfer, 0)
        self.assertEqual(self.take(), self.relayed(0, to=["carol"]))

    def test_allDecline(self):
        """
        When every recipient declines, the sender gets CANCEL and the transfer
        ends with that reason; the decliners hear nothing more.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, False)
        transfer.answer(self.carol, False)
        self.assertEqual(self.take(), [("alice.fileCancelled", (TID, "no recipient accepted"))])
        self.assertEqual(self.outcomes, ["no recipient accepted"])
        self.assertEqual(transfer.state, "cancelled")

    def test_nobodyAnswers(self):
        """
        At the offer timeout every silent recipient gets CANCEL "offer expired",
        then the sender gets CANCEL, and no timer is left.
        """
        transfer = self.makeTransfer()
        self.take()
        self.clock.advance(59.9)
        self.assertEqual(self.take(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "offer expired")),
                                       ("carol.fileCancelled", (TID, "offer expired")),
                                       ("alice.fileCancelled", (TID, "no recipient accepted"))])
        self.assertEqual(self.outcomes, ["no recipient accepted"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(NotFound, transfer.answer, self.bob, True)

    def test_silentRecipientCountsAsDeclining(self):
        """
        One silent recipient delays START to the offer timeout, then gets CANCEL
        "offer expired" while the transfer starts for the others; its late
        ANSWER gets a conflict (already started).
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, True)
        self.clock.advance(59)
        self.assertEqual(self.take(), [])
        self.clock.advance(1)
        self.assertEqual(self.take(), [("carol.fileCancelled", (TID, "offer expired")),
                                       ("alice.fileStarted", (TID, 1, 8))])
        error = self.assertRaises(Conflict, transfer.answer, self.carol, True)
        self.assertIn("started", error.message)
        self.assertRaises(BadRequest, transfer.ack, self.carol, 0)

    def test_secondAnswer(self):
        """
        A second ANSWER, the same or the other way, is a conflict and changes
        nothing.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, True)
        self.assertRaises(Conflict, transfer.answer, self.bob, True)
        self.assertRaises(Conflict, transfer.answer, self.bob, False)
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("alice.fileStarted", (TID, 2, 8))])

    def test_recipientCancelDuringOfferDeclines(self):
        """
        A recipient's CANCEL during the offer counts as declining it, without a
        CANCEL back to it.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.cancel(self.bob, "no thanks")
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("alice.fileStarted", (TID, 1, 8))])
        self.assertRaises(Conflict, transfer.answer, self.bob, True)

    def test_acceptedThenGoneBeforeStart(self):
        """
        A recipient that accepted and disconnects before the others answer is
        told and left out of START.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, True)
        transfer.sessionGone(self.bob, "disconnected")
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "disconnected")),
                                       ("alice.fileStarted", (TID, 1, 8))])

    def test_senderCancelsDuringOffer(self):
        """
        The sender's CANCEL during the offer reaches every recipient, accepted
        or not, and leaves no offer timer behind.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.answer(self.bob, True)
        transfer.cancel(self.alice, "")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "cancelled by the sender")),
                                       ("carol.fileCancelled", (TID, "cancelled by the sender"))])
        self.assertEqual(self.outcomes, ["cancelled by the sender"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(NotFound, transfer.answer, self.carol, True)

    def test_senderGoneDuringOffer(self):
        """
        A sender that disconnects during the offer cancels it for everyone.
        """
        transfer = self.makeTransfer()
        self.take()
        transfer.sessionGone(self.alice, "disconnected")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "the sender is gone")),
                                       ("carol.fileCancelled", (TID, "the sender is gone"))])
        self.assertEqual(self.outcomes, ["the sender is gone"])
        self.clock.advance(60)
        self.assertEqual(self.take(), [])

    def test_noChunksBeforeStart(self):
        """
        CHUNK and DONE before START are refused; ACK from an accepted recipient
        before START is refused too.
        """
        transfer = self.makeTransfer()
        transfer.answer(self.bob, True)
        self.take()
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 0, b"x")
        self.assertRaises(BadRequest, transfer.done, self.alice)
        self.assertRaises(BadRequest, transfer.ack, self.bob, 0)
        self.assertEqual(self.take(), [])


class WindowTests(MachineTestCase):
    """
    START's window and NEXT: the sender may send index i when i <= L + window - 1,
    L being the lowest index some remaining recipient has not acknowledged.
    """

    def test_stopAndWait(self):
        """
        With window 1 the sender may send chunk 0, and after each chunk's ACK
        gets NEXT for the next one, until the last.
        """
        transfer = self.makeTransfer(recipients=[self.bob], chunks=3, window=1)
        transfer.answer(self.bob, True)
        self.assertEqual(self.take(), [("bob.fileOffered", (TID,)),
                                       ("alice.fileStarted", (TID, 1, 1))])
        self.send(transfer, 0)
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 1, chunkData(1))
        self.ack(transfer, self.bob, 0)
        self.send(transfer, 1)
        self.ack(transfer, self.bob, 1)
        self.send(transfer, 2)
        self.ack(transfer, self.bob, 2)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 0, chunkData(0))),
                                       ("alice.fileNext", (TID, 1)),
                                       ("bob.fileChunk", (TID, 1, chunkData(1))),
                                       ("alice.fileNext", (TID, 2)),
                                       ("bob.fileChunk", (TID, 2, chunkData(2))),
                                       ("bob.fileDone", (TID,)),
                                       ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])

    def test_windowOfEight(self):
        """
        With window 8 the sender may send chunks 0 to 7 at once; chunk 8 is over
        the window and not relayed; each chunk both recipients acknowledge in
        order lets one more through, up to the last chunk.
        """
        transfer = self.started(chunks=12)
        self.send(transfer, *range(8))
        self.assertEqual(self.take(), self.relayed(*range(8)))
        error = self.assertRaises(BadRequest, transfer.chunk, self.alice, 8, chunkData(8))
        self.assertIn("window", error.message)
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.bob, *range(8))
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.carol, *range(8))
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 8)),
                                       ("alice.fileNext", (TID, 9)),
                                       ("alice.fileNext", (TID, 10)),
                                       ("alice.fileNext", (TID, 11))])

    def test_nextFollowsTheSlowestRecipient(self):
        """
        NEXT carries L + window - 1 for the lowest index L not acknowledged by
        every remaining recipient, and is sent only when that value grows: acks
        ahead of a gap, or by only one recipient, send none.
        """
        transfer = self.started(chunks=10, window=3)
        self.send(transfer, 0, 1, 2)
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 3, chunkData(3))
        self.take()
        self.ack(transfer, self.bob, 0)
        self.ack(transfer, self.carol, 1)
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.carol, 0)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 3))])
        self.ack(transfer, self.bob, 2)
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.bob, 1)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 4))])
        self.ack(transfer, self.carol, 2)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 5))])
        self.send(transfer, 3, 4, 5)
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 6, chunkData(6))

    def test_nextJumpsOverSeveralAcks(self):
        """
        One ACK that fills a gap moves L past every chunk acknowledged behind it,
        and NEXT carries the new value once.
        """
        transfer = self.started(recipients=[self.bob], chunks=10, window=4)
        self.send(transfer, 0, 1, 2, 3)
        self.take()
        self.ack(transfer, self.bob, 3, 2, 1)
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.bob, 0)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 7))])

    def test_nextStopsAtTheLastChunk(self):
        """
        NEXT never names an index past the last chunk, and none is sent once
        the limit is the last chunk.
        """
        transfer = self.started(recipients=[self.bob], chunks=5, window=4)
        self.send(transfer, 0, 1, 2, 3)
        self.take()
        self.ack(transfer, self.bob, 0)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 4))])
        self.ack(transfer, self.bob, 1, 2, 3)
        self.send(transfer, 4)
        self.ack(transfer, self.bob, 4)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 4, chunkData(4)))])

    def test_fewerChunksThanTheWindow(self):
        """
        A file of fewer chunks than the window may be sent whole at once, and
        no NEXT follows.
        """
        transfer = self.started(recipients=[self.bob], chunks=3)
        self.send(transfer, 2, 0, 1)
        self.ack(transfer, self.bob, 0, 1, 2)
        self.assertEqual(self.take(), self.relayed(2, 0, 1, to=["bob"]))

    def test_droppingTheSlowestRecipientWidensTheWindow(self):
        """
        When the recipient holding L back is dropped, L is taken over those that
        remain, and NEXT says so.
        """
        transfer = self.started(chunks=10, window=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0, 1)
        self.take()
        transfer.sessionGone(self.carol, "disconnected")
        self.assertEqual(self.take(), [("carol.fileCancelled", (TID, "disconnected")),
                                       ("alice.fileNext", (TID, 3))])


class ChunkTests(MachineTestCase):
    """
    The sender's CHUNK: relayed at once to every remaining recipient, or refused
    and not relayed.
    """

    def test_relayedInTheOrderSent(self):
        """
        Each chunk goes to every accepting recipient as it arrives, in any order
        within the window.
        """
        transfer = self.started()
        self.send(transfer, 3, 1)
        self.assertEqual(self.take(), self.relayed(3, 1))

    def test_indexPastTheLastChunk(self):
        """
        A CHUNK whose index is the chunk count or more gets 0x01 and is not
        relayed, even when the window would allow it.
        """
        transfer = self.started(chunks=4)
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 4, chunkData(4))
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 2**32 - 1, b"x")
        self.assertEqual(self.take(), [])

    def test_dataLongerThanChunkSizePlusTag(self):
        """
        Data up to the chunk size + 16 (the AES-GCM tag) is relayed; one byte
        more gets 0x01 and is not relayed.
        """
        transfer = self.started(chunkSize=10)
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 0, b"x" * 27)
        self.assertEqual(self.take(), [])
        transfer.chunk(self.alice, 0, b"x" * 26)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 0, b"x" * 26)),
                                       ("carol.fileChunk", (TID, 0, b"x" * 26))])

    def test_duplicateIndex(self):
        """
        A chunk index already sent gets a conflict and is not relayed again, even
        after every recipient acknowledged it.
        """
        transfer = self.started()
        self.send(transfer, 0)
        self.take()
        self.assertRaises(Conflict, transfer.chunk, self.alice, 0, chunkData(0))
        self.ack(transfer, self.bob, 0)
        self.ack(transfer, self.carol, 0)
        self.assertRaises(Conflict, transfer.chunk, self.alice, 0, b"other")
        self.assertEqual(self.take(), [])


class AckTests(MachineTestCase):
    """
    A recipient's ACK: counted once, for chunks relayed to it.
    """

    def test_indexPastTheLastChunk(self):
        """
        An ACK for an index of the chunk count or more gets 0x01 and counts for
        nothing.
        """
        transfer = self.started(recipients=[self.bob], chunks=2)
        self.send(transfer, 0, 1)
        self.take()
        self.assertRaises(BadRequest, transfer.ack, self.bob, 2)
        self.assertRaises(BadRequest, transfer.ack, self.bob, 2**32 - 1)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [])

    def test_chunkNotYetRelayed(self):
        """
        An ACK for a chunk not relayed yet gets 0x01 and is not counted: the
        recipient still gets the chunk and must acknowledge it afterwards.
        """
        transfer = self.started(recipients=[self.bob], chunks=2, window=1)
        self.send(transfer, 0)
        self.take()
        self.assertRaises(BadRequest, transfer.ack, self.bob, 1)
        self.ack(transfer, self.bob, 0)
        self.send(transfer, 1)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 1)),
                                       ("bob.fileChunk", (TID, 1, chunkData(1)))])
        self.ack(transfer, self.bob, 1)
        self.assertEqual(self.take(), [("bob.fileDone", (TID,)), ("alice.fileDone", (TID,))])

    def test_repeatedAck(self):
        """
        A repeated ACK is accepted and changes nothing: no second NEXT, and the
        other recipient still holds the window back.
        """
        transfer = self.started(chunks=10, window=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0)
        self.take()
        self.ack(transfer, self.bob, 0)
        self.ack(transfer, self.bob, 0)
        self.assertEqual(self.take(), [])
        self.ack(transfer, self.carol, 0)
        self.ack(transfer, self.carol, 0)
        self.assertEqual(self.take(), [("alice.fileNext", (TID, 2))])

    def test_ackKeepsTheRecipientAlive(self):
        """
        An acknowledged chunk no longer runs the chunk timeout for that
        recipient.
        """
        transfer = self.started(recipients=[self.bob], chunks=2, window=1)
        self.send(transfer, 0)
        self.clock.advance(29)
        self.ack(transfer, self.bob, 0)
        self.clock.advance(1)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 0, chunkData(0))),
                                       ("alice.fileNext", (TID, 1))])
        self.assertEqual(transfer.state, "started")


class RoleTests(MachineTestCase):
    """
    Who may send what: a non-participant gets 0x06, a participant asking for
    what its role does not allow gets 0x01.
    """

    def test_strangerGetsNotFound(self):
        """
        Every request from a session that takes no part gets NotFound, during the
        offer and once started.
        """
        transfer = self.makeTransfer()
        for stage in ("answering", "started"):
            self.assertEqual(transfer.state, stage)
            self.assertRaises(NotFound, transfer.answer, self.dave, True)
            self.assertRaises(NotFound, transfer.ack, self.dave, 0)
            self.assertRaises(NotFound, transfer.chunk, self.dave, 0, b"x")
            self.assertRaises(NotFound, transfer.done, self.dave)
            self.assertRaises(NotFound, transfer.cancel, self.dave, "")
            if stage == "answering":
                transfer.answer(self.bob, True)
                transfer.answer(self.carol, True)
        self.take()
        transfer.sessionGone(self.dave, "disconnected")
        self.assertEqual(self.take(), [])

    def test_senderMayNotAnswerOrAck(self):
        """
        The sender's ANSWER and ACK get 0x01.
        """
        transfer = self.makeTransfer()
        self.assertRaises(BadRequest, transfer.answer, self.alice, True)
        transfer.answer(self.bob, True)
        transfer.answer(self.carol, True)
        self.send(transfer, 0)
        self.assertRaises(BadRequest, transfer.ack, self.alice, 0)

    def test_recipientMayNotSendChunksOrDone(self):
        """
        A recipient's CHUNK and DONE get 0x01 and nothing is relayed.
        """
        transfer = self.started()
        self.assertRaises(BadRequest, transfer.chunk, self.bob, 0, b"x")
        self.assertRaises(BadRequest, transfer.done, self.bob)
        self.assertEqual(self.take(), [])

    def test_declinerMayNotAck(self):
        """
        A recipient that declined gets 0x01 for an ACK, even of a chunk the
        others received.
        """
        transfer = self.makeTransfer()
        transfer.answer(self.bob, False)
        transfer.answer(self.carol, True)
        self.send(transfer, 0)
        self.assertRaises(BadRequest, transfer.ack, self.bob, 0)


class DoneTests(MachineTestCase):
    """
    DONE: from the sender after its last chunk; to each recipient when it has
    every chunk; to the sender when all have.
    """

    def test_doneWhileChunksUnsent(self):
        """
        DONE before every chunk was sent gets 0x01.
        """
        transfer = self.started(chunks=3)
        self.send(transfer, 0, 2)
        error = self.assertRaises(BadRequest, transfer.done, self.alice)
        self.assertIn("1", error.message)

    def test_repeatedDone(self):
        """
        A second DONE gets a conflict.
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        transfer.done(self.alice)
        self.assertRaises(Conflict, transfer.done, self.alice)

    def test_eachRecipientFinishesOnItsLastAck(self):
        """
        After the sender's DONE, each recipient gets DONE as soon as it has
        acknowledged every chunk, and the sender gets DONE after the last of
        them; the transfer then ends with "done".
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        transfer.done(self.alice)
        self.ack(transfer, self.carol, 1, 0)
        self.ack(transfer, self.bob, 0)
        self.assertEqual(self.take()[-1:], [("carol.fileDone", (TID,))])
        self.assertEqual(self.outcomes, [])
        self.ack(transfer, self.bob, 1)
        self.assertEqual(self.take(), [("bob.fileDone", (TID,)), ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])
        self.assertEqual(transfer.state, "done")

    def test_acksBeforeDone(self):
        """
        Recipients that acknowledged everything before the sender's DONE get
        DONE with it, before the sender does.
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0, 1)
        self.ack(transfer, self.carol, 0, 1)
        self.take()
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("bob.fileDone", (TID,)), ("carol.fileDone", (TID,)),
                                       ("alice.fileDone", (TID,))])

    def test_finishedRecipientRepeatsAck(self):
        """
        A recipient that got DONE may repeat an ACK while others are still
        receiving, and gets no second DONE.
        """
        transfer = self.started(chunks=1)
        self.send(transfer, 0)
        transfer.done(self.alice)
        self.ack(transfer, self.bob, 0)
        self.take()
        self.ack(transfer, self.bob, 0)
        self.assertEqual(self.take(), [])

    def test_finishedRecipientAckPastTheLastChunk(self):
        """
        An ACK past the last chunk gets 0x01 also from a recipient that already
        has the whole file.
        """
        transfer = self.started(chunks=1)
        self.send(transfer, 0)
        transfer.done(self.alice)
        self.ack(transfer, self.bob, 0)
        self.assertRaises(BadRequest, transfer.ack, self.bob, 1)


    def test_neverBothDoneAndCancel(self):
        """
        A recipient that got DONE hears nothing when the sender then disconnects
        or cancels, while the others get CANCEL; its own CANCEL or departure
        changes nothing.
        """
        transfer = self.started(chunks=1)
        self.send(transfer, 0)
        transfer.done(self.alice)
        self.ack(transfer, self.bob, 0)
        self.take()
        self.assertRaises(NotFound, transfer.cancel, self.bob, "")
        transfer.sessionGone(self.bob, "disconnected")
        transfer.sessionGone(self.alice, "disconnected")
        self.assertEqual(self.take(), [("carol.fileCancelled", (TID, "the sender is gone"))])
        self.assertEqual(self.outcomes, ["the sender is gone"])

    def test_lastUnfinishedRecipientDropped(self):
        """
        When the only recipient still receiving is dropped after another got the
        whole file and DONE, every remaining recipient has everything: the
        sender gets DONE, not CANCEL, and the transfer ends "done".
        """
        transfer = self.started(chunks=1)
        self.send(transfer, 0)
        transfer.done(self.alice)
        self.ack(transfer, self.bob, 0)
        self.take()
        self.clock.advance(30)
        self.assertEqual(self.take(), [("carol.fileCancelled", (TID, "chunk timeout")),
                                       ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])


    def test_emptyFile(self):
        """
        An empty file is one chunk of no bytes: relayed, acknowledged and
        finished like any other.
        """
        transfer = self.started(recipients=[self.bob], chunks=1, chunkSize=4096, size=0)
        transfer.chunk(self.alice, 0, b"")
        self.assertRaises(Conflict, transfer.chunk, self.alice, 0, b"")
        self.ack(transfer, self.bob, 0)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 0, b"")),
                                       ("bob.fileDone", (TID,)),
                                       ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])

    def test_whenDoneAfterTheEnd(self):
        """
        whenDone asked after the transfer ended fires at once with the outcome.
        """
        transfer = self.started(recipients=[self.bob], chunks=1)
        self.send(transfer, 0)
        self.ack(transfer, self.bob, 0)
        transfer.done(self.alice)
        self.assertEqual(self.successResultOf(transfer.whenDone()), "done")

    def test_noTimerAfterTheEnd(self):
        """
        A finished transfer leaves no timer on the clock, and time passing then
        tells nobody anything.
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0, 1)
        self.ack(transfer, self.carol, 0, 1)
        transfer.done(self.alice)
        self.take()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(3600)
        self.assertEqual(self.take(), [])


class CancelTests(MachineTestCase):
    """
    CANCEL from the sender or a recipient, and sessions that go away.
    """

    def test_senderCancels(self):
        """
        The sender's CANCEL reaches every remaining recipient with its reason and
        ends the transfer; a second CANCEL finds nothing.
        """
        transfer = self.started()
        self.send(transfer, 0)
        self.take()
        transfer.cancel(self.alice, "changed my mind")
        reason = "cancelled by the sender: changed my mind"
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, reason)),
                                       ("carol.fileCancelled", (TID, reason))])
        self.assertEqual(self.outcomes, [reason])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(NotFound, transfer.cancel, self.alice, "")
        self.assertRaises(BadRequest, transfer.chunk, self.alice, 1, chunkData(1))

    def test_recipientCancels(self):
        """
        A recipient's CANCEL takes only it out: it gets no CANCEL back, the
        sender is not told, and the others finish.
        """
        transfer = self.started(chunks=1)
        self.send(transfer, 0)
        self.take()
        transfer.cancel(self.carol, "")
        self.assertEqual(self.take(), [])
        self.assertRaises(NotFound, transfer.cancel, self.carol, "")
        self.assertRaises(BadRequest, transfer.ack, self.carol, 0)
        self.ack(transfer, self.bob, 0)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("bob.fileDone", (TID,)), ("alice.fileDone", (TID,))])

    def test_lastRecipientCancels(self):
        """
        When the last remaining recipient cancels, the sender gets CANCEL "no
        recipients left".
        """
        transfer = self.started()
        transfer.cancel(self.bob, "")
        transfer.cancel(self.carol, "")
        self.assertEqual(self.take(), [("alice.fileCancelled", (TID, "no recipients left"))])
        self.assertEqual(self.outcomes, ["no recipients left"])

    def test_recipientDisconnects(self):
        """
        A recipient that goes away is dropped; the sender is not told and the
        others finish.
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0)
        self.take()
        transfer.sessionGone(self.bob, "disconnected")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "disconnected"))])
        self.ack(transfer, self.carol, 0, 1)
        transfer.done(self.alice)
        self.assertEqual(self.take(), [("carol.fileDone", (TID,)), ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])

    def test_everyRecipientGone(self):
        """
        When the last recipient goes away the sender gets CANCEL "no recipients
        left".
        """
        transfer = self.started()
        transfer.sessionGone(self.bob, "left the room")
        transfer.sessionGone(self.carol, "key changed")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "left the room")),
                                       ("carol.fileCancelled", (TID, "key changed")),
                                       ("alice.fileCancelled", (TID, "no recipients left"))])
        self.assertEqual(self.outcomes, ["no recipients left"])

    def test_senderDisconnects(self):
        """
        A sender that goes away cancels the transfer for every recipient; it is
        not told itself.
        """
        transfer = self.started()
        self.send(transfer, 0)
        self.take()
        transfer.sessionGone(self.alice, "disconnected")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "the sender is gone")),
                                       ("carol.fileCancelled", (TID, "the sender is gone"))])
        self.assertEqual(self.outcomes, ["the sender is gone"])
        transfer.sessionGone(self.bob, "disconnected")
        self.assertEqual(self.take(), [])

    def test_droppedRecipientsGetOneCancel(self):
        """
        A recipient dropped once is not told again when the transfer is later
        cancelled.
        """
        transfer = self.started()
        transfer.sessionGone(self.bob, "key changed")
        transfer.sessionGone(self.bob, "disconnected")
        transfer.cancel(self.alice, "")
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "key changed")),
                                       ("carol.fileCancelled", (TID, "cancelled by the sender"))])


class TimeoutTests(MachineTestCase):
    """
    The chunk timeout, per recipient from each chunk's relay, and the sender
    stalling.
    """

    def test_stalledRecipientDropped(self):
        """
        A recipient that does not acknowledge a chunk within the chunk timeout of
        its relay gets CANCEL "chunk timeout"; the sender is not told, and the
        others finish.
        """
        transfer = self.started(chunks=4, window=2)
        self.send(transfer, 0)
        self.clock.advance(10)
        self.send(transfer, 1)
        self.clock.advance(10)
        self.ack(transfer, self.bob, 0, 1)
        self.ack(transfer, self.carol, 0)
        self.assertEqual(self.take(), self.relayed(0, 1) + [("alice.fileNext", (TID, 2))])
        self.clock.advance(19.9)
        self.assertEqual(self.take(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.take(), [("carol.fileCancelled", (TID, "chunk timeout")),
                                       ("alice.fileNext", (TID, 3))])
        self.send(transfer, 2, 3)
        self.ack(transfer, self.bob, 2, 3)
        transfer.done(self.alice)
        self.assertEqual(self.take(), self.relayed(2, 3, to=["bob"])
                         + [("bob.fileDone", (TID,)), ("alice.fileDone", (TID,))])
        self.assertEqual(self.outcomes, ["done"])
        self.assertRaises(BadRequest, transfer.ack, self.carol, 1)

    def test_everyRecipientStalls(self):
        """
        When every recipient misses the chunk timeout, each gets CANCEL, then the
        sender gets CANCEL "no recipients left".
        """
        transfer = self.started()
        self.send(transfer, 0)
        self.take()
        self.clock.advance(30)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "chunk timeout")),
                                       ("carol.fileCancelled", (TID, "chunk timeout")),
                                       ("alice.fileCancelled", (TID, "no recipients left"))])
        self.assertEqual(self.outcomes, ["no recipients left"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_senderStallsAfterStart(self):
        """
        A sender that sends nothing for the chunk timeout after START is
        cancelled: every recipient, then the sender, gets CANCEL "sender stalled".
        """
        self.started()
        self.clock.advance(29.9)
        self.assertEqual(self.take(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "sender stalled")),
                                       ("carol.fileCancelled", (TID, "sender stalled")),
                                       ("alice.fileCancelled", (TID, "sender stalled"))])
        self.assertEqual(self.outcomes, ["sender stalled"])

    def test_senderStallCountsFromItsLastChunk(self):
        """
        The sender's clock starts again with each chunk (and each NEXT): it is
        cancelled a chunk timeout after the last one while it may still send.
        """
        transfer = self.started(chunks=10)
        self.clock.advance(20)
        self.send(transfer, 0)
        self.ack(transfer, self.bob, 0)
        self.ack(transfer, self.carol, 0)
        self.take()
        self.clock.advance(29.9)
        self.assertEqual(self.take(), [])
        self.clock.advance(0.1)
        self.assertEqual([event for event, _ in self.take()],
                         ["bob.fileCancelled", "carol.fileCancelled", "alice.fileCancelled"])

    def test_senderOwesDone(self):
        """
        A sender that sent every chunk but not DONE stalls a chunk timeout after
        its last chunk, even though every recipient has everything.
        """
        transfer = self.started(chunks=2)
        self.send(transfer, 0, 1)
        self.ack(transfer, self.bob, 0, 1)
        self.ack(transfer, self.carol, 0, 1)
        self.take()
        self.clock.advance(30)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "sender stalled")),
                                       ("carol.fileCancelled", (TID, "sender stalled")),
                                       ("alice.fileCancelled", (TID, "sender stalled"))])

    def test_chunkTimeoutAtAnyRelayTime(self):
        """
        A recipient is dropped a chunk timeout after the relay whatever the time
        of the relay, also when relay time + timeout is not exact in floating
        point (0.2 + 30 here), rather than the timer re-arming itself forever.
        """
        transfer = self.started(recipients=[self.bob], chunks=2, window=1)
        self.clock.advance(0.2)
        self.send(transfer, 0)
        self.take()
        self.clock.advance(30)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "chunk timeout")),
                                       ("alice.fileCancelled", (TID, "no recipients left"))])


    def test_senderStallAtAnyTime(self):
        """
        A sender silent since START at 0.2 s is cancelled at 30.2 s, rather than
        the timer re-arming itself forever.
        """
        transfer = self.makeTransfer(recipients=[self.bob])
        self.clock.advance(0.2)
        transfer.answer(self.bob, True)
        self.take()
        self.clock.advance(30)
        self.assertEqual(self.take(), [("bob.fileCancelled", (TID, "sender stalled")),
                                       ("alice.fileCancelled", (TID, "sender stalled"))])



class BrokenFileClient(FileClient):
    """
    A L{FileClient} that raises instead of taking an offer or a chunk, like a
    door with a bug.
    """

    def fileOffered(self, transfer):
        raise RuntimeError("this client is broken")

    def fileChunk(self, transferId, index, data):
        raise RuntimeError("this client is broken")


class FanOutFailureTests(MachineTestCase):
    """
    One recipient's client failing does not stop the others' (a fan-out tolerates
    failure).
    """

    def test_failingRecipientDoesNotStopTheRelay(self):
        """
        A recipient whose client raises on a chunk does not keep the chunk from
        the others, and the sender's CHUNK succeeds.
        """
        transfer = self.started()
        self.bob.client.__class__ = BrokenFileClient
        self.send(transfer, 0)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(self.take(), [("carol.fileChunk", (TID, 0, chunkData(0)))])


    def test_failingRecipientDoesNotStopTheOffer(self):
        """
        A recipient whose client raises when offered does not keep the offer from
        the others, and counts as declining, so the transfer starts when the
        others have answered.
        """
        self.bob.client.__class__ = BrokenFileClient
        transfer = self.makeTransfer()
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(self.take(), [("carol.fileOffered", (TID,))])
        transfer.answer(self.carol, True)
        self.assertEqual(self.take(), [("alice.fileStarted", (TID, 1, 8))])



class MemoryTests(MachineTestCase):
    """
    The server relays chunks and keeps none of their bytes.
    """

    clientFactory = SizeClient

    def kept(self, transfer):
        """
        The sizes of the bytes and containers a transfer keeps, by where they
        are kept: its own attributes and its recipients'.
        """
        sizes = {}
        for name, value in vars(transfer).items():
            if isinstance(value, (bytes, bytearray, dict, list, set)):
                sizes[name] = len(value)
        for recipient in transfer.recipients.values():
            for name, value in vars(recipient).items():
                if isinstance(value, (bytes, bytearray, dict, list, set)):
                    key = "%s.%s" % (recipient.session.name, name)
                    sizes[key] = len(value)
        return sizes

    def test_noReferenceToTheData(self):
        """
        Relaying a chunk leaves no reference to its bytes anywhere in the
        transfer: the data's reference count is what it was before.
        """
        transfer = self.started(chunks=4, chunkSize=65536)
        blob = bytes(65536)
        before = sys.getrefcount(blob)
        transfer.chunk(self.alice, 0, blob)
        self.assertEqual(sys.getrefcount(blob), before)
        self.assertEqual(self.take(), [("bob.fileChunk", (TID, 0, 65536)),
                                       ("carol.fileChunk", (TID, 0, 65536))])

    def test_stateDoesNotGrowWithTheData(self):
        """
        What a transfer keeps depends on the chunk count and the window only:
        bitmaps of one bit per chunk and at most C{window} chunks in flight per
        recipient, however many bytes went through.
        """
        transfer = self.started(chunks=64, chunkSize=65536, window=8)
        for index in range(8):
            transfer.chunk(self.alice, index, bytes(65536))
        expected = {"recipients": 2, "sent": 8,
                    "bob.acked": 8, "bob.inFlight": 8, "carol.acked": 8, "carol.inFlight": 8}
        self.assertEqual(self.kept(transfer), expected)
        for index in range(8, 64):
            self.ack(transfer, self.bob, index - 8)
            self.ack(transfer, self.carol, index - 8)
            transfer.chunk(self.alice, index, bytes(65536))
            self.assertEqual(self.kept(transfer), expected)
        for recipient in transfer.recipients.values():
            self.assertTrue(all(isinstance(t, float) for t in recipient.inFlight.values()))


class CoreTestCase(SynchronousTestCase):
    """
    A started core on an in-memory store, with guests whose clients take part in
    file transfers, and helpers to offer files.
    """

    settings = NO_IDLE

    def setUp(self):
        self.service = makeService(clock=LoopGuardClock(), **self.settings)
        self.clock = self.service.clock
        self.successResultOf(self.service.whenReady())

    def result(self, method, *args):
        """
        The result of a request that must succeed, at once or by a fired
        L{Deferred}.
        """
        return self.successResultOf(maybeDeferred(method, *args))

    def refusal(self, method, *args):
        """
        The L{ChatError} of a request that must be refused.
        """
        return self.failureResultOf(maybeDeferred(method, *args), ChatError).value

    def assertRefused(self, errorType, method, *args):
        error = self.refusal(method, *args)
        self.assertIsInstance(error, errorType)
        return error

    def guest(self, name, files=True, address="10.0.0.1"):
        """
        A greeted guest named C{name} with C{publicDer(name)} published, on a
        L{FileClient} (or a plain L{FakeChatClient}, like the text door's, when
        not C{files}).
        """
        client = FileClient(name) if files else FakeChatClient()
        session = self.service.connect(client, address)
        self.result(session.hello, 1)
        self.result(session.nick, name)
        self.result(session.setKey, publicDer(name))
        client.take()
        return session

    def account(self, name, register=True, password="correct horse"):
        """
        A session of account C{name} (registered with C{publicDer(name)} when
        C{register}, else logged in), on a L{FileClient}.
        """
        client = FileClient(name)
        session = self.service.connect(client, "10.0.0.2")
        self.result(session.hello, 1)
        if register:
            self.result(session.register, name, password, publicDer(name))
        else:
            self.result(session.login, name, password)
        client.take()
        return session

    def joinAll(self, room, *sessions):
        for session in sessions:
            self.result(session.join, room, "")
        for session in sessions:
            session.client.take()

    def sealFile(self, sender, to, recipients, size=30, chunks=3, chunkSize=10, **kw):
        """
        A file envelope from C{sender}, its metadata sealed for C{recipients}
        (names; the sender is added) under the file header.
        """
        kw.setdefault("ts", self.service.now())
        kw.setdefault("domain", e2e.FILE)
        meta = json.dumps({"name": "notes.txt", "size": size, "sha256": "00" * 32,
                           "chunk_size": chunkSize, "chunks": chunks,
                           "file_key": "A" * 43 + "="}).encode()
        keys = {name: publicDer(name) for name in set(recipients) | {sender}}
        return e2e.seal(sender, privateKey(sender), to, keys, meta, **kw)

    def offer(self, sender, kind, target, recipients, size=30, chunks=3, chunkSize=10, **kw):
        """
        Offer a file from session C{sender} and return the transfer id.
        """
        to = ("room" if kind == ROOM else "user", target)
        blob = self.sealFile(sender.user.name, to, recipients, size, chunks, chunkSize, **kw)
        return self.result(sender.offer, kind, target, size, chunks, chunkSize, blob)

    def offerRefusal(self, sender, kind, target, recipients, size=30, chunks=3,
                     chunkSize=10, blob=None, **kw):
        to = ("room" if kind == ROOM else "user", target)
        if blob is None:
            blob = self.sealFile(sender.user.name if sender.user else "nobody", to,
                                 recipients, size, chunks, chunkSize, **kw)
        return self.refusal(sender.offer, kind, target, size, chunks, chunkSize, blob)


class CoreTransferTests(CoreTestCase):
    """
    Transfers as the core runs them: who is offered, what each session hears,
    and that every trace goes when a transfer ends.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob, self.carol = (self.guest(n) for n in ("alice", "bob", "carol"))
        self.joinAll("#r", self.alice, self.bob, self.carol)

    def roomOffer(self, **kw):
        return self.offer(self.alice, ROOM, "#r", ["bob", "carol"], **kw)

    def takeAll(self):
        """
        What bob, carol and alice were told since last asked, in that order.
        """
        return [self.bob.client.take(), self.carol.client.take(), self.alice.client.take()]

    def assertForgotten(self):
        self.assertEqual(self.service.transfers, {})
        self.assertEqual(self.service.transferCounts, {})
        for session in (self.alice, self.bob, self.carol):
            self.assertEqual(session.transfers, set())

    def test_roomTransferEndToEnd(self):
        """
        An offer to a room reaches the other members; once both accept, chunks,
        acks, NEXT and DONE flow as the machine says, and the core forgets the
        transfer when it is done.
        """
        tid = self.roomOffer(size=25, chunks=3)
        transfer = self.service.transfers[tid]
        self.assertEqual(sum(self.service.transferCounts.values()), 1)
        self.assertEqual(self.takeAll(),
                         [[("fileOffered", (tid,))], [("fileOffered", (tid,))], []])
        offer = self.bob.client.offers[0].offer
        self.assertEqual((offer.kind, offer.target, offer.size, offer.chunks, offer.chunkSize),
                         (ROOM, "#r", 25, 3, 10))
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.assertEqual(self.alice.client.take(), [("fileStarted", (tid, 2, 8))])
        for index in range(3):
            self.result(self.alice.fileChunk, tid, index, chunkData(index))
        for session in (self.bob, self.carol):
            self.assertEqual(session.client.take(),
                             [("fileChunk", (tid, i, chunkData(i))) for i in range(3)])
            for index in range(3):
                self.result(session.fileAck, tid, index)
        self.result(self.alice.fileDone, tid)
        self.assertEqual(self.takeAll(),
                         [[("fileDone", (tid,))], [("fileDone", (tid,))], [("fileDone", (tid,))]])
        self.assertEqual(self.successResultOf(transfer.whenDone()), "done")
        self.assertForgotten()
        self.assertRefused(NotFound, self.bob.fileAck, tid, 0)
        self.assertRefused(NotFound, self.alice.fileDone, tid)

    def test_onlyFileClientsAreOffered(self):
        """
        A member whose door has no file transfer (it does not provide
        L{IFileClient}) gets no OFFERED and is not counted in START.
        """
        dave = self.guest("dave", files=False)
        self.joinAll("#r", dave)
        for session in (self.alice, self.bob, self.carol):
            session.client.take()
        tid = self.offer(self.alice, ROOM, "#r", ["bob", "carol", "dave"])
        self.assertEqual(dave.client.take(), [])
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 0)
        self.assertEqual(self.alice.client.take(), [("fileStarted", (tid, 1, 8))])
        self.assertRefused(NotFound, dave.fileAck, tid, 0)

    def test_nobodyCanReceive(self):
        """
        An offer to a room where no other member can receive files is refused as
        not found and starts nothing.
        """
        alone = self.guest("zed")
        text = self.guest("yan", files=False)
        self.joinAll("#t", alone, text)
        error = self.offerRefusal(alone, ROOM, "#t", ["yan"])
        self.assertIsInstance(error, NotFound)
        self.assertEqual(self.service.transfers, {})

    def test_directOffer(self):
        """
        An offer to one user reaches only that user, with the user as target.
        """
        tid = self.offer(self.alice, USER, "bob", ["bob"])
        self.assertEqual([self.bob.client.take(), self.carol.client.take()],
                         [[("fileOffered", (tid,))], []])
        offer = self.bob.client.offers[0].offer
        self.assertEqual((offer.kind, offer.target), (USER, "bob"))
        self.result(self.bob.answer, tid, 1)
        self.assertEqual(self.alice.client.take(), [("fileStarted", (tid, 1, 8))])

    def test_offeredEnvelopeIsTheSignedOne(self):
        """
        The offer a recipient gets carries the file envelope as sent, so each
        door can cut it to the recipient's own entry.
        """
        blob = self.sealFile("alice", ("room", "#r"), ["bob", "carol"])
        tid = self.result(self.alice.offer, ROOM, "#r", 30, 3, 10, blob)
        envelope = self.bob.client.offers[0].offer.envelope
        self.assertEqual(envelope.cutFor("bob"), e2e.Envelope.parse(blob).cutFor("bob"))
        self.assertEqual(self.bob.client.offers[0].id, tid)

    def test_someDecline(self):
        """
        A decliner gets no chunks, and its ACK is refused with 0x01.
        """
        tid = self.roomOffer(chunks=1, size=10)
        self.result(self.bob.answer, tid, 0)
        self.result(self.carol.answer, tid, 1)
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.assertEqual(self.bob.client.take(), [("fileOffered", (tid,))])
        self.assertEqual(self.carol.client.take(), [("fileOffered", (tid,)),
                                                    ("fileChunk", (tid, 0, b"x"))])
        self.assertRefused(BadRequest, self.bob.fileAck, tid, 0)

    def test_offerExpires(self):
        """
        Nobody answering: at the offer timeout each recipient gets CANCEL "offer
        expired", the sender CANCEL, and the core forgets the transfer, so a late
        ANSWER is not found.
        """
        tid = self.roomOffer()
        self.bob.client.take(), self.carol.client.take()
        self.clock.advance(60)
        self.assertEqual(self.takeAll(),
                         [[("fileCancelled", (tid, "offer expired"))],
                          [("fileCancelled", (tid, "offer expired"))],
                          [("fileCancelled", (tid, "no recipient accepted"))]])
        self.assertForgotten()
        self.assertRefused(NotFound, self.bob.answer, tid, 1)

    def test_lateAnswerAfterStart(self):
        """
        An ANSWER after the offer expired for that recipient, while the transfer
        runs for others, is a conflict; a second ANSWER is one too.
        """
        tid = self.roomOffer()
        self.result(self.bob.answer, tid, 1)
        self.assertRefused(Conflict, self.bob.answer, tid, 1)
        self.clock.advance(60)
        self.assertRefused(Conflict, self.carol.answer, tid, 1)

    def test_answerMustBeZeroOrOne(self):
        """
        An ANSWER other than 0 or 1 is refused with 0x01 and counts as nothing.
        """
        tid = self.roomOffer()
        self.assertRefused(BadRequest, self.bob.answer, tid, 2)
        self.result(self.bob.answer, tid, 1)

    def test_foreignTransferId(self):
        """
        A transfer id that belongs to others, or to nothing, gets NotFound for
        every transfer request.
        """
        eve = self.guest("eve")
        tid = self.roomOffer()
        unknown = (tid + 1) % 2**32
        for transferId in (tid, unknown):
            self.assertRefused(NotFound, eve.answer, transferId, 1)
            self.assertRefused(NotFound, eve.fileChunk, transferId, 0, b"x")
            self.assertRefused(NotFound, eve.fileAck, transferId, 0)
            self.assertRefused(NotFound, eve.fileDone, transferId)
            self.assertRefused(NotFound, eve.fileCancel, transferId, "")
        self.assertEqual(list(self.service.transfers), [tid])

    def test_roleErrors(self):
        """
        The sender's ANSWER and ACK, a recipient's CHUNK and DONE get 0x01.
        """
        tid = self.roomOffer()
        self.assertRefused(BadRequest, self.alice.answer, tid, 1)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.assertRefused(BadRequest, self.alice.fileAck, tid, 0)
        self.assertRefused(BadRequest, self.bob.fileChunk, tid, 0, b"x")
        self.assertRefused(BadRequest, self.bob.fileDone, tid)

    def test_transferRequestsNeedHello(self):
        """
        Transfer requests before HELLO get 0x04.
        """
        session = self.service.connect(FileClient(), "10.0.0.9")
        self.assertRefused(AuthRequired, session.answer, 1, 1)
        self.assertRefused(AuthRequired, session.fileAck, 1, 0)

    def test_recipientDisconnects(self):
        """
        A recipient whose connection closes is dropped; the other finishes and
        the sender only hears DONE.
        """
        tid = self.roomOffer(chunks=1, size=10)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.carol.closed()
        self.result(self.bob.fileAck, tid, 0)
        self.result(self.alice.fileDone, tid)
        self.assertEqual(self.alice.client.take(),
                         [("fileStarted", (tid, 2, 8)), ("userLeft", ("#r", "carol")),
                          ("fileDone", (tid,))])
        self.assertEqual(self.service.transfers, {})
        self.assertEqual(self.service.transferCounts, {})

    def test_senderDisconnects(self):
        """
        A sender whose connection closes cancels the transfer for every recipient
        and the core forgets it.
        """
        tid = self.roomOffer()
        self.result(self.bob.answer, tid, 1)
        self.bob.client.take(), self.carol.client.take()
        self.alice.closed()
        self.assertEqual([self.bob.client.take(), self.carol.client.take()],
                         [[("fileCancelled", (tid, "the sender is gone")),
                           ("userLeft", ("#r", "alice"))],
                          [("fileCancelled", (tid, "the sender is gone")),
                           ("userLeft", ("#r", "alice"))]])
        self.assertEqual(self.service.transfers, {})
        self.assertEqual(self.service.transferCounts, {})

    def test_senderCancels(self):
        """
        The sender's CANCEL reaches every recipient and frees its transfer slot.
        """
        tid = self.roomOffer()
        self.bob.client.take(), self.carol.client.take()
        self.result(self.alice.fileCancel, tid, "oops")
        reason = "cancelled by the sender: oops"
        self.assertEqual(self.takeAll(),
                         [[("fileCancelled", (tid, reason))], [("fileCancelled", (tid, reason))],
                          []])
        self.assertForgotten()

    def test_memberLeavesTheRoom(self):
        """
        A recipient that leaves the room mid-transfer is dropped with CANCEL
        "left the room"; the other finishes.
        """
        tid = self.roomOffer(chunks=1, size=10)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.carol.client.take()
        self.result(self.carol.leave, "#r")
        self.assertEqual(self.carol.client.take(), [("fileCancelled", (tid, "left the room"))])
        self.result(self.bob.fileAck, tid, 0)
        self.result(self.alice.fileDone, tid)
        self.assertEqual(self.alice.client.take()[-1], ("fileDone", (tid,)))
        self.assertForgotten()

    def test_leavingAnotherRoomKeepsTheTransfer(self):
        """
        Leaving a room the transfer is not for changes nothing for it.
        """
        tid = self.roomOffer()
        self.joinAll("#other", self.carol)
        self.carol.client.take()
        self.result(self.carol.leave, "#other")
        self.assertEqual(self.carol.client.take(), [])
        self.result(self.carol.answer, tid, 1)

    def test_senderLeavesTheRoom(self):
        """
        A sender that leaves the room cancels its transfer to that room, and is
        told why.
        """
        tid = self.roomOffer()
        self.bob.client.take()
        self.alice.client.take()
        self.result(self.alice.leave, "#r")
        self.assertEqual(self.bob.client.take(),
                         [("fileCancelled", (tid, "the sender is gone")),
                          ("userLeft", ("#r", "alice"))])
        self.assertEqual(self.alice.client.take(), [("fileCancelled", (tid, "left the room"))])
        self.assertEqual(self.service.transfers, {})

    def test_keyChangeDropsTheRecipient(self):
        """
        A recipient that changes its key mid-transfer is dropped with CANCEL
        "key changed"; the other finishes.
        """
        tid = self.roomOffer(chunks=1, size=10)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.carol.client.take()
        self.result(self.carol.setKey, publicDer("carol-new"))
        self.assertEqual(self.carol.client.take(), [("fileCancelled", (tid, "key changed"))])
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.assertEqual(self.carol.client.take(), [])
        self.result(self.bob.fileAck, tid, 0)
        self.result(self.alice.fileDone, tid)
        self.assertForgotten()

    def test_lateJoinerIsNotPartOfTheTransfer(self):
        """
        A member who joins after the offer gets no OFFERED and no chunks, and its
        requests about the transfer are not found.
        """
        tid = self.roomOffer(chunks=1, size=10)
        dave = self.guest("dave")
        self.joinAll("#r", dave)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.assertEqual(dave.client.take(), [])
        self.assertRefused(NotFound, dave.answer, tid, 1)
        self.assertRefused(NotFound, dave.fileAck, tid, 0)

    def test_stalledRecipientThroughTheCore(self):
        """
        A recipient that misses the chunk timeout is dropped with CANCEL "chunk
        timeout"; the other finishes, the sender hears only DONE, and the core
        forgets the transfer.
        """
        tid = self.roomOffer(chunks=2, size=20)
        self.result(self.bob.answer, tid, 1)
        self.result(self.carol.answer, tid, 1)
        self.result(self.alice.fileChunk, tid, 0, b"x")
        self.result(self.bob.fileAck, tid, 0)
        self.clock.advance(10)
        self.result(self.alice.fileChunk, tid, 1, b"y")
        self.result(self.bob.fileAck, tid, 1)
        self.carol.client.take()
        self.clock.advance(19.9)
        self.assertEqual(self.carol.client.take(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.carol.client.take(), [("fileCancelled", (tid, "chunk timeout"))])
        self.result(self.alice.fileDone, tid)
        self.assertEqual(self.alice.client.take(),
                         [("fileStarted", (tid, 2, 8)), ("fileDone", (tid,))])
        self.assertForgotten()


class SessionsTests(CoreTestCase):
    """
    Users with several sessions: each recipient session answers for itself, and
    the sender's other sessions take no part.
    """

    def test_eachRecipientSessionAnswersForItself(self):
        """
        Both sessions of a recipient account are offered the file; one accepts,
        the other declines, START counts one, and only the accepting session
        gets chunks.
        """
        alice = self.guest("alice")
        first = self.account("bob")
        second = self.account("bob", register=False)
        self.joinAll("#r", alice, first)
        second.client.take()
        tid = self.offer(alice, ROOM, "#r", ["bob"], chunks=1, size=10)
        self.assertEqual([first.client.take(), second.client.take()],
                         [[("fileOffered", (tid,))], [("fileOffered", (tid,))]])
        self.result(first.answer, tid, 1)
        self.result(second.answer, tid, 0)
        self.assertEqual(alice.client.take(), [("fileStarted", (tid, 1, 8))])
        self.result(alice.fileChunk, tid, 0, b"x")
        self.assertEqual([first.client.take(), second.client.take()],
                         [[("fileChunk", (tid, 0, b"x"))], []])
        self.assertRefused(BadRequest, second.fileAck, tid, 0)

    def test_oneRecipientSessionClosing(self):
        """
        When one session of a recipient account closes, only that session is
        dropped; the account's other session finishes.
        """
        alice = self.guest("alice")
        first = self.account("bob")
        second = self.account("bob", register=False)
        self.joinAll("#r", alice, first)
        tid = self.offer(alice, ROOM, "#r", ["bob"], chunks=1, size=10)
        self.result(first.answer, tid, 1)
        self.result(second.answer, tid, 1)
        self.result(alice.fileChunk, tid, 0, b"x")
        first.closed()
        self.result(second.fileAck, tid, 0)
        self.result(alice.fileDone, tid)
        self.assertEqual(second.client.take()[-1], ("fileDone", (tid,)))
        self.assertEqual(alice.client.take(), [("fileStarted", (tid, 2, 8)), ("fileDone", (tid,))])

    def test_sendersOtherSessionTakesNoPart(self):
        """
        The sender's other session is not offered its own file, and its
        requests about the transfer are not found.
        """
        first = self.account("alice")
        second = self.account("alice", register=False)
        bob = self.guest("bob")
        self.joinAll("#r", first, bob)
        second.client.take()
        tid = self.offer(first, ROOM, "#r", ["bob"])
        self.assertEqual(second.client.take(), [])
        self.assertRefused(NotFound, second.answer, tid, 1)
        self.assertRefused(NotFound, second.fileCancel, tid, "")

    def test_limitIsPerAccount(self):
        """
        An account's transfers from all its sessions count toward one limit of
        four.
        """
        first = self.account("alice")
        second = self.account("alice", register=False)
        bob = self.guest("bob")
        self.joinAll("#r", first, bob)
        for session in (first, second, first, second):
            self.offer(session, ROOM, "#r", ["bob"])
        self.clock.advance(6)
        self.assertIsInstance(self.offerRefusal(second, ROOM, "#r", ["bob"]), RateLimited)

    def test_keyChangeDuringTheOffer(self):
        """
        A recipient that changes its key before answering gets CANCEL "key
        changed" and counts as declining.
        """
        alice, bob, carol = (self.guest(n) for n in ("alice", "bob", "carol"))
        self.joinAll("#r", alice, bob, carol)
        tid = self.offer(alice, ROOM, "#r", ["bob", "carol"])
        bob.client.take()
        self.result(bob.setKey, publicDer("bob-new"))
        self.assertEqual(bob.client.take(), [("fileCancelled", (tid, "key changed"))])
        self.result(carol.answer, tid, 1)
        self.assertEqual(alice.client.take(),
                         [("keyChanged", ("bob", publicDer("bob-new"))),
                          ("fileStarted", (tid, 1, 8))])
        self.assertRefused(Conflict, bob.answer, tid, 1)


class OfferCheckTests(CoreTestCase):
    """
    OFFER's own checks, which rank with malformed requests, then the target and
    file envelope checks of sections 2 and 6, the limit on transfers per user,
    and the message rate limit.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)

    def test_chunkCountMustMatch(self):
        """
        The chunk count must be max(1, ceil(size / chunk size)): one more or
        one fewer gets 0x01, as does zero chunks for an empty file.
        """
        for size, chunks, chunkSize in [(30, 2, 10), (30, 4, 10), (31, 3, 10),
                                        (0, 0, 10), (1, 2, 10)]:
            error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], size, chunks, chunkSize)
            self.assertEqual(type(error), BadRequest, (size, chunks, chunkSize))
        self.assertEqual(self.service.transfers, {})

    def test_goodChunkCounts(self):
        """
        A whole number of chunks, a short last chunk, and an empty file of one
        chunk are accepted.
        """
        for size, chunks, chunkSize in [(30, 3, 10), (31, 4, 10), (0, 1, 10), (1, 1, 10)]:
            self.offer(self.alice, ROOM, "#r", ["bob"], size, chunks, chunkSize)
            self.clock.advance(60)
        self.assertEqual(self.service.transfers, {})

    def test_chunkSizeLimits(self):
        """
        A chunk size of 0, or above the frame limit less 64, gets 0x08; the
        frame limit less 64 itself is accepted.
        """
        limit = self.service.settings.maxFrame - 64
        for chunkSize in (0, limit + 1):
            error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], 10, 1, chunkSize)
            self.assertEqual(type(error), TooLarge, chunkSize)
        self.offer(self.alice, ROOM, "#r", ["bob"], limit * 2, 2, limit)

    def test_chunkCountLimit(self):
        """
        At most 2^20 chunks: one more gets 0x08.
        """
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], 2**20 + 1, 2**20 + 1, 1)
        self.assertIsInstance(error, TooLarge)
        self.offer(self.alice, ROOM, "#r", ["bob"], 2**20, 2**20, 1)

    def test_noMaximumFileSizeByDefault(self):
        """
        Without a configured maximum, a large file is accepted.
        """
        self.offer(self.alice, ROOM, "#r", ["bob"], 2**39, 2**20, 2**19)

    def test_sizeChecksRankFirst(self):
        """
        The size checks come before every check of section 2: before HELLO, to
        an unknown room, or with a broken envelope, a bad chunk count still gets
        0x01 and a bad chunk size 0x08.
        """
        session = self.service.connect(FileClient(), "10.0.0.9")
        self.assertRefused(BadRequest, session.offer, ROOM, "#r", 30, 2, 10, b"{}")
        self.assertRefused(TooLarge, session.offer, ROOM, "#r", 30, 3, 0, b"{}")
        self.assertRefused(AuthRequired, session.offer, ROOM, "#r", 30, 3, 10, b"{}")
        self.assertRefused(BadRequest, self.alice.offer, ROOM, "#nowhere", 30, 2, 10, b"{}")
        self.assertRefused(NotFound, self.alice.offer, ROOM, "#nowhere", 30, 3, 10, b"{}")
        self.assertRefused(BadRequest, self.alice.offer, ROOM, "#r", 30, 3, 10, b"{}")

    def test_unknownKind(self):
        """
        A target kind other than 0 or 1 gets 0x01.
        """
        self.assertRefused(BadRequest, self.alice.offer, 2, "#r", 30, 3, 10, b"{}")


class OfferLimitTests(CoreTestCase):
    """
    Configured maximum file size, transfers per user, and the message rate limit.
    """

    settings = dict(NO_IDLE, maxFileSize=1000)

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)

    def test_maximumFileSize(self):
        """
        A file over the configured maximum gets 0x08; one of exactly that size is
        accepted.
        """
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], 1001, 101, 10)
        self.assertIsInstance(error, TooLarge)
        self.offer(self.alice, ROOM, "#r", ["bob"], 1000, 100, 10)

    def test_fourTransfersAtOnce(self):
        """
        A user may have four transfers pending or running; a fifth gets 0x02,
        and a slot frees when one ends.
        """
        tids = [self.offer(self.alice, ROOM, "#r", ["bob"]) for _ in range(4)]
        self.assertEqual(sum(self.service.transferCounts.values()), 4)
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"])
        self.assertIsInstance(error, RateLimited)
        self.assertIn("4", error.message)
        self.result(self.alice.fileCancel, tids[0], "")
        self.clock.advance(6)
        self.offer(self.alice, ROOM, "#r", ["bob"])
        self.assertEqual(sum(self.service.transferCounts.values()), 4)

    def test_limitIsPerUser(self):
        """
        Another user's transfers do not count against one's own.
        """
        for _ in range(4):
            self.offer(self.alice, ROOM, "#r", ["bob"])
        self.offer(self.bob, ROOM, "#r", ["alice"])

    def test_receivingDoesNotCount(self):
        """
        Transfers a user receives do not count toward its own limit.
        """
        for _ in range(4):
            self.offer(self.bob, ROOM, "#r", ["alice"])
        self.clock.advance(6)
        self.offer(self.alice, ROOM, "#r", ["bob"])

    def test_offerCountsTowardTheMessageRateLimit(self):
        """
        OFFER shares the message rate limit: after three messages and two offers
        within five seconds, a third offer and a message get 0x02.
        """
        for _ in range(3):
            blob = e2e.seal("alice", privateKey("alice"), ("room", "#r"),
                            {"alice": publicDer("alice"), "bob": publicDer("bob")}, b"hi",
                            ts=self.service.now())
            self.result(self.alice.roomMessage, "#r", blob)
        self.offer(self.alice, ROOM, "#r", ["bob"])
        self.offer(self.alice, ROOM, "#r", ["bob"])
        self.assertIsInstance(self.offerRefusal(self.alice, ROOM, "#r", ["bob"]), RateLimited)
        blob = e2e.seal("alice", privateKey("alice"), ("room", "#r"),
                        {"alice": publicDer("alice"), "bob": publicDer("bob")}, b"hi",
                        ts=self.service.now())
        self.assertRefused(RateLimited, self.alice.roomMessage, "#r", blob)
        self.assertEqual(len(self.service.transfers), 2)


class OfferEnvelopeTests(CoreTestCase):
    """
    The file envelope, checked as a message's but under the file header.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        self.alice, self.bob = self.guest("alice"), self.guest("bob")
        self.joinAll("#r", self.alice, self.bob)

    def test_messageHeaderRefused(self):
        """
        An envelope signed under the message header C{chatd-e2e-v1} is not a
        file envelope: 0x05.
        """
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], domain=e2e.MESSAGE)
        self.assertIsInstance(error, Forbidden)

    def test_fileIdsShareTheReplaySet(self):
        """
        An envelope id used by a message cannot be used by a file, and the other
        way round: 0x07.
        """
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        message = e2e.seal("alice", privateKey("alice"), ("room", "#r"), keys, b"hi",
                           ts=self.service.now(), envelopeId="A" * 22)
        self.result(self.alice.roomMessage, "#r", message)
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"], envelopeId="A" * 22)
        self.assertIsInstance(error, Conflict)
        self.offer(self.alice, ROOM, "#r", ["bob"], envelopeId="B" * 21 + "A")
        message = e2e.seal("alice", privateKey("alice"), ("room", "#r"), keys, b"hi",
                           ts=self.service.now(), envelopeId="B" * 21 + "A")
        self.assertRefused(Conflict, self.alice.roomMessage, "#r", message)
        self.assertIsInstance(
            self.offerRefusal(self.alice, ROOM, "#r", ["bob"], envelopeId="B" * 21 + "A"), Conflict)

    def test_staleRecipients(self):
        """
        A file envelope whose key map misses a member gets 0x09 listing the
        members and their keys.
        """
        carol = self.guest("carol")
        self.joinAll("#r", carol)
        error = self.offerRefusal(self.alice, ROOM, "#r", ["bob"])
        self.assertIsInstance(error, StaleRecipients)
        self.assertEqual(sorted(error.members),
                         [(n, publicDer(n)) for n in ("alice", "bob", "carol")])

    def test_addressedElsewhere(self):
        """
        A file envelope addressed to another target than the OFFER's gets 0x01.
        """
        blob = self.sealFile("alice", ("room", "#other"), ["bob"])
        self.assertRefused(BadRequest, self.alice.offer, ROOM, "#r", 30, 3, 10, blob)

    def test_forgedSender(self):
        """
        A file envelope claiming another sender gets 0x05.
        """
        blob = self.sealFile("bob", ("room", "#r"), ["alice"])
        self.assertRefused(Forbidden, self.alice.offer, ROOM, "#r", 30, 3, 10, blob)

    def test_notAMember(self):
        """
        Offering to a room one is not in gets 0x01; to an offline user 0x06.
        """
        carol = self.guest("carol")
        self.joinAll("#c", carol)
        blob = self.sealFile("alice", ("room", "#c"), ["carol"])
        self.assertRefused(BadRequest, self.alice.offer, ROOM, "#c", 30, 3, 10, blob)
        blob = self.sealFile("alice", ("user", "nobody"), [])
        self.assertRefused(NotFound, self.alice.offer, USER, "nobody", 30, 3, 10, blob)
