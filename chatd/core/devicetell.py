# -*- test-case-name: chatd.test.test_devices_core -*-
"""
What the device events (L{chatd.core.events.DevicesChanged},
L{DevicePending}, L{Approval}) mean for the sessions of a node, wherever
they happened: the service's tellers for them
(L{chatd.core.telling.Telling._telling}).

Device events go to sessions whose client provides L{IDeviceClient}; a door
that speaks several versions (the binary door) drops them for sessions of
version 1 and 2 itself.
"""

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import devicelist
from chatd.core.events import Approval, DevicePending, DevicesChanged
from chatd.interfaces import IDeviceClient
from chatd.model import DeviceList, PendingDevice
from chatd.names import fold

if TYPE_CHECKING:
    from chatd.core.service import ChatService

log = Logger()


def _listening(sessions):
    return [s for s in sessions if IDeviceClient.providedBy(s.client)]


def devicesChanged(service: "ChatService", event: DevicesChanged, exclude: object,
                   local: bool) -> None:
    """
    Hold the new list; close the sessions of devices it no longer has (or
    has with another key), approve the pending sessions it names, and tell
    the account's sessions and everyone who would hear of its key changes.
    """
    book = service.devices
    head = devicelist.DeviceList.parse(event.text).head
    devices = DeviceList(event.text, event.signature,
                         tuple((device, key) for device, key in event.devices),
                         head.version, head.hash)
    held = book.lists.get(fold(event.user))
    identity = event.key if event.key is not None else (held[1] if held else None)
    user = service.directory.user(event.user)
    if identity is None and user is not None:
        identity = user.key
    if identity is None:
        # Not held here: read from the store when next needed.
        book.lists.pop(fold(event.user), None)
    else:
        book.hold(user.name if user is not None else event.user, identity, devices)
    keys = dict(devices.devices)
    if user is not None:
        for session in list(user.sessions):
            if session.device is not None and keys.get(session.device) != session.deviceKey:
                log.info("closing {name}'s session of removed device {device}",
                         name=user.name, device=session.device)
                session.client.disconnect()
    pending = book.pendingSessions(event.user)
    audience = service.directory.audience(user, exclude) if user is not None else []
    service.broadcast(_listening([s for s in audience if not s.ended] + pending),
                      "devicesChanged", event.user, devices)
    for session in pending:
        if keys.get(session.device) == session.deviceKey:
            d = Deferred.fromCoroutine(session._becomeDevice(
                session._pendingName, identity, session.device, session.deviceKey, devices))
            d.addErrback(_notApproved, session)


def _notApproved(failure, session):
    log.failure("approving device {device}", failure, device=session.device)


def devicePending(service: "ChatService", event: DevicePending, exclude: object,
                  local: bool) -> None:
    """
    Tell the account's approved device sessions here that a device waits.
    """
    if not local:
        # The pending device is on another node: an APPROVE here may relay to it.
        service.devices.remotePending[(fold(event.user), event.device)] = event.expires
    user = service.directory.user(event.user)
    if user is None:
        return
    sessions = [s for s in user.sessions if s.device is not None and s is not exclude]
    service.broadcast(_listening(sessions), "devicePending",
                      PendingDevice(event.device, event.key, event.tag, event.expires))


def approval(service: "ChatService", event: Approval, exclude: object, local: bool) -> None:
    """
    Relay the identity device's reply to the pending device's sessions here.
    """
    service.broadcast(_listening(service.devices.pendingSessions(event.user, event.device)),
                      "approval", event.reply)


def shareWanted(service, event, exclude, local):
    """
    Ask one device session here of each member the event names to share
    the room's history with the newcomer.
    """
    for name in event.members:
        member = service.directory.user(name)
        if member is None:
            continue
        sessions = _listening([s for s in member.sessions if s.device is not None])
        service.broadcast(sessions[:1], "shareWanted", event.room, event.newcomer,
                          event.history)
