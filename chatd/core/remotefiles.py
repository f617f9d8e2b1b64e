# -*- test-case-name: chatd.test.test_cluster_files -*-
"""
File transfers between users on different nodes of a cluster.

A transfer runs where its sender is: one L{chatd.transfer.Transfer}, with the
same window, per-recipient chunk bitmaps and timeouts as on one node. A user
on another node takes part through a L{RemoteRecipient}, one per (node, user),
that stands in for that user's sessions there: what the transfer tells it is
published to that node, whose L{Mirror} shows it to the user's sessions, and
what they answer is published back and fed to the transfer. The events carry
C{node}, the node that is to act on them (the fan-out sends them on that
node's own channel), C{id}, the transfer's id on the sender's node, and
C{user}, the recipient::

    file-offer      sender's node -> recipient's: sender, targetKind, target, size,
                    chunks, chunkSize, envelope
    file-chunk      index, data
    file-done       the recipient has every chunk
    file-cancelled  reason: the transfer is over for the recipient
    file-answer     recipient's node -> sender's: accept
    file-ack        index
    file-leave      reason, cancel: the recipient cancelled (C{cancel}) or is
                    gone (left the room, changed key, disconnected)

Where one node shows an offer to each of a user's sessions, each with its own
window, a user on another node is one recipient: its node offers the file to
each of its sessions there, the first to accept receives it, and the others
are told it was accepted elsewhere. A user with no session there that can
receive files declines at once. File events are not kept while a node cannot
hear Redis: the transfer's own timeouts end what they interrupt.
"""

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Set

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import e2e
from chatd.core.events import (
    FileAck,
    FileAnswer,
    FileCancelled,
    FileChunk,
    FileDone,
    FileEvent,
    FileLeave,
    FileOffer,
)
from chatd.core.online import User
from chatd.errors import BadRequest, Conflict, NotFound
from chatd.interfaces import IFileClient
from chatd.names import fold
from chatd.observer import OneShotObserver
from chatd.transfer import Offer, Participant, Transfer

if TYPE_CHECKING:
    from chatd.core.service import ChatService

log = Logger()

PENDING, ACCEPTED, DECLINED, GONE = "pending", "accepted", "declined", "gone"


class RemoteRecipient:
    """
    On the sender's node, a user's sessions on another node, as one recipient
    session of a L{chatd.transfer.Transfer}: it is its own client.
    """

    def __init__(self, service: "ChatService", node: str, user: User) -> None:
        self.service = service
        self.node = node
        self.user = user
        self.client = self
        self.transfers: Set[int] = set()

    def _publish(self, kind, transferId, *fields):
        self.service.happened([kind(self.node, transferId, self.user.name, *fields)])

    def fileOffered(self, transfer: Transfer) -> None:
        offer = transfer.offer
        # A transfer offered is one the core made: from a session, with a name,
        # of an envelope it checked.
        sender: Any = transfer.sender
        assert offer.envelope is not None
        self._publish(FileOffer, transfer.id, sender.name, offer.kind, offer.target,
                      offer.size, offer.chunks, offer.chunkSize, offer.envelope.raw)

    def fileChunk(self, transferId: int, index: int, data: bytes) -> None:
        self._publish(FileChunk, transferId, index, data)

    def fileDone(self, transferId: int) -> None:
        self._publish(FileDone, transferId)

    def fileCancelled(self, transferId: int, reason: str) -> None:
        self._publish(FileCancelled, transferId, reason)


def remoteRecipients(service: "ChatService", users: Iterable[User]) -> List[RemoteRecipient]:
    """
    The L{RemoteRecipient}s of C{users}' sessions on other nodes.
    """
    return [RemoteRecipient(service, node, user) for user in users for node in sorted(user.nodes)]


class _RemoteSender:
    """
    On a recipient's node, the sender's session as the doors and the core see it.
    """

    def __init__(self, user):
        self.user = user
        self.transfers = set()

    @property
    def name(self):
        return self.user.name


class Mirror:
    """
    On a recipient's node, a transfer from another node as the recipient's
    sessions here see it: it answers the requests they make about it as a
    L{chatd.transfer.Transfer} would, and publishes them to the sender's node.

    @ivar id: its id here (the sessions know it by this one).
    @ivar origin: C{(node, id)} of the transfer on the sender's node.
    """

    def __init__(self, service: "ChatService", node: str, event: FileOffer, sender: User,
                 user: User, sessions: Iterable[Participant], envelope: e2e.Envelope) -> None:
        self.service = service
        self.id = service.newTransferId()
        self.origin = (node, event.id)
        self.user = user
        self.sender = _RemoteSender(sender)
        self.offer = Offer(event.targetKind, event.target, event.size, event.chunks,
                           event.chunkSize, envelope)
        self.recipients = dict.fromkeys(sessions, PENDING)
        self.chosen: Optional[Participant] = None
        self.over = False
        self._received: Set[int] = set()
        self._acked: Set[int] = set()
        self._done = OneShotObserver()

    def begin(self) -> None:
        for session in self.recipients:
            session.client.fileOffered(self)

    def whenDone(self) -> "Deferred[str]":
        return self._done.whenFired()

    def _publish(self, kind, *fields):
        node, transferId = self.origin
        self.service.happened([kind(node, transferId, self.user.name, *fields)])

    def _end(self, outcome):
        if not self.over:
            self.over = True
            self._done.fire(outcome)

    def _tell(self, reason, sessions):
        for session in sessions:
            try:
                session.client.fileCancelled(self.id, reason)
            except Exception:
                log.failure("telling a session transfer {id} ended", id=self.id)

    def _recipient(self, session):
        if session not in self.recipients:
            raise NotFound("no such transfer: %d" % (self.id,))
        if self.over or self.recipients[session] in (DECLINED, GONE):
            raise NotFound("transfer %d is over for you" % (self.id,))
        return self.recipients[session]

    # -- requests of the recipient's sessions ------------------------------

    def answer(self, session: Participant, accept: bool) -> None:
        if self._recipient(session) != PENDING:
            raise Conflict("transfer %d: already answered" % (self.id,))
        if accept:
            self.recipients[session] = ACCEPTED
            self.chosen = session
            others = [s for s, state in self.recipients.items() if state == PENDING]
            for other in others:
                self.recipients[other] = GONE
            self._tell("accepted on another connection", others)
            self._publish(FileAnswer, True)
            return
        self.recipients[session] = DECLINED
        if PENDING not in self.recipients.values():
            self._publish(FileAnswer, False)
            self._end("declined")

    def ack(self, session: Participant, index: int) -> None:
        if index >= self.offer.chunks:
            raise BadRequest("chunk index %d is past the last (%d)"
                             % (index, self.offer.chunks - 1))
        if self._recipient(session) != ACCEPTED:
            raise BadRequest("transfer %d: nothing to acknowledge" % (self.id,))
        if index not in self._received:
            raise BadRequest("transfer %d: chunk %d was not sent to you" % (self.id, index))
        if index not in self._acked:
            self._acked.add(index)
            self._publish(FileAck, index)

    def chunk(self, session: Participant, index: int, data: bytes) -> None:
        self._recipient(session)
        raise BadRequest("only the sender of transfer %d may send chunks" % (self.id,))

    def done(self, session: Participant) -> None:
        self._recipient(session)
        raise BadRequest("only the sender of transfer %d may finish" % (self.id,))

    def cancel(self, session: Participant, reason: str) -> None:
        self._recipient(session)
        self._leave(session, reason, cancel=True)

    def sessionGone(self, session: Participant, reason: str) -> None:
        if not self.over and self.recipients.get(session) in (PENDING, ACCEPTED):
            self._leave(session, reason, cancel=False)

    def _leave(self, session, reason, cancel):
        state = self.recipients[session]
        self.recipients[session] = GONE
        if state == ACCEPTED or PENDING not in self.recipients.values():
            self._publish(FileLeave, reason, cancel)
            self._end("left")

    # -- what the sender's node says ----------------------------------------

    def chunkArrived(self, index: int, data: bytes) -> None:
        if self.chosen is not None and not self.over and 0 <= index < self.offer.chunks:
            self._received.add(index)
            self.chosen.client.fileChunk(self.id, index, data)

    def finished(self) -> None:
        if self.chosen is not None and not self.over:
            self.chosen.client.fileDone(self.id)
            self._end("done")

    def cancelled(self, reason: str) -> None:
        if not self.over:
            self._tell(reason, [s for s, state in self.recipients.items()
                                if state in (PENDING, ACCEPTED)])
            self._end(reason)


def _decline(service, node, event):
    service.happened([FileAnswer(node, event.id, event.user, False)])


def _offered(service, node, event):
    """
    An offer to a user here: mirror it for the user's sessions that can
    receive files, or decline at once.
    """
    user = service.directory.user(event.user)
    sender = service.directory.user(event.sender)
    sessions = [] if user is None else [
        s for s in user.sessions if IFileClient.providedBy(s.client)]
    if event.targetKind == 0:
        room = service.directory.rooms.get(fold(event.target))
        if room is None or user is None or fold(user.name) not in room.members:
            sessions = []
    if not sessions or sender is None:
        _decline(service, node, event)
        return
    mirror = Mirror(service, node, event, sender, user, sessions,
                    e2e.Envelope.parse(event.envelope))
    service.addTransfer(mirror, ("node", node))
    mirror.begin()


def _mirror(service, node, event):
    for transfer in list(service.transfers.values()):
        if isinstance(transfer, Mirror) and transfer.origin == (node, event.id) \
                and fold(transfer.user.name) == fold(event.user):
            return transfer
    return None


def _remoteRecipient(service, node, event):
    transfer = service.transfers.get(event.id)
    if transfer is not None:
        for session in transfer.recipients:
            if isinstance(session, RemoteRecipient) and session.node == node \
                    and fold(session.user.name) == fold(event.user):
                return transfer, session
    return None, None


def remoteFileEvent(service: "ChatService", node: str, event: FileEvent) -> None:
    """
    A L{chatd.core.events.FileEvent} from node C{node} (checked by the
    fan-out): act on it when it is for this node. A request the transfer
    refuses raises L{chatd.errors.ChatError}, as a client's would.
    """
    if event.node != service.fanout.nodeId:
        return
    if isinstance(event, FileOffer):
        _offered(service, node, event)
    elif isinstance(event, (FileChunk, FileDone, FileCancelled)):
        mirror = _mirror(service, node, event)
        if mirror is None:
            return
        if isinstance(event, FileChunk):
            mirror.chunkArrived(event.index, event.data)
        elif isinstance(event, FileDone):
            mirror.finished()
        else:
            mirror.cancelled(event.reason)
    else:
        transfer, recipient = _remoteRecipient(service, node, event)
        if transfer is None:
            return
        if isinstance(event, FileAnswer):
            transfer.answer(recipient, event.accept)
        elif isinstance(event, FileAck):
            transfer.ack(recipient, event.index)
        else:
            assert isinstance(event, FileLeave)  # the last kind of file event
            if event.cancel:
                transfer.cancel(recipient, event.reason)
            else:
                transfer.sessionGone(recipient, event.reason)


def filesNodeGone(service: "ChatService", node: str) -> None:
    """
    Node C{node} is gone: transfers from there end for their recipients here
    as if the sender had disconnected, and its users leave transfers from here
    as if they had.
    """
    for transfer in list(service.transfers.values()):
        if isinstance(transfer, Mirror):
            if transfer.origin[0] == node:
                transfer.cancelled("the sender is gone")
            continue
        for session in list(transfer.recipients):
            if isinstance(session, RemoteRecipient) and session.node == node:
                transfer.sessionGone(session, "disconnected")
