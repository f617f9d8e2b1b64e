# -*- test-case-name: chatd.test.test_store_devices -*-
"""
What every store does alike with the key entries of stored messages: the
reader keys history is filtered by, the shares merged into an envelope's key
maps, and the value an append answers with.

A reader is an I{entry key} (L{chatd.e2e}): C{user/device} for a device of
an account with a device list, the bare name otherwise. The user part is
kept folded (names are unique ignoring case), the device part as it is
(device ids are exact).
"""

import json
from typing import Iterable, Tuple

from chatd.names import fold


def readerKey(entry: str) -> str:
    """
    The stored form of entry key C{entry}: its user part folded.
    """
    user, slash, device = entry.partition("/")
    return fold(user) + slash + device


def readingKeys(entry: str) -> Tuple[str, str]:
    """
    The stored reader keys entry key C{entry} reads messages by: its own,
    and its bare user name's, under which a version-1 envelope (which knows
    no devices) files the account's entry (L{chatd.e2e.Envelope.entryFor}).
    The same key twice for a bare name.
    """
    return readerKey(entry), fold(entry.partition("/")[0])


def pairKey(a: str, b: str) -> str:
    """
    The key of the direct conversation between C{a} and C{b}: both folded
    names, sorted, joined by a newline (which no name holds, so that it is
    never a room's key either: the at-rest seal is bound to it).
    """
    return "\n".join(sorted((fold(a), fold(b))))


def mergeShares(envelope: bytes, shares: Iterable[Tuple[str, str, str]]) -> bytes:
    """
    C{envelope} with shared key entries added to its key maps.

    @param shares: C{(entry key, encrypted key, key id)} triples; an entry the
        envelope has already is kept as it was.
    """
    shares = list(shares)
    if not shares:
        return envelope
    obj = json.loads(envelope)
    keys, ids = obj["encrypted_keys"], obj["key_ids"]
    for entry, encryptedKey, keyId in shares:
        if entry not in keys:
            keys[entry] = encryptedKey
            ids[entry] = keyId
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Stamp(int):
    """
    What storing a message answers: its server timestamp (an L{int}, as
    before there were sequences) that also carries its store-wide
    C{sequence}, for the marks of the devices it is delivered to.
    """

    sequence: int

    def __new__(cls, timestamp: int, sequence: int) -> "Stamp":
        stamp = int.__new__(cls, timestamp)
        stamp.sequence = sequence
        return stamp
