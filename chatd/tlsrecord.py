# -*- test-case-name: chatd.test.test_tlsrecord -*-
"""
TLS 1.3's record layer (RFC 8446, section 5) for a connection whose handshake
OpenSSL has finished.

Why chatd has its own: an idle TLS connection left in OpenSSL holds about
33 KiB that no call frees (bench/README.rst, "TLS memory per idle
connection"): two record layers sized for 32 pipelined records, the C{SSL}
object, the handshake's leftovers (with the hybrid group, the client's 6 KiB
ML-KEM key) and memory BIOs that keep their largest buffer. After the
handshake, all TLS 1.3 needs to go on is each direction's traffic secret, its
AEAD and a sequence number. Handing those over is what kernel TLS does with
OpenSSL's keys; this machine's kernel has no TLS module, so chatd keeps them
itself, with cryptography's AEADs. Everything before the application keys
(the handshake, certificates, key exchange) stays OpenSSL's, and so does any
connection this module does not know how to carry (L{SUITES}).

L{RecordLayer} answers the calls Twisted's C{TLSMemoryBIOProtocol} makes on
an C{OpenSSL.SSL.Connection} once the handshake is done, with the same
results and exceptions, so that protocol carries on unchanged.
"""

from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple, Type, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from OpenSSL import SSL

# Content types (RFC 8446, section 5.1).
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23

# The only handshake message a client may send after the handshake here: the
# server asks for no certificate after it, and tickets go the other way.
KEY_UPDATE = 24

# Alert descriptions (section 6).
CLOSE_NOTIFY = 0
UNEXPECTED_MESSAGE = 10
BAD_RECORD_MAC = 20
RECORD_OVERFLOW = 22
ILLEGAL_PARAMETER = 47
DECODE_ERROR = 50
USER_CANCELED = 90

MAX_PLAINTEXT = 2 ** 14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256
HEADER = 5
TAG = 16

# A record's header is the type (always application data outside, the real
# type is sealed inside) and TLS 1.2's version number, for middleboxes.
_OUTER = bytes((APPLICATION_DATA, 3, 3))


class Suite(NamedTuple):
    """
    What a TLS 1.3 cipher suite takes: its AEAD, key length and hash.
    """

    aead: Union[Type[AESGCM], Type[ChaCha20Poly1305]]
    keyLength: int
    hash: hashes.HashAlgorithm


SUITES: Dict[str, Suite] = {
    "TLS_AES_128_GCM_SHA256": Suite(AESGCM, 16, hashes.SHA256()),
    "TLS_AES_256_GCM_SHA384": Suite(AESGCM, 32, hashes.SHA384()),
    "TLS_CHACHA20_POLY1305_SHA256": Suite(ChaCha20Poly1305, 32, hashes.SHA256()),
}


def expandLabel(suite: Suite, secret: bytes, label: bytes, length: int) -> bytes:
    """
    HKDF-Expand-Label of RFC 8446, section 7.1, with an empty context.
    """
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"
    return HKDFExpand(suite.hash, length, info).derive(secret)


class Ciphers:
    """
    The ciphers that stay made: the C{limit} most recently used.

    A cipher's contexts take about 2.5 KiB whatever the suite, and each
    connection has two, which is as much as the rest of an idle TLS
    connection; made again, one costs about 2 microseconds. Keeping only the
    most recently used bounds what idle connections hold to nothing and what
    all connections hold to C{limit} times 2.5 KiB, while the readers of a
    room, written to one after the other, keep theirs. A room with more
    readers over TLS than the limit makes each delivery pay for its cipher
    again (about 2 microseconds, a few percent of a delivery over TLS).
    """

    def __init__(self, limit: int = 1024) -> None:
        self._kept: "OrderedDict[Direction, None]" = OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._kept)

    def used(self, direction: "Direction") -> None:
        """
        C{direction}'s cipher is in use: keep it, and let the least recently
        used one go if there are too many.
        """
        kept = self._kept
        try:
            kept.move_to_end(direction)
        except KeyError:
            kept[direction] = None
            if len(kept) > self._limit:
                kept.popitem(last=False)[0].rest()

    def forget(self, direction: "Direction") -> None:
        """
        C{direction} will not be used again.
        """
        self._kept.pop(direction, None)


class Direction:
    """
    One direction's traffic keys (section 7.3) and the sequence number of its
    next record.

    Its cipher is made when a record needs it and kept as long as its
    L{Ciphers} keeps it.
    """

    __slots__ = ("suite", "secret", "key", "iv", "sequence", "ciphers", "_aead")

    def __init__(self, suite: Suite, secret: bytes, ciphers: Ciphers, sequence: int = 0) -> None:
        self.suite = suite
        self.secret = secret
        self.key = expandLabel(suite, secret, b"key", suite.keyLength)
        self.iv = int.from_bytes(expandLabel(suite, secret, b"iv", 12), "big")
        self.sequence = sequence
        self.ciphers = ciphers
        self._aead: Union[AESGCM, ChaCha20Poly1305, None] = None

    @property
    def aead(self) -> Union[AESGCM, ChaCha20Poly1305]:
        """
        The cipher, made again if it was let go.
        """
        self.ciphers.used(self)
        if self._aead is None:
            self._aead = self.suite.aead(self.key)
        return self._aead

    def rest(self) -> None:
        """
        Let go of the cipher until the next record.
        """
        self._aead = None

    def _current(self) -> bytes:
        # The nonce of the record at this sequence number (section 5.3).
        return (self.iv ^ self.sequence).to_bytes(12, "big")

    def nonce(self) -> bytes:
        """
        The next record's nonce (section 5.3); each is used once.
        """
        nonce = self._current()
        self.sequence += 1
        return nonce

    def updated(self) -> "Direction":
        """
        The keys after a KeyUpdate (section 7.2), from sequence number 0.
        These are not used again.
        """
        self.ciphers.forget(self)
        return Direction(self.suite, expandLabel(self.suite, self.secret, b"traffic upd",
                                                 self.suite.hash.digest_size), self.ciphers)

    def open(self, header: bytes, sealed: bytes) -> Optional[bytes]:
        """
        The inner plaintext of a record, or C{None} if it was not sealed with
        these keys at this sequence number (which is then not used up).
        """
        try:
            inner = self.aead.decrypt(self._current(), sealed, header)
        except InvalidTag:
            return None
        self.sequence += 1
        return inner


def splitRecords(data: bytes) -> List[Tuple[bytes, bytes]]:
    """
    The whole records at the start of C{data}, each as its header and body.
    """
    records = []
    start = 0
    while len(data) - start >= HEADER:
        end = start + HEADER + int.from_bytes(data[start + 3:start + HEADER], "big")
        if end > len(data):
            break
        records.append((data[start:start + HEADER], data[start + HEADER:end]))
        start = end
    return records


def _failure(reason: str) -> SSL.Error:
    """
    An error that Twisted's TLS protocol reports as a failed connection (an
    empty error list would read as a clean end of file).
    """
    return SSL.Error([("chatd", "tls13", reason)])


class RecordLayer:
    """
    A TLS 1.3 connection after its handshake: records in and out of memory
    buffers, the way an C{SSL.Connection} over memory BIOs has them.

    Only what C{TLSMemoryBIOProtocol} calls after the handshake is here.
    """

    __slots__ = ("_read", "_write", "_in", "_out", "_plain", "_fragment", "_ended",
                 "_peerClosed", "_closing", "_failed", "_protocol")

    def __init__(self, read: Direction, write: Direction, protocol: bytes) -> None:
        """
        @param read: the client's keys, at its first application record.
        @param write: the server's keys, at the next record it seals.
        @param protocol: the ALPN protocol agreed in the handshake, or C{b""}.
        """
        self._read = read
        self._write = write
        self._protocol = protocol
        self._in = bytearray()
        self._out: List[bytes] = []
        self._plain = b""
        self._fragment = b""
        self._ended = False
        self._peerClosed = False
        self._closing = False
        self._failed: Optional[SSL.Error] = None

    def forget(self) -> None:
        """
        The connection is closed: its ciphers need not be kept.
        """
        self._read.ciphers.forget(self._read)
        self._write.ciphers.forget(self._write)

    def bio_write(self, data: bytes) -> int:
        """
        Take bytes received from the network.
        """
        self._in += data
        return len(data)

    def bio_shutdown(self) -> None:
        """
        No more bytes will come from the network.
        """
        self._ended = True

    def bio_read(self, size: int) -> bytes:
        """
        Bytes to send to the network: the records sealed so far, up to
        C{size} bytes, and at least a record's header or its body.

        @raise SSL.WantReadError: when there are none.
        """
        out = self._out
        if not out:
            raise SSL.WantReadError()
        taken = len(out[0])
        count = 1
        while count < len(out) and taken + len(out[count]) <= size:
            taken += len(out[count])
            count += 1
        data = b"".join(out[:count])
        del out[:count]
        return data

    def send(self, data: bytes) -> int:
        """
        Seal C{data} in application data records.

        @return: how many bytes were taken: all of them.
        @raise SSL.Error: after a failure, or once this side has closed.
        """
        if self._failed is not None:
            raise self._failed
        if self._closing:
            raise _failure("write after close_notify")
        for start in range(0, len(data), MAX_PLAINTEXT):
            self._seal(APPLICATION_DATA, data[start:start + MAX_PLAINTEXT])
        return len(data)

    def recv(self, size: int) -> bytes:
        """
        Up to C{size} bytes of application data from the records received.

        @raise SSL.WantReadError: when no whole record is waiting.
        @raise SSL.ZeroReturnError: once the client has sent close_notify.
        @raise SSL.SysCallError: when the network ended without close_notify.
        @raise SSL.Error: when a record is malformed, forged or unexpected
            (after queueing the alert that says so), or the client sent a
            fatal alert.
        """
        if self._failed is not None:
            raise self._failed
        while not self._plain:
            if self._peerClosed:
                raise SSL.ZeroReturnError()
            self._openNext()
        data, self._plain = self._plain[:size], self._plain[size:]
        return data

    def shutdown(self) -> bool:
        """
        Send close_notify, once.

        @return: whether the client's close_notify has come too.
        """
        if not self._closing and self._failed is None:
            self._seal(ALERT, bytes((1, CLOSE_NOTIFY)))
            self._closing = True
        return self._peerClosed

    def get_peer_certificate(self) -> None:
        """
        chatd's listeners ask for no client certificate.
        """
        return None

    def get_alpn_proto_negotiated(self) -> bytes:
        """
        The ALPN protocol the handshake agreed, or C{b""}.
        """
        return self._protocol

    def _seal(self, contentType: int, content: bytes) -> None:
        header = _OUTER + (len(content) + 1 + TAG).to_bytes(2, "big")
        self._out.append(header)
        self._out.append(self._write.aead.encrypt(
            self._write.nonce(), content + bytes((contentType,)), header))

    def _fail(self, alert: int, reason: str) -> SSL.Error:
        """
        Queue a fatal alert (section 6.2) and remember the failure.

        @return: the error to raise.
        """
        if not self._closing:
            self._seal(ALERT, bytes((2, alert)))
            self._closing = True
        self._failed = _failure(reason)
        return self._failed

    def _openNext(self) -> None:
        """
        Open the next whole record and act on what it holds.
        """
        buffer = self._in
        whole = False
        if len(buffer) >= HEADER:
            if buffer[0] != APPLICATION_DATA:
                raise self._fail(UNEXPECTED_MESSAGE, "a record of type %d" % (buffer[0],))
            end = HEADER + int.from_bytes(buffer[3:HEADER], "big")
            if end > HEADER + MAX_CIPHERTEXT:
                raise self._fail(RECORD_OVERFLOW, "a record too long")
            whole = len(buffer) >= end
        if not whole:
            if self._ended:
                raise SSL.SysCallError(-1, "Unexpected EOF")
            raise SSL.WantReadError()
        # One copy each: a slice of the bytearray itself would be a second.
        with memoryview(buffer) as view:
            header, sealed = bytes(view[:HEADER]), bytes(view[HEADER:end])
        del buffer[:end]
        inner = self._read.open(header, sealed)
        if inner is None:
            raise self._fail(BAD_RECORD_MAC, "a record that does not open")
        if len(inner) > MAX_PLAINTEXT + 1:
            raise self._fail(RECORD_OVERFLOW, "a record too long")
        inner = inner.rstrip(b"\x00")
        if not inner:
            raise self._fail(UNEXPECTED_MESSAGE, "a record with no content type")
        contentType, content = inner[-1], inner[:-1]
        if self._fragment and contentType != HANDSHAKE:
            raise self._fail(UNEXPECTED_MESSAGE, "a record inside a handshake message")
        if contentType == APPLICATION_DATA:
            self._plain = content
        elif contentType == ALERT:
            self._alert(content)
        elif contentType == HANDSHAKE:
            self._handshake(content)
        else:
            raise self._fail(UNEXPECTED_MESSAGE, "a record of inner type %d" % (contentType,))

    def _alert(self, content: bytes) -> None:
        if len(content) != 2:
            raise self._fail(DECODE_ERROR, "a malformed alert")
        if content[1] == CLOSE_NOTIFY:
            self._peerClosed = True
        elif content[1] != USER_CANCELED:
            self._failed = _failure("the client sent alert %d" % (content[1],))
            raise self._failed

    def _handshake(self, content: bytes) -> None:
        """
        A KeyUpdate (section 4.6.3), possibly in fragments; it must end its
        record, since the keys change after it.
        """
        if not content:
            raise self._fail(UNEXPECTED_MESSAGE, "an empty handshake record")
        message = self._fragment + content
        if message[0] != KEY_UPDATE:
            raise self._fail(UNEXPECTED_MESSAGE, "handshake message %d" % (message[0],))
        if message[1:4] != b"\x00\x00\x01"[:len(message) - 1]:
            raise self._fail(DECODE_ERROR, "a malformed KeyUpdate")
        if len(message) > 5:
            raise self._fail(UNEXPECTED_MESSAGE, "more after a KeyUpdate in its record")
        if len(message) < 5:
            self._fragment = message
            return
        self._fragment = b""
        requested = message[4]
        if requested > 1:
            raise self._fail(ILLEGAL_PARAMETER, "a KeyUpdate asking %d" % (requested,))
        self._read = self._read.updated()
        if requested and not self._closing:
            self._seal(HANDSHAKE, bytes((KEY_UPDATE, 0, 0, 1, 0)))
            self._write = self._write.updated()
