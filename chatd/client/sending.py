# -*- test-case-name: chatd.test.test_client_files -*-
"""
Sending a file (docs/protocol.rst): the file is read once to learn its size
and SHA-256, a file envelope (header C{chatd-file-v1}) carrying its name,
sizes, hash and a fresh 32-byte file key is sealed to the recipients through
the client's messaging API, and OFFER goes to the server. Once START comes,
chunk C{i} is read, sealed with AES-256-GCM under the file key (the index in
the nonce and in the associated data) and sent, never past the highest index
the server allows (START's window, then each NEXT); DONE follows the last one.
"""

import json
import os
import time
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import e2e
from chatd.client.errors import ClientError, TransferError
from chatd.client.transfers import MAX_CHUNKS, Outgoing, formatSize
from chatd.protocols.opcodes import KIND_ROOM, Op

log = Logger()


class SendingFiles:
    """
    The sending half of L{chatd.client.files.FileTransfers}, which it is mixed
    into (a mixin so that splitting the module changed no behaviour).
    """

    # What the object this is mixed into provides (for type checkers).
    _add: Any
    _dispatch: Any
    _early: Any
    _numbers: Any
    _offering: Any
    _remove: Any
    _thread: Any
    chunkSize: Any
    client: Any
    ui: Any

    async def send(self, kind, name, path):
        """
        Offer the file at C{path} to a room or a user, and send it in the
        background once recipients accept.

        @param kind: C{"room"} or C{"user"}; a room named C{#x} is also found
            as C{x}, which the console shows as C{#x}.
        @return: the L{Outgoing} transfer, offered.
        """
        client = self.client
        if kind == "room":
            name = self._roomName(name)
        target, to, recipients, update = await client.audience(kind, name)
        path = os.path.abspath(os.path.expanduser(path))
        out = Outgoing(next(self._numbers), path, to, self.chunkSize)
        try:
            await self._thread(out.prepare)
        except OSError as e:
            raise ClientError("cannot read %s: %s" % (path, e.strerror or e)) from None
        try:
            if out.chunks > MAX_CHUNKS:
                raise ClientError("%s is too large: at most %d chunks of %s"
                                  % (path, MAX_CHUNKS, formatSize(self.chunkSize)))

            async def offer(blob):
                protocol = await client.withKey()
                out.envelopeId = json.loads(blob)["id"]
                (serverId,) = await protocol.request(
                    Op.OFFER, KIND_ROOM if kind == "room" else 1, target, out.size,
                    out.chunks, out.chunkSize, blob)
                out.protocol = protocol
                out.serverId = serverId
                self._add(out)
                for op, values in self._early.pop(serverId, []):
                    self._dispatch(out, op, values)

            self._offering += 1
            try:
                await client.sealAndCall(to, recipients, update, out.envelopePlaintext(),
                                         lambda blob: Deferred.fromCoroutine(offer(blob)),
                                          domain=e2e.FILE)
            finally:
                self._offering -= 1
                if not self._offering:
                    self._early.clear()
        except BaseException:
            out.close()
            raise
        Deferred.fromCoroutine(self._sending(out)).addErrback(
            lambda f: log.failure("sending file {path}", f, path=path))
        return out

    def _roomName(self, name):
        try:
            return self.client.room(name).name
        except ClientError:
            if name.startswith("#") and len(name) > 1:
                return self.client.room(name[1:]).name
            raise

    async def _sending(self, out):
        """
        Wait for START, send every chunk within the window, then DONE, and tell
        the person how it ended.
        """
        reading: Optional[Deferred] = None
        try:
            while out.accepted is None:
                await out.changed()
            out.startTime = time.monotonic()
            self.ui.notice("%s: %d recipient%s accepted; sending %s"
                           % (out.label(), out.accepted, "" if out.accepted == 1 else "s",
                              formatSize(out.size)))
            last: Optional[Deferred] = None
            reading = self._thread(out.readChunk, 0)
            for index in range(out.chunks):
                assert reading is not None  # the read of chunk index began last round
                data = await reading
                reading = None
                if index + 1 < out.chunks:
                    reading = self._thread(out.readChunk, index + 1)
                while index > out.limit:
                    await out.changed()
                if out.ended:
                    raise TransferError(out.endedBecause)
                # Not waited for one by one: the window, not the responses,
                # paces the sender. A refusal cancels the transfer.
                last = out.protocol.request(Op.CHUNK, out.serverId, index, data)
                last.addErrback(self._refused, out, "chunk %d" % (index,))
                out.done = min(out.size, (index + 1) * out.chunkSize)
                self.ui.fileProgress(out.number, out.direction, out.name, out.done, out.size)
            assert last is not None  # a file is at least one chunk (chunkCount)
            await last
            if out.ended:
                raise TransferError(out.endedBecause)
            if not out.unchanged():
                self._cancel(out, "the file changed while it was being sent")
                raise TransferError("the file changed while it was being sent")
            await out.protocol.request(Op.DONE, out.serverId).addErrback(
                self._refused, out, "DONE")
            while not out.finished:
                await out.changed()
        except TransferError as e:
            if not out.ended:
                self._cancel(out, str(e))
            self._remove(out)
            self.ui.fileEnded(out.number, "%s cancelled: %s" % (out.label(), e), True)
        except Exception as e:
            # A lost connection, a file that cannot be read: the server must
            # not wait for chunks that will never come.
            reason = str(e) or e.__class__.__name__
            self._cancel(out, reason)
            self._remove(out)
            self.ui.fileEnded(out.number, "%s failed: %s" % (out.label(), reason), True)
        else:
            self._remove(out)
            seconds = max(time.monotonic() - out.startTime, 1e-6)
            # The server tells a sender only how many accepted (START), not
            # of recipients dropped on the way: say what is known.
            self.ui.fileEnded(out.number, "%s delivered; %d recipient%s accepted it (%s in %.1f s, "
                              "%s/s)" % (out.label(), out.accepted,
                                         "" if out.accepted == 1 else "s", formatSize(out.size),
                                         seconds, formatSize(out.size / seconds)), False)
        finally:
            if reading is not None:
                try:
                    await reading
                except Exception:
                    pass
            await self._thread(out.close)

    def _refused(self, failure, out, what):
        """
        The server refused one of the sender's requests: the transfer cannot go
        on (it may have ended already, in which case its CANCEL said why). The
        sending loop sees the end at its next step.
        """
        if not out.ended:
            self._cancel(out, "the server refused %s: %s" % (what, failure.getErrorMessage()))

    def _cancel(self, transfer, reason, told=None):
        """
        End C{transfer} for C{reason} and tell the server, when it can still
        hear us.

        @param told: the reason CANCEL carries, when it is not C{reason}: the
            server passes a sender's on to the recipients as "cancelled by the
            sender: " + it, so it must read well from their side.
        """
        if transfer.end(reason) and transfer.protocol is not None \
                and transfer.protocol.connected and transfer.serverId is not None:
            told = reason if told is None else told
            transfer.protocol.request(Op.CANCEL, transfer.serverId, told[:200]).addErrback(
                lambda f: None)
