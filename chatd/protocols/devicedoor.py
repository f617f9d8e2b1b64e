# -*- test-case-name: chatd.test.test_devicedoors -*-
"""
Protocol version 3 (devices) on the binary door: which core request each
version-3 opcode makes, how the answers and refusals are laid out for a
version-3 session, and the device events (docs/protocol.rst, Protocol version
3: devices). Mixed into L{chatd.protocols.binary.BinaryProtocol}, which keeps
versions 1 and 2 as they were; the layouts are L{chatd.protocols.devicewire}'s.
"""

from typing import TYPE_CHECKING

from chatd.isession import ISession
from chatd.protocols import devicewire, opcodes
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import Op

# For a session that said version 3: each opcode's name in
# L{chatd.protocols.requests.REQUESTS} where it differs from version 2's, and
# the new requests.
REQUESTS_V3 = {
    Op.REGISTER: "register_device",
    Op.LOGIN: "login_device",
    Op.AUTH: "auth_device",
    DeviceOp.GET_DEVICES: "get_devices",
    DeviceOp.REQUEST_DEVICE: "request_device",
    DeviceOp.PUBLISH_DEVICES: "publish_devices",
    DeviceOp.APPROVE: "approve",
    DeviceOp.GET_RECOVERY: "get_recovery",
    DeviceOp.SET_RECOVERY: "set_recovery",
    DeviceOp.SHARE_HISTORY: "share_history",
    DeviceOp.RESET_IDENTITY: "reset_identity",
}


class BinaryDevices:
    """
    Version 3 of a L{chatd.protocols.binary.BinaryProtocol}, mixed into it.
    """

    if TYPE_CHECKING:
        # What the protocol it is mixed into provides.
        @property
        def _live(self) -> ISession: ...
        def _flags(self, name: str) -> int: ...
        def _send(self, frame: bytes) -> None: ...
        def _version(self) -> int: ...

    def _devMembers(self, members):
        """
        C{(name, key)} pairs as version 3's C{devmembers}: with flags and the
        list the core holds for each.
        """
        devicesOf = self._live.devicesOf
        return [(name, self._flags(name), key, devicesOf(name)) for name, key in members]

    def _encodeOkV3(self, value, op):
        """
        The ok response to request C{op} of a version-3 session, from the
        core's answer C{value}.
        """
        if op == Op.JOIN:
            value = (self._devMembers(value), getattr(value, "topic", None) or "",
                     getattr(value, "history", 0))
        elif op == Op.GET_KEYS:
            value = self._devMembers(value)
        elif op == Op.LIST_USERS:
            value = [(name, self._flags(name)) for name in value]
        layout = devicewire.OK_RESPONSES.get(op, ())
        if not layout:
            return devicewire.okResponse(op)
        values = value if isinstance(value, tuple) else (value,)
        return devicewire.okResponse(op, *values)

    def _encodeRefusalV3(self, error):
        """
        A refusal to a version-3 session: 0x09 names the members with their
        lists, and a publish on another head answers that head.
        """
        members, head = getattr(error, "members", None), getattr(error, "head", None)
        if members is not None:
            return devicewire.staleResponse(self._devMembers(members))
        if head is not None:
            return devicewire.headConflict(*head)
        return opcodes.errorResponse(error.status, error.message)

    def _userEventV3(self, op, user, *values):
        self._send(devicewire.event(op, *values, self._flags(user),
                                    self._live.devicesOf(user)))

    # -- IDeviceClient --------------------------------------------------------
    # Only a version-3 session has a use for these; the core sends them to
    # device sessions, which on this door said version 3.

    def _deviceEvent(self, op, *values):
        if self._version() >= devicewire.VERSION:
            self._send(devicewire.event(op, *values))

    def devicesChanged(self, user, devices):
        self._deviceEvent(DeviceOp.DEVICES_CHANGED, user, devices)

    def devicePending(self, pending):
        self._deviceEvent(DeviceOp.DEVICE_PENDING, pending.device, pending.key, pending.tag,
                          pending.expires)

    def approval(self, reply):
        self._deviceEvent(DeviceOp.APPROVAL, reply)

    def shareWanted(self, room, newcomer, history):
        self._deviceEvent(DeviceOp.SHARE_WANTED, room, newcomer, history)

    def caughtUp(self, count):
        self._deviceEvent(DeviceOp.CAUGHT_UP, count)
