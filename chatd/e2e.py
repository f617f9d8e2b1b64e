# -*- test-case-name: chatd.test.test_e2e -*-
"""
The end-to-end envelope: one module for the server and for clients.

The server only parses, checks signatures and cuts envelopes down per reader; it
never holds a message key. Clients seal and open them. Keeping both halves here
means the header the signature covers is built by exactly one function, so the
signer and every verifier cannot drift apart.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import time
from functools import cached_property, lru_cache

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatd.errors import BadRequest, Forbidden

MESSAGE = b"chatd-e2e-v1"
FILE = b"chatd-file-v1"
ALG = "RSA-OAEP-256/A256GCM/PS256"
AUTH_PREFIX = b"chatd-auth-v1\0"

_COMMIT = b"chatd-commit-v1"
_CHUNK = b"chatd-chunk-v1\n"
_MIN_BITS = 2048

_FIELDS = (
    "v", "alg", "id", "from", "to", "ts", "nonce", "kc",
    "encrypted_message", "encrypted_keys", "key_ids", "signature",
)
_FIELD_SET = frozenset(_FIELDS)
_TO_KINDS = frozenset({"room", "user"})

# Fixed-size values must be the one canonical spelling of their bytes, so that no
# two strings name the same id (the replay set keys on the string) or key check.
_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
_NONCE = re.compile(r"[A-Za-z0-9+/]{16}")
_KC = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_NOT_IN_HEADER = re.compile("[\n\ud800-\udfff]")

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class EnvelopeError(BadRequest):
    """An envelope of the wrong shape, or one that does not open (status 0x01)."""


class BadSignature(Forbidden):
    """An envelope whose signature does not verify with its sender's key (0x05)."""


def keyId(der):
    """
    The short name of a key that envelopes carry in C{key_ids}, so that a reader
    can tell which of its keys an entry was wrapped for.

    @type der: L{bytes}, an SPKI DER public key.
    @rtype: L{str}, 16 lowercase hex digits.
    """
    return hashlib.sha256(der).hexdigest()[:16]


def fingerprint(der):
    """
    The whole SHA-256 of a key, grouped in fours so that people can read it aloud
    and compare it out of band.

    @type der: L{bytes}, an SPKI DER public key.
    @rtype: L{str}
    """
    digest = hashlib.sha256(der).hexdigest()
    return " ".join(digest[i:i + 4] for i in range(0, len(digest), 4))


@lru_cache(maxsize=1024)
def loadPublicKey(der):
    """
    Load a user's public key, refusing anything too weak to trust.

    Cached by DER because the server verifies many signatures made by the same
    few keys, and parsing a key costs more than a cache lookup.

    @type der: L{bytes}, an SPKI DER public key.
    @rtype: L{rsa.RSAPublicKey}
    @raise BadRequest: unless C{der} is an RSA key of at least 2048 bits.
    """
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise BadRequest("public key: not an SPKI DER public key")
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadRequest("public key: not an RSA key")
    if key.key_size < _MIN_BITS:
        raise BadRequest(
            f"public key: RSA key of {key.key_size} bits, need {_MIN_BITS}")
    return key


def _verify(publicKeyDer, signature, data):
    """
    Whether C{signature} is a PSS signature of C{data} by C{publicKeyDer}; a bad
    key counts as a bad signature, because the caller only needs a yes or no.
    """
    try:
        loadPublicKey(publicKeyDer).verify(signature, data, _PSS, hashes.SHA256())
    except (BadRequest, InvalidSignature, TypeError):
        return False
    return True


def authMessage(challenge, user):
    """
    The bytes a login signature covers; the prefix keeps them from ever being a
    message or file header, so a login signature cannot be replayed as either.
    """
    return AUTH_PREFIX + challenge + user.encode("utf-8")


def signAuth(privateKey, challenge, user):
    """
    Sign a login challenge for C{user}.

    @type privateKey: L{rsa.RSAPrivateKey}
    @rtype: L{bytes}
    """
    return privateKey.sign(authMessage(challenge, user), _PSS, hashes.SHA256())


def verifyAuth(publicKeyDer, challenge, user, signature):
    """
    Whether C{signature} answers C{challenge} for C{user}; never raises, so that a
    login with a broken key or signature is simply refused.
    """
    return _verify(publicKeyDer, signature, authMessage(challenge, user))


def _header(domain, sender, toKind, toName, envelopeId, ts, nonce, kc):
    """
    The associated data and signed prefix of an envelope (section 6), built in one
    place so that sealing and verifying agree byte for byte.
    """
    text = f"\n{ALG}\n{sender}\n{toKind}:{toName}\n{envelopeId}\n{ts}\n{nonce}\n{kc}\n"
    return domain + text.encode("utf-8")


def _commit(key):
    """
    The key commitment: it binds the ciphertext to one message key, so nobody can
    hand different readers keys that decrypt to different messages.
    """
    return hmac.new(key, _COMMIT, hashlib.sha256).digest()


def _quote(name):
    """
    A JSON key for an error message, cut short so a hostile one cannot bloat it.
    """
    return repr(name[:40])


def _uniquePairs(pairs):
    """
    A C{json} object hook that refuses duplicate keys, which would let two readers
    of one envelope see two different values.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise EnvelopeError(f"envelope: duplicate key {_quote(key)}")
            seen.add(key)
    return obj


def _refuseConstant(name):
    """
    A C{json} hook refusing C{NaN} and C{Infinity}, which are not JSON.
    """
    raise EnvelopeError(f"envelope: {name} is not JSON")


def _isHeaderText(value):
    """
    Whether C{value} may go into the header as a name: non-empty, free of newlines
    (one of which would let one header be read as two different envelopes) and of
    lone surrogates (which have no UTF-8 form to sign).
    """
    return isinstance(value, str) and value != "" and not _NOT_IN_HEADER.search(value)


def _matches(pattern, value):
    """
    Whether C{value} is a string that C{pattern} matches entirely.
    """
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _isBase64(value):
    """
    Whether C{value} is non-empty padded standard base64; it is checked, not
    decoded, because the server only ever passes such values on.
    """
    return (isinstance(value, str) and value != "" and len(value) % 4 == 0
            and _B64.fullmatch(value) is not None)


def _isKeyId(value):
    """
    Whether C{value} looks like a L{keyId}.
    """
    return _matches(_KEY_ID, value)


def _require(valid, field, what):
    """
    Refuse the envelope unless C{valid}; the message says what C{field} must be.
    """
    if not valid:
        raise EnvelopeError(f"envelope: {field} must be {what}")


def _requireMap(value, field, isValid, what):
    """
    Refuse the envelope unless C{value} is an object whose every value passes
    C{isValid}; the offending name goes into the message only on failure, so the
    common case builds no strings.
    """
    _require(isinstance(value, dict), field, "an object")
    for name, entry in value.items():
        if not isValid(entry):
            raise EnvelopeError(f"envelope: {field}[{_quote(name)}] must be {what}")


class Envelope:
    """
    A parsed envelope whose every field has the shape section 6 requires.

    @ivar raw: the bytes it was parsed from.
    @ivar toKind: C{"room"} or C{"user"}.
    @ivar encryptedKeys: reader name to wrapped message key (base64).
    @ivar keyIds: reader name to L{keyId} of the key it was wrapped for.
    """

    def __init__(self, raw, obj):
        """
        Take the fields of C{obj}, which L{Envelope.parse} has already checked.
        """
        self.raw = raw
        self.version = obj["v"]
        self.alg = obj["alg"]
        self.id = obj["id"]
        self.sender = obj["from"]
        ((self.toKind, self.toName),) = obj["to"].items()
        self.ts = obj["ts"]
        self.nonce = obj["nonce"]
        self.kc = obj["kc"]
        self.encryptedMessage = obj["encrypted_message"]
        self.encryptedKeys = obj["encrypted_keys"]
        self.keyIds = obj["key_ids"]
        self.signature = obj["signature"]
        self._cuts = {}
        self._shared = {}

    @classmethod
    def parse(cls, data):
        """
        Parse and shape-check an envelope; nothing about it is trusted yet.

        @type data: L{bytes}, UTF-8 JSON.
        @rtype: L{Envelope}
        @raise EnvelopeError: for anything but a well-formed envelope.
        """
        try:
            obj = json.loads(
                data.decode("utf-8"),
                object_pairs_hook=_uniquePairs,
                parse_constant=_refuseConstant,
            )
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EnvelopeError("envelope: not UTF-8 JSON")
        if not isinstance(obj, dict):
            raise EnvelopeError("envelope: not a JSON object")
        unknown = obj.keys() - _FIELD_SET
        if unknown:
            raise EnvelopeError(f"envelope: unknown field {_quote(min(unknown))}")
        missing = [field for field in _FIELDS if field not in obj]
        if missing:
            raise EnvelopeError(f"envelope: missing field '{missing[0]}'")
        _require(type(obj["v"]) is int and obj["v"] == 1, "v", "1")
        _require(obj["alg"] == ALG, "alg", ALG)
        _require(_matches(_ID, obj["id"]), "id", "16 bytes of unpadded base64url")
        _require(_isHeaderText(obj["from"]), "from", "a non-empty one-line string")
        to = obj["to"]
        _require(isinstance(to, dict) and len(to) == 1 and not to.keys() - _TO_KINDS
                 and _isHeaderText(next(iter(to.values()))),
                 "to", '{"room": name} or {"user": name}, name on one line')
        _require(type(obj["ts"]) is int and obj["ts"] >= 0, "ts",
                 "a non-negative integer")
        _require(_matches(_NONCE, obj["nonce"]), "nonce", "12 bytes of base64")
        _require(_matches(_KC, obj["kc"]), "kc", "32 bytes of base64")
        _require(_isBase64(obj["encrypted_message"]), "encrypted_message",
                 "non-empty base64")
        _requireMap(obj["encrypted_keys"], "encrypted_keys", _isBase64,
                    "non-empty base64")
        _requireMap(obj["key_ids"], "key_ids", _isKeyId, "16 lowercase hex digits")
        _require(_isBase64(obj["signature"]), "signature", "non-empty base64")
        return cls(data, obj)

    def header(self, domain=MESSAGE):
        """
        The header: the AES-GCM associated data and the start of what is signed.

        @param domain: L{MESSAGE} or L{FILE}, so one kind can never pass as the other.
        @rtype: L{bytes}
        """
        return _header(domain, self.sender, self.toKind, self.toName, self.id,
                       self.ts, self.nonce, self.kc)

    def verifySignature(self, publicKeyDer, domain=MESSAGE):
        """
        Whether the sender's key signed this envelope; never raises, so the server
        can refuse a bad one with a status of its own choosing.
        """
        signature = base64.b64decode(self.signature)
        signed = self.header(domain) + self.encryptedMessage.encode("ascii")
        return _verify(publicKeyDer, signature, signed)

    def readers(self):
        """
        The names the sender wrapped the message key for.

        @rtype: L{frozenset} of L{str}
        """
        return frozenset(self.encryptedKeys)

    @cached_property
    def _common(self):
        """
        Every field but the two maps, encoded once as an unfinished JSON object,
        so that each cut only splices on its reader's entries.
        """
        common = {
            "v": self.version, "alg": self.alg, "id": self.id, "from": self.sender,
            "to": {self.toKind: self.toName}, "ts": self.ts, "nonce": self.nonce,
            "kc": self.kc, "encrypted_message": self.encryptedMessage,
            "signature": self.signature,
        }
        return json.dumps(common, separators=(",", ":"))[:-1].encode("ascii")

    def cutFor(self, user):
        """
        This envelope as C{user} receives it: both maps cut down to C{user}'s own
        entry (or empty), so fan-out costs the same for every room size.

        Cuts are cached per user because a message goes to every session of its
        readers, and history may ask again.

        @rtype: L{bytes}, UTF-8 JSON that L{Envelope.parse} accepts.
        """
        cut = self._cuts.get(user)
        if cut is None:
            cut = self._cuts[user] = bytes(self.sharedCut(user))
        return cut

    def sharedCut(self, user):
        """
        L{cutFor}, kept in pieces: the fields every reader gets, ciphertext and
        signature included, are one L{bytes} object shared by all the cuts of
        this envelope, so that a message waiting for many slow readers is held
        once, not once per reader.

        @rtype: L{Cut}
        """
        cut = self._shared.get(user)
        if cut is None:
            cut = self._shared[user] = Cut((self._common, b"".join([
                b',"encrypted_keys":{', self._entry(self.encryptedKeys, user),
                b'},"key_ids":{', self._entry(self.keyIds, user), b"}}",
            ])))
        return cut

    @staticmethod
    def _entry(mapping, user):
        """
        C{user}'s member of C{mapping} as JSON text, or nothing when it has none.
        """
        if user not in mapping:
            return b""
        return f"{json.dumps(user)}:{json.dumps(mapping[user])}".encode("ascii")


class Cut:
    """
    An envelope cut for one reader, as the L{bytes} pieces it is made of; the
    first piece is shared with the other readers' cuts (see
    L{Envelope.sharedCut}). It equals the L{bytes} it stands for.

    @ivar pieces: a L{tuple} of L{bytes} whose concatenation is the cut.
    """

    __slots__ = ("pieces",)

    def __init__(self, pieces):
        self.pieces = pieces

    def __bytes__(self):
        return b"".join(self.pieces)

    def __len__(self):
        return sum(map(len, self.pieces))

    def __eq__(self, other):
        if isinstance(other, Cut):
            other = bytes(other)
        if not isinstance(other, bytes):
            return NotImplemented
        return bytes(self) == other

    def __hash__(self):
        return hash(bytes(self))

    def __repr__(self):
        return "Cut(%r)" % (bytes(self),)


def _b64(data):
    """
    Standard padded base64 as text, the form every envelope field takes.
    """
    return base64.b64encode(data).decode("ascii")


def seal(senderName, signingKey, to, recipients, plaintext, domain=MESSAGE,
         ts=None, envelopeId=None):
    """
    Encrypt C{plaintext} for C{recipients} and sign it as C{senderName}.

    @param signingKey: the sender's L{rsa.RSAPrivateKey}.
    @param to: C{("room", name)} or C{("user", name)}.
    @param recipients: reader name to SPKI DER; include the sender to read it back.
    @param ts: sender clock in ms; now when L{None}.
    @param envelopeId: the C{id} string; 16 fresh random bytes when L{None}.
    @rtype: L{bytes}, UTF-8 JSON.
    """
    toKind, toName = to
    key = AESGCM.generate_key(bit_length=256)
    nonce = _b64(os.urandom(12))
    kc = _b64(_commit(key))
    if envelopeId is None:
        envelopeId = base64.urlsafe_b64encode(os.urandom(16)).decode("ascii")[:22]
    if ts is None:
        ts = int(time.time() * 1000)
    header = _header(domain, senderName, toKind, toName, envelopeId, ts, nonce, kc)
    ciphertext = AESGCM(key).encrypt(base64.b64decode(nonce), plaintext, header)
    encryptedMessage = _b64(ciphertext)
    signature = signingKey.sign(header + encryptedMessage.encode("ascii"), _PSS,
                                hashes.SHA256())
    envelope = {
        "v": 1, "alg": ALG, "id": envelopeId, "from": senderName,
        "to": {toKind: toName}, "ts": ts, "nonce": nonce, "kc": kc,
        "encrypted_message": encryptedMessage,
        "encrypted_keys": {
            name: _b64(loadPublicKey(der).encrypt(key, _OAEP))
            for name, der in recipients.items()
        },
        "key_ids": {name: keyId(der) for name, der in recipients.items()},
        "signature": _b64(signature),
    }
    return json.dumps(envelope).encode("utf-8")


def openEnvelope(envelope, readerName, readerPrivateKey, senderPublicKeyDer,
                 domain=MESSAGE):
    """
    Check an envelope came from its sender, then decrypt it as C{readerName}.

    The signature is checked first, so that nothing a forger made ever reaches
    the private key (RSA-OAEP unwrapping) or the cipher: a reader's secrets
    only ever work on what its sender signed.

    @param envelope: an L{Envelope}, or the bytes of one.
    @param senderPublicKeyDer: the sender's pinned SPKI DER key.
    @rtype: L{bytes}, the plaintext.
    @raise BadSignature: the sender's key did not sign it.
    @raise EnvelopeError: no key for this reader, or the key, commitment or
        ciphertext does not check out.
    """
    if not isinstance(envelope, Envelope):
        envelope = Envelope.parse(envelope)
    if not envelope.verifySignature(senderPublicKeyDer, domain):
        raise BadSignature("envelope: signature does not verify")
    return decrypt(envelope, readerName, readerPrivateKey, domain)


def decrypt(envelope, readerName, readerPrivateKey, domain=MESSAGE):
    """
    Unwrap C{readerName}'s message key, check it against the key commitment
    and decrypt, without checking who signed: only for an envelope whose
    signature was checked already (L{openEnvelope} does both), or to learn
    whether a key could read it at all.

    @param envelope: an L{Envelope}.
    @rtype: L{bytes}, the plaintext.
    @raise EnvelopeError: no key for this reader, or the key, commitment or
        ciphertext does not check out.
    """
    wrapped = envelope.encryptedKeys.get(readerName)
    if wrapped is None:
        raise EnvelopeError("envelope: no key for you")
    try:
        key = readerPrivateKey.decrypt(base64.b64decode(wrapped), _OAEP)
    except ValueError:
        raise EnvelopeError("envelope: your key entry does not unwrap")
    if len(key) != 32 or not hmac.compare_digest(
            _commit(key), base64.b64decode(envelope.kc)):
        raise EnvelopeError("envelope: key commitment does not match")
    header = envelope.header(domain)
    try:
        plaintext = AESGCM(key).decrypt(
            base64.b64decode(envelope.nonce),
            base64.b64decode(envelope.encryptedMessage), header)
    except InvalidTag:
        raise EnvelopeError("envelope: message does not decrypt")
    return plaintext


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
