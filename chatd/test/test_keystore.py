# -*- test-case-name: chatd.test.test_keystore -*-
"""
Tests for L{chatd.client.keystore}.
"""

import base64
import hashlib
import os
import stat
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.client import keystore
from chatd.client.keystore import (
    Home,
    KeystoreError,
    KnownKeys,
    KnownServers,
    publicKeyDer,
)


@lru_cache(maxsize=None)
def privateKey(name):
    """
    The module's RSA-2048 key called C{name}, made once because generating keys
    is slow and these tests only need distinct valid keys.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def der(name):
    """
    The SPKI DER of L{privateKey}'s public half.
    """
    return publicKeyDer(privateKey(name))


def mode(path):
    """
    The permission bits of C{path}.
    """
    return stat.S_IMODE(os.stat(path).st_mode)


def readText(path):
    """
    The text in C{path}.
    """
    with open(path) as f:
        return f.read()


def writeBytes(path, content):
    """
    Make C{path} hold C{content}, as a user or an older client might have.
    """
    with open(path, "wb") as f:
        f.write(content)


class IdentityTests(SynchronousTestCase):
    """
    L{Home.identity} makes a user's key once and loads it after.
    """

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "home")
        self.home = Home(self.path)
        self.keyPath = os.path.join(self.path, "keys", "alice.pem")

    def useModuleKey(self):
        """
        Make key generation return the module's RSA-2048 key, for tests about
        what happens around generation rather than generation itself.
        """
        calls: list = []

        def generateKey():
            calls.append(None)
            return privateKey("alice")

        self.patch(keystore, "generateKey", generateKey)
        return calls

    def writeKey(self, key, passphrase=None):
        """
        Store C{key} as alice's identity key, as a previous run would have.
        """
        encryption = (
            serialization.NoEncryption()
            if passphrase is None
            else serialization.BestAvailableEncryption(passphrase)
        )
        os.makedirs(os.path.dirname(self.keyPath))
        writeBytes(
            self.keyPath,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                encryption,
            ),
        )

    def test_generatedOnceThenLoaded(self):
        """
        The first use generates an RSA-3072 key with exponent 65537 into private
        files, and a later run loads the same key.
        """
        self.assertFalse(self.home.hasIdentity("alice"))
        key = self.home.identity("alice")
        self.assertEqual(key.key_size, 3072)
        self.assertEqual(key.public_key().public_numbers().e, 65537)
        self.assertTrue(self.home.hasIdentity("alice"))
        self.assertFalse(self.home.isEncrypted("alice"))
        self.assertEqual(mode(self.path), 0o700)
        self.assertEqual(mode(os.path.dirname(self.keyPath)), 0o700)
        self.assertEqual(mode(self.keyPath), 0o600)
        self.assertEqual(os.listdir(os.path.dirname(self.keyPath)), ["alice.pem"])
        again = Home(self.path).identity("alice", generate=False)
        self.assertEqual(publicKeyDer(again), publicKeyDer(key))

    def test_ephemeral(self):
        """
        A guest's key is RSA-3072 and is not written anywhere.
        """
        key = self.home.ephemeral()
        self.assertEqual(key.key_size, 3072)
        self.assertEqual(key.public_key().public_numbers().e, 65537)
        self.assertFalse(os.path.exists(self.path))

    def test_generatedWithPassphrase(self):
        """
        A key made with a passphrase is stored encrypted and loads with it.
        """
        self.useModuleKey()
        self.home.identity("alice", passphrase="correct horse")
        with open(self.keyPath, "rb") as f:
            self.assertIn(b"ENCRYPTED PRIVATE KEY", f.read())
        self.assertTrue(self.home.isEncrypted("alice"))
        loaded = Home(self.path).identity("alice", passphrase=b"correct horse")
        self.assertEqual(publicKeyDer(loaded), der("alice"))

    def test_emptyPassphrase(self):
        """
        An empty passphrase stores the key in the clear, as pressing Enter at
        the prompt means.
        """
        self.useModuleKey()
        self.home.identity("alice", passphrase="")
        self.assertFalse(self.home.isEncrypted("alice"))
        self.assertEqual(publicKeyDer(self.home.identity("alice")), der("alice"))

    def test_passphraseMissing(self):
        """
        An encrypted key asked for without a passphrase is refused with a
        message that says a passphrase is needed.
        """
        self.writeKey(privateKey("alice"), b"secret")
        error = self.assertRaises(KeystoreError, self.home.identity, "alice")
        self.assertEqual(str(error), "the key for alice is protected by a passphrase")

    def test_wrongPassphrase(self):
        """
        An encrypted key asked for with the wrong passphrase is refused as such.
        """
        self.writeKey(privateKey("alice"), b"secret")
        error = self.assertRaises(
            KeystoreError, self.home.identity, "alice", passphrase="guess"
        )
        self.assertEqual(str(error), "wrong passphrase for the key of alice")

    def test_traditionalFormat(self):
        """
        A key in the older OpenSSL format, as a user may bring one, is known to
        be encrypted and loads with its passphrase.
        """
        os.makedirs(os.path.dirname(self.keyPath))
        pem = privateKey("alice").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        )
        writeBytes(self.keyPath, pem)
        self.assertTrue(self.home.isEncrypted("alice"))
        self.assertRaises(KeystoreError, self.home.identity, "alice")
        key = self.home.identity("alice", passphrase="secret")
        self.assertEqual(publicKeyDer(key), der("alice"))

    def test_needlessPassphrase(self):
        """
        A passphrase given for a key stored in the clear is refused, so nobody
        believes an unprotected key is protected.
        """
        self.writeKey(privateKey("alice"))
        error = self.assertRaises(
            KeystoreError, self.home.identity, "alice", passphrase="secret"
        )
        self.assertIn("not protected by a passphrase", str(error))

    def test_noGenerate(self):
        """
        Without C{generate}, a missing key is an error and nothing is created.
        """
        self.assertRaises(KeystoreError, self.home.identity, "alice", generate=False)
        self.assertFalse(self.home.isEncrypted("alice"))
        self.assertFalse(os.path.exists(self.path))

    def test_caseFolded(self):
        """
        Spellings of one user name that differ in case share one key file, as
        they share one account on the server.
        """
        calls = self.useModuleKey()
        self.home.identity("Alice")
        self.assertEqual(publicKeyDer(self.home.identity("ALICE")), der("alice"))
        self.assertEqual(len(calls), 1)
        self.assertTrue(os.path.exists(self.keyPath))

    def test_raceLost(self):
        """
        When another client stores the user's key while this one generates
        its own, the stored key is returned and kept.
        """

        def generateKey():
            self.writeKey(privateKey("bob"))
            return privateKey("alice")

        self.patch(keystore, "generateKey", generateKey)
        self.assertEqual(publicKeyDer(self.home.identity("alice")), der("bob"))
        self.assertEqual(publicKeyDer(self.home.identity("alice")), der("bob"))
        self.assertEqual(os.listdir(os.path.dirname(self.keyPath)), ["alice.pem"])

    def test_invalidUserName(self):
        """
        Names that are not user names, such as one that would leave the key
        directory, are refused before any file is touched.
        """
        for name in ["../x", "a/b", "", "x" * 33]:
            self.assertRaises(KeystoreError, self.home.identity, name)
            self.assertRaises(KeystoreError, self.home.hasIdentity, name)
            self.assertRaises(KeystoreError, self.home.isEncrypted, name)
        self.assertFalse(os.path.exists(os.path.dirname(self.path)))

    def test_notAKey(self):
        """
        A key file that holds no PEM private key is reported, not replaced.
        """
        os.makedirs(os.path.dirname(self.keyPath))
        writeBytes(self.keyPath, b"not a key\n")
        error = self.assertRaises(KeystoreError, self.home.identity, "alice")
        self.assertIn("does not hold a PEM private key", str(error))

    def test_notAnRSAKey(self):
        """
        A key file that holds a key other than RSA is refused, since envelopes
        need RSA.
        """
        self.writeKey(ec.generate_private_key(ec.SECP256R1()))
        error = self.assertRaises(KeystoreError, self.home.identity, "alice")
        self.assertIn("not an RSA key", str(error))

    def test_pinFiles(self):
        """
        The home's known keys and servers live in C{known_keys} and
        C{known_servers} inside it.
        """
        knownKeys = os.path.join(self.path, "known_keys")
        knownServers = os.path.join(self.path, "known_servers")
        self.assertEqual(self.home.knownKeys.path, knownKeys)
        self.assertEqual(self.home.knownServers.path, knownServers)


class KnownKeysTests(SynchronousTestCase):
    """
    L{KnownKeys} pins users' keys on first use and catches changes.
    """

    def setUp(self):
        self.directory = os.path.join(self.mktemp(), "home")
        self.path = os.path.join(self.directory, "known_keys")
        self.keys = KnownKeys(self.path)

    def test_newPinMatch(self):
        """
        A key never seen is new, and stays new until pinned; then it matches.
        """
        self.assertEqual(self.keys.check("bob", der("bob")), "new")
        self.assertEqual(self.keys.check("bob", der("bob")), "new")
        self.assertIsNone(self.keys.pinned("bob"))
        self.keys.pin("bob", der("bob"))
        self.assertEqual(self.keys.check("bob", der("bob")), "match")
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))

    def test_changed(self):
        """
        A key other than the pinned one is reported changed, and the pin stays.
        """
        self.keys.pin("bob", der("bob"))
        self.assertEqual(self.keys.check("bob", der("mallory")), "changed")
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))

    def test_pinOverDifferentKey(self):
        """
        Pinning a different key over a pin is refused; pinning the same key
        again changes nothing.
        """
        self.keys.pin("bob", der("bob"))
        self.assertRaises(KeystoreError, self.keys.pin, "bob", der("mallory"))
        self.keys.pin("bob", der("bob"))
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))

    def test_trustReplaces(self):
        """
        Trusting a new key replaces the pin, as first-use trust unless marked
        verified.
        """
        self.keys.pin("bob", der("bob"))
        self.keys.trust("bob", der("bob2"))
        self.assertEqual(self.keys.pinned("bob"), (der("bob2"), "tofu"))
        self.keys.trust("bob", der("bob"), verified=True)
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "verified"))

    def test_trustKeepsVerified(self):
        """
        Trusting the key that is pinned and verified keeps it verified.
        """
        self.keys.trust("bob", der("bob"), verified=True)
        self.keys.trust("bob", der("bob"))
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "verified"))

    def test_verifyFormats(self):
        """
        A fingerprint matches whether written as L{e2e.fingerprint} does, run
        together, with colons, or in upper case, and marks the key verified.
        """
        digest = hashlib.sha256(der("bob")).hexdigest()
        colons = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
        fingerprints = [e2e.fingerprint(der("bob")), digest, colons, digest.upper()]
        for number, fingerprint in enumerate(fingerprints):
            keys = KnownKeys("%s.%d" % (self.path, number))
            keys.pin("bob", der("bob"))
            self.assertTrue(keys.verify("bob", fingerprint))
            self.assertEqual(keys.pinned("bob"), (der("bob"), "verified"))

    def test_verifyMismatch(self):
        """
        A fingerprint of another key does not match and changes nothing.
        """
        self.keys.pin("bob", der("bob"))
        self.assertFalse(self.keys.verify("bob", e2e.fingerprint(der("mallory"))))
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))

    def test_verifyMalformed(self):
        """
        Something that is not a fingerprint is refused rather than reported as
        a mismatch.
        """
        self.keys.pin("bob", der("bob"))
        fingerprint = e2e.fingerprint(der("bob"))
        for typed in [fingerprint[:-1], fingerprint + "0", "xyz", ""]:
            self.assertRaises(KeystoreError, self.keys.verify, "bob", typed)
        self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))

    def test_verifyNothingPinned(self):
        """
        Verifying a user with no pin and no key given is an error.
        """
        self.assertRaises(
            KeystoreError, self.keys.verify, "bob", e2e.fingerprint(der("bob"))
        )

    def test_verifyChangedKey(self):
        """
        Verifying a changed key given by the caller pins it as verified.
        """
        self.keys.pin("bob", der("bob"))
        self.assertFalse(
            self.keys.verify("bob", e2e.fingerprint(der("mallory")), der("bob2"))
        )
        self.assertTrue(
            self.keys.verify("bob", e2e.fingerprint(der("bob2")), der("bob2"))
        )
        self.assertEqual(self.keys.pinned("bob"), (der("bob2"), "verified"))

    def test_caseInsensitive(self):
        """
        Lookups ignore ASCII case, and the first spelling is the one kept.
        """
        self.keys.pin("Bob", der("bob"))
        self.assertEqual(self.keys.check("BOB", der("bob")), "match")
        self.keys.pin("bob", der("bob"))
        self.assertRaises(KeystoreError, self.keys.pin, "bOB", der("mallory"))
        self.keys.trust("bob", der("bob2"), verified=True)
        self.assertEqual(self.keys.pinned("BOB"), (der("bob2"), "verified"))
        self.assertEqual(readText(self.path).split()[0], "Bob")

    def test_persistence(self):
        """
        Pins are kept one line per user in a private file that a new instance
        reads back.
        """
        self.keys.pin("bob", der("bob"))
        self.keys.trust("carol", der("carol"), verified=True)
        self.assertEqual(
            readText(self.path),
            "bob tofu %s\ncarol verified %s\n"
            % (
                base64.b64encode(der("bob")).decode("ascii"),
                base64.b64encode(der("carol")).decode("ascii"),
            ),
        )
        self.assertEqual(mode(self.path), 0o600)
        self.assertEqual(mode(self.directory), 0o700)
        self.assertEqual(os.listdir(self.directory), ["known_keys"])
        again = KnownKeys(self.path)
        self.assertEqual(again.pinned("bob"), (der("bob"), "tofu"))
        self.assertEqual(again.pinned("carol"), (der("carol"), "verified"))

    def test_sharedFile(self):
        """
        Pins made through another instance on the same file are seen, and kept
        when this instance changes the file.
        """
        self.keys.pin("bob", der("bob"))
        other = KnownKeys(self.path)
        other.pin("carol", der("carol"))
        self.assertEqual(self.keys.check("carol", der("carol")), "match")
        self.keys.pin("dave", der("dave"))
        self.assertEqual(other.check("dave", der("dave")), "match")
        self.assertEqual(other.check("bob", der("bob")), "match")

    def test_malformedLines(self):
        """
        Lines that cannot be read are skipped with a warning each, the others
        are used, and the next change drops them.
        """
        bob = base64.b64encode(der("bob")).decode("ascii")
        good = "bob tofu %s\n" % (bob,)
        bad = [
            "carol tofu\n",
            "../carol tofu %s\n" % (bob,),
            "carol trusted %s\n" % (bob,),
            "carol tofu not*base64\n",
            "carol tofu %s\n" % (base64.b64encode(b"not a key").decode("ascii"),),
            "BOB verified %s\n" % (bob,),
        ]
        os.makedirs(self.directory)
        writeBytes(self.path, (good + "\n" + "".join(bad)).encode("ascii") + b"\xff\n")
        with capturedLogs() as events:
            self.assertEqual(self.keys.pinned("bob"), (der("bob"), "tofu"))
            self.assertIsNone(self.keys.pinned("carol"))
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn] * 7)
        self.assertEqual([e["number"] for e in events], [3, 4, 5, 6, 7, 8, 9])
        self.keys.pin("carol", der("carol"))
        self.assertEqual(readText(self.path).splitlines()[0], good.rstrip("\n"))
        self.assertEqual(len(readText(self.path).splitlines()), 2)

    def test_refusedPins(self):
        """
        A name that is not a user name, or bytes that are not a usable public
        key, are never pinned.
        """
        self.assertRaises(KeystoreError, self.keys.pin, "../x", der("bob"))
        self.assertRaises(KeystoreError, self.keys.trust, "a b", der("bob"))
        self.assertRaises(KeystoreError, self.keys.pin, "bob", b"not a key")
        self.assertRaises(KeystoreError, self.keys.trust, "bob", b"not a key")
        self.assertFalse(os.path.exists(self.path))


class KnownServersTests(SynchronousTestCase):
    """
    L{KnownServers} pins server certificates on first use, like known_hosts.
    """

    def setUp(self):
        self.directory = os.path.join(self.mktemp(), "home")
        self.path = os.path.join(self.directory, "known_servers")
        self.servers = KnownServers(self.path)

    def test_newPinMatchChanged(self):
        """
        A server never seen is new until pinned; then its certificate matches
        and any other is reported changed.
        """
        self.assertEqual(self.servers.check("chat.example:4017", b"cert"), "new")
        self.servers.pin("chat.example:4017", b"cert")
        self.assertEqual(self.servers.check("chat.example:4017", b"cert"), "match")
        self.assertEqual(self.servers.check("chat.example:4017", b"other"), "changed")
        self.assertEqual(self.servers.check("chat.example:4018", b"cert"), "new")

    def test_pinOverDifferent(self):
        """
        Pinning another certificate over a pin is refused until the server is
        forgotten; pinning the same one again changes nothing.
        """
        self.servers.pin("chat.example:4017", b"cert")
        self.servers.pin("chat.example:4017", b"cert")
        self.assertRaises(
            KeystoreError, self.servers.pin, "chat.example:4017", b"other"
        )
        self.servers.forget("chat.example:4017")
        self.assertEqual(self.servers.check("chat.example:4017", b"cert"), "new")
        self.servers.pin("chat.example:4017", b"other")
        self.assertEqual(self.servers.check("chat.example:4017", b"other"), "match")

    def test_forgetUnknown(self):
        """
        Forgetting a server that is not pinned writes nothing.
        """
        self.servers.forget("chat.example:4017")
        self.assertFalse(os.path.exists(self.path))

    def test_hostCase(self):
        """
        Host names are compared ignoring case and stored in lower case.
        """
        self.servers.pin("Chat.Example:4017", b"cert")
        self.assertEqual(self.servers.check("chat.EXAMPLE:4017", b"cert"), "match")
        self.assertTrue(readText(self.path).startswith("chat.example:4017 "))

    def test_persistence(self):
        """
        Pins are kept one line per server in a private file that a new instance
        reads back, and forgetting survives too.
        """
        self.servers.pin("chat.example:4017", b"cert")
        self.servers.pin("[::1]:4017", b"local")
        self.assertEqual(
            readText(self.path),
            "chat.example:4017 %s\n[::1]:4017 %s\n"
            % (hashlib.sha256(b"cert").hexdigest(),
               hashlib.sha256(b"local").hexdigest()),
        )
        self.assertEqual(mode(self.path), 0o600)
        self.assertEqual(mode(self.directory), 0o700)
        self.servers.forget("chat.example:4017")
        again = KnownServers(self.path)
        self.assertEqual(again.check("chat.example:4017", b"cert"), "new")
        self.assertEqual(again.check("[::1]:4017", b"local"), "match")

    def test_malformedLines(self):
        """
        Lines that cannot be read are skipped with a warning each.
        """
        digest = hashlib.sha256(b"cert").hexdigest()
        os.makedirs(self.directory)
        writeBytes(
            self.path,
            (
                "chat.example:4017 %s\n"
                "nohost %s\n"
                "other.example:4017 %s\n"
                "other.example:4017\n" % (digest, digest, digest.upper())
            ).encode("ascii"),
        )
        with capturedLogs() as events:
            self.assertEqual(self.servers.check("chat.example:4017", b"cert"), "match")
            self.assertEqual(self.servers.check("other.example:4017", b"cert"), "new")
        self.assertEqual([e["number"] for e in events], [2, 3, 4])

    def test_invalidHostPort(self):
        """
        Anything but C{host:port} is refused, so no line can be broken.
        """
        for hostport in ["chat.example", "chat example:4017", "", "chat.example:port"]:
            self.assertRaises(KeystoreError, self.servers.check, hostport, b"cert")
            self.assertRaises(KeystoreError, self.servers.pin, hostport, b"cert")
            self.assertRaises(KeystoreError, self.servers.forget, hostport)
        self.assertFalse(os.path.exists(self.path))
