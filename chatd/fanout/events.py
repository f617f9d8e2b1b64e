# -*- test-case-name: chatd.test.test_fanout,chatd.test.test_robustness -*-
"""
The events nodes of a cluster send each other through Redis, as JSON: how they
are written, and the one strict reader every message from another node goes
through before anything acts on it.

A message on a channel is a JSON object::

    {"n": node, "i": incarnation, "s": sequence, "e": event}   an event
    {"n": node, "c": "sync", "u": {folded name: entry}}         a node's whole state
    {"n": node, "c": "bye"}                                      a node leaving

An event is an object with a string C{"t"} naming its kind and the fields
L{EVENTS} lists for that kind; a node's user hash and C{sync} hold one
L{ENTRY} per user. Bytes travel as C{{"$bytes": base64}} (L{encodeValue}).

The reader checks the shape and the type of every field, so that the core's
handlers, which index and compare those fields, meet only what they expect; a
message of any other shape raises L{MalformedEvent}, which the fan-out logs and
drops. Fields an event does not list are ignored, so that a node of a newer
version may add one. Whether the names, keys and envelopes inside are
acceptable is for the core to decide, as it does for a client's.
"""

import base64
import binascii
import json
from typing import Any, Dict, Optional, Tuple, Union


class MalformedEvent(ValueError):
    """
    A message from another node that does not have the shape of one chatd sends.
    """


def encodeValue(value: Any) -> Any:
    """
    Make a value JSON can carry: L{bytes} become C{{"$bytes": base64}}; a dict
    with a key starting with C{$} is wrapped as C{{"$dict": ...}} so that it
    cannot be mistaken for a tag. Tuples become lists.
    """
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        inner = {key: encodeValue(item) for key, item in value.items()}
        if any(key.startswith("$") for key in value):
            return {"$dict": inner}
        return inner
    if isinstance(value, (list, tuple)):
        return [encodeValue(item) for item in value]
    return value


def decodeValue(value: Any) -> Any:
    """
    Undo L{encodeValue}.

    @raise MalformedEvent: on a C{$bytes} tag that does not hold base64, or a
        C{$dict} tag that does not hold an object.
    """
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            data = value["$bytes"]
            if not isinstance(data, str):
                raise MalformedEvent("$bytes holds %s, not base64" % (type(data).__name__,))
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedEvent("$bytes holds something other than base64") from None
        if len(value) == 1 and "$dict" in value:
            value = value["$dict"]
            if not isinstance(value, dict):
                raise MalformedEvent("$dict holds %s, not an object" % (type(value).__name__,))
        return {key: decodeValue(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decodeValue(item) for item in value]
    return value


def dumps(value: Any) -> str:
    return _COMPACT.encode(encodeValue(value))


# Made once: json.dumps with separators makes an encoder every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _parse(text):
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedEvent("JSON nested too deeply") from None
    except ValueError as e:
        raise MalformedEvent("not JSON: %s" % (e,)) from None


def loads(text: Union[str, bytes]) -> Any:
    """
    Undo L{dumps}.

    @raise MalformedEvent: unless C{text} is JSON with well-formed tags.
    """
    return _shallow(decodeValue, _parse(text))


def _shallow(decode, value):
    """
    Apply C{decode}, which recurses, to C{value}: JSON nested deeper than
    Python recurses is malformed too.
    """
    try:
        return decode(value)
    except RecursionError:
        raise MalformedEvent("JSON nested too deeply") from None


# -- the shapes of events ----------------------------------------------------

def _isText(value):
    return isinstance(value, str)


def _isKey(value):
    return value is None or isinstance(value, bytes)


def _isFlag(value):
    return isinstance(value, bool)


def _isTimestamp(value):
    return type(value) is int and 0 <= value < 2**63


def _isBytes(value):
    return isinstance(value, bytes)


def _isNames(value):
    return isinstance(value, list) and all(map(_isText, value))


def _isOptionalText(value):
    return value is None or isinstance(value, str)


def _isCount(value):
    return type(value) is int and 0 <= value < 2**63


def _isTransferId(value):
    return type(value) is int and 0 <= value < 2**32


def _isDevices(value):
    """
    A device list's C{(id, SPKI DER)} pairs, as JSON carries them (lists).
    """
    return isinstance(value, list) and len(value) <= 16 and all(
        isinstance(pair, list) and len(pair) == 2 and _isText(pair[0]) and _isBytes(pair[1])
        for pair in value)


# What every file event carries (L{chatd.core.remotefiles}): the node that is
# to act on it, the transfer's id on the sender's node, and the recipient.
_FILE = {"node": _isText, "id": _isTransferId, "user": _isText}


# Each kind of event and the fields the core reads from it.
EVENTS = {
    "online": {"user": _isText, "key": _isKey, "account": _isFlag},
    "offline": {"user": _isText},
    "renamed": {"old": _isText, "new": _isText, "account": _isFlag},
    "key": {"user": _isText, "key": _isBytes},
    "room": {"room": _isText, "password": _isKey},
    "unroom": {"room": _isText},
    "joined": {"room": _isText, "user": _isText},
    "left": {"room": _isText, "user": _isText},
    "message": {"room": _isText, "sender": _isText, "ts": _isTimestamp, "envelope": _isBytes},
    "direct": {"sender": _isText, "peer": _isText, "ts": _isTimestamp, "envelope": _isBytes},
    # Moderation (chatd.core.moderation).
    "kicked": {"room": _isText, "user": _isText, "by": _isText, "reason": _isText,
               "banned": _isFlag},
    "unbanned": {"room": _isText, "user": _isText},
    "role": {"room": _isText, "user": _isText, "by": _isText, "role": _isOptionalText},
    "topic": {"room": _isText, "by": _isText, "topic": _isText},
    "password": {"room": _isText, "password": _isKey},
    "destroyed": {"room": _isText, "by": _isText},
    # Devices (chatd.core.devices).
    "devices": {"user": _isText, "text": _isBytes, "signature": _isBytes,
                "devices": _isDevices, "key": _isKey},
    "pending": {"user": _isText, "device": _isText, "key": _isBytes, "tag": _isBytes,
                "expires": _isCount},
    "approval": {"user": _isText, "device": _isText, "reply": _isBytes},
    "share-wanted": {"room": _isText, "newcomer": _isText, "history": _isCount,
                     "members": _isNames},
    "file-offer": dict(_FILE, sender=_isText, targetKind=_isCount, target=_isText, size=_isCount,
                       chunks=_isCount, chunkSize=_isCount, envelope=_isBytes),
    "file-chunk": dict(_FILE, index=_isCount, data=_isBytes),
    "file-done": _FILE,
    "file-cancelled": dict(_FILE, reason=_isText),
    "file-answer": dict(_FILE, accept=_isFlag),
    "file-ack": dict(_FILE, index=_isCount),
    "file-leave": dict(_FILE, reason=_isText, cancel=_isFlag),
}

# One user in a node's hash and in its C{sync}.
ENTRY = {"user": _isText, "key": _isKey, "account": _isFlag, "rooms": _isNames}


def _check(value, fields, what):
    if not isinstance(value, dict):
        raise MalformedEvent("%s is %s, not an object" % (what, type(value).__name__))
    for name, valid in fields.items():
        if name not in value:
            raise MalformedEvent("%s has no %r" % (what, name))
        if not valid(value[name]):
            raise MalformedEvent("%s has a bad %r" % (what, name))
    return value


def decodeEvent(value: Any) -> Dict[str, Any]:
    """
    An event as L{encodeValue} left it, decoded and checked.

    @raise MalformedEvent: unless it has a known kind and that kind's fields.
    """
    event = decodeValue(value)
    kind = event.get("t") if isinstance(event, dict) else None
    if not isinstance(kind, str) or kind not in EVENTS:
        raise MalformedEvent("an event of unknown kind %r" % (str(kind)[:40],))
    return _check(event, EVENTS[kind], "a %s event" % (kind,))


def decodeEntry(value: Any) -> Dict[str, Any]:
    """
    One user's entry in a node's hash or C{sync}, decoded and checked.

    @raise MalformedEvent: unless it has the fields of L{ENTRY}.
    """
    return _check(_shallow(decodeValue, value), ENTRY, "a user entry")


def loadEntry(text: Union[str, bytes]) -> Dict[str, Any]:
    """
    One user's entry as a node's hash holds it: L{dumps} of the entry.

    @raise MalformedEvent: unless it is JSON with the fields of L{ENTRY}.
    """
    return decodeEntry(_parse(text))


def decodeEntries(value: Any) -> Dict[str, Dict[str, Any]]:
    """
    The C{"u"} of a C{sync}: folded name to entry.

    @raise MalformedEvent: unless every entry is well-formed.
    """
    if not isinstance(value, dict):
        raise MalformedEvent("a sync's users are not an object")
    return {key: decodeEntry(entry) for key, entry in value.items()}


class Message:
    """
    One well-formed message from a node.

    @ivar node: the node id that sent it.
    @ivar control: C{"sync"}, C{"bye"}, or L{None} for an event.
    @ivar source: C{(node, incarnation)} of an event, else L{None}.
    @ivar sequence: an event's sequence number, else L{None}.
    @ivar event: the decoded event, else L{None}.
    @ivar entries: a C{sync}'s decoded entries, else L{None}.
    """

    def __init__(self, node: str, control: Optional[str] = None,
                 source: Optional[Tuple[str, str]] = None, sequence: Optional[int] = None,
                 event: Optional[Dict[str, Any]] = None,
                 entries: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        self.node = node
        self.control = control
        self.source = source
        self.sequence = sequence
        self.event = event
        self.entries = entries


def decodeMessage(data: Union[str, bytes]) -> "Message":
    """
    Read one message from a channel.

    @type data: L{str} or L{bytes}, as the subscriber connection hands it over.
    @rtype: L{Message}
    @raise MalformedEvent: for anything but one of the shapes the module
        docstring lists, with a well-formed event or entries.
    """
    return _shallow(_decodeMessage, data)


def _decodeMessage(data):
    message = _parse(data)
    if not isinstance(message, dict):
        raise MalformedEvent("a message is a JSON object")
    node = message.get("n")
    if not isinstance(node, str):
        raise MalformedEvent("a message needs a string node id 'n'")
    control = message.get("c")
    if control == "sync":
        return Message(node, control, entries=decodeEntries(message.get("u")))
    if control == "bye":
        return Message(node, control)
    if control is not None:
        raise MalformedEvent("unknown control %r" % (str(control)[:40],))
    incarnation, sequence = message.get("i"), message.get("s")
    if not isinstance(incarnation, str) or type(sequence) is not int:
        raise MalformedEvent("an event needs a string 'i' and an integer 's'")
    return Message(node, source=(node, incarnation), sequence=sequence,
                   event=decodeEvent(message.get("e")))
