# -*- test-case-name: chatd.test.test_jsondevices -*-
"""
The JSON vocabulary of devices (protocol version 3) for the text and WebSocket
doors, without I/O: the requests' fields, the answers and the events
(docs/protocol.rst, Protocol version 3: devices).

Built like L{chatd.protocols.jsonwire}'s own objects, in a module of its own
only to keep that one to a size. A device list travels as one object::

    {"text": base64 canonical bytes ("" when the user has none),
     "signature": base64 ("" when none),
     "devices": [{"id": device id, "publicKey": PEM}, ...]}

which says what the server holds, not that it is true: clients verify the
signature against the pinned identity key.
"""

from chatd.core.rooms import MAX_HISTORY_SETTING
from chatd.errors import BadRequest, Status
from chatd.protocols import jsonrequests, jsonwire
from chatd.protocols.devicewire import DeviceList
from chatd.protocols.jsonrequests import (
    _PEM,
    _STRING,
    OPTIONAL,
    REQUIRED,
    _Field,
    _whole,
    parseFields,
)
from chatd.protocols.jsonwire import (
    NO_ID,
    _event,
    _response,
    decodeBase64,
    derToPem,
    dumps,
    encodeBase64,
    formatTimestamp,
    listObject,
)

# LOGIN's answer by the core: the device's state, as the JSON doors name it.
STATES = {0: "approved", 1: "pending"}


# -- parsing ----------------------------------------------------------------

def _base64(what):
    return _Field("base64", lambda v: isinstance(v, str), lambda v: decodeBase64(v, what))


def _objectOf(what, spec, build):
    """
    A field holding an object whose own fields C{spec} checks (as a request's),
    turned into a value by C{build(**fields)}.
    """
    def convert(value):
        return build(**parseFields(what, value, spec))
    return _Field("an object", lambda v: isinstance(v, dict), convert)


def _listOf(what, item):
    """
    A field holding an array, each element checked and converted by C{item}.
    """
    def convert(value):
        converted = []
        for element in value:
            if not item.accepts(element):
                raise BadRequest("each of %s must be %s" % (what, item.what))
            converted.append(item.convert(element))
        return converted
    return _Field("an array", lambda v: isinstance(v, list), convert)


_DEVICE = _objectOf("a device", {"id": (_STRING, REQUIRED), "publicKey": (_PEM, REQUIRED)},
                    lambda id, publicKey: (id, publicKey))
_DEVICES = _listOf("devices", _DEVICE)
_LIST = _objectOf("list", {"text": (_base64("text"), REQUIRED),
                           "signature": (_base64("signature"), REQUIRED),
                           "devices": (_DEVICES, OPTIONAL)},
                  lambda text, signature, devices=(): DeviceList(text, signature,
                                                                 tuple(devices)))
_KEYS = _Field("an object {encrypted_keys, key_ids}", lambda v: isinstance(v, dict), dumps)
_SHARE = _objectOf("a share", {"id": (_STRING, REQUIRED), "keys": (_KEYS, REQUIRED)},
                   lambda id, keys: (id, keys))

# A room's history setting (CREATE's; L{chatd.core.rooms.MAX_HISTORY_SETTING}).
_HISTORY = _whole(MAX_HISTORY_SETTING)

# The requests version 3 adds, and the fields it adds to login, authenticate
# and register; the rest of L{jsonrequests.REQUESTS} is unchanged.
REQUESTS = {
    **jsonrequests.REQUESTS,
    "login": {**jsonrequests.REQUESTS["login"], "device": (_STRING, OPTIONAL),
              "deviceKey": (_PEM, OPTIONAL)},
    "authenticate": {**jsonrequests.REQUESTS["authenticate"], "device": (_STRING, OPTIONAL)},
    "register": {**jsonrequests.REQUESTS["register"], "device": (_STRING, OPTIONAL),
                 "list": (_LIST, OPTIONAL), "blob": (_base64("blob"), OPTIONAL)},
    "join": {**jsonrequests.REQUESTS["join"], "history": (_HISTORY, OPTIONAL)},
    "switch_room": {**jsonrequests.REQUESTS["switch_room"], "history": (_HISTORY, OPTIONAL)},
    "get_devices": {"userId": (_STRING, OPTIONAL)},
    "request_device": {"tag": (_base64("tag"), REQUIRED)},
    "publish_devices": {"text": (_base64("text"), REQUIRED),
                        "signature": (_base64("signature"), REQUIRED),
                        "devices": (_DEVICES, REQUIRED)},
    "approve": {"device": (_STRING, REQUIRED), "reply": (_base64("reply"), REQUIRED)},
    "get_recovery": {},
    "set_recovery": {"blob": (_base64("blob"), REQUIRED)},
    "share_history": {"roomId": (_STRING, REQUIRED), "userId": (_STRING, REQUIRED),
                      "entries": (_listOf("entries", _SHARE), REQUIRED)},
    "reset_identity": {"publicKey": (_PEM, REQUIRED), "device": (_STRING, REQUIRED),
                       "text": (_base64("text"), REQUIRED),
                       "signature": (_base64("signature"), REQUIRED),
                       "blob": (_base64("blob"), REQUIRED)},
}

# Fields that come together or not at all.
TOGETHER = {
    "login": ("device", "deviceKey"),
    "register": ("device", "list"),
}


def checkTogether(kind, fields):
    """
    Refuse a request that carries some of the fields L{TOGETHER} pairs, not all.

    @raise BadRequest: naming them.
    """
    names = TOGETHER.get(kind, ())
    if 0 < sum(name in fields for name in names) < len(names):
        raise BadRequest("%s needs %s together" % (kind, " and ".join(map(repr, names))))


def parseRequest(text):
    """
    L{jsonrequests.parseRequest} with version 3's requests and fields.

    @raise jsonrequests.MalformedRequest: saying what is wrong.
    """
    request = jsonrequests.parseRequest(text, REQUESTS)
    try:
        checkTogether(request.type, request.fields)
    except BadRequest as e:
        raise jsonrequests.MalformedRequest(e.message, request.id) from None
    return request


# -- building objects -------------------------------------------------------

def authenticated(userId, device, state, requestId=NO_ID, kind="authenticated"):
    """
    The answer to a login or authenticate (C{kind} C{registered}: a register)
    naming a device: the device and its state (C{approved} or C{pending}).
    """
    return _response(kind, requestId, userId=userId, device=device, state=STATES[state])


def devices(userId, devicesList, pending, requestId=NO_ID):
    """
    The answer to C{get_devices}.

    @param pending: the pending devices (only for one's own account), each a
        L{chatd.protocols.devicewire.Pending} or anything with its attributes.
    """
    return _response("devices", requestId, userId=userId, list=listObject(devicesList),
                     pending=[_pending(entry) for entry in pending])


def _pending(entry):
    return {"id": entry.device, "publicKey": derToPem(entry.key),
            "tag": encodeBase64(entry.tag), "expires": formatTimestamp(entry.expires)}


def done(kind, requestId=NO_ID):
    """
    The answer to a request that returns nothing: C{device_requested},
    C{devices_published}, C{approved}, C{recovery_set}, C{identity_reset}.
    """
    return _response(kind, requestId)


def recovery(blob, requestId=NO_ID):
    return _response("recovery", requestId, blob=encodeBase64(blob or b""))


def shared(count, requestId=NO_ID):
    return _response("shared", requestId, count=count)


def headConflict(message, head, requestId=NO_ID):
    """
    The refusal of a C{publish_devices} built on another head: C{conflict}
    with the current head (C{{"v": version, "h": hex hash}}).
    """
    return _response("error", requestId, code=jsonwire.errorCode(Status.CONFLICT),
                     message=message, head=headObject(head))


def headObject(head):
    version, digest = head
    return {"v": version, "h": digest}


def devicesChanged(userId, devicesList):
    return _event("devices_changed", userId=userId, list=listObject(devicesList))


def devicePending(pending):
    return _event("device_pending", **_pending(pending))


def approval(reply):
    return _event("approval", reply=encodeBase64(reply))


def shareWanted(roomId, userId, history):
    return _event("share_wanted", roomId=roomId, userId=userId, history=history)


def caughtUp(count):
    return _event("caught_up", count=count)
