# -*- test-case-name: chatd.test.test_keystore -*-
"""
What the terminal client has decided to trust, pinned on first use: users'
public keys (C{known_keys}) and servers' certificates (C{known_servers}), in
the client's home directory (see L{chatd.client.keystore} for the layout and
why pins exist).

Every file is small, local and touched only by the client, so it is read and
written synchronously, and always rewritten whole (L{writePrivately}).
"""

import base64
import binascii
import hashlib
import os
import re
from collections import namedtuple

from twisted.logger import Logger

from chatd.client.privatefiles import KeystoreError, checkPublicKey, requireUserName, writePrivately
from chatd.names import fold, isUserName

log = Logger()

NEW = "new"
MATCH = "match"
CHANGED = "changed"

TOFU = "tofu"
VERIFIED = "verified"
_STATES = frozenset({TOFU, VERIFIED})

_FINGERPRINT_SEPARATORS = re.compile(r"[\s:]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HOST_PORT = re.compile(r"[!-~]+:[0-9]{1,5}")


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
        writePrivately(self.path, content.encode("ascii"))
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
        requireUserName(user)
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
        requireUserName(user)
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
            checkPublicKey(der)
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
        checkPublicKey(der)
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
