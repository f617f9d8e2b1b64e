# -*- test-case-name: chatd.test.test_devices_core -*-
"""
Requests about an account's devices (protocol version 3, docs/protocol.rst):
device logins, the device list, pending devices and their approval, the
recovery blob and an identity reset.

A I{device session} logged in naming a device; every other session is a
I{legacy session} and behaves as in versions 1 and 2. A pending device
session (a new device logged in with the password) may only ask to be
approved until a list naming it is published.
"""

from typing import NoReturn

from twisted.internet.defer import Deferred

from chatd.core.base import SessionBase
from chatd.errors import BadRequest
from chatd.model import NO_DEVICES

# The requests a pending device session may make (by session method name).
PENDING_ALLOWED = frozenset({"heartbeat", "requestDevice", "getDevices", "getRecovery",
                             "resetIdentity"})

# LOGIN's answer to a device session.
APPROVED, PENDING = 0, 1


def _notYet(what) -> NoReturn:
    raise BadRequest("%s is not served yet" % (what,))


class DeviceRequests(SessionBase):
    """
    The device requests of a L{chatd.core.session.Session}, mixed into it.
    """

    def devicesOf(self, name):
        """
        The device list the core holds for user C{name}.
        """
        user = self.service.directory.user(name)
        devices = getattr(user, "devices", None)
        return devices if devices is not None else NO_DEVICES

    def registerDevice(self, name, password, publicKey, device, listText, signature,
                       recovery, invite=None) -> Deferred:
        _notYet("registering a device")

    def loginDevice(self, name, password, device, deviceKey) -> Deferred:
        _notYet("logging in as a device")

    def authDevice(self, name, device, signature) -> Deferred:
        _notYet("logging in as a device")

    def getDevices(self, name) -> Deferred:
        _notYet("GET_DEVICES")

    def requestDevice(self, tag) -> Deferred:
        _notYet("REQUEST_DEVICE")

    def publishDevices(self, text, signature, devices) -> Deferred:
        _notYet("PUBLISH_DEVICES")

    def approve(self, device, reply) -> Deferred:
        _notYet("APPROVE")

    def getRecovery(self) -> Deferred:
        _notYet("GET_RECOVERY")

    def setRecovery(self, blob) -> Deferred:
        _notYet("SET_RECOVERY")

    def shareHistory(self, roomName, newcomer, entries) -> Deferred:
        _notYet("SHARE_HISTORY")

    def resetIdentity(self, publicKey, device, text, signature, blob) -> Deferred:
        _notYet("RESET_IDENTITY")
