# -*- test-case-name: chatd.test.test_service,chatd.test.test_binary -*-
"""
Password hashing and login-signature checks, kept off the reactor thread.

bcrypt at cost 12 takes a quarter of a second and an RSA check a fraction of a
millisecond; both run through an injected C{runInThread} (L{deferToThread} by
default) so the reactor never stalls, and so that tests can run them inline.

An unknown user must cost what a known one costs: every check runs against a
stand-in (a bcrypt hash of the same cost, an RSA key of a common size) when there
is no real secret to check against, and then reports failure.
"""

import bcrypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.threads import deferToThread

from chatd import loginsig


class Credentials:
    """
    bcrypt and RSA work for the core, each call answered by a L{Deferred}.
    """

    def __init__(self, cost=12, runInThread=deferToThread):
        self.cost = cost
        self._run = runInThread
        self._dummyHash = None
        self._dummyKey = None

    def hashPassword(self, password):
        """
        @type password: L{str}
        @return: a L{Deferred} that fires with the bcrypt hash (L{bytes}).
        """
        return self._run(self._hash, password.encode("utf-8"))

    def checkPassword(self, password, hashed):
        """
        @param hashed: the stored hash, or L{None} for an unknown user or an
            account without a password.
        @return: a L{Deferred} that fires with L{True} only for a match.
        """
        return self._run(self._check, password.encode("utf-8"), hashed)

    def verifyAuth(self, publicKey, challenge, user, signature, device=None):
        """
        @param publicKey: the account's (or the device's) SubjectPublicKeyInfo
            DER, or L{None} for an unknown user or device.
        @param device: the device a version 3 login names, or L{None}.
        @return: a L{Deferred} that fires with L{True} only for a good signature
            by C{publicKey} over the login message for C{challenge}, C{user}
            (and C{device}).
        """
        return self._run(self._verify, publicKey, challenge, user, signature, device)

    def _hash(self, password):
        return bcrypt.hashpw(password, bcrypt.gensalt(self.cost))

    def _check(self, password, hashed):
        # bcrypt reads at most 72 bytes (and bcrypt 5 refuses more); a longer
        # password can match nothing stored, but must cost the same to refuse.
        if hashed is None or len(password) > 72:
            if self._dummyHash is None:
                self._dummyHash = self._hash(b"chatd stand-in password")
            bcrypt.checkpw(password[:72], self._dummyHash)
            return False
        return bcrypt.checkpw(password, hashed)

    def _verify(self, publicKey, challenge, user, signature, device=None):
        if publicKey is None:
            if self._dummyKey is None:
                self._dummyKey = rsa.generate_private_key(65537, 3072).public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            loginsig.verifyAuth(self._dummyKey, challenge, user, signature, device)
            return False
        return loginsig.verifyAuth(publicKey, challenge, user, signature, device)
