# -*- test-case-name: chatd.test.test_client_files -*-
"""
The file transfers of the terminal client, one small object each: an
L{Outgoing} file (read once to learn its size and SHA-256, then chunk by
chunk) or an L{Incoming} one (written chunk by chunk to a temporary file and
checked against its signed size and SHA-256 before it gets its name), known to
the person by a short local number (C{#1}, C{#2}, ...) rather than by the
server's random 32-bit id, which is long to type; the server's id stays inside.

Nothing here holds a whole file in memory; the disk and cipher work is called
through the client's C{runInThread} (L{chatd.client.files}).
"""

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import tempfile
from typing import BinaryIO, List, Optional

from twisted.internet.defer import Deferred, fail, succeed

from chatd import e2e
from chatd.client.errors import TransferError
from chatd.client.filenames import placeFile

MAX_CHUNKS = 1 << 20

_HEX64 = re.compile(r"[0-9a-f]{64}")


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

    direction: Optional[str] = None

    def __init__(self, number, protocol=None):
        self.number = number
        self.serverId = None
        self.protocol = protocol
        self.endedBecause = None
        self.done = 0
        self._waiters: List[Deferred] = []

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
        d: Deferred = Deferred()
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
        self._fd: Optional[int] = None
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
        assert self._fd is not None, "readChunk() before prepare()"
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
        self._file: Optional[BinaryIO] = None
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
        assert self._file is not None, "a chunk before open()"
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
        assert self._file is not None, "finish() before open()"
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
