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

import base64
import binascii
import hashlib
import os
import re
import tempfile
from collections import namedtuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.logger import Logger

from chatd.e2e import loadPublicKey
from chatd.errors import BadRequest
from chatd.names import fold, isUserName

log = Logger()

KEY_BITS = 3072
PUBLIC_EXPONENT = 65537

KEYS_DIRECTORY = "keys"
KNOWN_KEYS_FILE = "known_keys"
KNOWN_SERVERS_FILE = "known_servers"

NEW = "new"
MATCH = "match"
CHANGED = "changed"

TOFU = "tofu"
VERIFIED = "verified"
_STATES = frozenset({TOFU, VERIFIED})

# The two ways a PEM private key says it is encrypted: PKCS8 (what this module
# writes) and the older OpenSSL form, which a user may have brought along.
_ENCRYPTED_MARKERS = (
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    b"Proc-Type: 4,ENCRYPTED",
)

_FINGERPRINT_SEPARATORS = re.compile(r"[\s:]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HOST_PORT = re.compile(r"[!-~]+:[0-9]{1,5}")


class KeystoreError(Exception):
    """
    A key or pin cannot be used or changed as asked; the message is a sentence
    the client can show its user as it is.
    """


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


def _makePrivateDirectory(path):
    """
    Create C{path} unless it exists, and every missing directory above it,
    readable by their owner only: everything the client creates is its own
    business. The mode is set explicitly because the umask could have left
    less; a directory that already exists is left as its owner made it.
    """
    if os.path.isdir(path):
        return
    _makePrivateDirectory(os.path.dirname(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def _writePrivately(path, content, exclusive=False):
    """
    Write C{path} atomically with mode 0600: a temporary file in the same
    directory (which C{mkstemp} creates 0600) is written, flushed to disk and
    then put in place in one step, and the directory is synced so that the new
    name survives a crash too.

    @param exclusive: link the new file into place instead of replacing, so that
        an existing file is never overwritten.
    @raise FileExistsError: when C{exclusive} and C{path} exists.
    """
    directory = os.path.dirname(os.path.abspath(path))
    _makePrivateDirectory(directory)
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=".%s." % (os.path.basename(path),), suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    if os.name == "posix":
        directoryDescriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directoryDescriptor)
        finally:
            os.close(directoryDescriptor)


def _requireUserName(user):
    """
    Refuse anything but a user name, which is also what keeps a name from
    naming a file outside the key directory or breaking a line of known_keys.
    """
    if not isinstance(user, str) or not isUserName(user):
        raise KeystoreError("%r is not a user name" % (user,))


def _checkPublicKey(der):
    """
    Refuse to pin what is not a usable public key: the client could never
    encrypt to it nor check a signature with it.

    @raise ValueError: with the reason.
    """
    try:
        loadPublicKey(der)
    except BadRequest as e:
        raise ValueError(e.message)


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
        _requireUserName(user)
        return os.path.join(self.path, KEYS_DIRECTORY, fold(user) + ".pem")

    def seenPath(self, user):
        """
        Where the envelopes C{user} has seen are kept (see
        L{chatd.client.replay}): next to its key, since they belong to it.
        """
        _requireUserName(user)
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
            if passphrase is None:
                encryption = serialization.NoEncryption()
            else:
                encryption = serialization.BestAvailableEncryption(passphrase)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                encryption,
            )
            try:
                _writePrivately(path, pem, exclusive=True)
            except FileExistsError:
                return self.identity(user, passphrase, generate=False)
            return key
        return _loadIdentity(user, path, pem, passphrase)

    @staticmethod
    def ephemeral():
        """
        A key for a guest, used for one run and never written: a guest name is
        handed to someone else once the guest leaves, so there is nothing to
        keep it for. Slow like L{generateKey}.

        @rtype: L{rsa.RSAPrivateKey}
        """
        return generateKey()


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
        _checkPublicKey(publicKeyDer(key))
    except ValueError as e:
        raise KeystoreError("%s: %s" % (path, e))
    return key


class _PinFile:
    """
    A small file of pins, one per line, that several clients sharing a home
    directory may read and change.

    Its content is kept in memory and read again whenever the file on disk is
    no longer the one last read (another client changed it), so a lookup costs
    one C{stat}. Each change rewrites the whole file from what is on disk plus
    the change, so nothing another client pinned is lost, short of two clients
    changing the file at the very same moment (the last one wins).

    Lines that cannot be read are skipped with a warning rather than making the
    client unusable; they are dropped when the file is next written.

    Subclasses say how a line is read (L{_parse}) and written (L{_format}).
    """

    def __init__(self, path):
        """
        @param path: the file; it and its directory are created on first write.
        """
        self.path = path
        self._stamp = None
        self._pins = {}

    def _current(self):
        """
        The pins as the file holds them now, by lookup key.

        @rtype: L{dict}; the caller copies it before changing it.
        """
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
        if stamp != self._stamp:
            self._pins = {} if stamp is None else self._read()
            self._stamp = stamp
        return self._pins

    def _read(self):
        """
        Parse the file, skipping blank lines silently and bad ones with a warning.
        """
        pins = {}
        # Every valid line is ASCII; anything else is replaced, so that it fails
        # the line's checks and is reported like any other bad line.
        with open(self.path, encoding="ascii", errors="replace") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    key, pin = self._parse(fields)
                except ValueError as e:
                    reason = str(e)
                else:
                    if key not in pins:
                        pins[key] = pin
                        continue
                    reason = "a second line for %s" % (key,)
                log.warn(
                    "{path}, line {number}: {reason}; line ignored",
                    path=self.path,
                    number=number,
                    reason=reason,
                )
        return pins

    def _save(self, pins):
        """
        Replace the file with C{pins}; the next lookup reads it back, which also
        picks up any change another client made in the meantime.
        """
        content = "".join(self._format(pin) + "\n" for pin in pins.values())
        _writePrivately(self.path, content.encode("ascii"))
        self._stamp = None

    def _parse(self, fields):
        """
        Read one line, split on whitespace.

        @return: C{(key, pin)}
        @raise ValueError: with the reason the line is bad.
        """
        raise NotImplementedError()

    def _format(self, pin):
        """
        Write one pin as a line, without its newline.
        """
        raise NotImplementedError()


_Pin = namedtuple("_Pin", "user state der")


class KnownKeys(_PinFile):
    """
    Users' public keys, pinned the first time the client sees them (TOFU).

    One line per user: C{<user> <state> <base64 SPKI DER>}, where state is
    C{tofu} (pinned on first sight) or C{verified} (its owner compared
    fingerprints). Users are looked up ignoring ASCII case, as the server
    compares names, and keep the spelling they were first pinned under.
    """

    def check(self, user, der):
        """
        How C{der} compares with what is pinned for C{user}; pins nothing, so
        that the client decides what to do with a new key.

        @type der: L{bytes}, SPKI DER.
        @return: L{NEW} (nothing pinned), L{MATCH} or L{CHANGED}.
        """
        pin = self._current().get(fold(user))
        if pin is None:
            return NEW
        return MATCH if pin.der == der else CHANGED

    def pinned(self, user):
        """
        What is pinned for C{user}.

        @return: C{(der, state)}, or L{None} when nothing is.
        """
        pin = self._current().get(fold(user))
        if pin is None:
            return None
        return pin.der, pin.state

    def pin(self, user, der):
        """
        Pin C{der} as C{user}'s key on first sight; pinning the key already
        pinned changes nothing.

        @raise KeystoreError: when a different key is pinned: a key change is
            what pinning exists to catch, so only L{trust} may replace a pin,
            after the user has been warned. Also for a bad user name or key.
        """
        _requireUserName(user)
        pins = dict(self._current())
        existing = pins.get(fold(user))
        if existing is not None:
            if existing.der == der:
                return
            raise KeystoreError(
                "a different key is already pinned for %s; it can only be "
                "replaced by trusting or verifying the new one" % (existing.user,)
            )
        pins[fold(user)] = self._newPin(user, TOFU, der)
        self._save(pins)

    def trust(self, user, der, verified=False):
        """
        Make C{der} C{user}'s pinned key, whatever was pinned before: the user
        accepted it (C{/trust}) or compared its fingerprint (C{/verify}).

        @param verified: mark the key verified. Trusting the key that is
            already pinned and verified keeps it verified, since the key the
            user compared is still the one pinned.
        @raise KeystoreError: for a bad user name or key.
        """
        _requireUserName(user)
        pins = dict(self._current())
        existing = pins.get(fold(user))
        spelling = user
        state = VERIFIED if verified else TOFU
        if existing is not None:
            spelling = existing.user
            if existing.der == der and existing.state == VERIFIED:
                state = VERIFIED
        pin = self._newPin(spelling, state, der)
        if pin != existing:
            pins[fold(user)] = pin
            self._save(pins)

    def verify(self, user, fingerprint, der=None):
        """
        Compare the fingerprint C{user}'s owner read out with their key, and mark
        the key verified when they match.

        @param fingerprint: as L{chatd.e2e.fingerprint} writes it, or the same
            64 hex digits in any case, with or without spaces or colons.
        @param der: the key to compare, which becomes the pin on a match (for
            verifying a changed key); the pinned key when L{None}.
        @return: whether they matched. A mismatch changes nothing.
        @raise KeystoreError: when C{fingerprint} is not 64 hex digits (a typo
            is not a mismatch, which would suggest an attack), or when C{der} is
            L{None} and nothing is pinned for C{user}.
        """
        digits = _FINGERPRINT_SEPARATORS.sub("", fingerprint).lower()
        if _SHA256_HEX.fullmatch(digits) is None:
            raise KeystoreError(
                "a fingerprint is 64 hex digits (spaces and colons allowed)"
            )
        if der is None:
            pinned = self.pinned(user)
            if pinned is None:
                raise KeystoreError("no key is pinned for %s" % (user,))
            der = pinned[0]
        if hashlib.sha256(der).hexdigest() != digits:
            return False
        self.trust(user, der, verified=True)
        return True

    @staticmethod
    def _newPin(user, state, der):
        """
        A pin for C{user}, whose name the caller has checked, after checking
        that its key can be used.

        @raise KeystoreError: for a bad key.
        """
        try:
            _checkPublicKey(der)
        except ValueError as e:
            raise KeystoreError("cannot pin this key for %s: %s" % (user, e))
        return _Pin(user, state, der)

    def _parse(self, fields):
        if len(fields) != 3:
            raise ValueError("expected <user> <state> <base64 key>")
        user, state, encoded = fields
        if not isUserName(user):
            raise ValueError("%r is not a user name" % (user,))
        if state not in _STATES:
            raise ValueError("unknown state %r" % (state,))
        try:
            der = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError("the key is not base64")
        _checkPublicKey(der)
        return fold(user), _Pin(user, state, der)

    def _format(self, pin):
        encoded = base64.b64encode(pin.der).decode("ascii")
        return "%s %s %s" % (pin.user, pin.state, encoded)


def _hostKey(hostport):
    """
    The lookup key of a server: C{host:port} with the host in lower case, since
    host names ignore case.

    @raise KeystoreError: unless C{hostport} is printable ASCII ending in a port.
    """
    if not isinstance(hostport, str) or _HOST_PORT.fullmatch(hostport) is None:
        raise KeystoreError("%r is not host:port" % (hostport,))
    return hostport.lower()


class KnownServers(_PinFile):
    """
    Servers' TLS certificates, pinned on first use when there is no CA to check
    them against, like SSH's known_hosts.

    One line per server: C{<host:port> <SHA-256 of the certificate's DER, hex>}.
    There is no way to replace a pin in one step: a changed certificate is
    refused loudly, and the user must L{forget} the old one on purpose.
    """

    def check(self, hostport, certDer):
        """
        How the certificate a server presented compares with its pin.

        @param hostport: C{"host:port"}, as the client connected to it.
        @type certDer: L{bytes}, the certificate's DER.
        @return: L{NEW}, L{MATCH} or L{CHANGED}.
        """
        pinned = self._current().get(_hostKey(hostport))
        if pinned is None:
            return NEW
        return MATCH if pinned[1] == hashlib.sha256(certDer).hexdigest() else CHANGED

    def pin(self, hostport, certDer):
        """
        Pin a server's certificate on first use; pinning the same one again
        changes nothing.

        @raise KeystoreError: when a different certificate is pinned.
        """
        key = _hostKey(hostport)
        digest = hashlib.sha256(certDer).hexdigest()
        pins = dict(self._current())
        existing = pins.get(key)
        if existing is not None:
            if existing[1] == digest:
                return
            raise KeystoreError(
                "a different certificate is already pinned for %s; forget it "
                "first if the server really changed it" % (key,)
            )
        pins[key] = (key, digest)
        self._save(pins)

    def forget(self, hostport):
        """
        Drop a server's pin, so that its next certificate is taken on first use
        again; forgetting a server that has none does nothing.
        """
        key = _hostKey(hostport)
        pins = dict(self._current())
        if pins.pop(key, None) is not None:
            self._save(pins)

    def _parse(self, fields):
        if len(fields) != 2:
            raise ValueError("expected <host:port> <sha256 hex>")
        hostport, digest = fields
        if _HOST_PORT.fullmatch(hostport) is None:
            raise ValueError("%r is not host:port" % (hostport,))
        if _SHA256_HEX.fullmatch(digest) is None:
            raise ValueError("the fingerprint is not 64 lowercase hex digits")
        key = hostport.lower()
        return key, (key, digest)

    def _format(self, pin):
        return "%s %s" % pin
