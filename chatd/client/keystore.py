# -*- test-case-name: chatd.test.test_keystore -*-
"""
The client's key store: its own identity keys, and the keys and certificates it
has decided to trust.

Layout of the client's home directory (C{~/.chatd} unless told otherwise), all
created on first use::

    <home>/                  mode 0700
        keys/                mode 0700
            <user>.pem       mode 0600: the user's RSA identity key, PKCS8 PEM,
                             encrypted when the user gave a passphrase
            <user>.seen      mode 0600: the envelopes the user has seen
                             (chatd.client.replay)
        known_keys           mode 0600: users' public keys, pinned on first use
        known_servers        mode 0600: servers' certificates, pinned on first use

End-to-end encryption is only as good as the public keys a client encrypts to,
and the server hands those out. The server could hand out its own instead, so
the client remembers the first key it sees for each user (trust on first use,
docs/protocol.rst) and refuses to carry on silently when that key changes;
people who want more than first-use trust compare fingerprints out of band.
Server certificates are pinned the same way when no CA is given, as SSH does
with host keys.

Every file is small, local and touched only by the client, so it is read and
written synchronously. Every write goes to a private temporary file in the same
directory, is flushed to disk, and is then renamed over the old file, so a
crash or a second client reading at the same moment never sees half a file.
"""

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# The pins moved to chatd.client.pins and the private-file helpers to
# chatd.client.privatefiles when this module outgrew its size; they stay
# importable from here, where the client and its tests have always found them.
from chatd.client.pins import CHANGED, MATCH, NEW, TOFU, VERIFIED, KnownKeys, KnownServers
from chatd.client.privatefiles import (
    KeystoreError,
    checkPublicKey,
    requireUserName,
    writePrivately,
)
from chatd.names import fold

__all__ = ["CHANGED", "MATCH", "NEW", "TOFU", "VERIFIED", "Home", "KeystoreError",
           "KnownKeys", "KnownServers", "generateKey", "publicKeyDer"]

KEY_BITS = 3072
PUBLIC_EXPONENT = 65537

KEYS_DIRECTORY = "keys"
KNOWN_KEYS_FILE = "known_keys"
KNOWN_SERVERS_FILE = "known_servers"

# The two ways a PEM private key says it is encrypted: PKCS8 (what this module
# writes) and the older OpenSSL form, which a user may have brought along.
_ENCRYPTED_MARKERS = (
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    b"Proc-Type: 4,ENCRYPTED",
)


def generateKey():
    """
    A new identity key: RSA-3072, the size chatd's clients use (see
    docs/protocol.rst), with the usual public exponent.

    This takes about half a second of CPU, so a client running a reactor calls
    it (and L{Home.identity} or L{Home.ephemeral}, which may call it) through
    L{twisted.internet.threads.deferToThread} rather than freeze its screen.

    @rtype: L{rsa.RSAPrivateKey}
    """
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)


def publicKeyDer(privateKey):
    """
    The public half of C{privateKey} in the form the server and the envelopes
    carry, and that fingerprints and pins are computed over.

    @rtype: L{bytes}, SPKI DER.
    """
    return privateKey.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

def _passphraseBytes(passphrase):
    """
    C{passphrase} as bytes, or L{None} for no passphrase; an empty one counts
    as none, because that is what pressing Enter at the prompt means.
    """
    if not passphrase:
        return None
    if isinstance(passphrase, str):
        return passphrase.encode("utf-8")
    return passphrase


class Home:
    """
    The client's directory: identity keys, pinned user keys, pinned servers.

    Nothing is created until something has to be written, so merely looking
    (L{hasIdentity}, L{KnownKeys.check}) leaves no trace.

    @ivar path: the directory.
    @ivar knownKeys: the L{KnownKeys} in C{path/known_keys}.
    @ivar knownServers: the L{KnownServers} in C{path/known_servers}.
    """

    def __init__(self, path=None):
        """
        @param path: the directory; C{~/.chatd} when L{None}.
        """
        if path is None:
            path = os.path.join(os.path.expanduser("~"), ".chatd")
        self.path = path
        self.knownKeys = KnownKeys(os.path.join(path, KNOWN_KEYS_FILE))
        self.knownServers = KnownServers(os.path.join(path, KNOWN_SERVERS_FILE))

    def _keyPath(self, user):
        """
        Where C{user}'s identity key lives. The file is named after the folded
        name because the server folds names too: C{Alice} and C{alice} are one
        account, and must not end up with two keys.
        """
        requireUserName(user)
        return os.path.join(self.path, KEYS_DIRECTORY, fold(user) + ".pem")

    def seenPath(self, user):
        """
        Where the envelopes C{user} has seen are kept (see
        L{chatd.client.replay}): next to its key, since they belong to it.
        """
        requireUserName(user)
        return os.path.join(self.path, KEYS_DIRECTORY, fold(user) + ".seen")

    def hasIdentity(self, user):
        """
        Whether C{user} already has an identity key here, so the client knows
        whether to ask for a new passphrase or for the existing one.
        """
        return os.path.exists(self._keyPath(user))

    def isEncrypted(self, user):
        """
        Whether C{user}'s identity key is protected by a passphrase (L{False}
        when there is no key yet), so the client asks for one only when needed.
        """
        try:
            with open(self._keyPath(user), "rb") as f:
                return _isEncryptedPem(f.read())
        except FileNotFoundError:
            return False

    def identity(self, user, passphrase=None, generate=True):
        """
        C{user}'s identity key, generated and stored on first use.

        A new key takes about half a second to generate (see L{generateKey}), so
        the client calls this through C{deferToThread}. When two clients create
        the same user's key at the same moment, the first one stored wins and
        the other returns it, so both publish the key that is on disk.

        @param passphrase: L{str} or L{bytes}; encrypts a new key (with
            C{BestAvailableEncryption}) and unlocks an existing one. L{None} or
            empty for a key stored in the clear.
        @param generate: make a key when there is none; when L{False}, a
            missing key is an error.
        @rtype: L{rsa.RSAPrivateKey}
        @raise KeystoreError: for a bad user name, a missing key (without
            C{generate}), a missing, wrong or needless passphrase, or a file
            that holds no usable RSA key.
        """
        path = self._keyPath(user)
        passphrase = _passphraseBytes(passphrase)
        try:
            with open(path, "rb") as f:
                pem = f.read()
        except FileNotFoundError:
            if not generate:
                raise KeystoreError("there is no key for %s in %s" % (user, self.path))
            key = generateKey()
            try:
                writePrivately(path, _pem(key, passphrase), exclusive=True)
            except FileExistsError:
                return self.identity(user, passphrase, generate=False)
            return key
        return _loadIdentity(user, path, pem, passphrase)

    def replaceIdentity(self, user, key, passphrase=None):
        """
        Make C{key} C{user}'s key on this device, in place of the one it had:
        only for a device that was waiting for approval (whose key nobody
        encrypted to yet) taking the account's identity key back with the
        recovery code.
        """
        writePrivately(self._keyPath(user), _pem(key, _passphraseBytes(passphrase)))

    @staticmethod
    def ephemeral():
        """
        A key for a guest, used for one run and never written: a guest name is
        handed to someone else once the guest leaves, so there is nothing to
        keep it for. Slow like L{generateKey}.

        @rtype: L{rsa.RSAPrivateKey}
        """
        return generateKey()


def _pem(key, passphrase):
    """
    C{key} as PKCS8 PEM, encrypted with C{passphrase} (bytes) unless it is
    L{None}.
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _isEncryptedPem(pem):
    """
    Whether a PEM private key is encrypted, told from its markers so that the
    answer needs no passphrase and no key parsing.
    """
    return any(marker in pem for marker in _ENCRYPTED_MARKERS)


def _loadIdentity(user, path, pem, passphrase):
    """
    Load the identity key in C{pem}, with errors that tell the user what to do.
    The passphrase is checked against the file's markers first, because the
    errors C{cryptography} raises for a missing passphrase and for a damaged
    file are too alike to tell the user apart.
    """
    encrypted = _isEncryptedPem(pem)
    if encrypted and passphrase is None:
        raise KeystoreError("the key for %s is protected by a passphrase" % (user,))
    if not encrypted and passphrase is not None:
        # Saying so beats ignoring it: whoever gave one believes the key on disk
        # is protected, and it is not.
        raise KeystoreError(
            "the key for %s is not protected by a passphrase; give none" % (user,)
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except ValueError:
        if encrypted:
            raise KeystoreError("wrong passphrase for the key of %s" % (user,))
        raise KeystoreError("%s does not hold a PEM private key" % (path,))
    try:
        checkPublicKey(publicKeyDer(key))
    except ValueError as e:
        raise KeystoreError("%s: %s" % (path, e))
    return key
