"""
Frozen value types that cross the boundary between the core and the store.
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Account:
    """
    A registered user as the store keeps it.

    @ivar name: the name as registered (its case kept).
    @ivar passwordHash: the bcrypt hash, or L{None} for a key-only account.
    @ivar publicKey: the current RSA public key, SubjectPublicKeyInfo DER.
    @ivar banned: whether an operator banned it from logging in.
    """

    name: str
    passwordHash: Optional[bytes]
    publicKey: bytes
    banned: bool = False


@dataclass(frozen=True)
class RoomRecord:
    """
    A room that outlives its members.

    @ivar name: the name as created.
    @ivar passwordHash: the bcrypt hash of the room password, or L{None}.
    @ivar lastTimestamp: the server timestamp (ms) of its newest stored message,
        or 0 when it has no history.
    """

    name: str
    passwordHash: Optional[bytes]
    lastTimestamp: int


@dataclass(frozen=True)
class HistoryRow:
    """
    One stored room message, as read back for one reader.

    @ivar sender: the sender's name as it was when the message was sent.
    @ivar timestamp: the server timestamp, ms since the epoch.
    @ivar envelope: the whole envelope (every recipient's key entry), UTF-8 JSON.
    """

    sender: str
    timestamp: int
    envelope: bytes
