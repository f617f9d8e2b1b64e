# -*- test-case-name: chatd.test.test_transfer -*-
"""
One file transfer, from offer to its end: a state machine fed by the core and
driven by Deferreds and the reactor's clock, which never touches a transport.

Lifecycle: I{answering} (each recipient session's answer is a L{Deferred},
given up on by the offer timeout) → I{started} (the sender sends chunks within a
window; each is relayed to every accepting recipient at once and acknowledged
per recipient in a bitmap) → I{done} or I{cancelled}. The server holds no chunk
data: a chunk is relayed as it arrives, so at most C{window} chunks per recipient
are ever in flight, and nothing is written to disk.

Every participant is a session whose client provides L{IFileClient}; the
transfer tells them what happens by calling its methods.

Why not an Automat machine: where the transfer goes next depends on the
recipients' states (the last answer starts or cancels it, the last ack finishes
it), so the transitions are decisions over that data; an explicit C{state} and
one method per input keep each decision in one readable place.
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Protocol

from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chatd import e2e
from chatd.errors import BadRequest, Conflict, NotFound
from chatd.interfaces import IFileClient
from chatd.observer import OneShotObserver

log = Logger()

ANSWERING, STARTED, DONE, CANCELLED = "answering", "started", "done", "cancelled"
PENDING, ACCEPTED, DECLINED, DROPPED, FINISHED = (
    "pending", "accepted", "declined", "dropped", "finished")


class Participant(Protocol):
    """
    What a transfer needs of a sender or recipient session (a core session, or
    a node's stand-in for a remote one): the client it tells what happens.
    """

    @property
    def client(self) -> IFileClient: ...


@dataclass(frozen=True)
class Offer:
    """
    What the sender offered, as the server checked it.

    @ivar kind: 0 for a room, 1 for a user.
    @ivar envelope: the parsed file envelope (L{chatd.e2e.Envelope}), cut for
        each recipient when offered.
    """

    kind: int
    target: str
    size: int
    chunks: int
    chunkSize: int
    envelope: Optional[e2e.Envelope]


@dataclass(eq=False)
class Recipient:
    """
    One recipient session's part in a transfer.

    @ivar acked: a bitmap, one bit per chunk this recipient acknowledged.
    @ivar low: the lowest index this recipient has not acknowledged.
    @ivar inFlight: index -> the time it was relayed, for chunks relayed to this
        recipient and not acknowledged yet (at most C{window} of them).
    """

    session: Participant
    answer: "Deferred[bool]"
    state: str = PENDING
    acked: bytearray = field(default_factory=bytearray)
    low: int = 0
    inFlight: Dict[int, float] = field(default_factory=dict)

    def hasAcked(self, index: int) -> int:
        return self.acked[index >> 3] & (1 << (index & 7))


class Transfer:
    """
    A file transfer between one sender session and its recipient sessions.

    @param transferId: the u32 id the sender and recipients know it by.
    @param recipients: the sessions to offer the file to (never the sender's).
    @param clock: an L{IReactorTime} for the offer and chunk timeouts.
    """

    def __init__(self, transferId: int, sender: Participant, offer: Offer,
                 recipients: Iterable[Participant], clock: IReactorTime, window: int = 8,
                 offerTimeout: float = 60.0, chunkTimeout: float = 30.0) -> None:
        self.id = transferId
        self.sender = sender
        self.offer = offer
        self.clock = clock
        self.window = window
        self.offerTimeout = offerTimeout
        self.chunkTimeout = chunkTimeout
        self.state = ANSWERING
        self.recipients: Dict[Participant, Recipient] = {
            s: Recipient(s, Deferred()) for s in recipients}
        self.sent = bytearray((offer.chunks + 7) // 8)
        self.sentCount = 0
        self.senderDone = False
        self.limit = -1
        self._senderActive = clock.seconds()
        self._timer: Optional[IDelayedCall] = None
        self._done = OneShotObserver()

    # -- lifecycle --------------------------------------------------------

    def begin(self) -> None:
        """
        Offer the file to every recipient and wait for their answers.
        """
        answers = []
        for recipient in self.recipients.values():
            answer = recipient.answer.addTimeout(self.offerTimeout, self.clock)
            answer.addErrback(self._expired, recipient)
            answers.append(answer)
            try:
                recipient.session.client.fileOffered(self)
            except Exception:
                log.failure("offering transfer {id}", id=self.id)
                recipient.state = DECLINED
                recipient.answer.callback(False)
        if not answers:
            self._cancelSender("no recipients")
            return
        DeferredList(answers).addCallback(self._answered)

    def whenDone(self) -> "Deferred[str]":
        """
        @return: a L{Deferred} that fires with C{"done"}, or with the reason the
            transfer was cancelled, when it ends.
        """
        return self._done.whenFired()

    def _expired(self, failure, recipient):
        if not failure.check(TimeoutError):
            failure.trap(CancelledError)
            return False
        if recipient.state == PENDING:
            recipient.state = DECLINED
            recipient.session.client.fileCancelled(self.id, "offer expired")
        return False

    def _answered(self, _):
        if self.state != ANSWERING:
            return
        if not self._remaining():
            self._cancelSender("no recipient accepted")
            return
        self.state = STARTED
        accepted = self._remaining()
        for recipient in accepted:
            recipient.acked = bytearray(len(self.sent))
        self._senderActive = self.clock.seconds()
        self.sender.client.fileStarted(self.id, len(accepted), self.window)
        self._grow()

    def _remaining(self):
        return [r for r in self.recipients.values() if r.state == ACCEPTED]

    def _end(self, outcome):
        self.state = DONE if outcome == "done" else CANCELLED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for recipient in self.recipients.values():
            if not recipient.answer.called:
                recipient.answer.cancel()
        self._done.fire(outcome)

    def _cancelSender(self, reason):
        self.sender.client.fileCancelled(self.id, reason)
        self._end(reason)

    def _cancelAll(self, reason):
        for recipient in self.recipients.values():
            if recipient.state in (PENDING, ACCEPTED):
                recipient.state = DROPPED
                recipient.session.client.fileCancelled(self.id, reason)
        self._end(reason)

    # -- inputs: recipients -----------------------------------------------

    def _recipient(self, session):
        recipient = self.recipients.get(session)
        if recipient is None:
            if session is self.sender:
                raise BadRequest("the sender of transfer %d cannot do that" % (self.id,))
            raise NotFound("no such transfer: %d" % (self.id,))
        return recipient

    def answer(self, session: Participant, accept: bool) -> None:
        """
        A recipient accepts or declines the offer.
        """
        recipient = self._recipient(session)
        if self.state in (DONE, CANCELLED):
            raise NotFound("transfer %d is over" % (self.id,))
        if recipient.state != PENDING:
            raise Conflict("transfer %d: %s" % (
                self.id, "already started" if self.state == STARTED else "already answered"))
        recipient.state = ACCEPTED if accept else DECLINED
        recipient.answer.callback(accept)

    def ack(self, session: Participant, index: int) -> None:
        """
        A recipient acknowledges chunk C{index}.
        """
        recipient = self._recipient(session)
        if index >= self.offer.chunks:
            raise BadRequest("chunk index %d is past the last (%d)"
                             % (index, self.offer.chunks - 1))
        if recipient.state != ACCEPTED or self.state != STARTED:
            if recipient.state == FINISHED:
                return
            raise BadRequest("transfer %d: nothing to acknowledge" % (self.id,))
        if index >= self.offer.chunks or index not in recipient.inFlight \
                and not recipient.hasAcked(index):
            raise BadRequest("transfer %d: chunk %d was not sent to you" % (self.id, index))
        if recipient.hasAcked(index):
            return
        recipient.acked[index >> 3] |= 1 << (index & 7)
        del recipient.inFlight[index]
        while recipient.low < self.offer.chunks and recipient.hasAcked(recipient.low):
            recipient.low += 1
        self._progress()

    # -- inputs: the sender -----------------------------------------------

    def _fromSender(self, session, what):
        if session is not self.sender:
            if session in self.recipients:
                raise BadRequest("only the sender of transfer %d may %s" % (self.id, what))
            raise NotFound("no such transfer: %d" % (self.id,))
        if self.state != STARTED:
            raise BadRequest("transfer %d has not started" % (self.id,))

    def chunk(self, session: Participant, index: int, data: bytes) -> None:
        """
        The sender sends chunk C{index}: relayed at once to every remaining
        recipient, never kept.
        """
        self._fromSender(session, "send chunks")
        if index >= self.offer.chunks:
            raise BadRequest("chunk index %d is past the last (%d)"
                             % (index, self.offer.chunks - 1))
        if len(data) > self.offer.chunkSize + 16:
            raise BadRequest("chunk of %d bytes is over the chunk size + 16" % (len(data),))
        if index > self.limit:
            raise BadRequest("chunk %d is beyond the window (send up to %d)" % (index, self.limit))
        if self.sent[index >> 3] & (1 << (index & 7)):
            raise Conflict("chunk %d was already sent" % (index,))
        self.sent[index >> 3] |= 1 << (index & 7)
        self.sentCount += 1
        now = self._senderActive = self.clock.seconds()
        failed = []
        for recipient in self._remaining():
            recipient.inFlight[index] = now
            try:
                recipient.session.client.fileChunk(self.id, index, data)
            except Exception:
                log.failure("relaying chunk {index} of transfer {id}", index=index, id=self.id)
                failed.append(recipient)
        for recipient in failed:
            if self.state == STARTED:
                self._drop(recipient, None)
        if self.state == STARTED:
            self._schedule()

    def done(self, session: Participant) -> None:
        """
        The sender has sent its last chunk.
        """
        self._fromSender(session, "finish")
        if self.senderDone:
            raise Conflict("transfer %d: the sender said it was done already" % (self.id,))
        if self.sentCount < self.offer.chunks:
            raise BadRequest("transfer %d: %d chunks not sent yet"
                             % (self.id, self.offer.chunks - self.sentCount))
        self.senderDone = True
        self._progress()

    def cancel(self, session: Participant, reason: str) -> None:
        """
        A participant cancels: the sender for everyone, a recipient for itself.
        """
        if session is self.sender:
            if self.state in (DONE, CANCELLED):
                raise NotFound("transfer %d is over" % (self.id,))
            self._cancelAll("cancelled by the sender: %s" % (reason,) if reason
                            else "cancelled by the sender")
            return
        recipient = self._recipient(session)
        if recipient.state not in (PENDING, ACCEPTED):
            raise NotFound("transfer %d is over for you" % (self.id,))
        self._drop(recipient, None)

    def sessionGone(self, session: Participant, reason: str) -> None:
        """
        A participant disconnected, left the room or changed key: a recipient is
        dropped (told C{reason} when it can still hear it); the sender's going
        cancels the transfer.
        """
        if self.state in (DONE, CANCELLED):
            return
        if session is self.sender:
            self._cancelAll("the sender is gone")
            if reason != "disconnected":
                self.sender.client.fileCancelled(self.id, reason)
            return
        recipient = self.recipients.get(session)
        if recipient is not None and recipient.state in (PENDING, ACCEPTED):
            self._drop(recipient, reason)

    # -- progress ---------------------------------------------------------

    def _drop(self, recipient, reason):
        pending = recipient.state == PENDING
        recipient.state = DECLINED if pending else DROPPED
        recipient.inFlight.clear()
        if reason is not None:
            recipient.session.client.fileCancelled(self.id, reason)
        if pending:
            recipient.answer.callback(False)
        elif self.state == STARTED:
            finished = any(r.state == FINISHED for r in self.recipients.values())
            if not self._remaining() and not finished:
                self._cancelSender("no recipients left")
            else:
                self._progress()

    def _progress(self):
        """
        After an ack, a drop or the sender's DONE: finish recipients that have
        everything, widen the window, or end the transfer.
        """
        if self.senderDone:
            for recipient in self._remaining():
                if recipient.low == self.offer.chunks:
                    recipient.state = FINISHED
                    recipient.session.client.fileDone(self.id)
            if not self._remaining():
                self.sender.client.fileDone(self.id)
                self._end("done")
                return
        self._grow()

    def _grow(self):
        remaining = self._remaining()
        low = min((r.low for r in remaining), default=self.offer.chunks)
        limit = min(low + self.window - 1, self.offer.chunks - 1)
        if limit > self.limit:
            first = self.limit < 0
            self.limit = limit
            self._senderActive = self.clock.seconds()
            if not first:
                self.sender.client.fileNext(self.id, limit)
        self._schedule()

    def _senderMaySend(self):
        # Every chunk sent is within the limit, so one within it is unsent
        # exactly when fewer than limit + 1 were sent; after the last chunk the
        # sender still owes DONE.
        return not self.senderDone and (self.sentCount < self.limit + 1
                                        or self.sentCount == self.offer.chunks)

    def _schedule(self):
        """
        Arm one timer for the earliest deadline: a recipient's oldest chunk in
        flight, or the sender's silence while it may send.
        """
        deadlines = [min(r.inFlight.values()) for r in self._remaining() if r.inFlight]
        if self._senderMaySend():
            deadlines.append(self._senderActive)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if deadlines and self.state == STARTED:
            delay = max(0, min(deadlines) + self.chunkTimeout - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._timedOut)

    def _timedOut(self):
        self._timer = None
        now = self.clock.seconds()
        for recipient in self._remaining():
            if recipient.inFlight and min(recipient.inFlight.values()) + self.chunkTimeout <= now:
                self._drop(recipient, "chunk timeout")
                if self.state != STARTED:
                    return
        if self._senderMaySend() and self._senderActive + self.chunkTimeout <= now:
            self._cancelAll("sender stalled")
            self.sender.client.fileCancelled(self.id, "sender stalled")
            return
        self._schedule()
