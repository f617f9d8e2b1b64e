# -*- test-case-name: chatd.test.test_jsonwire -*-
"""
Parsing the JSON doors' requests, strictly, without I/O.

The other half of L{chatd.protocols.jsonwire}: that module builds the objects
the server sends, this one checks and converts the objects it receives (one
L{_Field} per field kind, L{REQUESTS} for every request type, L{parseRequest}).
It is its own module because refusing bad input is a different job from
writing answers, and the two halves together outgrew one module.
"""

import json

from chatd.errors import BadRequest
from chatd.protocols.jsonwire import NO_ID, decodeBase64, dumps, parseBefore, pemToDer


class MalformedRequest(BadRequest):
    """
    A WebSocket message that is not a well-formed request (bad_request).

    @ivar requestId: the request's C{"id"} when it got far enough to have one,
        so that even this refusal can be matched to its request.
    """

    def __init__(self, message, requestId=NO_ID):
        BadRequest.__init__(self, message)
        self.requestId = requestId


def _uniqueObject(pairs):
    """
    A C{json} object hook refusing duplicate keys, which different readers of
    one object would resolve differently.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedRequest("duplicate key %r" % (key[:40],))
            seen.add(key)
    return obj


def _refuseConstant(name):
    """
    A C{json} hook refusing C{NaN} and C{Infinity}, which Python accepts but
    JSON does not have.
    """
    raise MalformedRequest("%s is not JSON" % (name,))


# Made once: json.loads with hooks makes a decoder for every request.
STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_uniqueObject,
                                  parse_constant=_refuseConstant)


class _Field:
    """
    How one request field is checked and converted.

    @ivar what: the expected value, for refusals ("a string").
    @ivar accepts: whether a parsed JSON value has the right type and range.
    @ivar convert: turns an accepted value into what the core takes; may raise
        L{BadRequest}.
    """

    def __init__(self, what, accepts, convert=lambda value: value):
        self.what = what
        self.accepts = accepts
        self.convert = convert


def _envelopeBytes(value):
    """
    An envelope object as the UTF-8 JSON bytes the core parses; ASCII escapes
    keep any lone surrogate encodable, for the core to refuse.
    """
    return dumps(value)


def _isText(value, limit=None):
    """
    Whether C{value} is a string with a UTF-8 form (JSON lets a string hold a
    lone surrogate, which has none and would fail deep in the core), of at most
    C{limit} bytes when a limit is given.
    """
    if not isinstance(value, str):
        return False
    if value.isascii():
        return limit is None or len(value) <= limit
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return limit is None or size <= limit


def _whole(maximum):
    """
    A field holding an integer from 0 to C{maximum} (booleans are not integers
    here, although Python counts them as such).
    """
    return _Field("a whole number from 0 to %d" % (maximum,),
                  lambda v: type(v) is int and 0 <= v <= maximum)


_STRING = _Field("a string of valid Unicode", _isText)
_COUNT = _Field("a whole number from 0", lambda v: type(v) is int and v >= 0)
_U32 = _whole(2**32 - 1)
_U64 = _whole(2**64 - 1)
# The core takes 1 to accept and 0 to decline, as the binary door sends them.
_FLAG = _Field("true or false", lambda v: isinstance(v, bool), int)
_REASON = _Field("text of at most 65535 UTF-8 bytes", lambda v: _isText(v, 0xFFFF))
_DATA = _Field("base64", lambda v: isinstance(v, str), lambda v: decodeBase64(v, "data"))
_BEFORE = _Field("an ISO 8601 timestamp or milliseconds",
                 lambda v: isinstance(v, str) or type(v) is int, parseBefore)
_PEM = _Field("a PEM public key", lambda v: isinstance(v, str), pemToDer)
_SIGNATURE = _Field("base64", lambda v: isinstance(v, str),
                    lambda v: decodeBase64(v, "signature"))
_ENVELOPE = _Field("an envelope object", lambda v: isinstance(v, dict), _envelopeBytes)
# Roles by name; the core takes L{None} for none.
_ROLE_NAMES = {"owner": "owner", "operator": "operator", "none": None}
_ROLE = _Field("one of 'owner', 'operator' and 'none'",
               lambda v: isinstance(v, str) and v in _ROLE_NAMES, _ROLE_NAMES.get)

REQUIRED, OPTIONAL = True, False

# Each request type, its fields, and whether each is required.
REQUESTS = {
    "get_challenge": {},
    "register": {"userId": (_STRING, REQUIRED), "publicKey": (_PEM, REQUIRED),
                 "password": (_STRING, OPTIONAL), "invite": (_STRING, OPTIONAL)},
    "authenticate": {"userId": (_STRING, REQUIRED), "signature": (_SIGNATURE, REQUIRED)},
    "login": {"userId": (_STRING, REQUIRED), "password": (_STRING, REQUIRED)},
    "join": {"roomId": (_STRING, OPTIONAL), "password": (_STRING, OPTIONAL)},
    "switch_room": {"roomId": (_STRING, REQUIRED), "password": (_STRING, OPTIONAL)},
    "leave": {"roomId": (_STRING, REQUIRED)},
    "chat_message": {"roomId": (_STRING, REQUIRED), "envelope": (_ENVELOPE, REQUIRED)},
    "dm": {"to": (_STRING, REQUIRED), "envelope": (_ENVELOPE, REQUIRED)},
    "history": {"roomId": (_STRING, REQUIRED), "limit": (_COUNT, OPTIONAL),
                "before": (_BEFORE, OPTIONAL)},
    "list_rooms": {},
    "list_users": {"roomId": (_STRING, OPTIONAL)},
    "get_keys": {"roomId": (_STRING, OPTIONAL), "userId": (_STRING, OPTIONAL)},
    "set_key": {"publicKey": (_PEM, REQUIRED)},
    "ping": {},
    "file_offer": {"roomId": (_STRING, OPTIONAL), "to": (_STRING, OPTIONAL),
                   "size": (_U64, REQUIRED), "chunks": (_U32, REQUIRED),
                   "chunkSize": (_U32, REQUIRED), "envelope": (_ENVELOPE, REQUIRED)},
    "file_answer": {"transferId": (_U32, REQUIRED), "accept": (_FLAG, REQUIRED)},
    "file_chunk": {"transferId": (_U32, REQUIRED), "index": (_U32, REQUIRED),
                   "data": (_DATA, REQUIRED)},
    "file_ack": {"transferId": (_U32, REQUIRED), "index": (_U32, REQUIRED)},
    "file_done": {"transferId": (_U32, REQUIRED)},
    "file_cancel": {"transferId": (_U32, REQUIRED), "reason": (_REASON, REQUIRED)},
    # Moderation (docs/protocol.rst, Moderation); answers in jsonmoderation.
    "kick": {"roomId": (_STRING, REQUIRED), "userId": (_STRING, REQUIRED),
             "reason": (_REASON, OPTIONAL)},
    "ban": {"roomId": (_STRING, REQUIRED), "userId": (_STRING, REQUIRED),
            "reason": (_REASON, OPTIONAL)},
    "unban": {"roomId": (_STRING, REQUIRED), "userId": (_STRING, REQUIRED)},
    "set_role": {"roomId": (_STRING, REQUIRED), "userId": (_STRING, REQUIRED),
                 "role": (_ROLE, REQUIRED)},
    "set_topic": {"roomId": (_STRING, REQUIRED), "topic": (_REASON, REQUIRED)},
    "set_password": {"roomId": (_STRING, REQUIRED), "password": (_STRING, OPTIONAL)},
    "destroy_room": {"roomId": (_STRING, REQUIRED)},
    "room_info": {"roomId": (_STRING, REQUIRED)},
}

# Requests that name their target by exactly one of two fields.
_ONE_OF = {
    "get_keys": ("roomId", "userId"),
    "file_offer": ("roomId", "to"),
}


class Request:
    """
    One well-formed request.

    @ivar type: its C{"type"}, a key of L{REQUESTS}.
    @ivar fields: the fields it carried, converted: C{publicKey} to DER,
        C{signature} and C{data} to bytes, C{envelope} to UTF-8 JSON bytes,
        C{before} to milliseconds, C{accept} to 1 or 0. Optional fields it
        left out are absent.
    @ivar id: its C{"id"}, or L{NO_ID}.
    """

    def __init__(self, type, fields, id=NO_ID):
        self.type = type
        self.fields = fields
        self.id = id

    def __repr__(self):
        return "<Request %s id=%r fields=%s>" % (self.type, self.id, sorted(self.fields))


def parseFields(kind, obj, spec):
    """
    The fields of the object C{obj} by C{spec} (an entry of L{REQUESTS}), each
    converted: no field C{spec} does not have, every required one present.
    Nested objects (the device doors' lists) are checked by the same rule.

    @param kind: names the object in refusals.
    @raise BadRequest: saying what is wrong.
    """
    unknown = obj.keys() - spec.keys()
    if unknown:
        raise BadRequest("%s has no field %r" % (kind, min(unknown)[:40]))
    fields = {}
    for name, (field, required) in spec.items():
        if name not in obj:
            if required:
                raise BadRequest("%s needs the field %r" % (kind, name))
            continue
        value = obj[name]
        if not field.accepts(value):
            raise BadRequest("%s.%s must be %s" % (kind, name, field.what))
        fields[name] = field.convert(value)
    return fields


def parseRequest(text, requests=REQUESTS):
    """
    Parse one request strictly: a JSON object without duplicate keys, a known
    string C{"type"}, every required field present with the right type and no
    field the type does not have.

    @type text: L{str}
    @param requests: the request types and their fields (version 3's devices
        add to L{REQUESTS}: L{chatd.protocols.jsondevices}).
    @rtype: L{Request}
    @raise MalformedRequest: saying what is wrong.
    """
    try:
        obj = STRICT_DECODER.decode(text)
    except RecursionError:
        raise MalformedRequest("JSON nested too deeply") from None
    except ValueError as e:
        raise MalformedRequest("not JSON: %s" % (e,)) from None
    if not isinstance(obj, dict):
        raise MalformedRequest("a request is a JSON object")
    requestId = obj.pop("id", NO_ID)
    kind = obj.pop("type", None)
    if not isinstance(kind, str):
        raise MalformedRequest("a request needs a string 'type'", requestId)
    spec = requests.get(kind)
    if spec is None:
        raise MalformedRequest("Unknown message type: %s" % (kind[:64],), requestId)
    try:
        fields = parseFields(kind, obj, spec)
    except BadRequest as e:
        raise MalformedRequest(e.message, requestId) from None
    if kind in _ONE_OF and sum(name in fields for name in _ONE_OF[kind]) != 1:
        raise MalformedRequest("%s needs exactly one of %r and %r" % ((kind,) + _ONE_OF[kind]),
                               requestId)
    return Request(kind, fields, requestId)
