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
    @ivar history: how many of its latest messages a new member may be given.
    """

    name: str
    passwordHash: Optional[bytes]
    lastTimestamp: int
    history: int = 0


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


# -- devices (issue 13; chatd.core.devices, chatd.store.devices) -----------


@dataclass(frozen=True)
class DeviceList:
    """
    An account's device list as the server stores and hands it out: the
    canonical bytes and the identity key's signature over them, which the
    server checked but clients verify for themselves, and the devices' keys.

    @ivar text: the canonical list bytes (L{chatd.devicelist}); empty when the
        account has no list (a legacy account, a guest).
    @ivar signature: the identity key's RSA-PSS signature over C{text}.
    @ivar devices: C{(device id, SPKI DER)} pairs, in the list's order.
    @ivar version: the list's version, 0 for none.
    @ivar digest: the hex SHA-256 of C{text} (the head's hash), empty for none.
    """

    text: bytes = b""
    signature: bytes = b""
    devices: Tuple[Tuple[str, bytes], ...] = ()
    version: int = 0
    digest: str = ""

    @property
    def head(self) -> Tuple[int, str]:
        """
        The list's head: (version, hex hash); (0, "") for none.
        """
        return (self.version, self.digest)

    def keyOf(self, device: str) -> Optional[bytes]:
        """
        The SPKI DER of device C{device}, or L{None} when the list has no such device.
        """
        return dict(self.devices).get(device)


# An account without a list (a legacy account, a guest), and its head.
NO_DEVICES = DeviceList()


@dataclass(frozen=True)
class PendingDevice:
    """
    A device that logged in with the password and waits to be approved.

    @ivar device: its id.
    @ivar key: its SPKI DER.
    @ivar tag: the approval tag (HMAC of DEVICES.md), 32 bytes.
    @ivar expires: when the request lapses, ms since the epoch.
    """

    device: str
    key: bytes
    tag: bytes
    expires: int


@dataclass(frozen=True)
class StoredMessage:
    """
    One stored message (room or direct), as catch-up reads it back for one
    device.

    @ivar sequence: its store-wide sequence number.
    @ivar room: the room's name, or L{None} for a direct message.
    @ivar peer: for a direct message, the other party (the recipient, or the
        sender when the reader is the recipient); L{None} for a room message.
    @ivar sender: the sender's name.
    @ivar timestamp: the server timestamp, ms since the epoch.
    @ivar envelope: the whole envelope, with the shares added to its maps.
    """

    sequence: int
    room: Optional[str]
    peer: Optional[str]
    sender: str
    timestamp: int
    envelope: bytes
