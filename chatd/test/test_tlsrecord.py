"""
Tests for L{chatd.tlsrecord}: what the record layer does with records a
client may send, well formed or not (RFC 8446, sections 5 and 6).
"""

from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from chatd.tlsrecord import (
    ALERT,
    APPLICATION_DATA,
    BAD_RECORD_MAC,
    CLOSE_NOTIFY,
    DECODE_ERROR,
    HANDSHAKE,
    ILLEGAL_PARAMETER,
    KEY_UPDATE,
    MAX_PLAINTEXT,
    RECORD_OVERFLOW,
    SUITES,
    UNEXPECTED_MESSAGE,
    USER_CANCELED,
    Ciphers,
    Direction,
    RecordLayer,
    expandLabel,
    splitRecords,
)

SUITE = SUITES["TLS_AES_256_GCM_SHA384"]
CLIENT = b"c" * 48
SERVER = b"s" * 48


def seal(direction, contentType, content, padding=0, outerType=APPLICATION_DATA):
    """
    A record as a client would seal it, with C{padding} zeros after the type.
    """
    inner = content + bytes((contentType,)) + b"\x00" * padding
    header = bytes((outerType, 3, 3)) + (len(inner) + 16).to_bytes(2, "big")
    return header + direction.aead.encrypt(direction.nonce(), inner, header)


class RecordLayerTests(SynchronousTestCase):
    """
    A L{RecordLayer} in the server's place, and a client's keys beside it.
    """

    def setUp(self):
        self.ciphers = Ciphers()
        self.layer = RecordLayer(Direction(SUITE, CLIENT, self.ciphers),
                                 Direction(SUITE, SERVER, self.ciphers), b"")
        self.client = Direction(SUITE, CLIENT, Ciphers())
        # What the client reads with: the server's keys.
        self.reading = Direction(SUITE, SERVER, Ciphers())

    def fromClient(self, *records):
        for record in records:
            self.layer.bio_write(record)

    def sent(self):
        """
        The records the server sent, opened: (type, content) each.
        """
        try:
            return self.opened(self.layer.bio_read(1 << 20))
        except SSL.WantReadError:
            return []

    def opened(self, data):
        """
        The records in C{data}, opened with the server's keys.
        """
        opened = []
        for header, body in splitRecords(data):
            inner = self.reading.open(header, body)
            assert inner is not None
            inner = inner.rstrip(b"\x00")
            opened.append((inner[-1], inner[:-1]))
        return opened

    def assertRefused(self, alert, data=b""):
        """
        The next C{recv} fails, having queued the fatal C{alert}, and so does
        every later call.
        """
        self.layer.bio_write(data)
        error = self.assertRaises(SSL.Error, self.layer.recv, 1 << 15)
        self.assertEqual(self.sent(), [(ALERT, bytes((2, alert)))])
        self.assertIs(self.assertRaises(SSL.Error, self.layer.recv, 1 << 15), error)
        self.assertIs(self.assertRaises(SSL.Error, self.layer.send, b"x"), error)
        self.assertFalse(self.layer.shutdown())
        self.assertEqual(self.sent(), [])

    def test_roundTrip(self):
        """
        Application data goes both ways; padding is taken off, and an empty
        record gives nothing.
        """
        self.fromClient(seal(self.client, APPLICATION_DATA, b""),
                        seal(self.client, APPLICATION_DATA, b"hello", padding=7))
        self.assertEqual(self.layer.recv(1 << 15), b"hello")
        self.assertRaises(SSL.WantReadError, self.layer.recv, 1 << 15)
        self.assertEqual(self.layer.send(b"a" * (MAX_PLAINTEXT + 1)), MAX_PLAINTEXT + 1)
        self.assertEqual(self.sent(), [(APPLICATION_DATA, b"a" * MAX_PLAINTEXT),
                                       (APPLICATION_DATA, b"a")])

    def test_partial(self):
        """
        A record that has come in part waits for the rest; C{recv} gives no
        more than asked, the rest next time.
        """
        record = seal(self.client, APPLICATION_DATA, b"abcdef")
        self.layer.bio_write(record[:3])
        self.assertRaises(SSL.WantReadError, self.layer.recv, 4)
        self.layer.bio_write(record[3:])
        self.assertEqual(self.layer.recv(4), b"abcd")
        self.assertEqual(self.layer.recv(4), b"ef")

    def test_bioReadSize(self):
        """
        C{bio_read} gives no more than asked, unless one record's header or
        body is longer, and its pieces make the records.
        """
        self.layer.send(b"a" * 100)
        self.layer.send(b"b" * 100)
        first = self.layer.bio_read(150)
        second = self.layer.bio_read(10)
        self.assertEqual((len(first), len(second)), (5 + 117 + 5, 117))
        self.assertRaises(SSL.WantReadError, self.layer.bio_read, 10)
        self.assertEqual(self.opened(first + second),
                         [(APPLICATION_DATA, b"a" * 100), (APPLICATION_DATA, b"b" * 100)])

    def test_forged(self):
        """
        A record that does not open is refused with bad_record_mac.
        """
        record = bytearray(seal(self.client, APPLICATION_DATA, b"hello"))
        record[-1] ^= 1
        self.assertRefused(BAD_RECORD_MAC, bytes(record))

    def test_replayed(self):
        """
        A record sent again does not open at the next sequence number.
        """
        record = seal(self.client, APPLICATION_DATA, b"once")
        self.fromClient(record)
        self.assertEqual(self.layer.recv(1 << 15), b"once")
        self.assertRefused(BAD_RECORD_MAC, record)

    def test_outerType(self):
        """
        After the handshake every record is application data outside: a
        ChangeCipherSpec or plain handshake record is refused at its header.
        """
        self.assertRefused(UNEXPECTED_MESSAGE, b"\x14\x03\x03\x00\x01")

    def test_tooLong(self):
        """
        A header announcing more than 2^14 + 256 bytes is refused at once.
        """
        self.assertRefused(RECORD_OVERFLOW, b"\x17\x03\x03\x41\x01")

    def test_innerTooLong(self):
        """
        A sealed content over 2^14 bytes (plus its type) is refused.
        """
        self.assertRefused(RECORD_OVERFLOW,
                           seal(self.client, APPLICATION_DATA, b"x" * (MAX_PLAINTEXT + 1)))

    def test_noContentType(self):
        """
        A record that is all padding is refused.
        """
        self.assertRefused(UNEXPECTED_MESSAGE, seal(self.client, 0, b"", padding=3))

    def test_innerType(self):
        """
        A content type TLS 1.3 has no use for after the handshake is refused.
        """
        self.assertRefused(UNEXPECTED_MESSAGE, seal(self.client, 20, b"\x01"))

    def test_closeNotify(self):
        """
        The client's close_notify ends the reading cleanly, after the data
        before it; C{shutdown} then says both sides are done.
        """
        self.fromClient(seal(self.client, APPLICATION_DATA, b"last"),
                        seal(self.client, ALERT, bytes((1, CLOSE_NOTIFY))))
        self.assertEqual(self.layer.recv(1 << 15), b"last")
        self.assertRaises(SSL.ZeroReturnError, self.layer.recv, 1 << 15)
        self.assertTrue(self.layer.shutdown())
        self.assertEqual(self.sent(), [(ALERT, bytes((1, CLOSE_NOTIFY)))])

    def test_shutdownOnce(self):
        """
        C{shutdown} sends close_notify once, and nothing can be sent after.
        """
        self.assertFalse(self.layer.shutdown())
        self.assertFalse(self.layer.shutdown())
        self.assertEqual(self.sent(), [(ALERT, bytes((1, CLOSE_NOTIFY)))])
        self.assertRaises(SSL.Error, self.layer.send, b"late")

    def test_userCanceled(self):
        """
        user_canceled is let pass.
        """
        self.fromClient(seal(self.client, ALERT, bytes((1, USER_CANCELED))),
                        seal(self.client, APPLICATION_DATA, b"on"))
        self.assertEqual(self.layer.recv(1 << 15), b"on")

    def test_fatalAlert(self):
        """
        A fatal alert from the client fails the connection, with no alert
        back.
        """
        self.fromClient(seal(self.client, ALERT, bytes((2, 40))))
        self.assertRaises(SSL.Error, self.layer.recv, 1 << 15)
        self.assertEqual(self.sent(), [])

    def test_malformedAlert(self):
        """
        An alert that is not two bytes is refused with decode_error.
        """
        self.assertRefused(DECODE_ERROR, seal(self.client, ALERT, b"\x01\x00\x00"))

    def test_endOfFile(self):
        """
        The network ending inside a record, or with no close_notify, is an
        unexpected end of file, which Twisted reports as a lost connection.
        """
        self.layer.bio_write(seal(self.client, APPLICATION_DATA, b"cut")[:8])
        self.layer.bio_shutdown()
        error = self.assertRaises(SSL.SysCallError, self.layer.recv, 1 << 15)
        self.assertEqual(error.args, (-1, "Unexpected EOF"))

    def keyUpdate(self, requested, padding=0):
        return seal(self.client, HANDSHAKE, bytes((KEY_UPDATE, 0, 0, 1, requested)), padding)

    def test_keyUpdate(self):
        """
        After the client's KeyUpdate, its records open with the next keys; the
        server's own keys stay.
        """
        self.fromClient(self.keyUpdate(0))
        self.client = self.client.updated()
        self.fromClient(seal(self.client, APPLICATION_DATA, b"new keys"))
        self.assertEqual(self.layer.recv(1 << 15), b"new keys")
        self.layer.send(b"old keys")
        self.assertEqual(self.sent(), [(APPLICATION_DATA, b"old keys")])

    def test_keyUpdateRequested(self):
        """
        A KeyUpdate that asks for one gets one back, sealed with the server's
        old keys, and the server's records after it use the next keys.
        """
        self.fromClient(self.keyUpdate(1))
        self.client = self.client.updated()
        self.fromClient(seal(self.client, APPLICATION_DATA, b"x"))
        self.assertEqual(self.layer.recv(1 << 15), b"x")
        self.assertEqual(self.sent(), [(HANDSHAKE, bytes((KEY_UPDATE, 0, 0, 1, 0)))])
        self.reading = self.reading.updated()
        self.layer.send(b"next")
        self.assertEqual(self.sent(), [(APPLICATION_DATA, b"next")])

    def test_keyUpdateFragmented(self):
        """
        A KeyUpdate may come in two records; nothing else may come between.
        """
        self.fromClient(seal(self.client, HANDSHAKE, bytes((KEY_UPDATE, 0))),
                        seal(self.client, HANDSHAKE, bytes((0, 1, 0))))
        self.client = self.client.updated()
        self.fromClient(seal(self.client, APPLICATION_DATA, b"joined"))
        self.assertEqual(self.layer.recv(1 << 15), b"joined")
        self.fromClient(seal(self.client, HANDSHAKE, bytes((KEY_UPDATE, 0))))
        self.assertRefused(UNEXPECTED_MESSAGE, seal(self.client, APPLICATION_DATA, b"between"))

    def test_keyUpdateNotLast(self):
        """
        A KeyUpdate must end its record: the keys change after it.
        """
        self.assertRefused(UNEXPECTED_MESSAGE,
                           seal(self.client, HANDSHAKE, bytes((KEY_UPDATE, 0, 0, 1, 0, 24))))

    def test_keyUpdateMalformed(self):
        """
        A KeyUpdate of another length, or asking neither 0 nor 1, is refused.
        """
        self.assertRefused(DECODE_ERROR,
                           seal(self.client, HANDSHAKE, bytes((KEY_UPDATE, 0, 0, 2, 0, 0))))
        self.setUp()
        self.assertRefused(ILLEGAL_PARAMETER, self.keyUpdate(2))

    def test_otherHandshake(self):
        """
        Any other handshake message (a ClientHello, a Finished) is refused,
        and so is an empty handshake record.
        """
        self.assertRefused(UNEXPECTED_MESSAGE,
                           seal(self.client, HANDSHAKE, bytes((20, 0, 0, 1, 0))))
        self.setUp()
        self.assertRefused(UNEXPECTED_MESSAGE, seal(self.client, HANDSHAKE, b""))


    def test_forget(self):
        """
        A closed connection's ciphers are not kept.
        """
        self.layer.send(b"a")
        self.fromClient(seal(self.client, APPLICATION_DATA, b"b"))
        self.layer.recv(1 << 15)
        self.assertEqual(len(self.ciphers), 2)
        self.layer.forget()
        self.assertEqual(len(self.ciphers), 0)

    def test_keyUpdateForgets(self):
        """
        The keys a KeyUpdate replaces are not kept.
        """
        self.fromClient(seal(self.client, APPLICATION_DATA, b"a"))
        self.layer.recv(1 << 15)
        self.fromClient(self.keyUpdate(0))
        self.assertRaises(SSL.WantReadError, self.layer.recv, 1 << 15)
        self.assertEqual(len(self.ciphers), 0)


class CiphersTests(SynchronousTestCase):
    """
    L{Ciphers} keeps the most recently used ciphers made, and no more.
    """

    def test_leastRecentLetGo(self):
        """
        Past the limit, the cipher used longest ago is let go; it is made
        again when next used, and seals as before.
        """
        ciphers = Ciphers(limit=2)
        first, second, third = [Direction(SUITE, bytes((n,)) * 48, ciphers) for n in range(3)]
        nonce = b"\x00" * 12
        sealed = first.aead.encrypt(nonce, b"x", None)
        for direction in (second, first, third):
            direction.aead.encrypt(nonce, b"x", None)
        self.assertEqual([d._aead is None for d in (first, second, third)], [False, True, False])
        self.assertEqual(len(ciphers), 2)
        self.assertEqual(first.aead.decrypt(nonce, sealed, None), b"x")
        again = second.aead.encrypt(nonce, b"y", None)
        self.assertEqual([d._aead is None for d in (first, second, third)], [False, False, True])
        fresh = Direction(SUITE, bytes((1,)) * 48, Ciphers())
        self.assertEqual(fresh.aead.decrypt(nonce, again, None), b"y")


class KeyScheduleTests(SynchronousTestCase):
    """
    The keys come from the secret as RFC 8446 derives them.
    """

    def test_expandLabel(self):
        """
        HKDF-Expand-Label's info is the length, the label with its "tls13 "
        prefix and an empty context, each with its length (section 7.1).
        """
        suite = SUITES["TLS_AES_128_GCM_SHA256"]
        info = bytes.fromhex("001009746c733133206b657900")
        self.assertEqual(expandLabel(suite, b"k" * 32, b"key", 16),
                         HKDFExpand(suite.hash, 16, info).derive(b"k" * 32))

    def test_nonce(self):
        """
        Each record's nonce is the IV with the sequence number XORed into its
        last bytes.
        """
        direction = Direction(SUITE, SERVER, Ciphers())
        iv = expandLabel(SUITE, SERVER, b"iv", 12)
        self.assertEqual(direction.nonce(), iv)
        second = bytearray(iv)
        second[-1] ^= 1
        self.assertEqual(direction.nonce(), bytes(second))

    def test_updated(self):
        """
        The next keys come from the "traffic upd" secret, from sequence 0.
        """
        direction = Direction(SUITE, SERVER, Ciphers(), sequence=9)
        updated = direction.updated()
        self.assertEqual(updated.secret, expandLabel(SUITE, SERVER, b"traffic upd", 48))
        self.assertEqual(updated.sequence, 0)
