# -*- test-case-name: chatd.test.test_client_devices -*-
"""
Several devices per account, in the terminal client (docs/client.rst,
"Devices"; the wire: docs/protocol.rst, protocol version 3).

- Registration makes this device the account's identity device: its key is
  the identity key (IK), list version 1 names it alone, and a recovery code
  is shown once while IK's private key goes to the server sealed under it.
- A password login from a device the account's list does not name leaves it
  *pending*: it asks to be approved with a tag only the code it shows can
  make (C{/approve CODE}, typed on the identity device), and believes nothing
  from the server until the approval's reply verifies with that code.
- The identity device approves (C{/approve CODE}) and removes
  (C{/devices remove NAME}) devices by signing the next list.
- Everyone's devices are believed only from lists signed by their pinned IK
  and chaining from the list held (L{chatd.client.devicechain}); what the
  client encrypts to is exactly the devices it verified.
"""

import os
import socket
from dataclasses import dataclass
from typing import Any

from chatd import devicecodes, e2e, loginsig
from chatd.client import devicechain
from chatd.client.devicestore import (
    DEVICE_LISTS_FILE,
    DeviceLists,
    ThisDevice,
    checkDeviceId,
    defaultDeviceId,
    loadDevice,
    saveDevice,
)
from chatd.client.errors import ClientError
from chatd.client.keystore import KeystoreError, publicKeyDer
from chatd.devicelist import DeviceList
from chatd.errors import ChatError
from chatd.names import fold
from chatd.protocols.devicewire import APPROVED, VERSION, DeviceOp
from chatd.protocols.opcodes import Op

# How long a pending request lasts on the server (docs/protocol.rst).
PENDING_MINUTES = 10


@dataclass
class Pending:
    """
    This device waits to be approved.

    @ivar user: the account.
    @ivar device: this device's id.
    @ivar key: this device's private key.
    @ivar secret: the approval code s; it never leaves this device.
    """

    user: str
    device: str
    key: Any
    secret: str


class Devices:
    """
    The devices part of L{chatd.client.chat.ChatClient}, which it is mixed
    into; it uses the client's C{home}, C{ui}, C{call}, C{runInThread},
    C{user}, C{privateKey}, C{publicKey}, C{rooms}, C{_tell}, C{_isMe},
    C{_trustedKey}, C{_sawKey} and C{_connected}.

    @ivar deviceName: the device id asked for (C{--device}), or L{None} for
        the default (the one this home used for the account, else the host
        name).
    @ivar device: this device (L{ThisDevice}) once logged in to an account
        with a device session; L{None} otherwise.
    @ivar pending: the L{Pending} request while this device waits for
        approval, else L{None}.
    @ivar verdicts: folded user name to the L{devicechain.Verdict} on that
        user's devices: whom to encrypt to.
    """

    _approved: Any
    account: Any
    _becomeAccount: Any
    _connected: Any
    _isMe: Any
    _whilePending: Any
    _sawKey: Any
    _tell: Any
    _trustedKey: Any
    call: Any
    home: Any
    passphrase: Any
    privateKey: Any
    protocol: Any
    publicKey: Any
    rooms: Any
    runInThread: Any
    ui: Any
    user: Any

    def _initDevices(self, deviceName=None):
        if deviceName is not None:
            try:
                checkDeviceId(deviceName)
            except KeystoreError as e:
                raise ClientError(str(e)) from None
        self.deviceName = deviceName
        self.device = None
        self.pending = None
        self.verdicts = {}
        self._waitingLists = {}
        self.catchingUp = False
        self.deviceLists = DeviceLists(os.path.join(self.home.path, DEVICE_LISTS_FILE))

    def deviceSession(self, protocol):
        """
        Whether C{protocol} speaks version 3, where logins name a device.
        """
        return protocol is not None and protocol.version >= VERSION

    def deviceIdFor(self, user):
        """
        The device id this client logs in to C{user}'s account with.
        """
        try:
            saved = loadDevice(self.home, user)
        except KeystoreError as e:
            raise ClientError(str(e)) from None
        if saved is None:
            return self.deviceName or defaultDeviceId(socket.gethostname())
        if self.deviceName is not None and self.deviceName != saved.id:
            raise ClientError("this home is %s's device %s; --device %s names another"
                              % (user, saved.id, self.deviceName))
        return saved.id

    # -- the lists ----------------------------------------------------------

    def judgeDevices(self, user, identity, wireList):
        """
        Judge the device list the server gave for C{user}, whose identity key
        (pinned, or ours) is C{identity}; hold it when it moved on, and tell
        the person what changed.

        @param wireList: C{(text, signature, devices)}, as
            L{chatd.protocols.devicewire.DeviceList}.
        @return: the L{devicechain.Verdict}.
        """
        text, signature, devices = wireList
        chain = self.deviceLists.chain(user)
        verdict = devicechain.judge(user, identity, chain, text, signature, list(devices))
        if verdict.changed:
            self.deviceLists.keep(user, chain)
        self.verdicts[fold(user)] = verdict
        for added in verdict.added:
            self._tell(self.ui.notice, "%s added device %s" % (user, added))
        for removed in verdict.removed:
            self._tell(self.ui.notice, "%s removed device %s" % (user, removed))
        for warning in verdict.warnings:
            self._tell(self.ui.notice, "warning: %s" % (warning,))
        if verdict.alarm is not None:
            self._tell(self.ui.dropped, "WARNING: %s" % (verdict.alarm,))
        return verdict

    def _memberDevices(self, name, der, wireList):
        """
        A member's list from a version-3 member entry or event: judged
        against the key pinned for C{name} (ours, for us); not judged while
        C{name}'s key change waits for the person, since nothing is sent to
        a blocked user anyway.
        """
        if self._isMe(name):
            if self.device is not None and self.device.identity is not None:
                self.judgeDevices(name, self.device.identity, wireList)
            return
        pinned = self.home.knownKeys.pinned(name)
        if pinned is not None and pinned[0] != der:
            # Judged if the person accepts the new key (L{_judgeWaitingList}).
            self._waitingLists[fold(name)] = (der, wireList)
            return
        self.judgeDevices(name, der, wireList)

    def _judgeWaitingList(self, name, der):
        """
        The person accepted C{der} as C{name}'s new identity key, and the
        chain held for C{name} was dropped: judge the last list the server
        gave with that key while the change waited (an identity reset's
        version 1 is accepted only so, together with the key change).
        """
        waiting = self._waitingLists.pop(fold(name), None)
        if waiting is not None and waiting[0] == der:
            self.judgeDevices(name, der, waiting[1])

    def readersOf(self, user, identity):
        """
        The entry keys and keys an envelope for C{user} is sealed to: every
        verified device (ours included, this one with the key it holds), or
        C{user} alone for an account without a list.

        @raise ClientError: when C{user}'s devices cannot be believed.
        """
        verdict = self.verdicts.get(fold(user))
        if verdict is None:
            return {user: identity}
        if verdict.state == devicechain.REFUSED:
            raise ClientError("not sent: %s" % (verdict.alarm or "; ".join(verdict.warnings),))
        readers = verdict.recipients(user, identity)
        if self._isMe(user) and self.device is not None and self.privateKey is not None:
            readers[self.entryKey()] = self.publicKey
        return readers

    def entryKey(self, user=None):
        """
        Our own entry key: C{user/device} when our account has a list, the
        bare name otherwise.
        """
        user = user or self.user
        if self.device is not None and self.ownChain().held is not None:
            return e2e.entryKey(user, self.device.id)
        return user

    def ownChain(self):
        return self.deviceLists.chain(self.user)

    def sealing(self, hist=0):
        """
        The version-2 fields of what we seal, as C{e2e.seal} takes them:
        C{{"device", "head", "hist"}}, or nothing in a legacy session.
        """
        if self.device is None or not self.deviceSession(self.protocol):
            return {}
        head = self.ownChain().head
        held = head is not None
        return {"device": self.device.id if held else "",
                "head": tuple(head) if held else None, "hist": hist}

    def senderKey(self, envelope):
        """
        The key to check a version-2 envelope's signature with: its sending
        device's, from the sender's verified list (this device's own, for
        what we sent).

        @return: SPKI DER, or L{None} when that device is not verified.
        """
        sender = envelope.sender
        if self._isMe(sender) and self.device is not None and envelope.device == self.device.id:
            return self.publicKey
        verdict = self.verdicts.get(fold(sender))
        if not envelope.device:
            if verdict is not None and verdict.state == devicechain.VERIFIED:
                return None
            return self._trustedKey(sender)
        if verdict is None or verdict.state != devicechain.VERIFIED:
            return None
        return verdict.verified.keys.get(envelope.device)

    def newerHead(self, user, head):
        """
        Whether an envelope from C{user} naming the list C{head} (version,
        hash) means a newer list than the one held: L{True}, L{False}, or a
        sentence to show loudly (another list of the held version: a fork).
        """
        return devicechain.newerHead(self.deviceLists.chain(user), head)

    # -- registering, logging in --------------------------------------------

    async def _registerDevice(self, user, password, key, invite):
        """
        REGISTER in version 3: this device is the account's identity device.

        @return: the recovery code, to show once.
        """
        device = self.deviceIdFor(user)
        ik, wireList, code, blob = await self._firstIdentity(user, device, key)
        tail = (invite,) if invite else ()
        await self.call(Op.REGISTER, user, password, ik, device, wireList[0], wireList[1], blob,
                        *tail)
        self._adopt(user, ThisDevice(device, ik), wireList)
        return code

    async def _firstIdentity(self, user, device, key):
        """
        What makes this device C{user}'s identity device (at registration or
        an identity reset): C{key} is the identity key, list version 1 names
        this device alone, and a new recovery code seals C{key}.

        @return: C{(IK, (list text, signature, devices), recovery code,
            recovery blob)}.
        """
        ik = publicKeyDer(key)
        first = DeviceList.first(user, device, ik)
        code = devicecodes.newRecoveryCode()
        signature, blob = await self.runInThread(
            lambda: (first.sign(key), devicecodes.sealRecovery(code, user, key)))
        return ik, (first.text(), signature, [(device, ik)]), code, blob

    def _adopt(self, user, device, wireList):
        """
        This device of C{user} is approved, with identity C{device.identity}
        and the list C{wireList}: keep both.

        @raise ClientError: the list does not verify, or does not follow the
            one held.
        """
        verdict = self.judgeDevices(user, device.identity, wireList)
        if verdict.state == devicechain.REFUSED:
            raise ClientError(verdict.alarm)
        saveDevice(self.home, user, device)
        self.device = device

    async def _loginDevice(self, user, password, key):
        """
        LOGIN in version 3 with this device's key.

        @return: whether the device is approved; when not, L{pending} holds
            the request made.
        """
        device = self.deviceIdFor(user)
        spki = publicKeyDer(key)
        # What the server says while the login runs (our rooms, restored) is
        # checked against the identity this device adopted.
        self.device = loadDevice(self.home, user)
        try:
            (state,) = await self.call(Op.LOGIN, user, password, device, spki)
        except BaseException:
            self.device = None
            raise
        if state == APPROVED:
            if self.device is None:
                # An account without a list, whose key the server took as
                # this one's: this key is its identity key.
                self.device = ThisDevice(device, spki)
                saveDevice(self.home, user, self.device)
            self.catchingUp = True
            return True
        self.device = None
        secret = devicecodes.newApprovalSecret()
        await self.call(DeviceOp.REQUEST_DEVICE, devicecodes.approvalTag(secret, user, spki))
        self.pending = Pending(user, device, key, secret)
        return False

    async def _authDevice(self, protocol, user, key):
        """
        AUTH in version 3: sign the challenge naming this device.
        """
        device = self.deviceIdFor(user)
        self.device = loadDevice(self.home, user) or ThisDevice(device, publicKeyDer(key))
        (challenge,) = await protocol.request(Op.CHALLENGE)
        signature = await self.runInThread(loginsig.signAuth, key, challenge, user, device)
        try:
            await protocol.request(Op.AUTH, user, device, signature)
        except BaseException:
            if not self.account:
                self.device = None
            raise
        if loadDevice(self.home, user) is None:
            saveDevice(self.home, user, self.device)
        self.catchingUp = True

    def approveLine(self):
        """
        What a pending device shows: the command to type on the identity
        device.
        """
        pending = self.pending
        assert pending is not None, "no approval is awaited"
        return ("this device (%s, key %s) waits for approval: on %s's identity device, type  "
                "/approve %s  within %d minutes (or here: /recover RECOVERY-CODE)"
                % (pending.device, e2e.fingerprint(publicKeyDer(pending.key)), pending.user,
                   devicecodes.groupCode(pending.secret), PENDING_MINUTES))

    def _onApproval(self, reply):
        """
        APPROVAL: the identity device's answer to our request. Nothing in it is
        used before its HMAC verifies with our secret.
        """
        pending = self.pending
        if pending is None:
            return
        spki = publicKeyDer(pending.key)
        try:
            approved = devicecodes.openReply(pending.secret, reply, pending.user,
                                             pending.device, spki)
        except ChatError as e:
            self._tell(self.ui.dropped, "WARNING: an approval that does not verify with this "
                                        "device's code was refused: %s" % (e,))
            return
        try:
            self._adopt(pending.user, ThisDevice(pending.device, approved.identityKey),
                        approved.list.serverForm())
        except ClientError as e:
            self._tell(self.ui.dropped, "WARNING: %s" % (e,))
            return
        self.pending = None
        for name, der in approved.pins.items():
            if not self._isMe(name) and self.home.knownKeys.check(name, der) == "new":
                self.home.knownKeys.pin(name, der)
        self._tell(self.ui.notice, "this device (%s) is approved" % (pending.device,))
        self.catchingUp = True
        self._approved(pending.user, pending.key)

    async def recover(self, code):
        """
        C{/recover CODE} on a pending device: open the identity key the server
        keeps sealed under the recovery code, check the account's list with
        it, and become the identity device (no key change: the key is the
        same). The connection is made again, to log in as that device.

        @return: the identity device's id this device now is.
        """
        pending = self.pending
        if pending is None:
            raise ClientError("/recover is for a device waiting for approval (/login first)")
        (blob,) = await self.call(DeviceOp.GET_RECOVERY)
        if not blob:
            raise ClientError("the server keeps no recovery blob for %s" % (pending.user,))
        try:
            key = await self.runInThread(devicecodes.openRecovery, code, pending.user, blob)
        except (ChatError, ValueError) as e:
            raise ClientError("the recovery code does not open %s's identity key: %s"
                              % (pending.user, e)) from None
        ik = publicKeyDer(key)
        (wireList, _) = await self.call(DeviceOp.GET_DEVICES, pending.user)
        verdict = self.judgeDevices(pending.user, ik, wireList)
        if verdict.state == devicechain.REFUSED:
            raise ClientError(verdict.alarm)
        device = pending.device
        if verdict.state == devicechain.VERIFIED:
            named = [d for d, der in verdict.verified.keys.items() if der == ik]
            if not named:
                raise ClientError("%s's device list does not name its identity key's device"
                                  % (pending.user,))
            device = named[0]
        self.home.replaceIdentity(pending.user, key, self.passphrase)
        saveDevice(self.home, pending.user, ThisDevice(device, ik))
        self.pending = None
        self._whilePending = []
        self.device = ThisDevice(device, ik)
        self._becomeAccount(pending.user, key)
        self.catchingUp = True
        # A pending session stays pending: log in again, as the identity
        # device, on a new connection (the reconnection authenticates).
        if self.protocol is not None:
            self.protocol.transport.loseConnection()
        return device

    # -- events ---------------------------------------------------------------

    def _onDevicesChanged(self, user, wireList):
        """
        DEVICES_CHANGED: a list published for C{user}: judged against the
        identity key we hold for them (ours, for us).
        """
        if self._isMe(user):
            if self.device is not None and self.device.identity is not None:
                self.judgeDevices(user, self.device.identity, wireList)
            return
        pinned = self.home.knownKeys.pinned(user)
        if pinned is not None:
            self.judgeDevices(user, pinned[0], wireList)

    def _onDevicePending(self, device, spki, tag, expiry):
        self._tell(self.ui.notice, "a new device %s (key %s) asks to read your messages; if it is "
                                   "yours, type here  /approve CODE  with the code it shows"
                                   % (device, e2e.fingerprint(spki)))

    def _onCaughtUp(self, count):
        self.catchingUp = False
        if count:
            self._tell(self.ui.notice, "caught up: %d message%s arrived while this device was "
                                       "away" % (count, "" if count == 1 else "s"))
