# -*- test-case-name: chatd.test.test_devices_core -*-
"""
Requests about an account's devices (protocol version 3, docs/protocol.rst):
device logins, the device list, pending devices and their approval, the
recovery blob and an identity reset.

A I{device session} logged in naming a device; every other session is a
I{legacy session} and behaves as in versions 1 and 2. A pending device
session (a new device logged in with the password) belongs to no user: it
may only ask to be approved (L{PENDING_ALLOWED}) until a list naming it is
published, and then becomes a session of its account, as after a login.

The server checks a list (L{chatd.devicelist.checkPublished}) but never
vouches for it: clients verify every list against the identity key they
pinned.
"""

import re
from typing import FrozenSet, Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import devicelist, e2e
from chatd.core.base import SessionBase
from chatd.core.events import Approval, DevicePending, DevicesChanged, UserOffline
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.model import NO_DEVICES, DeviceList, PendingDevice
from chatd.names import fold, isUserName

log = Logger()

# The requests a pending device session may make (by session method name).
PENDING_ALLOWED = frozenset({"heartbeat", "requestDevice", "getDevices", "getRecovery",
                             "resetIdentity"})

# LOGIN's answer to a device session.
APPROVED, PENDING = 0, 1

# How long a pending device's request lasts (ms).
PENDING_LIFETIME = 10 * 60 * 1000
# The most bytes a recovery blob may have (a sealed RSA private key).
MAX_RECOVERY = 16384

_DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def checkDeviceId(device: object) -> None:
    if not isinstance(device, str) or _DEVICE_ID.fullmatch(device) is None:
        raise BadRequest("invalid device id %r: 1-32 of A-Z a-z 0-9 _ . -" % (device,))


def storedList(parsed: devicelist.DeviceList, devices: Iterable[Tuple[str, bytes]]) -> DeviceList:
    """
    The stored form of a checked list: its devices' keys in the list's order.
    """
    keys = dict(devices)
    head = parsed.head
    return DeviceList(parsed.text(), b"", tuple((device, keys[device])
                                                for device, _ in parsed.entries),
                      head.version, head.hash)


def _checked(user, identityKey, head, removed, text, signature, devices) -> DeviceList:
    parsed = devicelist.checkPublished(user, identityKey, head, removed, text, signature,
                                       list(devices))
    stored = storedList(parsed, devices)
    return DeviceList(stored.text, signature, stored.devices, stored.version, stored.digest)


def _checkRecovery(blob):
    if len(blob) > MAX_RECOVERY:
        raise BadRequest("a recovery blob is at most %d bytes" % (MAX_RECOVERY,))


class DeviceRequests(SessionBase):
    """
    The device requests of a L{chatd.core.session.Session}, mixed into it.

    @ivar deviceKey: the SPKI DER of the device this session is.
    @ivar mark: the highest stored sequence given to this session.
    """

    deviceKey: Optional[bytes] = None
    mark = 0
    _pendingName: Optional[str] = None

    # -- queries --------------------------------------------------------

    def devicesOf(self, name: str) -> DeviceList:
        """
        The device list the core holds for user C{name}.
        """
        return self.service.devices.held(name)

    @property
    def entryKey(self) -> str:
        """
        The entry key this session reads by (L{chatd.e2e.entryKey}); C{""}
        before it logs in, when it reads nothing.
        """
        if self.user is None:
            return ""
        return self.service.devices.entryKeyOf(self)

    def _identityDevice(self):
        """
        The session's user, when this session is its account's identity
        device (its key is the identity key): only it changes the list.
        """
        user = self._greeted()
        if self.device is None or not user.account or self.deviceKey != user.key:
            raise Forbidden("only the identity device (the account's first) may do that")
        return user

    def _ownName(self):
        """
        The account a device session (pending or not) belongs to.
        """
        if self.pending:
            return self._pendingName
        user = self._greeted()
        if self.device is None or not user.account:
            raise BadRequest("log in with a device first (protocol version 3)")
        return user.name

    # -- logging in -------------------------------------------------------

    def registerDevice(self, name: str, password: str, publicKey: bytes, device: str,
                       listText: bytes, signature: bytes, recovery: bytes,
                       invite: Optional[str] = None) -> "Deferred[None]":
        """
        Register an account whose first device (its identity) is this one.
        """
        self._notLoggedIn()
        checkDeviceId(device)
        _checkRecovery(recovery)
        return Deferred.fromCoroutine(self._registerDevice(
            name, password, publicKey, device, listText, signature, recovery, invite))

    async def _registerDevice(self, name, password, publicKey, device, listText, signature,
                              recovery, invite):
        checked: List[DeviceList] = []
        # The list is checked once the name is known to be valid, and stored
        # with the account.
        await self._register(name, password, publicKey, invite, checked, recovery,
                             lambda: checked.append(_checked(
                                 name, publicKey, None, (), listText, signature,
                                 [(device, publicKey)])))
        await self._becomeDevice(name, publicKey, device, publicKey, checked[0], fresh=True)

    def loginDevice(self, name: str, password: str, device: str,
                    deviceKey: bytes) -> "Deferred[int]":
        """
        Log in with a password as a device.

        @return: a L{Deferred} firing with L{APPROVED} or L{PENDING}.
        """
        self._notLoggedIn()
        checkDeviceId(device)
        e2e.loadPublicKey(deviceKey)
        return Deferred.fromCoroutine(self._loginDevice(name, password, device, deviceKey))

    async def _loginDevice(self, name, password, device, deviceKey):
        service = self.service
        account = await self._checkPassword(name, password)
        devices = await service.store.getDevices(account.name)
        if devices.devices:
            key = devices.keyOf(device)
            if key is not None and key != deviceKey:
                raise Conflict("device %s exists with another key" % (device,))
            approved = key == deviceKey
        else:
            approved = deviceKey == account.publicKey
        if self.ended:
            raise BadRequest("the session closed meanwhile")
        if not approved:
            self._dropGuest()
            self.device, self.deviceKey, self.pending = device, deviceKey, True
            self._pendingName = account.name
            service.devices.addPending(account.name, device, self)
            log.info("{name} device {device} pending from {address}", name=account.name,
                     device=device, address=self.address)
            return PENDING
        await self._becomeDevice(account.name, account.publicKey, device, deviceKey, devices)
        return APPROVED

    def _dropGuest(self):
        """
        A pending session belongs to nobody: a guest it was leaves its rooms
        and goes offline (as when it logs in to an account online).
        """
        guest, service = self.user, self.service
        if guest is None:
            return
        service.happened([UserOffline(guest.name)])
        service.goOffline(guest)
        service.directory.detach(self, guest)
        self.user = None

    def authDevice(self, name: str, device: str, signature: bytes) -> "Deferred[None]":
        """
        Log in as a device by signing the outstanding challenge.
        """
        self._notLoggedIn()
        challenge, self._challenge = self._challenge, None
        checkDeviceId(device)
        return Deferred.fromCoroutine(self._authDevice(name, device, signature, challenge))

    async def _authDevice(self, name, device, signature, challenge):
        service = self.service
        account = await service.store.getAccount(name) if isUserName(name) else None
        key = None
        devices = NO_DEVICES
        if account is not None:
            devices = await service.store.getDevices(account.name)
            key = devices.keyOf(device) if devices.devices else (account.publicKey or None)
        account = await self._checkSignature(name, account, key, challenge, signature, device)
        await self._becomeDevice(account.name, account.publicKey, device, key, devices)

    async def _becomeDevice(self, name, identityKey, device, deviceKey, devices, fresh=False):
        """
        Make this session the approved device C{device} of account C{name},
        restore its rooms and catch it up.
        """
        service = self.service
        service.devices.dropPending(self)
        self.device, self.deviceKey, self.pending = device, deviceKey, False
        self._pendingName = None
        service.devices.hold(name, identityKey, devices)
        log.info("{name} device {device} logged in from {address}", name=name,
                 device=device, address=self.address)
        await self._becomeAccount(name, identityKey)
        await self._catchUp(fresh)

    # -- the list -----------------------------------------------------------

    def getDevices(self, name: str) -> Deferred:
        """
        @return: a L{Deferred} firing with C{(list, pending)}.
        """
        own = self._ownName() if self.pending else self._greeted().name
        if not isUserName(name):
            raise BadRequest("invalid user name %r" % (name,))
        return Deferred.fromCoroutine(self._getDevices(own, name))

    async def _getDevices(self, own, name):
        online = self.service.directory.user(name)
        if online is not None and not online.account:
            # A guest is legacy: one key, no list.
            return NO_DEVICES, []
        held = await self.service.devices.load(name)
        if held is None:
            raise NotFound("no such user: %s" % (name,))
        pending = []
        if fold(own) == fold(name):
            pending = await self.service.store.pendingDevices(name)
        return held[2], pending

    def requestDevice(self, tag: bytes) -> Deferred:
        """
        A pending device asks its account's devices to approve it.
        """
        if not self.pending:
            raise BadRequest("only a pending device asks to be approved")
        if len(tag) != 32:
            raise BadRequest("an approval tag is 32 bytes")
        assert self.device is not None and self.deviceKey is not None
        pending = PendingDevice(self.device, self.deviceKey, tag,
                                self.service.now() + PENDING_LIFETIME)
        name: str = self._pendingName or ""
        d = self.service.store.addPending(name, pending)
        return d.addCallback(lambda _: self.service.happened([DevicePending(
            name, pending.device, pending.key, pending.tag, pending.expires)]))

    def publishDevices(self, text: bytes, signature: bytes, devices: Sequence[Tuple[str, bytes]]
                       ) -> "Deferred[None]":
        """
        The identity device publishes the account's next list.
        """
        user = self._identityDevice()
        return Deferred.fromCoroutine(self._publish(user, text, signature, devices))

    async def _publish(self, user, text, signature, devices):
        service = self.service
        store = service.store
        old = await store.getDevices(user.name)
        removed = await store.removedDevices(user.name)
        checked = _checked(user.name, user.key, devicelist.Head(*old.head) if old.text else None,
                           removed, text, signature, devices)
        gone: FrozenSet[str] = frozenset()
        if old.text:
            gone = devicelist.removedKeys(devicelist.DeviceList.parse(old.text),
                                          devicelist.DeviceList.parse(text))
        await store.publishDevices(user.name, checked, old.head, gone)
        service.happened([DevicesChanged(user.name, checked.text, checked.signature,
                                         checked.devices, None)])

    def approve(self, device: str, reply: bytes) -> None:
        """
        Relay the identity device's reply to the pending device C{device}.
        """
        user = self._identityDevice()
        checkDeviceId(device)
        if not self.service.devices.waiting(user.name, device, self.service.now()):
            raise NotFound("no pending device %s is online" % (device,))
        self.service.happened([Approval(user.name, device, reply)])

    def getRecovery(self) -> "Deferred[bytes]":
        """
        @return: a L{Deferred} firing with the account's recovery blob.
        """
        return self.service.store.getRecovery(self._ownName())

    def setRecovery(self, blob: bytes) -> "Deferred[None]":
        user = self._identityDevice()
        _checkRecovery(blob)
        return self.service.store.setRecovery(user.name, blob)

    def resetIdentity(self, publicKey: bytes, device: str, text: bytes, signature: bytes,
                      blob: bytes) -> "Deferred[None]":
        """
        A pending (password) session starts the account again with a new
        identity key: a loud key change, as in version 1.
        """
        if not self.pending:
            raise BadRequest("an identity is reset from a new device logged in"
                             " with the password")
        checkDeviceId(device)
        _checkRecovery(blob)
        name = self._pendingName
        checked = _checked(name, publicKey, None, (), text, signature, [(device, publicKey)])
        return Deferred.fromCoroutine(self._reset(name, publicKey, device, checked, blob))

    async def _reset(self, name, publicKey, device, checked, blob):
        service = self.service
        await service.store.resetIdentity(name, publicKey, checked, blob)
        log.info("{name} reset its identity from {address}", name=name, address=self.address)
        service.happened([DevicesChanged(name, checked.text, checked.signature,
                                         checked.devices, publicKey)])
        online = service.directory.user(name)
        if online is not None and online.key != publicKey:
            service.happened(service.directory.changeKey(online, publicKey))
        if not self.ended:
            await self._becomeDevice(name, publicKey, device, publicKey, checked, fresh=True)
