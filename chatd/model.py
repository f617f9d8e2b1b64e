"""
Frozen value types that cross the boundary between the core and the store, or
the fan-out.
"""

from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from chatd.names import fold


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


@dataclass(frozen=True)
class Ban:
    """
    A name that may not come back into a room.

    @ivar name: the banned name, as the ban wrote it.
    @ivar by: who banned it.
    @ivar timestamp: when, ms since the epoch.
    @ivar reason: why, as the banner said (may be empty).
    """

    name: str
    by: str
    timestamp: int
    reason: str


@dataclass(frozen=True)
class Moderation:
    """
    Who runs a room and who is kept out of it, as the store keeps it.

    @ivar topic: the room's topic, or L{None}.
    @ivar owners: the accounts that own it, sorted by folded name.
    @ivar operators: the accounts that moderate it, sorted by folded name.
    @ivar bans: the L{Ban}s, sorted by folded name.
    """

    topic: Optional[str]
    owners: Tuple[str, ...] = ()
    operators: Tuple[str, ...] = ()
    bans: Tuple[Ban, ...] = ()

    def roleOf(self, name: str) -> Optional[str]:
        """
        C{"owner"}, C{"operator"} or L{None}, for C{name} ignoring case.
        """
        key = fold(name)
        if any(fold(owner) == key for owner in self.owners):
            return "owner"
        if any(fold(operator) == key for operator in self.operators):
            return "operator"
        return None

    def banOf(self, name: str) -> Optional[Ban]:
        """
        The L{Ban} of C{name} (ignoring case), or L{None}.
        """
        key = fold(name)
        return next((ban for ban in self.bans if fold(ban.name) == key), None)


@dataclass(frozen=True)
class UserView:
    """
    A user online somewhere in the cluster, as the fan-out sees it
    (L{chatd.interfaces.IDirectoryView}).

    @ivar name: the name as shown.
    @ivar key: the public key (SubjectPublicKeyInfo DER), or L{None}.
    @ivar account: whether it is a registered account (not a guest).
    @ivar rooms: the names of the rooms it is in, sorted.
    @ivar nodes: the other nodes where it has sessions.
    @ivar local: whether it has sessions on this node.
    """

    name: str
    key: Optional[bytes]
    account: bool
    rooms: Tuple[str, ...]
    nodes: FrozenSet[str]
    local: bool


@dataclass(frozen=True)
class RoomView:
    """
    A room this node knows, as the fan-out sees it.

    @ivar name: the name as created.
    @ivar localMembers: the folded names of its members with sessions on this node.
    """

    name: str
    localMembers: FrozenSet[str]
