# -*- test-case-name: chatd.test.test_devicedoors -*-
"""
Devices (protocol version 3) on the two doors that speak JSON objects (text
and WebSocket): the requests, each calling the core's request of the same
name and answering with the object L{chatd.protocols.jsondevices} builds, and
the device events. The WebSocket door calls the requests with the request's
id and fields; the text door with L{NO_ID} and its arguments, its JSON
arguments checked as the WebSocket fields are.

A session is a device session once it logged in naming a device; only then do
member objects and C{user_joined}/C{key_changed} carry device lists, so that a
legacy session sees exactly what it saw before.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from chatd.errors import BadRequest
from chatd.isession import ISession
from chatd.protocols import jsondevices, jsonrequests, jsonwire
from chatd.protocols.jsondoor import then
from chatd.protocols.jsonwire import NO_ID

_APPROVED = 0


class JSONDevices:
    """
    Mixed into a L{chatd.protocols.jsondoor.JSONDoor} that is also a
    L{chatd.protocols.door.Door}.
    """

    if TYPE_CHECKING:
        # What the door it is mixed into provides.
        session: Optional[ISession]

        @property
        def _live(self) -> ISession: ...
        def _event(self, obj: Dict[str, Any]) -> None: ...
        def _userName(self, user: str) -> str: ...
        def call(self, request: str, *args: Any, **kwargs: Any) -> Any: ...

    # -- what device sessions see -------------------------------------------

    def _deviceRefusal(self, error, requestId):
        """
        The object of a refusal that is particular to devices (a publish on
        another head), or L{None}.
        """
        head = getattr(error, "head", None)
        if head is None:
            return None
        return jsondevices.headConflict(error.message, head, requestId)

    # -- requests -------------------------------------------------------------

    def _devRegister(self, requestId, userId, publicKey, password, invite, device, devices,
                     blob):
        session = self._live
        return then(self.call("register_device", userId, password, publicKey, device,
                              devices.text, devices.signature, blob, invite),
                    lambda _: jsondevices.authenticated(session.name, device, _APPROVED,
                                                        requestId, kind="registered"))

    def _devLogin(self, requestId, userId, password, device, deviceKey):
        session = self._live

        def answer(state):
            # A pending session is nobody yet: the name it logged in with.
            name = session.name if session.name is not None else self._userName(userId)
            return jsondevices.authenticated(name, device, state, requestId)
        return then(self.call("login_device", userId, password, device, deviceKey), answer)

    def _devAuth(self, requestId, userId, signature, device):
        session = self._live
        return then(self.call("auth_device", userId, device, signature),
                    lambda _: jsondevices.authenticated(session.name, device, _APPROVED,
                                                        requestId))

    def _devGetDevices(self, requestId, userId=None):
        name = userId if userId is not None else self._live.name
        if name is None:
            raise BadRequest("get_devices needs a userId before login")
        spelling = self._userName(name)
        return then(self.call("get_devices", name),
                    lambda answer: jsondevices.devices(spelling, answer[0], answer[1],
                                                       requestId))

    def _devDone(self, request, kind, requestId, *args):
        return then(self.call(request, *args), lambda _: jsondevices.done(kind, requestId))

    def _devRequestDevice(self, requestId, tag):
        return self._devDone("request_device", "device_requested", requestId, tag)

    def _devPublish(self, requestId, text, signature, devices):
        return self._devDone("publish_devices", "devices_published", requestId, text,
                             signature, devices)

    def _devApprove(self, requestId, device, reply):
        return self._devDone("approve", "approved", requestId, device, reply)

    def _devGetRecovery(self, requestId):
        return then(self.call("get_recovery"),
                    lambda blob: jsondevices.recovery(blob, requestId))

    def _devSetRecovery(self, requestId, blob):
        return self._devDone("set_recovery", "recovery_set", requestId, blob)

    def _devShare(self, requestId, roomId, userId, entries):
        return then(self.call("share_history", roomId, userId, entries),
                    lambda count: jsondevices.shared(count, requestId))

    def _devReset(self, requestId, publicKey, device, text, signature, blob):
        return self._devDone("reset_identity", "identity_reset", requestId, publicKey, device,
                             text, signature, blob)

    # -- IDeviceClient ----------------------------------------------------------

    def devicesChanged(self, user, devices):
        self._event(jsondevices.devicesChanged(user, devices))

    def devicePending(self, pending):
        self._event(jsondevices.devicePending(pending))

    def approval(self, reply):
        self._event(jsondevices.approval(reply))

    def shareWanted(self, room, newcomer, history):
        self._event(jsondevices.shareWanted(room, newcomer, history))

    def caughtUp(self, count):
        self._event(jsondevices.caughtUp(count))


def _loads(text):
    """
    A text command's JSON argument, parsed as strictly as a WebSocket message.

    @raise BadRequest: when it is not JSON.
    """
    try:
        return jsonrequests.STRICT_DECODER.decode(text)
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None
    except ValueError as e:
        raise BadRequest("not JSON: %s" % (e,)) from None


def _jsonArgument(kind, text):
    """
    A text command's JSON object, checked as the WebSocket request C{kind}'s
    fields.

    @raise BadRequest: saying what is wrong.
    """
    obj = _loads(text)
    if not isinstance(obj, dict):
        raise BadRequest("%s takes a JSON object" % (kind,))
    fields = jsonrequests.parseFields(kind, obj, jsondevices.REQUESTS[kind])
    jsondevices.checkTogether(kind, fields)
    return fields


def _entries(text):
    """
    C{/share}'s JSON argument: the array of C{share_history}'s C{entries}.
    """
    field, _ = jsondevices.REQUESTS["share_history"]["entries"]
    value = _loads(text)
    if not field.accepts(value):
        raise BadRequest("/share takes a JSON array of entries")
    return field.convert(value)


def textCommands():
    """
    The text door's device commands, as entries of its command table:
    handler, fewest and most arguments, usage, what it does. A C{JSON}
    argument is the rest of the line.
    """
    def registerDevice(self, text):
        fields = _jsonArgument("register", text)
        if "device" not in fields:
            raise BadRequest("register-device needs 'device' and 'list'")
        return self._devRegister(NO_ID, fields["userId"], fields["publicKey"],
                                 fields.get("password", ""), fields.get("invite"),
                                 fields["device"], fields["list"], fields.get("blob", b""))

    def publish(self, text):
        return self._devPublish(NO_ID, **_jsonArgument("publish_devices", text))

    def reset(self, text):
        return self._devReset(NO_ID, **_jsonArgument("reset_identity", text))

    def b64(what):
        return lambda value: jsonwire.decodeBase64(value, what)

    return {
        "/register-device": (registerDevice, 1, 1, "/register-device JSON",
                             "create an account as its first device: JSON is the "
                             "WebSocket register request's fields"),
        "/devices": (lambda self, user=None: self._devGetDevices(NO_ID, user), 0, 1,
                     "/devices [USER]", "a user's device list (and your pending devices)"),
        "/device-request": (lambda self, tag: self._devRequestDevice(NO_ID, b64("tag")(tag)),
                            1, 1, "/device-request TAG",
                            "a pending device asks to be approved (TAG base64)"),
        "/device-publish": (publish, 1, 1, "/device-publish JSON",
                            "publish your next device list: {text, signature, devices}"),
        "/approve": (lambda self, device, reply: self._devApprove(NO_ID, device,
                                                                  b64("reply")(reply)),
                     2, 2, "/approve DEVICE REPLY", "send a pending device its approval"),
        "/recovery": (lambda self: self._devGetRecovery(NO_ID), 0, 0, "/recovery",
                      "your account's sealed recovery blob"),
        "/recovery-set": (lambda self, blob: self._devSetRecovery(NO_ID, b64("blob")(blob)),
                          1, 1, "/recovery-set BLOB", "replace the sealed recovery blob"),
        "/share": (lambda self, room, user, text: self._devShare(NO_ID, room, user,
                                                                 _entries(text)),
                   3, 3, "/share ROOM USER JSON",
                   "give a new member message keys: JSON the entries array"),
        "/reset-identity": (reset, 1, 1, "/reset-identity JSON",
                            "start again with a new identity key: {publicKey, device, "
                            "text, signature, blob}"),
    }


# Each text command's and WebSocket type's name in
# L{chatd.protocols.requests.REQUESTS}.
TEXT_REQUESTS = {"/register-device": "register_device", "/devices": "get_devices",
                 "/device-request": "request_device", "/device-publish": "publish_devices",
                 "/approve": "approve", "/recovery": "get_recovery",
                 "/recovery-set": "set_recovery", "/share": "share_history",
                 "/reset-identity": "reset_identity"}
TEXT_REST_OF_LINE = frozenset({"/register-device", "/device-publish", "/share",
                               "/reset-identity"})
WEBSOCKET_REQUESTS = {"get_devices": "get_devices", "request_device": "request_device",
                      "publish_devices": "publish_devices", "approve": "approve",
                      "get_recovery": "get_recovery", "set_recovery": "set_recovery",
                      "share_history": "share_history", "reset_identity": "reset_identity"}
# A pending session is logged in to no account yet on some cores' reading:
# the core, not the door, says what it may ask.
WEBSOCKET_BEFORE_LOGIN = frozenset({"get_devices", "request_device", "get_recovery",
                                    "reset_identity"})
WEBSOCKET_HANDLERS: Dict[str, Callable[..., Any]] = {
    "get_devices": JSONDevices._devGetDevices, "request_device": JSONDevices._devRequestDevice,
    "publish_devices": JSONDevices._devPublish, "approve": JSONDevices._devApprove,
    "get_recovery": JSONDevices._devGetRecovery, "set_recovery": JSONDevices._devSetRecovery,
    "share_history": JSONDevices._devShare, "reset_identity": JSONDevices._devReset,
}
