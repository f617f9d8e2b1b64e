# -*- test-case-name: chatd.test.test_client_files -*-
"""
File transfer for the terminal client (docs/protocol.rst): the transfers of
one client, the commands on them and the server's transfer events, put
together from L{chatd.client.sending} and L{chatd.client.receiving}; the
transfer objects are in L{chatd.client.transfers}, safe names in
L{chatd.client.filenames}. It talks to the rest of the client only through
its public messaging API (L{chatd.client.messaging}).

Nothing here holds a whole file in memory, and nothing touches the disk or
does cryptography on the reactor thread: all of that runs through the client's
C{runInThread}.
"""

import os
from collections import OrderedDict
from itertools import count

from twisted.internet.defer import DeferredList

from chatd.client.errors import ClientError, TransferError
from chatd.client.filenames import placeFile, safeName
from chatd.client.receiving import ReceivingFiles
from chatd.client.sending import SendingFiles
from chatd.client.transfers import MAX_CHUNKS, Incoming, Outgoing, chunkCount, fileInfo, formatSize
from chatd.protocols.opcodes import Op

# The names the client and its tests have always found here.
__all__ = ["FileTransfers", "CHUNK_SIZE", "DEFAULT_DOWNLOADS", "MAX_CHUNKS", "Incoming",
           "Outgoing", "TransferError", "chunkCount", "fileInfo", "formatSize", "placeFile",
           "safeName"]

CHUNK_SIZE = 64 * 1024
DEFAULT_DOWNLOADS = os.path.join("~", "Downloads", "chatd")


class FileTransfers(SendingFiles, ReceivingFiles):
    """
    Every file transfer of one L{chatd.client.chat.ChatClient}: the commands
    the console offers and the server's transfer events.

    @param client: the L{ChatClient}, for its connection, keys, threads and UI.
    @param downloads: where accepted files go unless a folder is given.
    @param chunkSize: the plaintext bytes of each chunk we send.

    @ivar transfers: every running transfer and pending offer, by local number.
    """

    def __init__(self, client, downloads=None, chunkSize=CHUNK_SIZE):
        self.client = client
        self.downloads = downloads or DEFAULT_DOWNLOADS
        self.chunkSize = chunkSize
        self.transfers = OrderedDict()
        self._byServerId = {}
        self._numbers = count(1)
        # Events for an id we do not know yet, kept only while an OFFER of
        # ours waits for its response: the server may cancel an offer before
        # it answers the OFFER that made it.
        self._offering = 0
        self._early = {}
        # Offers whose envelope is being opened, and why any was cancelled
        # meanwhile.
        self._opening = {}
        # Temporary files being deleted, so that stopping can wait for them.
        self._cleaning = set()

    @property
    def ui(self):
        return self.client.ui

    def _thread(self, f, *args):
        return self.client.runInThread(f, *args)

    def _add(self, transfer):
        self.transfers[transfer.number] = transfer
        self._byServerId[transfer.serverId] = transfer

    def _remove(self, transfer):
        self.transfers.pop(transfer.number, None)
        serverId = transfer.serverId
        if self._byServerId.get(serverId) is transfer:
            del self._byServerId[serverId]

    def running(self):
        """
        The transfers and pending offers, oldest first.
        """
        return list(self.transfers.values())

    async def cancel(self, number):
        """
        Stop a transfer: ours for everyone, someone else's for us alone.
        """
        transfer = self.transfers.get(number)
        if transfer is None:
            raise ClientError("no file transfer #%d" % (number,))
        if isinstance(transfer, Incoming) and transfer.state == Incoming.OFFERED:
            return await self.decline(number)
        if isinstance(transfer, Incoming):
            self._endIncoming(transfer, "%s cancelled by you; nothing was kept"
                              % (transfer.label(),), cancel="cancelled by the recipient")
        else:
            self._cancel(transfer, "cancelled by you", told="")
        return transfer

    def settled(self):
        """
        A L{Deferred} that fires once every temporary file being deleted is
        gone: a client that stops while receiving leaves none behind.
        """
        return DeferredList(list(self._cleaning))

    # -- events -----------------------------------------------------------

    def event(self, protocol, op, serverId, *values):
        """
        START, CHUNK, NEXT, DONE or CANCEL for transfer C{serverId}, on
        C{protocol}.
        """
        transfer = self._byServerId.get(serverId)
        if transfer is not None and transfer.protocol is not protocol:
            return
        if transfer is None:
            if op == Op.CANCEL and serverId in self._opening:
                self._opening[serverId] = values[0]
            elif op != Op.CHUNK and self._offering and len(self._early) < 64:
                self._early.setdefault(serverId, []).append((op, values))
            return
        self._dispatch(transfer, op, values)

    def _dispatch(self, transfer, op, values):
        if isinstance(transfer, Outgoing):
            if op == Op.START:
                transfer.accepted, transfer.window = values
                transfer.limit = max(transfer.limit, transfer.window - 1)
            elif op == Op.NEXT:
                transfer.limit = max(transfer.limit, values[0])
            elif op == Op.DONE:
                transfer.finished = True
            elif op == Op.CANCEL:
                transfer.end(values[0])
                return
            transfer._wake()
            return
        if op == Op.CHUNK:
            self._chunk(transfer, *values)
        elif op == Op.DONE and transfer.state == Incoming.RECEIVING:
            transfer.state = Incoming.CHECKING
            self._finished(transfer)
        elif op == Op.CANCEL:
            if transfer.state == Incoming.OFFERED:
                transfer.end(values[0])
                self._remove(transfer)
                self.ui.fileEnded(transfer.number, "file offer #%d from %s withdrawn: %s"
                                  % (transfer.number, transfer.sender, values[0]), True)
            else:
                self._endIncoming(transfer, "%s cancelled: %s; nothing was kept"
                                  % (transfer.label(), values[0]))

    def connectionLost(self, protocol):
        """
        Every transfer on C{protocol} is over: the server ends them too.
        """
        for transfer in list(self.transfers.values()):
            if transfer.protocol is not protocol:
                continue
            if isinstance(transfer, Incoming):
                if transfer.state == Incoming.OFFERED:
                    transfer.end("connection lost")
                    self._remove(transfer)
                    self.ui.fileEnded(transfer.number, "file offer #%d from %s lost with the "
                                      "connection" % (transfer.number, transfer.sender), True)
                else:
                    self._endIncoming(transfer, "%s failed: the connection was lost; nothing "
                                      "was kept" % (transfer.label(),))
            else:
                transfer.end("the connection was lost")
