# -*- test-case-name: chatd.test.test_datadir -*-
"""
Tests for L{chatd.datadir}.
"""

import datetime
import ipaddress
import os
import socket
import ssl
import stat

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from chatd.datadir import DataDirError, prepare
from chatd.store.seal import AtRestKeys, generateKey


def mode(path):
    """
    The permission bits of C{path}.
    """
    return stat.S_IMODE(os.stat(path).st_mode)


def readBytes(path):
    with open(path, "rb") as f:
        return f.read()


def writeBytes(path, content):
    with open(path, "wb") as f:
        f.write(content)


def seal(keys, data):
    """
    Seal C{data} with C{keys} for one made-up row.
    """
    return keys.seal(data, "#room", "Alice", "e1")


def unseal(keys, sealed):
    """
    Open what L{seal} made with C{keys}.
    """
    keyId, body = sealed
    return keys.open(keyId, body, "#room", "Alice", "e1")


def certificateOf(dataDir):
    return x509.load_pem_x509_certificate(readBytes(dataDir.certificatePath))


class PrepareTests(SynchronousTestCase):
    """
    L{prepare} creates a data directory on first start and reuses it after.
    """

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "data")

    def test_firstStart(self):
        """
        The first start creates a private directory with the key file, the TLS
        key (both owner-only) and the certificate.
        """
        dataDir = prepare(self.path)
        self.assertEqual(dataDir.path, self.path)
        self.assertEqual(mode(self.path), 0o700)
        self.assertEqual(dataDir.keyFilePath, os.path.join(self.path, "at-rest.key"))
        self.assertEqual(mode(dataDir.keyFilePath), 0o600)
        self.assertEqual(
            dataDir.privateKeyPath, os.path.join(self.path, "tls", "server.key")
        )
        self.assertEqual(mode(dataDir.privateKeyPath), 0o600)
        self.assertEqual(
            dataDir.certificatePath, os.path.join(self.path, "tls", "server.crt")
        )
        self.assertTrue(os.path.isfile(dataDir.certificatePath))
        self.assertEqual(
            sorted(os.listdir(self.path)), ["at-rest.key", "tls"]
        )
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.path, "tls"))),
            ["server.crt", "server.key"],
        )

    def test_keyFileHoldsOneKey(self):
        """
        A new key file holds exactly one key, which seals new data; the keys
        say the file was made on this start, and name it.
        """
        dataDir = prepare(self.path)
        lines = readBytes(dataDir.keyFilePath).splitlines()
        self.assertEqual(len(lines), 1)
        sealed = seal(dataDir.keys, b"secret")
        self.assertEqual(unseal(AtRestKeys([lines[0]]), sealed), b"secret")
        self.assertTrue(dataDir.keys.created)
        self.assertEqual(dataDir.keys.source, dataDir.keyFilePath)

    def test_secondStartReuses(self):
        """
        A second start keeps the key file, the TLS key and the certificate, so
        data encrypted before the restart can still be read.
        """
        first = prepare(self.path)
        sealed = seal(first.keys, b"history")
        files = [first.keyFilePath, first.privateKeyPath, first.certificatePath]
        before = [readBytes(path) for path in files]
        second = prepare(self.path)
        self.assertEqual([readBytes(path) for path in files], before)
        self.assertEqual(unseal(second.keys, sealed), b"history")
        self.assertFalse(second.keys.created)

    def test_rotation(self):
        """
        After a new key is put on top of the key file, data is sealed with
        the new key and data sealed with the old one stays readable.
        """
        old = prepare(self.path)
        oldSealed = seal(old.keys, b"before")
        newKey = generateKey()
        writeBytes(old.keyFilePath, newKey + b"\n" + readBytes(old.keyFilePath))
        rotated = prepare(self.path)
        self.assertEqual(unseal(rotated.keys, oldSealed), b"before")
        self.assertEqual(
            unseal(AtRestKeys([newKey]), seal(rotated.keys, b"after")), b"after"
        )

    def test_commentsAndBlankLines(self):
        """
        Empty lines and lines starting with C{#} in the key file are ignored.
        """
        os.makedirs(self.path, mode=0o700)
        key = generateKey()
        keyFile = os.path.join(self.path, "at-rest.key")
        writeBytes(keyFile, b"# rotated in May\n\n" + key + b"\n")
        os.chmod(keyFile, 0o600)
        dataDir = prepare(self.path)
        self.assertEqual(unseal(AtRestKeys([key]), seal(dataDir.keys, b"x")), b"x")

    def test_refusesReadableKeyFile(self):
        """
        A key file that others may read is refused, with a message that says
        how to fix it.
        """
        dataDir = prepare(self.path)
        os.chmod(dataDir.keyFilePath, 0o644)
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn("at-rest.key", str(error))
        self.assertIn("chmod 600", str(error))

    def test_refusesOpenDirectory(self):
        """
        A data directory that other users may enter or list is refused, with a
        message that names it and says how to fix it; nothing is created in it.
        """
        os.makedirs(self.path, mode=0o700)
        os.chmod(self.path, 0o755)
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn(self.path, str(error))
        self.assertIn("mode 0755", str(error))
        self.assertIn("chmod 700", str(error))
        self.assertEqual(os.listdir(self.path), [])

    def test_refusesReadablePrivateKey(self):
        """
        A TLS private key that others may read is refused.
        """
        dataDir = prepare(self.path)
        os.chmod(dataDir.privateKeyPath, 0o640)
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn("server.key", str(error))

    def test_refusesBadKeyLine(self):
        """
        A line of the key file that is not a key is refused, by number.
        """
        dataDir = prepare(self.path)
        writeBytes(
            dataDir.keyFilePath, readBytes(dataDir.keyFilePath) + b"not a key\n"
        )
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn("line 2", str(error))

    def test_refusesEmptyKeyFile(self):
        """
        A key file with no key in it is refused rather than replaced, since
        replacing it would make stored data unreadable.
        """
        dataDir = prepare(self.path)
        writeBytes(dataDir.keyFilePath, b"# nothing here\n")
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn("holds no key", str(error))

    def test_refusesBadPrivateKey(self):
        """
        A TLS key file that is not a PEM private key is refused.
        """
        dataDir = prepare(self.path)
        writeBytes(dataDir.privateKeyPath, b"garbage")
        error = self.assertRaises(DataDirError, prepare, self.path)
        self.assertIn("not an unencrypted PEM private key", str(error))

    def test_renewsMissingCertificate(self):
        """
        A deleted certificate is made again for the same private key.
        """
        dataDir = prepare(self.path)
        key = readBytes(dataDir.privateKeyPath)
        publicKey = certificateOf(dataDir).public_key()
        os.remove(dataDir.certificatePath)
        prepare(self.path)
        self.assertEqual(readBytes(dataDir.privateKeyPath), key)
        self.assertEqual(certificateOf(dataDir).public_key(), publicKey)

    def test_missingKeyRenewsBoth(self):
        """
        A deleted private key is made again with a new certificate to match.
        """
        dataDir = prepare(self.path)
        oldPublicKey = certificateOf(dataDir).public_key()
        os.remove(dataDir.privateKeyPath)
        prepare(self.path)
        self.assertEqual(mode(dataDir.privateKeyPath), 0o600)
        self.assertNotEqual(certificateOf(dataDir).public_key(), oldPublicKey)


class CertificateTests(SynchronousTestCase):
    """
    The generated certificate names this machine and lasts ten years.
    """

    def setUp(self):
        self.dataDir = prepare(os.path.join(self.mktemp(), "data"))
        self.certificate = certificateOf(self.dataDir)

    def test_subjectAlternativeNames(self):
        """
        The certificate is for localhost, the host name, 127.0.0.1 and ::1.
        """
        names = self.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        dnsNames = names.get_values_for_type(x509.DNSName)
        self.assertIn("localhost", dnsNames)
        self.assertIn(socket.gethostname(), dnsNames)
        self.assertEqual(
            names.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )

    def test_validity(self):
        """
        The certificate is valid now and for about ten years.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(self.certificate.not_valid_before_utc, now)
        lifetime = self.certificate.not_valid_after_utc - now
        self.assertGreater(lifetime, datetime.timedelta(days=3640))

    def test_selfSigned(self):
        """
        The certificate is signed by its own key and names itself as issuer.
        """
        self.assertEqual(self.certificate.issuer, self.certificate.subject)
        self.certificate.verify_directly_issued_by(self.certificate)

    def test_leaf(self):
        """
        The certificate is a leaf for servers: not a CA, its key signs no
        certificates, and it is for server authentication only.
        """
        extensions = self.certificate.extensions
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertFalse(constraints.value.ca)
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertFalse(usage.key_cert_sign)
        self.assertEqual(
            list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
        )

    def test_handshake(self):
        """
        A client that trusts exactly this certificate completes a TLS handshake
        with a server presenting it and checks the host name, under OpenSSL's
        strict verification (run in memory, without a socket).
        """
        serverContext = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serverContext.load_cert_chain(
            self.dataDir.certificatePath, self.dataDir.privateKeyPath
        )
        clientContext = ssl.create_default_context(
            cafile=self.dataDir.certificatePath
        )
        clientContext.verify_flags |= ssl.VERIFY_X509_STRICT
        toServer, toClient = ssl.MemoryBIO(), ssl.MemoryBIO()
        fromServer, fromClient = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = clientContext.wrap_bio(
            toClient, fromClient, server_hostname="localhost"
        )
        server = serverContext.wrap_bio(toServer, fromServer, server_side=True)
        done = set()
        for _ in range(10):
            for name, end in [("client", client), ("server", server)]:
                if name in done:
                    continue
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            toServer.write(fromClient.read())
            toClient.write(fromServer.read())
        self.assertEqual(done, {"client", "server"})
        peer = client.getpeercert()
        assert peer is not None
        self.assertEqual(peer["subjectAltName"][0], ("DNS", "localhost"))
