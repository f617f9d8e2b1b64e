# -*- test-case-name: chatd.test.test_atrest -*-
"""
The at-rest seal: how a store encrypts each envelope it keeps with the
server's at-rest keys, and opens it again.

An envelope is already end-to-end encrypted; the seal is a second layer, so
that a copy of the database alone shows no envelope, not even who holds a key
entry in it. Each body is AES-256-GCM over the envelope's raw bytes, under the
newest at-rest key, with a fresh 96-bit nonce in front::

    body = nonce (12 bytes) || ciphertext || tag (16 bytes)

The associated data is the row's folded room name, its sender and its envelope
id, so a body copied into another row (another room, sender or id) no longer
opens: it reads as damaged, rather than as a message its row does not hold.

Each row keeps the id of the key that sealed it, derived from the
key itself, so the key file needs no ids of its own and reordering it changes
nothing. Rows written before this format (schema version 1) have no key id:
their body is a Fernet token over the whole envelope, which any key of the
file may open, as L{cryptography.fernet.MultiFernet} did.

The key file's format is unchanged: each line is 32 random bytes in url-safe
base64 (what L{Fernet.generate_key} makes). The AES key and the key id are
both derived from those bytes with HKDF, each for its own purpose, so neither
reveals the other, and the same line still opens the Fernet rows.
"""

import base64
import os
import struct
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.logger import Logger

from chatd.model import HistoryRow
from chatd.startup import StartupError

NONCE_LENGTH = 12

# Labels that keep apart what HKDF derives from one key, and the associated
# data of this format from any later one.
_AES_LABEL = b"chatd at-rest seal: AES-256-GCM key"
_ID_LABEL = b"chatd at-rest seal: key id"
_AD_LABEL = b"chatd at-rest seal v1"

# Four bytes name a key among the few of one file; ids are checked unique
# there, and the tag, not the id, is what authenticates a body.
_ID_BYTES = 4


class SealError(Exception):
    """
    A stored body does not open with these keys for the row that holds it:
    it is damaged, was moved from another row, or its key is not held.
    """


class AtRestKeyError(StartupError):
    """
    The at-rest keys cannot open what the database holds, so chatd must not
    start with them: serving would show no history and seal new messages
    under a key their older neighbours were not sealed with. A start that
    meets it ends with its message (L{chatd.startup}).
    """


def generateKey() -> bytes:
    """
    A new at-rest key, as a line of the key file holds it.
    """
    return Fernet.generate_key()


def _derive(key: bytes, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(key)


def _associatedData(roomKey: str, sender: str, envelopeId: str) -> bytes:
    """
    What binds a body to its row: each field length-prefixed, so no two rows
    share associated data whatever their names hold.
    """
    parts = [_AD_LABEL]
    for field in (roomKey, sender, envelopeId):
        encoded = field.encode("utf-8")
        parts.append(struct.pack(">I", len(encoded)) + encoded)
    return b"".join(parts)


class AtRestKeys:
    """
    The at-rest keys of one server: the newest seals, every one opens.

    @ivar source: what holds the keys (the key file's path), for messages.
    @ivar created: whether that file was made on this start, for messages
        about a database whose data it cannot open.
    @ivar newestId: the id of the key new bodies are sealed with.
    @ivar ids: the ids of every key held.
    """

    def __init__(self, keys: Sequence[bytes], source: str = "the at-rest keys",
                 created: bool = False) -> None:
        """
        @param keys: key-file lines, newest first.
        @raise ValueError: when there is no key, a line is not a key, or two
            different keys share an id.
        """
        if not keys:
            raise ValueError("no at-rest key")
        self.source = source
        self.created = created
        # Fernet checks each line is a key, and opens the rows of the old format.
        self._legacy = MultiFernet([Fernet(key) for key in keys])
        self._byId: Dict[str, AESGCM] = {}
        materials: Dict[str, bytes] = {}
        for key in keys:
            material = base64.urlsafe_b64decode(key)
            keyId = _derive(material, _ID_LABEL, _ID_BYTES).hex()
            if materials.setdefault(keyId, material) != material:
                raise ValueError(f"two keys have the id {keyId}: drop one")
            if keyId not in self._byId:
                self._byId[keyId] = AESGCM(_derive(material, _AES_LABEL, 32))
        self.newestId = next(iter(self._byId))
        self._newest = self._byId[self.newestId]
        self.ids = frozenset(self._byId)

    def seal(self, envelope: bytes, roomKey: str, sender: str,
             envelopeId: str) -> Tuple[str, bytes]:
        """
        Seal C{envelope} for the row that will hold it.

        @param roomKey: the row's folded room name.
        @param sender: the row's sender, as stored.
        @param envelopeId: the row's envelope id.
        @return: (the key id to store beside it, the body).
        """
        nonce = os.urandom(NONCE_LENGTH)
        sealed = self._newest.encrypt(
            nonce, envelope, _associatedData(roomKey, sender, envelopeId))
        return self.newestId, nonce + sealed

    def open(self, keyId: Optional[str], body: bytes, roomKey: str, sender: str,
             envelopeId: str) -> bytes:
        """
        Open the body of a row, given the row's other columns.

        @param keyId: the row's key id, or L{None} for a Fernet body.
        @raise SealError: when it does not open, saying why.
        """
        if keyId is None:
            try:
                return self._legacy.decrypt(bytes(body))
            except InvalidToken:
                raise SealError("a Fernet body no key opens") from None
        aead = self._byId.get(keyId)
        if aead is None:
            raise SealError(f"sealed with key {keyId}, which {self.source} does not hold")
        # A view, so the ciphertext is not copied before it is decrypted.
        view = memoryview(body)
        try:
            return aead.decrypt(
                view[:NONCE_LENGTH], view[NONCE_LENGTH:],
                _associatedData(roomKey, sender, envelopeId))
        except (InvalidTag, ValueError):
            raise SealError(
                "its seal does not open: damaged, or moved from another row") from None

    def refusal(self, problem: str) -> AtRestKeyError:
        """
        The error that stops a start because these keys cannot open the stored
        messages.

        @param problem: what is wrong, as the end of a sentence starting with
            the key file's name.
        """
        if self.created:
            return AtRestKeyError(
                f"{self.source} was missing, so chatd wrote a new key there, but"
                f" it {problem}: put the original key file in its place")
        return AtRestKeyError(
            f"{self.source} {problem}: put back the key file they were sealed with")


# One stored message as a store reads it: (sender, timestamp, envelope id,
# key id, body).
StoredRow = Tuple[str, int, str, Optional[str], bytes]

# One message that did not open: (room key, sender, envelope id, reason).
Damage = Tuple[str, str, str, str]


def openRows(keys: AtRestKeys, roomKey: str,
             rows: Iterable[StoredRow]) -> Tuple[List[HistoryRow], List[Damage]]:
    """
    Open the messages of one room, keeping those that open and setting aside
    those that do not: one damaged row costs its reader that row only.

    @return: (the rows that opened, in order; what did not open and why).
    """
    opened = []
    damaged = []
    for sender, timestamp, envelopeId, keyId, body in rows:
        try:
            envelope = keys.open(keyId, body, roomKey, sender, envelopeId)
        except SealError as e:
            damaged.append((roomKey, sender, envelopeId, str(e)))
        else:
            opened.append(HistoryRow(sender, timestamp, envelope))
    return opened, damaged


class DamageReport:
    """
    Logs each stored message that does not open, once per process: a damaged
    row read on every history page would otherwise log on every page.

    @ivar limit: how many messages it remembers having logged; past that it
        logs one line saying so and no more, so a database full of damage
        costs neither memory nor log without bound.
    """

    _log = Logger()

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._logged: Set[Tuple[str, str, str]] = set()
        self._full = False

    def keep(self, result: Tuple[List[HistoryRow], List[Damage]]) -> List[HistoryRow]:
        """
        Log what L{openRows} set aside, if not yet logged, and return the rows
        that opened: a callback for a store's read.
        """
        opened, damaged = result
        for roomKey, sender, envelopeId, reason in damaged:
            row = (roomKey, sender, envelopeId)
            if self._full or row in self._logged:
                continue
            if len(self._logged) == self.limit:
                self._full = True
                self._log.error(
                    "{limit} stored messages did not open; no more will be logged",
                    limit=self.limit)
                continue
            self._logged.add(row)
            self._log.error(
                "Skipped the stored message {envelopeId} from {sender} in {room}:"
                " {reason}", envelopeId=envelopeId, sender=sender, room=roomKey,
                reason=reason)
        return opened
