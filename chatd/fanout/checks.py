# -*- test-case-name: chatd.test.test_cluster_outage -*-
"""
Events from other nodes are checked as a client's requests are, before the
core mirrors them: whoever can publish in Redis must not be able to crash a
node, smuggle a name or key no client could register, or pass off a message as
sent by someone whose key did not sign it.

An event that fails is dropped and logged: the first of each kind with the
reason, the later ones only counted (a node publishing garbage would otherwise
fill the log).
"""

from typing import Any, Callable, Dict, Optional

from twisted.logger import Logger

from chatd import e2e
from chatd.errors import ChatError
from chatd.names import fold, isRoomName, isUserName

log = Logger()

# Server timestamps are signed 64-bit in the database.
_MAX_TIMESTAMP = 2**63 - 1
# A bcrypt hash is 60 bytes; anything much longer is not one.
_MAX_PASSWORD_HASH = 128


def _name(value):
    """a user name"""
    return isinstance(value, str) and isUserName(value)


def _text(value):
    """text of at most 512 bytes"""
    return isinstance(value, str) and len(value.encode("utf-8", "replace")) <= 512


def _bool(value):
    """true or false"""
    return isinstance(value, bool)


def _role(value):
    """a role"""
    return value in (None, "owner", "operator")


def _hash(value):
    """a password hash"""
    return value is None or isinstance(value, bytes) and 0 < len(value) <= _MAX_PASSWORD_HASH


# The moderation events (chatd.core.moderation): besides the room, each
# one's fields and their checks.
_MODERATION = {
    "kicked": [("user", _name), ("by", _name), ("reason", _text), ("banned", _bool)],
    "unbanned": [("user", _name)],
    "role": [("user", _name), ("by", _name), ("role", _role)],
    "topic": [("by", _name), ("topic", _text)],
    "password": [("password", _hash)],
    "destroyed": [("by", _name)],
}


class InvalidEvent(Exception):
    """
    An event from another node that a client could not have caused.
    """


def _require(valid, what):
    if not valid:
        raise InvalidEvent(what)


def _user(event, field):
    name = event.get(field)
    _require(isinstance(name, str) and isUserName(name), "%s is not a user name" % (field,))
    return name


def _room(event, field="room"):
    name = event.get(field)
    _require(isinstance(name, str) and isRoomName(name), "%s is not a room name" % (field,))
    return name


def _key(value, optional):
    if value is None and optional:
        return
    _require(isinstance(value, bytes), "key is not bytes")
    try:
        e2e.loadPublicKey(value)
    except ChatError as e:
        raise InvalidEvent(str(e))


def _flag(event, field):
    _require(isinstance(event.get(field), bool), "%s is not true or false" % (field,))


def _timestamp(event):
    ts = event.get("ts")
    _require(type(ts) is int and 0 < ts <= _MAX_TIMESTAMP, "ts is not a timestamp")
    # A stored message's sequence (a node of the version before sends none).
    seq = event.get("seq", 0)
    _require(type(seq) is int and 0 <= seq <= _MAX_TIMESTAMP, "seq is not a sequence number")


def _envelope(event, keyOf, sender, toKind, toName, domain=e2e.MESSAGE):
    """
    Parse the event's envelope and check it as the sender's node should have:
    from the sender, to the target, signed with the key the sender has now.
    """
    data = event.get("envelope")
    _require(isinstance(data, bytes), "envelope is not bytes")
    try:
        envelope = e2e.Envelope.parse(data)
    except ChatError as e:
        raise InvalidEvent(str(e))
    _require(envelope.sender == sender, "envelope is not from the sender")
    _require(envelope.toKind == toKind and fold(envelope.toName) == fold(toName),
             "envelope is addressed elsewhere")
    key = keyOf(sender)
    _require(key is not None, "the sender has no key here")
    _require(envelope.verifySignature(key, domain),
             "envelope signature does not verify with the sender's current key")
    return envelope


def checkEvent(event: Any, keyOf: Callable[[str], Optional[bytes]]) -> None:
    """
    Check one event from another node.

    @param event: the decoded event, a dict with its kind in C{"t"}.
    @param keyOf: gives the current key of a user online (by name, in any
        case), or L{None}: signatures are checked with it.
    @raise InvalidEvent: naming what is wrong.
    """
    _require(isinstance(event, dict), "not an object")
    kind = event.get("t")
    if kind == "online":
        _user(event, "user")
        _key(event.get("key"), optional=True)
        _flag(event, "account")
    elif kind == "offline":
        _user(event, "user")
    elif kind == "renamed":
        _user(event, "old")
        _user(event, "new")
        _flag(event, "account")
    elif kind == "key":
        _user(event, "user")
        _key(event.get("key"), optional=False)
    elif kind == "room":
        _room(event)
        _require(_hash(event.get("password")), "password is not a hash")
        history = event.get("history", 0)
        _require(type(history) is int and 0 <= history <= 500,
                 "history is not a setting from 0 to 500")
    elif kind == "unroom":
        _room(event)
    elif kind in ("joined", "left"):
        _room(event)
        _user(event, "user")
    elif kind == "message":
        room = _room(event)
        _timestamp(event)
        _envelope(event, keyOf, _user(event, "sender"), "room", room)
    elif kind in _MODERATION:
        _room(event)
        for field, check in _MODERATION[kind]:
            _require(check(event.get(field)), "%s is not %s" % (field, check.__doc__))
    elif kind == "direct":
        peer = _user(event, "peer")
        _timestamp(event)
        _envelope(event, keyOf, _user(event, "sender"), "user", peer)
    elif kind == "share-wanted":
        _room(event)
        _user(event, "newcomer")
        history = event.get("history")
        _require(type(history) is int and 0 < history <= 500,
                 "history is not a setting from 1 to 500")
        for name in event.get("members") or ():
            _user({"user": name}, "user")
    elif kind in ("devices", "pending", "approval"):
        # The lists and replies are the clients' to verify; the core checks
        # a list against the account's head before storing it.
        _user(event, "user")
        if kind == "devices":
            _key(event.get("key"), optional=True)
    elif isinstance(kind, str) and kind.startswith("file-"):
        _fileEvent(event, keyOf)
    else:
        raise InvalidEvent("unknown kind of event")


def _fileEvent(event, keyOf):
    """
    A file event (L{chatd.core.remotefiles}): an offer's file envelope is from
    its sender, to its target, signed for files with the sender's current key.
    """
    _user(event, "user")
    if event["t"] != "file-offer":
        return
    sender = _user(event, "sender")
    kind = event.get("targetKind")
    _require(kind in (0, 1), "targetKind is not 0 (room) or 1 (user)")
    target = _room(event, "target") if kind == 0 else _user(event, "target")
    _require(0 < event.get("chunkSize", 0) and 0 < event.get("chunks", 0),
             "an offer of no chunks")
    _envelope(event, keyOf, sender, "room" if kind == 0 else "user", target, e2e.FILE)


def checkEntry(entry: Any) -> None:
    """
    Check one user's entry in another node's hash or C{sync}: C{user},
    C{key}, C{account} and C{rooms}, as the events that made it would be.

    @raise InvalidEvent: naming what is wrong.
    """
    _require(isinstance(entry, dict), "entry is not an object")
    checkEvent({"t": "online", "user": entry.get("user"), "key": entry.get("key"),
                "account": entry.get("account")}, lambda name: None)
    rooms = entry.get("rooms")
    _require(isinstance(rooms, list), "rooms is not a list")
    for name in rooms:
        _room({"room": name})


class Dropped:
    """
    Counts the events dropped per kind, logging the first of each.
    """

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}

    def __call__(self, node: str, kind: object, reason: str) -> None:
        kind = kind if isinstance(kind, str) else repr(kind)[:40]
        count = self.counts[kind] = self.counts.get(kind, 0) + 1
        if count == 1:
            log.warn("dropping an invalid {kind!r} event from node {node}: {reason} "
                     "(further invalid {kind!r} events are only counted)",
                     kind=kind, node=node, reason=reason)
