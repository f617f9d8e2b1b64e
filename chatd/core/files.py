# -*- test-case-name: chatd.test.test_transfer -*-
"""
Requests of file transfers: offers, answers, chunks, acks, done and cancel.
"""

from dataclasses import replace

from twisted.internet.defer import Deferred

from chatd import e2e
from chatd.core.base import SessionBase
from chatd.core.directory import ROOM, USER
from chatd.core.remotefiles import remoteRecipients
from chatd.core.waiting import parsedOrNone
from chatd.errors import BadRequest, NotFound, RateLimited, TooLarge
from chatd.interfaces import IFileClient
from chatd.names import fold, isUserName
from chatd.transfer import Offer, Transfer


class FileRequests(SessionBase):
    """
    The file transfer requests of a L{chatd.core.session.Session}, mixed into it.
    """

    def offer(self, kind: int, target: str, size: int, chunks: int, chunkSize: int,
              data: bytes) -> "Deferred[int]":
        """
        Offer a file to a room or a user: the sizes are checked first (they rank
        with malformed requests), then the target and the file envelope as for a
        message, under the file header.

        @return: the transfer id.
        """
        service, settings = self.service, self.service.settings
        if kind not in (ROOM, USER):
            raise BadRequest("a file is offered to a room (0) or a user (1), not %d" % (kind,))
        if not 1 <= chunkSize <= settings.maxFrame - 64:
            raise TooLarge("chunk size must be 1 to %d bytes" % (settings.maxFrame - 64,))
        if chunks != max(1, -(-size // chunkSize)):
            raise BadRequest("%d bytes in chunks of %d make %d chunks, not %d"
                             % (size, chunkSize, max(1, -(-size // chunkSize)), chunks))
        if chunks > 1 << 20:
            raise TooLarge("at most %d chunks" % (1 << 20,))
        if settings.maxFileSize and size > settings.maxFileSize:
            raise TooLarge("files are at most %d bytes here" % (settings.maxFileSize,))
        user = self._greeted()
        if service.transferCounts.get(self._owner(user), 0) >= settings.maxTransfers:
            raise RateLimited("at most %d transfers at once; wait for one to end"
                              % (settings.maxTransfers,))
        if kind == ROOM:
            room = service.directory.room(target)
            if fold(user.name) not in room.members:
                raise BadRequest("not a member of %s" % (room.name,))
            toKind, name, expected, members = "room", room.name, room.keyIds(), room.memberKeys
            receivers = [u for u in room.members.values() if u is not user]

            async def devices(envelope):
                return await self._roomRecipients(room, envelope)
        else:
            if not isUserName(target):
                raise BadRequest("invalid user name %r" % (target,))
            peer = service.directory.user(target)
            if peer is None:
                raise NotFound("%s is not online" % (target,))
            if peer.key is None:
                raise BadRequest("%s has not published a key" % (peer.name,))
            toKind, name = "user", peer.name
            expected = {user.name: user.keyId, peer.name: peer.keyId}
            members = lambda: sorted({(user.name, user.key), (peer.name, peer.key)})  # noqa: E731
            receivers = [peer] if peer is not user else []

            async def devices(envelope):
                keyMap, pairs = await service.devices.expected([user] + receivers, [])
                return keyMap, lambda: pairs
        self._hasKey(user)
        return Deferred.fromCoroutine(self._offer(
            user, Offer(kind, name, size, chunks, chunkSize, None), data, toKind,
            (expected, members), devices, receivers))

    async def _offer(self, user, offer, data, toKind, legacy, devices, receivers):
        """
        Check the file envelope and begin the transfer. A version 2 envelope
        is checked as a version 2 message's: it names every device of the
        members (C{devices(envelope)}: the key map and the members for a refusal),
        signed by the sending device's key; a version 1 envelope as before
        (C{legacy}: the members by name, signed by the account key).
        """
        service, settings = self.service, self.service.settings
        name = offer.target
        parsed = parsedOrNone(data)
        devicesToo = parsed is not None and parsed.version == 2
        expected, members = await devices(parsed) if devicesToo else legacy

        def check():
            if self.ended:
                raise BadRequest("the session closed meanwhile")
            if service.transferCounts.get(self._owner(user), 0) >= settings.maxTransfers:
                raise RateLimited("at most %d transfers at once; wait for one to end"
                                  % (settings.maxTransfers,))
            return service.checkEnvelope(user, data, toKind, name, expected, members,
                                         domain=e2e.FILE, envelope=parsed,
                                         signer=self._signer(parsed) if devicesToo else None)
        envelope = await self._underMessageLimit(user, check)
        sessions = [s for u in receivers for s in u.sessions if IFileClient.providedBy(s.client)]
        sessions += remoteRecipients(service, receivers)
        if not sessions:
            raise NotFound("nobody in %s can receive files" % (name,))
        service.replays.add((fold(user.name), envelope.id))
        transfer = Transfer(service.newTransferId(), self, replace(offer, envelope=envelope),
                            sessions,
                            service.clock, settings.window, settings.offerTimeout,
                            settings.chunkTimeout)
        service.addTransfer(transfer, self._owner(user))
        transfer.begin()
        return transfer.id

    def _transfer(self, transferId):
        self._greeted()
        transfer = self.service.transfers.get(transferId)
        if transfer is None or (transfer.sender is not self and self not in transfer.recipients):
            raise NotFound("no such transfer: %d" % (transferId,))
        return transfer

    def answer(self, transferId: int, accept: int) -> None:
        """
        Accept (1) or decline (0) an offered file.
        """
        if accept not in (0, 1):
            raise BadRequest("a file offer is answered 1 (accept) or 0 (decline), not %d"
                             % (accept,))
        self._transfer(transferId).answer(self, bool(accept))

    def fileChunk(self, transferId: int, index: int, data: bytes) -> None:
        """
        The sender's chunk C{index}, relayed to the accepting recipients.
        """
        self._transfer(transferId).chunk(self, index, data)
        self.service.metrics.chunkRelayed(len(data))

    def fileAck(self, transferId: int, index: int) -> None:
        """
        A recipient acknowledges chunk C{index}.
        """
        self._transfer(transferId).ack(self, index)

    def fileDone(self, transferId: int) -> None:
        """
        The sender has sent every chunk.
        """
        self._transfer(transferId).done(self)

    def fileCancel(self, transferId: int, reason: str) -> None:
        """
        The sender cancels the transfer, or a recipient leaves it.
        """
        self._transfer(transferId).cancel(self, reason)
