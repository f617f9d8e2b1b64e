# -*- test-case-name: chatd.test.test_keystore -*-
"""
The files the terminal client keeps in its home directory are its own
business: made readable by their owner only, written whole or not at all, and
named only by what is safe in a file name. These helpers are shared by the
key store (L{chatd.client.keystore}), the pins (L{chatd.client.pins}), the
replay window (L{chatd.client.replay}) and the device state
(L{chatd.client.devicestore}).
"""

import os
import tempfile

from chatd.e2e import loadPublicKey
from chatd.errors import BadRequest
from chatd.names import isUserName


class KeystoreError(Exception):
    """
    A key or pin cannot be used or changed as asked; the message is a sentence
    the client can show its user as it is.
    """


def makePrivateDirectory(path):
    """
    Create C{path} unless it exists, and every missing directory above it,
    readable by their owner only: everything the client creates is its own
    business. The mode is set explicitly because the umask could have left
    less; a directory that already exists is left as its owner made it.
    """
    if os.path.isdir(path):
        return
    makePrivateDirectory(os.path.dirname(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def writePrivately(path, content, exclusive=False):
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
    makePrivateDirectory(directory)
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


def requireUserName(user):
    """
    Refuse anything but a user name, which is also what keeps a name from
    naming a file outside the key directory or breaking a line of known_keys.
    """
    if not isinstance(user, str) or not isUserName(user):
        raise KeystoreError("%r is not a user name" % (user,))


def checkPublicKey(der):
    """
    Refuse to pin what is not a usable public key: the client could never
    encrypt to it nor check a signature with it.

    @raise ValueError: with the reason.
    """
    try:
        loadPublicKey(der)
    except BadRequest as e:
        raise ValueError(e.message)
