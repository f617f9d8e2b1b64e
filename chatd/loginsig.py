# -*- test-case-name: chatd.test.test_e2e,chatd.test.test_envelope2 -*-
"""
The login signature: the bytes a client signs to answer the server's
challenge (AUTH, and a device's login in version 3), signing them for clients
and checking them for the server (L{chatd.credentials}). One module for both,
so that the signer and the checker cannot drift apart.

The signature itself is the envelopes' RSA-PSS (L{chatd.e2e.signBytes}); the
prefixes keep what it covers apart from every other text chatd signs.
"""

from chatd.e2e import signBytes, verifyBytes

AUTH_PREFIX = b"chatd-auth-v1\0"
AUTH_PREFIX_V2 = b"chatd-auth-v2\0"


def authMessage(challenge, user, device=None):
    """
    The bytes a login signature covers; the prefix keeps them from ever being a
    message or file header, so a login signature cannot be replayed as either.
    A login naming a device (version 2 of these bytes) also covers the device,
    so a signature for one device cannot log in as another.
    """
    if device is None:
        return AUTH_PREFIX + challenge + user.encode("utf-8")
    return AUTH_PREFIX_V2 + challenge + f"{user}\n{device}".encode("utf-8")


def signAuth(privateKey, challenge, user, device=None):
    """
    Sign a login challenge for C{user} (and C{device}, when one is named).

    @type privateKey: L{rsa.RSAPrivateKey}
    @rtype: L{bytes}
    """
    return signBytes(privateKey, authMessage(challenge, user, device))


def verifyAuth(publicKeyDer, challenge, user, signature, device=None):
    """
    Whether C{signature} answers C{challenge} for C{user} (and C{device}); never
    raises, so that a login with a broken key or signature is simply refused.
    """
    return verifyBytes(publicKeyDer, signature, authMessage(challenge, user, device))
