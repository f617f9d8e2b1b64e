# -*- test-case-name: chatd.test.test_client_files -*-
"""
Receiving a file (docs/protocol.rst): OFFERED's file envelope is opened with
the sender's pinned key like any message, in order with them, and dropped (and
declined) when it does not open or when the sizes the server relays differ
from the signed ones. An accepted file is written chunk by chunk to a
temporary file in the download folder, each chunk acknowledged only once it is
written; at DONE the size and the signed SHA-256 are checked, and only then
does the file get its final name (L{chatd.client.filenames}).

The work of one received file runs as one chain of steps, so its chunks are
written in the order they came and its checks see every write.
"""

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import e2e
from chatd.client.errors import ClientError, TransferError
from chatd.client.transfers import Incoming, fileInfo, formatSize
from chatd.protocols.opcodes import KIND_ROOM, Op

log = Logger()


class ReceivingFiles:
    """
    The receiving half of L{chatd.client.files.FileTransfers}, which it is
    mixed into (a mixin so that splitting the module changed no behaviour).
    """

    # What the object this is mixed into provides (for type checkers).
    _add: Any
    _cancel: Any
    _cleaning: Any
    _numbers: Any
    _opening: Any
    _remove: Any
    _thread: Any
    client: Any
    downloads: Any
    transfers: Any
    ui: Any

    def offered(self, protocol, serverId, sender, kind, target, size, chunks, chunkSize, blob):
        """
        OFFERED on C{protocol}: open the file envelope after every message
        before it, check it, and announce the offer; decline one that fails.
        """
        room = target if kind == KIND_ROOM else None
        to = ("room", target) if kind == KIND_ROOM else None
        self._opening[serverId] = None

        async def opening():
            envelope, plaintext = await self.client.openIncoming(blob, sender, to,
                                                                 domain=e2e.FILE)
            name, digest, fileKey = fileInfo(plaintext, size, chunks, chunkSize)
            return Incoming(next(self._numbers), protocol, serverId, sender, room, name, size,
                            chunks, chunkSize, digest, fileKey, envelope.id)

        def announce(incoming):
            withdrawn = self._opening.pop(serverId, None)
            if withdrawn is not None:
                self.ui.notice("a file offer from %s was withdrawn before it was shown: %s"
                               % (sender, withdrawn))
                return
            self._add(incoming)
            self.ui.fileOffered(incoming.number, sender, room, incoming.name, size)

        def refused(failure):
            self._opening.pop(serverId, None)
            where = " in %s" % (target,) if room is not None else ""
            self.ui.dropped("dropped a file offer from %s%s: %s; declined"
                            % (sender, where, failure.getErrorMessage()))
            if protocol is not None and protocol.connected:
                protocol.request(Op.ANSWER, serverId, 0).addErrback(lambda f: None)

        self.client.inOrder(lambda: Deferred.fromCoroutine(opening()), announce, refused,
                            "a file offer from %s" % (sender,))

    def _incoming(self, number):
        """
        The pending offer C{number}, or the newest one.
        """
        if number is None:
            offers = [t for t in self.transfers.values()
                      if isinstance(t, Incoming) and t.state == Incoming.OFFERED]
            if not offers:
                raise ClientError("no file offer is waiting")
            return offers[-1]
        transfer = self.transfers.get(number)
        if not isinstance(transfer, Incoming):
            raise ClientError("no file offer #%d (it may have expired or been withdrawn)"
                              % (number,))
        if transfer.state != Incoming.OFFERED:
            raise ClientError("file #%d is already being received" % (number,))
        return transfer

    async def accept(self, number=None, folder=None):
        """
        Accept an offer: make the temporary file in C{folder} (the download
        folder by default), then say yes to the server.

        @return: the L{Incoming} transfer.
        """
        incoming = self._incoming(number)
        folder = os.path.abspath(os.path.expanduser(folder or self.downloads))
        incoming.state = Incoming.RECEIVING
        try:
            await self._thread(incoming.open, folder)
        except OSError as e:
            if not incoming.ended:
                incoming.state = Incoming.OFFERED
            raise ClientError("cannot write in %s: %s" % (folder, e.strerror or e)) from None
        try:
            if incoming.ended:
                raise TransferError(incoming.endedBecause)
            if not incoming.protocol.connected:
                raise TransferError("the connection it came on is gone")
            await incoming.protocol.request(Op.ANSWER, incoming.serverId, 1)
        except Exception as e:
            if not incoming.ended:
                incoming.end(str(e))
                self._remove(incoming)
            self._discard(incoming)
            raise ClientError("%s: %s" % (incoming.label(), e)) from None
        return incoming

    async def decline(self, number=None):
        """
        Decline an offer.

        @return: the L{Incoming} offer declined.
        """
        incoming = self._incoming(number)
        incoming.end("declined")
        self._remove(incoming)
        if incoming.protocol.connected:
            try:
                await incoming.protocol.request(Op.ANSWER, incoming.serverId, 0)
            except Exception:
                # Expired meanwhile: declined all the same.
                pass
        return incoming

    def _chunk(self, incoming, index, data):
        if incoming.state != Incoming.RECEIVING or incoming.ended:
            return

        async def write():
            await self._thread(incoming.writeChunk, index, data)
            if incoming.ended:
                return
            incoming.protocol.request(Op.ACK, incoming.serverId, index).addErrback(
                self._ackRefused, incoming, index)
            self.ui.fileProgress(incoming.number, incoming.direction, incoming.name,
                                 incoming.done, incoming.size)
        self._step(incoming, write)

    def _ackRefused(self, failure, incoming, index):
        if not incoming.ended:
            self._endIncoming(incoming, "%s failed: the server refused the ACK of chunk %d: %s; "
                              "nothing was kept" % (incoming.label(), index,
                                                    failure.getErrorMessage()),
                              cancel="ACK refused")

    def _step(self, incoming, work):
        """
        Run C{work} (a coroutine function) after every earlier step of this
        file, unless it has ended by then; a failing step ends it.
        """
        def run(_):
            if incoming.ended:
                return None
            return Deferred.fromCoroutine(work())

        def failed(failure):
            if not incoming.ended:
                reason = (failure.getErrorMessage() if failure.check(TransferError, OSError)
                          else str(failure.value) or failure.type.__name__)
                if not failure.check(TransferError, OSError):
                    log.failure("receiving {label}", failure, label=incoming.label())
                running = incoming.state == Incoming.RECEIVING
                self._endIncoming(incoming, "%s failed: %s; nothing was kept"
                                  % (incoming.label(), reason),
                                  cancel=reason if running else None)
        incoming.work.addCallback(run).addErrback(failed)

    def _finished(self, incoming):
        """
        DONE: every chunk is written and acknowledged; check the whole file and
        keep it.
        """
        async def finish():
            path = await self._thread(incoming.finish)
            incoming.end("")
            self._remove(incoming)
            self.ui.fileEnded(incoming.number, "saved %s (%s, SHA-256 checked) as %s"
                              % (incoming.label(), formatSize(incoming.size), path), False)
        self._step(incoming, finish)

    def _endIncoming(self, incoming, text, cancel=None):
        """
        End a received file without keeping it: tell the server (C{cancel}, when
        it still runs there), delete the temporary file, tell the person.
        """
        if cancel is not None:
            self._cancel(incoming, cancel)
        else:
            incoming.end(text)
        self._remove(incoming)
        self._discard(incoming)
        self.ui.fileEnded(incoming.number, text, True)

    def _discard(self, incoming):
        """
        Delete C{incoming}'s temporary file once its running step is over.
        """
        cleaning: Deferred = Deferred()
        self._cleaning.add(cleaning)

        def deleted(result):
            self._cleaning.discard(cleaning)
            cleaning.callback(None)
            return result
        incoming.work.addCallback(lambda _: self._thread(incoming.discard)).addErrback(
            lambda f: log.failure("deleting {path}", f, path=incoming.temporary)).addBoth(deleted)
