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
import time
from functools import cached_property, lru_cache
from typing import Dict

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatd import envelopeshape
from chatd.chunks import chunkAad, chunkNonce, openChunk, sealChunk
from chatd.cut import Cut
from chatd.envelopeshape import EnvelopeError
from chatd.errors import BadRequest, Forbidden

# Names that moved to their own modules, still reached through this one.
__all__ = ["EnvelopeError", "chunkAad", "chunkNonce", "openChunk", "sealChunk"]

MESSAGE = b"chatd-e2e-v1"
FILE = b"chatd-file-v1"
# Version 2's domains: callers name a kind by its version-1 domain, and a
# version-2 envelope's header swaps in its own (L{Envelope.header}).
MESSAGE_V2 = b"chatd-e2e-v2"
FILE_V2 = b"chatd-file-v2"
_V2_DOMAINS = {MESSAGE: MESSAGE_V2, FILE: FILE_V2}
ALG = "RSA-OAEP-256/A256GCM/PS256"

_COMMIT = b"chatd-commit-v1"
_MIN_BITS = 2048

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


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


def signBytes(privateKey, data):
    """
    RSA-PSS-SHA256 with the envelopes' parameters, for the other texts chatd
    signs (device lists), each under a domain of its own.
    """
    return privateKey.sign(data, _PSS, hashes.SHA256())


def verifyBytes(publicKeyDer, signature, data):
    """
    Whether C{signature} is a PSS signature of C{data} by C{publicKeyDer}; a bad
    key counts as a bad signature, because the caller only needs a yes or no.
    """
    try:
        loadPublicKey(publicKeyDer).verify(signature, data, _PSS, hashes.SHA256())
    except (BadRequest, InvalidSignature, TypeError):
        return False
    return True


def entryKey(user: str, device: "str | None" = None) -> str:
    """
    The name under which a reader's key entry is filed in an envelope's maps:
    C{user/device} for a device of an account with a device list, the bare
    C{user} for an account without one (or a guest, or a version-1 envelope).
    The one place this is spelled, for the server's checks and cuts and for
    both clients.

    @param device: the device id; L{None} or C{""} for none.
    """
    return f"{user}/{device}" if device else user


def _header(domain, sender, toKind, toName, envelopeId, ts, nonce, kc, devices=None):
    """
    The associated data and signed prefix of an envelope (section 6), built in one
    place so that sealing and verifying agree byte for byte.

    @param devices: L{None} for version 1; for version 2 (whose C{domain} is a
        version-2 one), C{(device id, head, hist)} with C{head} a C{(version,
        hex hash)} pair or L{None}, signed as four more lines (a missing head as
        version 0 and an empty hash).
    """
    text = f"\n{ALG}\n{sender}\n{toKind}:{toName}\n{envelopeId}\n{ts}\n{nonce}\n{kc}\n"
    if devices is not None:
        device, head, hist = devices
        version, digest = head if head is not None else (0, "")
        text += f"{device}\n{version}\n{digest}\n{hist}\n"
    return domain + text.encode("utf-8")


def _commit(key):
    """
    The key commitment: it binds the ciphertext to one message key, so nobody can
    hand different readers keys that decrypt to different messages.
    """
    return hmac.new(key, _COMMIT, hashlib.sha256).digest()


class Envelope:
    """
    A parsed envelope whose every field has the shape section 6 requires.

    @ivar raw: the bytes it was parsed from.
    @ivar version: 1 or 2.
    @ivar toKind: C{"room"} or C{"user"}.
    @ivar device: the sending device's id; C{""} from an account without
        devices, and always in version 1.
    @ivar head: the sender's list head when it sent, a C{(version, hex hash)}
        pair, or L{None} (no list, or version 1).
    @ivar hist: the room's history setting when sent; 0 for a direct message
        and for version 1, so a version-1 message is never shared.
    @ivar encryptedKeys: reader entry key (L{entryKey}) to wrapped message key
        (base64).
    @ivar keyIds: reader entry key to L{keyId} of the key it was wrapped for.
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
        self.device = obj.get("dev", "")
        head = obj.get("head")
        self.head = None if head is None else (head["v"], head["h"])
        self.hist = obj.get("hist", 0)
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
        return cls(data, envelopeshape.check(data, ALG))

    def header(self, domain=MESSAGE):
        """
        The header: the AES-GCM associated data and the start of what is signed.

        @param domain: L{MESSAGE} or L{FILE}, so one kind can never pass as the
            other; a version-2 envelope uses that kind's version-2 domain.
        @rtype: L{bytes}
        """
        devices = None
        if self.version == 2:
            domain = _V2_DOMAINS.get(domain, domain)
            devices = (self.device, self.head, self.hist)
        return _header(domain, self.sender, self.toKind, self.toName, self.id,
                       self.ts, self.nonce, self.kc, devices)

    @property
    def senderEntry(self):
        """
        The sending device's entry key (L{entryKey}).
        """
        return entryKey(self.sender, self.device)

    def verifySignature(self, publicKeyDer, domain=MESSAGE):
        """
        Whether the sender's key signed this envelope; never raises, so the server
        can refuse a bad one with a status of its own choosing.
        """
        signature = base64.b64decode(self.signature)
        signed = self.header(domain) + self.encryptedMessage.encode("ascii")
        return verifyBytes(publicKeyDer, signature, signed)

    def entryFor(self, entry):
        """
        The key this envelope files reader C{entry}'s key entry under: C{entry}
        itself in version 2, its bare user name in version 1, which knows no
        devices (so a legacy sender's message reaches every device of a
        member; only the one whose key is the identity key can open it). The
        one rule for live delivery, catch-up and history alike.

        @param entry: an entry key (L{entryKey}).
        """
        return entry if self.version == 2 else entry.partition("/")[0]

    def cutAs(self, entry):
        """
        L{cutFor} the entry reader C{entry} (an entry key) reads this
        envelope by (L{entryFor}).
        """
        return self.cutFor(self.entryFor(entry))

    def readers(self):
        """
        The names the sender wrapped the message key for.

        @rtype: L{frozenset} of L{str}
        """
        return frozenset(self.encryptedKeys)

    @cached_property
    def common(self):
        """
        Every field but the two maps, encoded once as an unfinished JSON object,
        so that each cut only splices on its reader's entries (L{tailFor}).
        """
        common = {
            "v": self.version, "alg": self.alg, "id": self.id, "from": self.sender,
            "to": {self.toKind: self.toName}, "ts": self.ts, "nonce": self.nonce,
            "kc": self.kc,
        }
        if self.version == 2:
            common["dev"] = self.device
            common["head"] = None if self.head is None else {
                "v": self.head[0], "h": self.head[1]}
            common["hist"] = self.hist
        common["encrypted_message"] = self.encryptedMessage
        common["signature"] = self.signature
        return _COMPACT.encode(common)[:-1].encode("ascii")

    def cutFor(self, user):
        """
        This envelope as C{user} (an entry key, L{entryKey}) receives it: both
        maps cut down to that reader's own entry (or empty), so fan-out costs
        the same for every room size.

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
        this envelope (L{common}), so that a message waiting for many slow
        readers is held once, not once per reader; the other piece is
        C{user}'s entries (L{tailFor}).

        @rtype: L{Cut}
        """
        cut = self._shared.get(user)
        if cut is None:
            common, tail = self.common, self.tailFor(user)
            cut = self._shared[user] = Cut((common, tail), len(common) + len(tail))
        return cut

    def tailFor(self, user):
        """
        What follows L{common} in C{user}'s cut: its entries of both maps (or
        empty maps) and the closing brace.

        @rtype: L{bytes}
        """
        return self.tailsFor((user,))[0]

    def tailsFor(self, users):
        """
        L{tailFor} each of C{users}, in one pass.

        This is the fan-out's per-reader cost, so it encodes nothing twice and
        calls nothing per reader: the entries' values are validated base64 and
        hex, which JSON writes as they are, a reader's quoted name is kept
        across messages, and one f-string, the fastest way Python has to put
        the pieces together, makes the common case of a reader with both
        entries. Nothing is kept of them: in a room, each reader asks once.

        @rtype: L{list} of L{bytes}
        """
        wrapped, keyIds = self.encryptedKeys, self.keyIds
        return [
            (f',"encrypted_keys":{{{quoted}:"{wrapped[user]}"}},'
             f'"key_ids":{{{quoted}:"{keyIds[user]}"}}}}').encode("ascii")
            if user in wrapped and user in keyIds else
            (f',"encrypted_keys":{{{_entry(quoted, wrapped.get(user))}}},'
             f'"key_ids":{{{_entry(quoted, keyIds.get(user))}}}}}').encode("ascii")
            for user, quoted in zip(users, map(_quotedName, users))]


def _entry(quoted, value):
    """
    One entry of a cut's map as JSON text: C{quoted} (a reader's name as a
    JSON string) to C{value}, or nothing when it has no C{value}.
    """
    return "" if value is None else f'{quoted}:"{value}"'


# Made once: json.dumps with separators would make an encoder every time.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


class _QuotedNames(Dict[str, str]):
    """
    Readers' names as JSON strings, as L{json.dumps} writes them, made on
    first use: a room's readers come back with every message, so each name
    is quoted once. A plain dictionary: looking a name up costs a fifth of
    what an C{lru_cache} call does, and this runs for every delivery.
    """

    def __missing__(self, name: str) -> str:
        if len(self) >= _QUOTED_NAMES:
            self.clear()
        quoted = self[name] = json.dumps(name)
        return quoted


# The most names kept quoted; past it they are all forgotten at once.
_QUOTED_NAMES = 65536
_quotedName = _QuotedNames().__getitem__


def _b64(data):
    """
    Standard padded base64 as text, the form every envelope field takes.
    """
    return base64.b64encode(data).decode("ascii")


def seal(senderName, signingKey, to, recipients, plaintext, domain=MESSAGE,
         ts=None, envelopeId=None, *, device=None, head=None, hist=0):
    """
    Encrypt C{plaintext} for C{recipients} and sign it as C{senderName}.

    @param signingKey: the sending device's L{rsa.RSAPrivateKey}.
    @param to: C{("room", name)} or C{("user", name)}.
    @param recipients: reader entry key (L{entryKey}) to SPKI DER; include the
        sender to read it back.
    @param domain: L{MESSAGE} or L{FILE} (a version-2 envelope signs under that
        kind's version-2 domain).
    @param ts: sender clock in ms; now when L{None}.
    @param envelopeId: the C{id} string; 16 fresh random bytes when L{None}.
    @param device: L{None} seals version 1 (a legacy session); a string seals
        version 2 from that device (C{""} for an account without a list).
    @param head: version 2: the sender's list head C{(version, hex hash)}, or
        L{None} for an account without a list.
    @param hist: version 2: the room's history setting (0 for a direct message).
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
    envelope = {"v": 1, "alg": ALG, "id": envelopeId, "from": senderName,
                "to": {toKind: toName}, "ts": ts, "nonce": nonce, "kc": kc}
    devices = None
    if device is not None:
        domain = _V2_DOMAINS.get(domain, domain)
        devices = (device, head, hist)
        envelope.update(v=2, dev=device,
                        head=None if head is None else {"v": head[0], "h": head[1]},
                        hist=hist)
    header = _header(domain, senderName, toKind, toName, envelopeId, ts, nonce, kc,
                     devices)
    ciphertext = AESGCM(key).encrypt(base64.b64decode(nonce), plaintext, header)
    encryptedMessage = _b64(ciphertext)
    signature = signBytes(signingKey, header + encryptedMessage.encode("ascii"))
    envelope.update({
        "encrypted_message": encryptedMessage,
        "encrypted_keys": {
            name: _b64(loadPublicKey(der).encrypt(key, _OAEP))
            for name, der in recipients.items()
        },
        "key_ids": {name: keyId(der) for name, der in recipients.items()},
        "signature": _b64(signature),
    })
    # Compact, as the server's own parser reads fastest (envelopeshape._loads).
    return _COMPACT.encode(envelope).encode("utf-8")


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
