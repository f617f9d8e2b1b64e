# -*- test-case-name: chatd.test.test_client_files -*-
"""
File transfer for the terminal client (docs/protocol.rst).

Sending: the file is read once to learn its size and SHA-256, a file envelope
(header C{chatd-file-v1}) carrying its name, sizes, hash and a fresh 32-byte
file key is sealed to the recipients, and OFFER goes to the server. Once START
comes, chunk C{i} is read, sealed with AES-256-GCM under the file key (the
index in the nonce and in the associated data) and sent, never past the
highest index the server allows (START's window, then each NEXT); DONE follows
the last one.

Receiving: OFFERED's file envelope is opened with the sender's pinned key like
any message, and dropped (and declined) when it does not open or when the
sizes the server relays differ from the signed ones. An accepted file is
written chunk by chunk to a temporary file in the download folder, each chunk
acknowledged only once it is written; at DONE the size and the signed SHA-256
are checked, and only then does the file get its final name: a safe one
(L{safeName}), never outside the folder and never over an existing file.

Nothing here holds a whole file in memory, and nothing touches the disk or
does cryptography on the reactor thread: all of that runs through the client's
C{runInThread}. The work of one received file runs as one chain of steps, so
its chunks are written in the order they came and its checks see every write.

Each transfer is a small object (L{Outgoing} or L{Incoming}) that the person
knows by a short local number (C{#1}, C{#2}, ...) rather than by the server's
random 32-bit id, which is long to type; the server's id stays inside.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import tempfile
import time
import unicodedata
from collections import OrderedDict
from itertools import count

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger

from chatd import e2e
from chatd.protocols.opcodes import KIND_ROOM, Op

log = Logger()

CHUNK_SIZE = 64 * 1024
MAX_CHUNKS = 1 << 20
# Bytes of UTF-8 a received file's name may take: filesystems allow 255, and
# " (123)" and the temporary prefix need room.
NAME_BYTES = 200
# How many " (n)" suffixes to try before giving up on a free name.
MAX_SUFFIX = 10000
DEFAULT_DOWNLOADS = os.path.join("~", "Downloads", "chatd")

_HEX64 = re.compile(r"[0-9a-f]{64}")
# Windows gives these names devices whatever their extension; a file shared
# with such a name could not be opened there.
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")


class TransferError(Exception):
    """
    A transfer that cannot go on; the message says why, in words for the person.
    """


def formatSize(size):
    """
    A byte count for people: C{512 B}, C{1.2 MiB}.
    """
    if size < 1024:
        return "%d B" % (size,)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024.0
        if size < 1024 or unit == "TiB":
            return "%.1f %s" % (size, unit)


def safeName(name):
    """
    A file name that is safe to create in the download folder, made from the
    name a sender chose (which nobody checked).

    Path separators (C{/}, C{\\}) and C{:} become C{_}, so the name is one
    component; control, format (bidirectional overrides, zero-width) and
    unassigned characters become C{_} too, so the name cannot hide its real
    extension or move the cursor; leading dots and spaces go, so it is never
    C{.} or C{..} nor a hidden file; it is cut to L{NAME_BYTES} bytes of UTF-8
    keeping a short extension; an empty result is C{file}, and a name Windows
    reserves for a device gets a C{_} in front.

    @type name: L{str}
    @rtype: L{str}
    """
    name = unicodedata.normalize("NFC", name)
    kept = []
    for char in name:
        if char in "/\\:" or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn",
                                                           "Zl", "Zp"):
            kept.append("_")
        elif char.isspace():
            kept.append(" ")
        else:
            kept.append(char)
    name = "".join(kept).strip(" .")
    if len(name.encode("utf-8")) > NAME_BYTES:
        stem, extension = os.path.splitext(name)
        if len(extension.encode("utf-8")) > 16:
            stem, extension = name, ""
        budget = NAME_BYTES - len(extension.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
        name = stem + extension
    if not name:
        name = "file"
    if _RESERVED.fullmatch(name):
        name = "_" + name
    return name


def placeFile(temporary, folder, name):
    """
    Give the finished C{temporary} file its final name in C{folder}: L{safeName}
    of C{name}, or C{stem (1).ext}, C{stem (2).ext}, ... when that is taken, so
    an existing file is never replaced.

    A hard link claims the name atomically (it fails when the name exists);
    where links are not allowed, an exclusive create claims it and the file is
    then renamed over its own placeholder.

    @return: the final path.
    @raise TransferError: when no name can be had.
    """
    folder = os.path.realpath(folder)
    stem, extension = os.path.splitext(safeName(name))
    if not stem:
        stem, extension = extension, ""
    for n in range(MAX_SUFFIX):
        candidate = os.path.join(folder, stem + (" (%d)" % (n,) if n else "") + extension)
        # Belt and braces: safeName leaves no separator, but the file must
        # land in the folder whatever else happens.
        if os.path.dirname(candidate) != folder:
            raise TransferError("refusing to write outside %s" % (folder,))
        try:
            os.link(temporary, candidate)
        except FileExistsError:
            continue
        except OSError:
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(temporary, candidate)
            return candidate
        os.unlink(temporary)
        return candidate
    raise TransferError("no free name for %s in %s" % (stem + extension, folder))


def chunkCount(size, chunkSize):
    """
    How many chunks a file of C{size} bytes takes: an empty file is one empty
    chunk.
    """
    return max(1, -(-size // chunkSize))


def fileInfo(plaintext, size, chunks, chunkSize):
    """
    Parse the plaintext of a file envelope and check it against what OFFERED
    said (the server may not change sizes the sender signed).

    @return: C{(name, sha256, fileKey)}.
    @raise TransferError: for a plaintext of the wrong shape or sizes that
        differ.
    """
    def pairs(items):
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise TransferError("the file envelope repeats a field")
        return dict(items)
    try:
        info = json.loads(plaintext.decode("utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TransferError("the file envelope is not JSON") from None
    if not isinstance(info, dict):
        raise TransferError("the file envelope is not a JSON object")
    name = info.get("name")
    key = info.get("file_key")
    digest = info.get("sha256")
    if not isinstance(name, str):
        raise TransferError("the file envelope has no name")
    for field in ("size", "chunk_size", "chunks"):
        if type(info.get(field)) is not int or info[field] < 0:
            raise TransferError("the file envelope's %s is not a count" % (field,))
    if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
        raise TransferError("the file envelope's sha256 is not 64 lowercase hex digits")
    try:
        fileKey = base64.b64decode(key, validate=True) if isinstance(key, str) else b""
    except binascii.Error:
        fileKey = b""
    if len(fileKey) != 32:
        raise TransferError("the file envelope's file_key is not 32 bytes of base64")
    signed = (info["size"], info["chunks"], info["chunk_size"])
    if signed != (size, chunks, chunkSize):
        raise TransferError("the server says %d bytes in %d chunks of %d, the signed envelope "
                            "%d bytes in %d chunks of %d" % ((size, chunks, chunkSize) + signed))
    if chunkSize < 1 or chunks != chunkCount(size, chunkSize):
        raise TransferError("%d bytes do not make %d chunks of %d" % (size, chunks, chunkSize))
    return name, digest, fileKey


class _Transfer:
    """
    What outgoing and incoming transfers share: numbers, the connection they
    live on, an end, and waiting for the next thing to happen.

    @ivar number: the local number the person uses.
    @ivar serverId: the server's id, once known.
    @ivar protocol: the connection the transfer lives and dies with.
    @ivar endedBecause: L{None} while it runs; then why it ended (C{""} for
        success).
    """

    direction = None

    def __init__(self, number, protocol=None):
        self.number = number
        self.serverId = None
        self.protocol = protocol
        self.endedBecause = None
        self.done = 0
        self._waiters = []

    @property
    def ended(self):
        return self.endedBecause is not None

    def changed(self):
        """
        A L{Deferred} that fires at the next event of this transfer, or fails
        with L{TransferError} once it has ended.
        """
        if self.ended:
            return fail(TransferError(self.endedBecause))
        d = Deferred()
        self._waiters.append(d)
        return d

    def _wake(self):
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def end(self, reason):
        """
        Mark the transfer over; whoever waits on it learns C{reason}.
        """
        if self.ended:
            return False
        self.endedBecause = reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(TransferError(reason))
        return True


class Outgoing(_Transfer):
    """
    A file we send.

    The file is opened once and read chunk by chunk with positional reads; it
    is hashed again while it is sent, so that a file changed after it was
    offered is cancelled rather than delivered under a hash that no longer
    fits it.

    @ivar where: C{("room", name)} or C{("user", name)}.
    @ivar limit: the highest index the server lets us send.
    @ivar accepted: how many recipients accepted (START).
    """

    direction = "sending"

    def __init__(self, number, path, where, chunkSize):
        _Transfer.__init__(self, number)
        self.path = path
        self.name = os.path.basename(path.rstrip(os.sep)) or "file"
        self.where = where
        self.chunkSize = chunkSize
        self.size = self.chunks = 0
        self.sha256 = None
        self.fileKey = os.urandom(32)
        self.envelopeId = None
        self.limit = -1
        self.accepted = None
        self.window = None
        self.finished = False
        self.startTime = None
        self._fd = None
        self._hasher = hashlib.sha256()

    def prepare(self):
        """
        Open the file, learn its size and hash it (in a thread).

        @raise OSError: when it cannot be read.
        """
        # Non-blocking, so that a FIFO cannot hold the thread forever; it
        # changes nothing for a regular file, the only kind sent.
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            hasher = hashlib.sha256()
            size = 0
            while True:
                block = os.read(fd, 1 << 20)
                if not block:
                    break
                hasher.update(block)
                size += len(block)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.size = size
        self.sha256 = hasher.hexdigest()
        self.chunks = chunkCount(size, self.chunkSize)

    def envelopePlaintext(self):
        """
        The plaintext of the file envelope (docs/protocol.rst).
        """
        return json.dumps({
            "name": self.name, "size": self.size, "sha256": self.sha256,
            "chunk_size": self.chunkSize, "chunks": self.chunks,
            "file_key": base64.b64encode(self.fileKey).decode("ascii"),
        }).encode("utf-8")

    def readChunk(self, index):
        """
        Read and seal chunk C{index} (in a thread; chunks are read in order).

        @raise TransferError: when the file is shorter than it was.
        """
        length = min(self.chunkSize, self.size - index * self.chunkSize)
        data = os.pread(self._fd, length, index * self.chunkSize)
        if len(data) != length:
            raise TransferError("the file got shorter while it was being sent")
        self._hasher.update(data)
        return e2e.sealChunk(self.fileKey, self.envelopeId, index, data)

    def unchanged(self):
        """
        Whether what was sent hashes to what was signed.
        """
        return self._hasher.hexdigest() == self.sha256

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def label(self):
        kind, name = self.where
        target = name if kind == "user" else (name if name.startswith("#") else "#" + name)
        return 'file #%d "%s" to %s' % (self.number, self.name, target)


class Incoming(_Transfer):
    """
    A file offered to us.

    States: C{offered} (waiting for /accept or /decline), C{receiving},
    C{checking} (after DONE: the server is done with it), then ended.

    Chunks are written at their place in a temporary file, and hashed as they
    come while they come in order (the usual case: the sender sends them in
    order); otherwise the rest of the file is hashed again at the end.
    """

    direction = "receiving"
    OFFERED, RECEIVING, CHECKING = "offered", "receiving", "checking"

    def __init__(self, number, protocol, serverId, sender, room, name, size, chunks, chunkSize,
                 sha256, fileKey, envelopeId):
        _Transfer.__init__(self, number, protocol)
        self.serverId = serverId
        self.sender = sender
        self.room = room
        self.name = name
        self.size = size
        self.chunks = chunks
        self.chunkSize = chunkSize
        self.sha256 = sha256
        self.fileKey = fileKey
        self.envelopeId = envelopeId
        self.state = self.OFFERED
        self.folder = None
        self.temporary = None
        self.work = succeed(None)
        self._file = None
        self._received = bytearray((chunks + 7) // 8)
        self._count = 0
        self._hasher = hashlib.sha256()
        self._hashed = 0

    def open(self, folder):
        """
        Make the download folder and the temporary file (in a thread).
        """
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".chatd-", suffix=".part", dir=folder)
        self.folder, self.temporary = folder, path
        self._file = os.fdopen(fd, "r+b")

    def writeChunk(self, index, ciphertext):
        """
        Open chunk C{index} and write it at its place (in a thread).

        @return: whether it was new (a repeat is acknowledged again, not
            written again).
        @raise TransferError: when it does not decrypt or has the wrong length.
        """
        if index >= self.chunks:
            raise TransferError("chunk %d is past the last (%d)" % (index, self.chunks - 1))
        if self._received[index >> 3] & (1 << (index & 7)):
            return False
        try:
            data = e2e.openChunk(self.fileKey, self.envelopeId, index, ciphertext)
        except e2e.EnvelopeError:
            raise TransferError("chunk %d does not decrypt (altered or not from this file)"
                                % (index,)) from None
        expected = min(self.chunkSize, self.size - index * self.chunkSize)
        if len(data) != expected:
            raise TransferError("chunk %d has %d bytes, not %d" % (index, len(data), expected))
        self._file.seek(index * self.chunkSize)
        self._file.write(data)
        self._received[index >> 3] |= 1 << (index & 7)
        self._count += 1
        if index == self._hashed:
            self._hasher.update(data)
            self._hashed += 1
        self.done += len(data)
        return True

    def finish(self):
        """
        Check the whole file and give it its final name (in a thread).

        @return: the final path.
        @raise TransferError: when a chunk is missing, or the size or hash is
            not the signed one.
        """
        if self._count != self.chunks:
            raise TransferError("only %d of %d chunks arrived" % (self._count, self.chunks))
        self._file.flush()
        os.fsync(self._file.fileno())
        actual = os.fstat(self._file.fileno()).st_size
        if actual != self.size:
            raise TransferError("%d bytes arrived, the sender signed %d" % (actual, self.size))
        if self._hashed < self.chunks:
            self._file.seek(self._hashed * self.chunkSize)
            while True:
                block = self._file.read(1 << 20)
                if not block:
                    break
                self._hasher.update(block)
        if self._hasher.hexdigest() != self.sha256:
            raise TransferError("the file's SHA-256 is not the one the sender signed")
        self._file.close()
        self._file = None
        path = placeFile(self.temporary, self.folder, self.name)
        self.temporary = None
        return path

    def discard(self):
        """
        Close and delete the temporary file, if any (in a thread).
        """
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.temporary is not None:
            try:
                os.unlink(self.temporary)
            except FileNotFoundError:
                pass
            self.temporary = None

    def label(self):
        return 'file #%d "%s" from %s' % (self.number, self.name, self.sender)


class FileTransfers:
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
        if self._byServerId.get(transfer.serverId) is transfer:
            del self._byServerId[transfer.serverId]

    def running(self):
        """
        The transfers and pending offers, oldest first.
        """
        return list(self.transfers.values())

    # -- sending ----------------------------------------------------------

    async def send(self, kind, name, path):
        """
        Offer the file at C{path} to a room or a user, and send it in the
        background once recipients accept.

        @param kind: C{"room"} or C{"user"}; a room named C{#x} is also found
            as C{x}, which the console shows as C{#x}.
        @return: the L{Outgoing} transfer, offered.
        """
        from chatd.client.chat import ClientError
        client = self.client
        if kind == "room":
            name = self._roomName(name)
        target, to, recipients, update = await client._audience(kind, name)
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
                protocol = await client._withKey()
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
                await client._sealAndCall(to, recipients, update, out.envelopePlaintext(),
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
        from chatd.client.chat import ClientError
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
        reading = None
        try:
            while out.accepted is None:
                await out.changed()
            out.startTime = time.monotonic()
            self.ui.notice("%s: %d recipient%s accepted; sending %s"
                           % (out.label(), out.accepted, "" if out.accepted == 1 else "s",
                              formatSize(out.size)))
            last = None
            reading = self._thread(out.readChunk, 0)
            for index in range(out.chunks):
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

    # -- receiving --------------------------------------------------------

    def offered(self, protocol, serverId, sender, kind, target, size, chunks, chunkSize, blob):
        """
        OFFERED on C{protocol}: open the file envelope after every message
        before it, check it, and announce the offer; decline one that fails.
        """
        room = target if kind == KIND_ROOM else None
        to = ("room", target) if kind == KIND_ROOM else None
        self._opening[serverId] = None

        def open_(_):
            return Deferred.fromCoroutine(self.client._open(blob, sender, to, domain=e2e.FILE))

        def opened(result):
            envelope, plaintext = result
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

        self.client._inbound.addCallback(open_).addCallback(opened).addCallbacks(
            announce, refused).addErrback(
            lambda f: log.failure("showing a file offer from {sender}", f, sender=sender))

    def _incoming(self, number):
        """
        The pending offer C{number}, or the newest one.
        """
        from chatd.client.chat import ClientError
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
        from chatd.client.chat import ClientError
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

    async def cancel(self, number):
        """
        Stop a transfer: ours for everyone, someone else's for us alone.
        """
        from chatd.client.chat import ClientError
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
        cleaning = Deferred()
        self._cleaning.add(cleaning)

        def deleted(result):
            self._cleaning.discard(cleaning)
            cleaning.callback(None)
            return result
        incoming.work.addCallback(lambda _: self._thread(incoming.discard)).addErrback(
            lambda f: log.failure("deleting {path}", f, path=incoming.temporary)).addBoth(deleted)

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
