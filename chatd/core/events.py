# -*- test-case-name: chatd.test.test_events -*-
"""
What happens to the directory of users and rooms, as frozen values.

Every change to the directory (L{chatd.core.directory.Directory}) returns the
events it made; the service tells the local sessions each one concerns and
publishes the ones that happened here to the other nodes of the cluster, which
apply them to their own directories and tell their own sessions.

Each event has one wire form, a L{dict} whose C{"t"} names its kind, the form
nodes have always exchanged through Redis (so that nodes of this version and of
the one before can share a cluster): L{Event.toWire} writes it and L{fromWire}
reads it back. Checking the shape and the types of what another node sent is
the fan-out's (L{chatd.fanout.events}); checking what it means is the core's.
"""

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Dict, Optional, Type

from chatd.e2e import Envelope


class UnknownEvent(ValueError):
    """
    A wire form that is not one of the events below, or lacks one of its fields.
    """


def _wireName(f: Any) -> Optional[str]:
    """
    The key of field C{f} on the wire: its own name unless the field says
    otherwise; L{None} for a field that stays on this node.
    """
    return f.metadata.get("wire", f.name)


def _local() -> Any:
    """
    A field that is not part of the wire form (nor of equality): what this
    node already worked out about an event, so that it need not work it out
    again when applying the event here.
    """
    return field(default=None, compare=False, repr=False, metadata={"wire": None})


@dataclass(frozen=True)
class Event:
    """
    Something that happened to the directory. C{KIND} is the wire's C{"t"}.
    """

    KIND: ClassVar[str] = ""

    def toWire(self) -> Dict[str, Any]:
        """
        @return: the wire form: C{"t"} and one key per field.
        """
        wire = {"t": self.KIND}
        for f in fields(self):
            name = _wireName(f)
            if name is not None:
                wire[name] = getattr(self, f.name)
        return wire


@dataclass(frozen=True)
class UserOnline(Event):
    """
    C{user} has its first session on the publishing node.
    """

    KIND: ClassVar[str] = "online"
    user: str
    key: Optional[bytes]
    account: bool


@dataclass(frozen=True)
class UserOffline(Event):
    """
    C{user} has no session left on the publishing node.
    """

    KIND: ClassVar[str] = "offline"
    user: str


@dataclass(frozen=True)
class Renamed(Event):
    """
    User C{old} is now called C{new}; C{account} says whether it is an account
    (a guest that logs in under its own name is renamed to the same name).
    """

    KIND: ClassVar[str] = "renamed"
    old: str
    new: str
    account: bool


@dataclass(frozen=True)
class KeyChanged(Event):
    """
    C{user} published a new public key.
    """

    KIND: ClassVar[str] = "key"
    user: str
    key: bytes


@dataclass(frozen=True)
class RoomCreated(Event):
    """
    Room C{room} was created (and stored), with a password hash or none,
    letting new members read its C{history} latest messages (a node of the
    version before sends none: 0).
    """

    KIND: ClassVar[str] = "room"
    room: str
    passwordHash: Optional[bytes] = field(metadata={"wire": "password"})
    history: int = 0


@dataclass(frozen=True)
class RoomDropped(Event):
    """
    Room C{room} is gone: nothing kept it once its last member left.
    """

    KIND: ClassVar[str] = "unroom"
    room: str


@dataclass(frozen=True)
class Joined(Event):
    """
    C{user} became a member of C{room}.
    """

    KIND: ClassVar[str] = "joined"
    room: str
    user: str


@dataclass(frozen=True)
class Left(Event):
    """
    C{user} is no longer a member of C{room}.
    """

    KIND: ClassVar[str] = "left"
    room: str
    user: str


class _Sealed:
    """
    An event that carries an envelope: C{envelope} as it travels, and
    C{opened}, the envelope parsed, when this node has parsed it already.
    """

    envelope: bytes
    opened: Optional[Envelope]

    def parsed(self) -> Envelope:
        """
        @return: the envelope, parsed (once on the node where it was sent).
        """
        return self.opened if self.opened is not None else Envelope.parse(self.envelope)


@dataclass(frozen=True)
class RoomMessage(Event, _Sealed):
    """
    C{sender} posted C{envelope} (its bytes) to C{room}, stored at server time
    C{timestamp} (ms).
    """

    KIND: ClassVar[str] = "message"
    room: str
    sender: str
    timestamp: int = field(metadata={"wire": "ts"})
    envelope: bytes
    opened: Optional[Envelope] = _local()
    # Its store-wide sequence number (0: not stored; a node of the version
    # before sends none), which raises the marks of the devices given it.
    sequence: int = field(default=0, metadata={"wire": "seq"})


@dataclass(frozen=True)
class DirectMessage(Event, _Sealed):
    """
    C{sender} sent C{envelope} to C{peer} at server time C{timestamp} (ms),
    stored (C{sequence} above 0) when both are accounts and it came from a
    device session.
    """

    KIND: ClassVar[str] = "direct"
    sender: str
    peer: str
    timestamp: int = field(metadata={"wire": "ts"})
    envelope: bytes
    opened: Optional[Envelope] = _local()
    # Its store-wide sequence number (0: not stored; a node of the version
    # before sends none), which raises the marks of the devices given it.
    sequence: int = field(default=0, metadata={"wire": "seq"})


# -- room moderation (chatd.core.moderation) ---------------------------------


@dataclass(frozen=True)
class Kicked(Event):
    """
    C{by} kicked C{user} out of C{room}, or banned it (C{banned}).

    @ivar removed: whether this node took C{user} out of the room's members
        (it may have been in none).
    """

    KIND: ClassVar[str] = "kicked"
    room: str
    user: str
    by: str
    reason: str
    banned: bool
    removed: bool = _local()


@dataclass(frozen=True)
class Unbanned(Event):
    """
    C{user}'s ban from C{room} was lifted.
    """

    KIND: ClassVar[str] = "unbanned"
    room: str
    user: str


@dataclass(frozen=True)
class RoleChanged(Event):
    """
    C{by} made account C{user} an owner or operator of C{room}, or took its
    role away (C{role} L{None}).
    """

    KIND: ClassVar[str] = "role"
    room: str
    user: str
    by: str
    role: Optional[str]


@dataclass(frozen=True)
class TopicChanged(Event):
    """
    C{by} set C{room}'s topic (empty: none).
    """

    KIND: ClassVar[str] = "topic"
    room: str
    by: str
    topic: str


@dataclass(frozen=True)
class PasswordChanged(Event):
    """
    C{room}'s password hash is C{passwordHash} now (L{None}: no password).
    """

    KIND: ClassVar[str] = "password"
    room: str
    passwordHash: Optional[bytes] = field(metadata={"wire": "password"})


@dataclass(frozen=True)
class RoomDestroyed(Event):
    """
    C{by} destroyed C{room}: nobody is in it any more.

    @ivar members: the users that were in it here.
    """

    KIND: ClassVar[str] = "destroyed"
    room: str
    by: str
    members: Any = _local()


# -- devices (chatd.core.devices) ---------------------------------------------


@dataclass(frozen=True)
class DevicesChanged(Event):
    """
    Account C{user} has a new device list (the identity key's C{signature}
    over C{text}; C{devices} its C{(id, SPKI DER)} pairs, in list order), or
    reset its identity (C{key} the new identity key, else L{None}). Every
    node drops its sessions of devices the list no longer has.
    """

    KIND: ClassVar[str] = "devices"
    user: str
    text: bytes
    signature: bytes
    devices: Any
    key: Optional[bytes]


@dataclass(frozen=True)
class DevicePending(Event):
    """
    A new device C{device} (key C{key}, approval C{tag}, lapsing at
    C{expires} ms) of account C{user} asks to be approved.
    """

    KIND: ClassVar[str] = "pending"
    user: str
    device: str
    key: bytes
    tag: bytes
    expires: int


@dataclass(frozen=True)
class Approval(Event):
    """
    The identity device of C{user} sends C{reply} to its pending device
    C{device} (relayed unread).
    """

    KIND: ClassVar[str] = "approval"
    user: str
    device: str
    reply: bytes



@dataclass(frozen=True)
class ShareWanted(Event):
    """
    Account C{newcomer} joined C{room} (history setting C{history}): the
    members named in C{members} are asked, one device session each, to
    share its latest messages with it.
    """

    KIND: ClassVar[str] = "share-wanted"
    room: str
    newcomer: str
    history: int
    members: Any

# -- file transfers across nodes (chatd.core.remotefiles) -------------------


@dataclass(frozen=True)
class FileEvent(Event):
    """
    A step of a file transfer between nodes: C{node} is the node that is to
    act on it, C{id} the transfer's id on the sender's node, C{user} the
    recipient. It changes no directory: L{chatd.core.remotefiles} acts on it.
    """

    node: str
    id: int
    user: str


@dataclass(frozen=True)
class FileOffer(FileEvent):
    KIND: ClassVar[str] = "file-offer"
    sender: str
    targetKind: int
    target: str
    size: int
    chunks: int
    chunkSize: int
    envelope: bytes


@dataclass(frozen=True)
class FileChunk(FileEvent):
    KIND: ClassVar[str] = "file-chunk"
    index: int
    data: bytes


@dataclass(frozen=True)
class FileDone(FileEvent):
    KIND: ClassVar[str] = "file-done"


@dataclass(frozen=True)
class FileCancelled(FileEvent):
    KIND: ClassVar[str] = "file-cancelled"
    reason: str


@dataclass(frozen=True)
class FileAnswer(FileEvent):
    KIND: ClassVar[str] = "file-answer"
    accept: bool


@dataclass(frozen=True)
class FileAck(FileEvent):
    KIND: ClassVar[str] = "file-ack"
    index: int


@dataclass(frozen=True)
class FileLeave(FileEvent):
    """
    The recipient cancelled (C{cancel}) or is gone.
    """

    KIND: ClassVar[str] = "file-leave"
    reason: str
    cancel: bool


KINDS: Dict[str, Type[Event]] = {
    kind.KIND: kind for kind in (UserOnline, UserOffline, Renamed, KeyChanged, RoomCreated,
                                 RoomDropped, Joined, Left, RoomMessage, DirectMessage,
                                 Kicked, Unbanned, RoleChanged, TopicChanged, PasswordChanged,
                                 RoomDestroyed, DevicesChanged, DevicePending, Approval,
                                 ShareWanted,
                                 FileOffer, FileChunk, FileDone, FileCancelled,
                                 FileAnswer, FileAck, FileLeave)}


def fromWire(wire: Dict[str, Any]) -> Event:
    """
    Read an event's wire form. Keys it does not know are ignored, so that a
    node of a newer version may add some.

    @raise UnknownEvent: for an unknown C{"t"} or a missing field.
    """
    kind = KINDS.get(wire.get("t"))  # type: ignore[arg-type]
    if kind is None:
        raise UnknownEvent("an event of unknown kind %r" % (str(wire.get("t"))[:40],))
    values = {}
    for f in fields(kind):
        name = _wireName(f)
        if name is None:
            continue
        if name not in wire and f.default is not MISSING:
            # A field added since the version before, which may not send it.
            continue
        if name not in wire:
            raise UnknownEvent("a %s event has no %r" % (kind.KIND, name))
        values[f.name] = wire[name]
    return kind(**values)
