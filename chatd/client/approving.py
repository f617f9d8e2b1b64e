# -*- test-case-name: chatd.test.test_client_devices -*-
"""
What only the identity device does (docs/client.rst, "Devices"): approve a
new device (C{/approve CODE}), remove one (C{/devices remove NAME}), each by
signing the account's next device list with the identity key; and list the
account's devices (C{/devices}), on any device; and make a device waiting
for approval the identity device of an account that lost all the others and
its recovery code (C{/reset-identity}).

Approving checks the code against the pending requests' tags (the server
cannot swap the key being approved: only the device that made the code can
make its tag), signs the list with that key added, and sends the new device
a reply authenticated with the code: the identity key, the list, and the
keys this device pinned for the members of its rooms.
"""

from typing import Any

from chatd import devicecodes, e2e
from chatd.client import devicechain
from chatd.client.connection import ServerError
from chatd.client.devicestore import ThisDevice
from chatd.client.errors import ClientError
from chatd.devicelist import DeviceList, DeviceListError, readServerList
from chatd.errors import ChatError
from chatd.protocols.devicewire import DeviceOp


class IdentityDevice:
    """
    The identity device's part of L{chatd.client.chat.ChatClient}, which it
    is mixed into; it uses the client's C{device}, C{user}, C{privateKey},
    C{publicKey}, C{rooms}, C{home}, C{call}, C{runInThread}, C{_isMe} and
    C{judgeDevices}.
    """

    _adopt: Any
    _approved: Any
    _isMe: Any
    _firstIdentity: Any
    call: Any
    device: Any
    deviceLists: Any
    home: Any
    judgeDevices: Any
    pending: Any
    privateKey: Any
    catchingUp: Any
    publicKey: Any
    rooms: Any
    runInThread: Any
    user: Any

    def _requireIdentity(self, what):
        if self.device is None or self.device.identity != self.publicKey:
            raise ClientError("only %s's identity device can %s" % (self.user, what))

    async def _ownList(self):
        """
        Our account's current list, fetched and verified.

        @return: the L{devicechain.Verdict}.
        """
        (wireList, pending) = await self.call(DeviceOp.GET_DEVICES, self.user)
        verdict = self.judgeDevices(self.user, self.device.identity, wireList)
        if verdict.state == devicechain.REFUSED:
            raise ClientError(verdict.alarm)
        return verdict, pending

    async def _nextList(self, verdict, add=None, remove=()):
        """
        Sign the list after C{verdict}'s: C{add} (id to SPKI) added, the ids
        in C{remove} removed (version 1 for an account that had none).

        @return: its wire form C{(text, signature, devices)}.
        """
        keys = {self.device.id: self.publicKey}
        if verdict.state == devicechain.VERIFIED:
            keys = dict(verdict.verified.keys)
        try:
            if verdict.state == devicechain.VERIFIED:
                new = verdict.verified.list.following(add or {}, remove)
            else:
                new = DeviceList.build(self.user, 1, "", {self.device.id: self.publicKey,
                                                           **(add or {})})
        except DeviceListError as e:
            raise ClientError(str(e)) from None
        keys.update(add or {})
        for device in remove:
            keys.pop(device, None)
        devices = [(device, keys[device]) for device, _ in new.entries]
        return new.text(), await self.runInThread(new.sign, self.privateKey), devices

    async def _publish(self, wireList):
        """
        Publish a list L{_nextList} signed, and hold it.
        """
        text, signature, devices = wireList
        try:
            await self.call(DeviceOp.PUBLISH_DEVICES, text, signature, devices)
        except ServerError as e:
            if e.head is None:
                raise
            raise ClientError("your device list changed meanwhile (another identity device?); "
                              "nothing was published: try again") from None
        published = self.judgeDevices(self.user, self.device.identity, wireList)
        if published.state != devicechain.VERIFIED:
            raise ClientError(published.alarm or "the list published does not verify")

    async def approve(self, code):
        """
        C{/approve CODE}: approve the pending device whose request the code
        made, publish the list with it, and send it the reply.

        @return: C{(device id, fingerprint)} of the approved device.
        """
        self._requireIdentity("approve devices")
        try:
            secret = devicecodes.normalizeCode(code, devicecodes.APPROVAL_LENGTH)
        except ChatError as e:
            raise ClientError(str(e)) from None
        verdict, pending = await self._ownList()
        matching = devicecodes.findPending(
            secret, self.user, [(device, spki, tag) for device, spki, tag, _ in pending])
        if matching is None:
            raise ClientError("no device waiting for approval made that code (it may have "
                              "expired: ten minutes); nothing changed")
        device, spki = matching
        wireList = await self._nextList(verdict, add={device: spki})
        verified = readServerList(self.user, self.publicKey, *wireList)
        reply = devicecodes.buildReply(secret, self.user, device, spki, self.publicKey, verified,
                                       self._pinsForApproval())
        # The reply goes first: the list's publication approves the device
        # at once, and the server relays a reply to pending devices only.
        await self.call(DeviceOp.APPROVE, device, reply)
        try:
            await self._publish(wireList)
        except ClientError as e:
            raise ClientError("device %s has its approval, but its list was not published: %s"
                              % (device, e)) from None
        return device, e2e.fingerprint(spki)

    async def resetIdentity(self):
        """
        C{/reset-identity} on a device waiting for approval whose account
        lost every device and its recovery code (DEVICES.md, "Losing IK and R
        is an identity reset"): this device's key becomes the new identity
        key, list version 1 names this device alone, and a new recovery code
        seals the key. Everyone sees the loud key change of version 1; the
        old list's chain ends here, for us as for them.

        @return: the new recovery code, to show once.
        """
        pending = self.pending
        if pending is None:
            raise ClientError("/reset-identity is for a device waiting for approval "
                              "(/login first)")
        user, device, key = pending.user, pending.device, pending.key
        ik, wireList, code, blob = await self._firstIdentity(user, device, key)
        await self.call(DeviceOp.RESET_IDENTITY, ik, device, wireList[0], wireList[1], blob)
        # The chain held for our own account was signed by the old identity
        # key; the new key's starts at version 1.
        self.deviceLists.forget(user)
        self._adopt(user, ThisDevice(device, ik), wireList)
        self.pending = None
        self.catchingUp = True
        # The server made this session the identity device: what it sent
        # meanwhile (our list, our rooms, the catch-up) is taken now.
        self._approved(user, key)
        return code

    def _pinsForApproval(self):
        """
        The keys we pinned for the members of our rooms: what the approved
        device starts from.
        """
        pins = {}
        for room in self.rooms.values():
            for name in room.members:
                if not self._isMe(name):
                    pinned = self.home.knownKeys.pinned(name)
                    if pinned is not None:
                        pins[name] = pinned[0]
        return pins

    async def removeDevice(self, name):
        """
        C{/devices remove NAME}: publish the list without device C{name}.
        """
        self._requireIdentity("remove devices")
        verdict, _ = await self._ownList()
        if verdict.state != devicechain.VERIFIED or name not in verdict.verified.list.ids():
            raise ClientError("%s has no device %s" % (self.user, name))
        if name == self.device.id:
            raise ClientError("this is the identity device; it cannot remove itself")
        await self._publish(await self._nextList(verdict, remove=[name]))

    async def devices(self):
        """
        C{/devices}: our account's devices, C{[(id, fingerprint, this one)]},
        and the devices waiting for approval, C{[(id, fingerprint)]}.
        """
        if self.device is None:
            raise ClientError("log in to an account first")
        (wireList, pending) = await self.call(DeviceOp.GET_DEVICES, self.user)
        identity = self.device.identity
        if identity is None:
            raise ClientError("this device is not approved yet")
        verdict = self.judgeDevices(self.user, identity, wireList)
        if verdict.state == devicechain.REFUSED:
            raise ClientError(verdict.alarm)
        mine = [(self.device.id, self.publicKey)]
        if verdict.state == devicechain.VERIFIED:
            mine = sorted(verdict.verified.keys.items())
        rows = [(device, e2e.fingerprint(der), device == self.device.id,
                 der == identity) for device, der in mine]
        return rows, [(device, e2e.fingerprint(spki)) for device, spki, _, _ in pending]
