# -*- test-case-name: chatd.test.test_e2e -*-
"""
File chunks: each chunk of an offered file is sealed on its own with the file
key its envelope carries, bound to that envelope and to its place in the file.
"""

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatd.envelopeshape import EnvelopeError

_CHUNK = b"chatd-chunk-v1\n"


def chunkNonce(index):
    """
    The AES-GCM nonce of file chunk C{index}: unique per chunk under one file key.
    """
    return b"\0\0\0\0" + struct.pack(">Q", index)


def chunkAad(envelopeId, index):
    """
    The associated data of file chunk C{index}, binding it to its file and place,
    so chunks cannot be reordered or moved between files.
    """
    return b"%s%s\n%d" % (_CHUNK, envelopeId.encode("ascii"), index)


def sealChunk(fileKey, envelopeId, index, data):
    """
    Encrypt one chunk of a file offered under envelope C{envelopeId}.

    @rtype: L{bytes}, ciphertext and tag.
    """
    return AESGCM(fileKey).encrypt(chunkNonce(index), data, chunkAad(envelopeId, index))


def openChunk(fileKey, envelopeId, index, ciphertext):
    """
    Decrypt one chunk, refusing one that was altered, moved or belongs elsewhere.

    @raise EnvelopeError: the chunk does not decrypt.
    """
    try:
        return AESGCM(fileKey).decrypt(
            chunkNonce(index), ciphertext, chunkAad(envelopeId, index))
    except InvalidTag:
        raise EnvelopeError(f"file: chunk {index} does not decrypt")
