# -*- test-case-name: chatd.test.test_jsonwire -*-
"""
The JSON vocabulary of the text and WebSocket doors, without I/O.

Both doors speak the objects docs/protocol.rst describes: the WebSocket door sends
them as text frames, the text door after C{OK::}, C{ERR::} or C{EVT::}. Writing
each object once, here, keeps the two doors from drifting apart.

Everything that leaves here is compact JSON as ASCII L{bytes}: names and
messages are escaped (C{ensure_ascii}), so that a stray lone surrogate or a
newline in a name can neither break the UTF-8 of a frame nor end a text line.
Envelopes are the exception: the core hands them over as UTF-8 JSON bytes
already cut down to the reader, and they are spliced in as they are, because
re-parsing and re-dumping an envelope per reader would dominate fan-out.

Conventions shared by every object:
    - every public key is PEM SubjectPublicKeyInfo (L{derToPem});
    - every timestamp is ISO 8601 UTC with exactly three fractional digits and
      C{Z} (L{formatTimestamp});
    - a response to a request that carried C{"id"} carries the same value, right
      after C{"type"}; events never carry one.
"""

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from chatd.errors import BadRequest, Status
from chatd.protocols.outbox import chain

PROTOCOL_VERSION = 1

_PEM_HEADER = "-----BEGIN PUBLIC KEY-----"
_PEM_FOOTER = "-----END PUBLIC KEY-----"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z", re.ASCII)
# Timestamps are stored as signed 64-bit integers (SQLite, PostgreSQL BIGINT).
_MAX_TIMESTAMP = 2**63 - 1

ERROR_CODES = {
    Status.ERROR: "bad_request",
    Status.RATE_LIMITED: "rate_limited",
    Status.AUTH_REQUIRED: "auth_required",
    Status.FORBIDDEN: "forbidden",
    Status.NOT_FOUND: "not_found",
    Status.CONFLICT: "conflict",
    Status.TOO_LARGE: "too_large",
    Status.STALE_RECIPIENTS: "stale_recipients",
    Status.UNAVAILABLE: "unavailable",
}


class _NoId:
    """
    The type of L{NO_ID}: a request without C{"id"}, as opposed to one whose
    C{"id"} is C{null}, which is echoed like any other value.
    """

    def __repr__(self):
        return "NO_ID"


NO_ID = _NoId()


# -- values ---------------------------------------------------------------

@lru_cache(maxsize=1024)
def derToPem(der):
    """
    A public key as the PEM text every JSON object carries.

    Cached: the same few keys go out in every member list and key event.

    @type der: L{bytes}, SubjectPublicKeyInfo DER.
    @rtype: L{str}, lines of 64 characters and a final newline, the form
        C{cryptography} and OpenSSL write.
    """
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([_PEM_HEADER] + lines + [_PEM_FOOTER]) + "\n"


def pemToDer(text):
    """
    The DER inside a PEM public key, unchanged, so that key ids computed by the
    client on its own DER match the server's.

    Only the armour and base64 are checked here; the core checks the key.

    @type text: L{str}
    @rtype: L{bytes}
    @raise BadRequest: unless C{text} is one C{PUBLIC KEY} PEM block.
    """
    text = text.strip()
    if not (text.startswith(_PEM_HEADER) and text.endswith(_PEM_FOOTER)):
        raise BadRequest("publicKey must be a PEM block '%s' ... '%s'"
                         % (_PEM_HEADER, _PEM_FOOTER))
    body = "".join(text[len(_PEM_HEADER):-len(_PEM_FOOTER)].split())
    der = decodeBase64(body, "publicKey")
    if not der:
        raise BadRequest("publicKey: the PEM block is empty")
    return der


def decodeBase64(text, what):
    """
    Decode standard padded base64, refusing anything else.

    @param what: names the value in the refusal.
    @raise BadRequest: when C{text} is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise BadRequest("%s must be standard base64" % (what,)) from None


def encodeBase64(data):
    """
    Standard padded base64 as text.
    """
    return base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=256)
def formatTimestamp(ms):
    """
    A server timestamp (ms since the epoch) as ISO 8601 UTC, such as
    C{2023-11-14T22:13:20.000Z}.

    Cached: one message goes out to every reader with the same timestamp.
    """
    t = _EPOCH + timedelta(milliseconds=ms)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 1000)


def parseTimestamp(text):
    """
    The inverse of L{formatTimestamp}, exact to the millisecond.

    @raise BadRequest: unless C{text} has exactly L{formatTimestamp}'s form and
        names a real instant, not before the epoch.
    """
    match = _ISO.fullmatch(text)
    if match is None:
        raise BadRequest("timestamps look like 2023-11-14T22:13:20.000Z, not %r"
                         % (text[:40],))
    year, month, day, hour, minute, second, ms = map(int, match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, ms * 1000,
                          tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest("%r is not a date and time" % (text,)) from None
    value = (moment - _EPOCH) // _MILLISECOND
    if value < 0:
        raise BadRequest("%r is before 1970" % (text,))
    return value


def parseBefore(value):
    """
    A C{before} bound for history: an ISO timestamp or integer milliseconds.

    @return: milliseconds since the epoch (0: no bound).
    @raise BadRequest: for anything else, or a negative or out-of-range number.
    """
    if isinstance(value, str):
        return parseTimestamp(value)
    if type(value) is int and 0 <= value <= _MAX_TIMESTAMP:
        return value
    raise BadRequest("before must be an ISO 8601 timestamp or milliseconds from 0 to %d"
                     % (_MAX_TIMESTAMP,))


def errorCode(status):
    """
    The name section 4 gives a status, such as C{not_found} for 0x06.
    """
    return ERROR_CODES[Status(status)]


# -- building objects -------------------------------------------------------

def dumps(value):
    """
    Compact JSON as ASCII bytes.
    """
    return _COMPACT.encode(value).encode("ascii")


# Made once: json.dumps with separators makes an encoder every call, which
# cost eight times the encoding of a name, twice per reader of a message.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _response(kind, requestId, **fields):
    obj = {"type": kind}
    if requestId is not NO_ID:
        obj["id"] = requestId
    obj.update(fields)
    return dumps(obj)


def _event(kind, **fields):
    return dumps({"type": kind, **fields})


def listObject(devices):
    """
    A device list (protocol version 3: anything with C{text}, C{signature} and
    C{devices}, the C{(id, SPKI DER)} pairs) as its JSON object; C{text} and
    C{signature} are empty for a user without a list.
    """
    return {"text": encodeBase64(devices.text), "signature": encodeBase64(devices.signature),
            "devices": [{"id": device, "publicKey": derToPem(key)}
                        for device, key in devices.devices]}


def _members(pairs, guests, devices=None):
    """
    C{(name, DER key)} pairs as member objects, each saying whether it is one
    of C{guests} (names without an account), and, for a device session, with
    its list from C{devices} (name -> list).
    """
    members = [{"userId": name, "publicKey": derToPem(key), "guest": name in guests}
               for name, key in pairs]
    if devices is not None:
        for member in members:
            member["devices"] = listObject(devices[member["userId"]])
    return members


def welcome(name):
    """
    The text door's greeting, before any request: the guest name it was given.
    """
    return _event("welcome", name=name, protocol=PROTOCOL_VERSION)


def challenge(value, requestId=NO_ID):
    return _response("challenge", requestId, challenge=encodeBase64(value))


def registered(userId, requestId=NO_ID):
    return _response("registered", requestId, userId=userId)


def authenticated(userId, requestId=NO_ID):
    return _response("authenticated", requestId, userId=userId)


def joined(roomId, members, requestId=NO_ID, *, guests, devices=None):
    """
    @param members: C{(name, DER key)} pairs, as the core gives them: its
        L{chatd.core.moderation.JoinAnswer} also has the room's C{topic},
        added when the room has one, and C{history} setting, added for a
        device session.
    @param guests: the names among them that are guests.
    @param devices: for a device session, each member's list by name.
    """
    fields = {"roomId": roomId, "members": _members(members, guests, devices)}
    topic = getattr(members, "topic", None)
    if topic:
        fields["topic"] = topic
    if devices is not None:
        fields["history"] = getattr(members, "history", 0)
    return _response("joined", requestId, **fields)


def left(roomId, requestId=NO_ID):
    return _response("left", requestId, roomId=roomId)


def sentToRoom(roomId, timestamp, requestId=NO_ID):
    return _response("sent", requestId, roomId=roomId, timestamp=formatTimestamp(timestamp))


def sentToUser(to, timestamp, requestId=NO_ID):
    return _response("sent", requestId, to=to, timestamp=formatTimestamp(timestamp))


def _historyRow(sender, timestamp, envelope):
    return b"".join((b'{"userId":', dumps(sender), b',"timestamp":"',
                     formatTimestamp(timestamp).encode("ascii"), b'","envelope":',
                     envelope, b"}"))


def history(roomId, rows, requestId=NO_ID, budget=None):
    """
    A page of history, oldest first.

    @param rows: C{(sender, timestamp, envelope)} triples, oldest first, each
        envelope UTF-8 JSON bytes already cut down to the reader.
    @param budget: the most bytes the object may take, or L{None}. When the rows
        do not fit, the oldest are left out, so that paging on with C{before}
        set to the oldest row returned loses nothing.
    """
    head = _response("history", requestId, roomId=roomId)[:-1] + b',"messages":['
    tail = b"]}"
    encoded = [_historyRow(*row) for row in rows]
    first = 0
    if budget is not None:
        size = len(head) + len(tail) + sum(map(len, encoded)) + max(0, len(encoded) - 1)
        while size > budget and first < len(encoded):
            size -= len(encoded[first]) + (1 if first < len(encoded) - 1 else 0)
            first += 1
    return head + b",".join(encoded[first:]) + tail


def rooms(names, requestId=NO_ID):
    return _response("rooms", requestId, rooms=list(names))


def users(names, requestId=NO_ID, *, guests):
    """
    The answer to C{list_users}: the names, and apart those of them that are
    C{guests} (so that the list stays the list of names it always was).
    """
    names = list(names)
    return _response("users", requestId, users=names,
                     guests=[name for name in names if name in guests])


def keys(members, requestId=NO_ID, *, guests, devices=None):
    return _response("keys", requestId, members=_members(members, guests, devices))


def keySet(requestId=NO_ID):
    return _response("key_set", requestId)


def pong(requestId=NO_ID):
    return _response("pong", requestId)


def created(roomId, requestId=NO_ID):
    return _response("created", requestId, roomId=roomId)


def switched(roomId, requestId=NO_ID):
    return _response("switched", requestId, roomId=roomId)


def bye(requestId=NO_ID):
    return _response("bye", requestId)


def commandList(commands, requestId=NO_ID):
    """
    The text door's answer to C{/help}: C{commands} is a list of
    C{{"usage", "what"}}.
    """
    return _response("help", requestId, commands=commands)


def renamed(old, new, requestId=NO_ID, *, guest):
    """
    The RENAMED event, and the text door's answer to C{/nick}: the same object.

    @param guest: whether C{new} is a guest.
    """
    return _response("renamed", requestId, old=old, new=new, guest=guest)


def error(status, message, members=None, requestId=NO_ID, guests=(), devices=None):
    """
    A refusal: C{{"type": "error", "code", "message"}}, with the current
    C{members} for C{stale_recipients} (C{guests} the names among them that are
    guests, C{devices} their lists for a device session).
    """
    fields = {"code": errorCode(status), "message": message}
    if status == Status.STALE_RECIPIENTS:
        fields["members"] = _members(members, guests, devices)
    return _response("error", requestId, **fields)


def staleRecipients(message, members, *, guests, devices=None):
    """
    The text of the text door's C{ERR::09::} line: the message and the members
    to re-encrypt for.
    """
    return dumps({"message": message, "members": _members(members, guests, devices)})


def chatMessage(roomId, userId, timestamp, envelope):
    """
    The event of a room message; C{envelope} is spliced in as given (as pieces,
    for an L{chatd.cut.Cut}: see L{chain}).
    """
    return chain(b'{"type":"chat_message","userId":', dumps(userId),
                 b',"roomId":', dumps(roomId), b',"envelope":', envelope,
                 b',"timestamp":"', formatTimestamp(timestamp).encode("ascii"), b'"}')


def directMessage(userId, timestamp, envelope):
    """
    The event of a direct message; C{envelope} is spliced in as given (as
    pieces, for an L{chatd.cut.Cut}: see L{chain}).
    """
    return chain(b'{"type":"dm","userId":', dumps(userId), b',"envelope":', envelope,
                 b',"timestamp":"', formatTimestamp(timestamp).encode("ascii"), b'"}')


def userJoined(roomId, userId, publicKey, guest, devices=None):
    """
    @param devices: for a device session, the user's device list.
    """
    fields = {"userId": userId, "roomId": roomId, "publicKey": derToPem(publicKey),
              "guest": guest}
    if devices is not None:
        fields["devices"] = listObject(devices)
    return _event("user_joined", **fields)


def userLeft(roomId, userId):
    return _event("user_left", userId=userId, roomId=roomId)


def keyChanged(userId, publicKey, guest, devices=None):
    """
    @param devices: for a device session, the user's device list.
    """
    fields = {"userId": userId, "publicKey": derToPem(publicKey), "guest": guest}
    if devices is not None:
        fields["devices"] = listObject(devices)
    return _event("key_changed", **fields)


def warning(code, message):
    return _event("warning", code=code, message=message)


def fileOk(transferId, requestId=NO_ID):
    """
    The answer to every file request that succeeded: C{file_offer} (with the
    new transfer's id), C{file_answer}, C{file_chunk}, C{file_ack},
    C{file_done} and C{file_cancel}.
    """
    return _response("file_ok", requestId, transferId=transferId)


def fileOffered(transferId, sender, toRoom, target, size, chunks, chunkSize, envelope):
    """
    A file offered to this reader, in a room (C{roomId}) or to it (C{to});
    C{envelope}, the file envelope already cut for the reader, is spliced in.
    """
    head = dumps({"type": "file_offered", "transferId": transferId, "from": sender,
                  ("roomId" if toRoom else "to"): target, "size": size, "chunks": chunks,
                  "chunkSize": chunkSize})
    return head[:-1] + b',"envelope":' + envelope + b"}"


def fileStart(transferId, accepted, window):
    return _event("file_start", transferId=transferId, accepted=accepted, window=window)


def fileChunk(transferId, index, data):
    return _event("file_chunk", transferId=transferId, index=index, data=encodeBase64(data))


def fileNext(transferId, limit):
    return _event("file_next", transferId=transferId, limit=limit)


def fileDone(transferId):
    return _event("file_done", transferId=transferId)


def fileCancel(transferId, reason):
    return _event("file_cancel", transferId=transferId, reason=reason)
