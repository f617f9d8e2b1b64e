# -*- test-case-name: chatd.test.test_client_devices -*-
"""
History for new members (docs/client.rst, "Devices"; DEVICES.md): when the
server asks (SHARE_WANTED), a member's device wraps the keys of the room's
latest messages again, for the newcomer's devices, and sends them
(SHARE_HISTORY).

Only what the senders allowed and this device could read is shared: messages
of that very room (their signed C{to}), signed with a history setting
C{hist} above 0 and among that many latest messages, which this device opens
itself (signature, key commitment, ciphertext); and only for the newcomer's
devices this client would send to now: the newcomer's join was shown (it is
a member here) and its devices are those of its verified list. The wrapped
keys are the message's own, so the newcomer checks everything the sender
signed; nothing a forwarder adds can change what the message says.
"""

import base64
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import e2e
from chatd.client import devicechain
from chatd.names import fold
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import KIND_USER, Op

log = Logger()

# The most envelope ids one SHARE_HISTORY may carry (docs/protocol.rst).
MAX_SHARED = 500


def rewrap(envelope, reader, privateKey, recipients):
    """
    The key maps that give C{recipients} (entry key to SPKI DER) the message
    key of C{envelope}, which C{reader} opens with C{privateKey}: the message
    is decrypted first, so that only a key that passes the key commitment
    and opens the ciphertext is handed on.

    @raise chatd.e2e.EnvelopeError: C{reader} cannot open the message.
    """
    e2e.decrypt(envelope, reader, privateKey)
    key = privateKey.decrypt(base64.b64decode(envelope.encryptedKeys[reader]), e2e._OAEP)
    return {
        "encrypted_keys": {name: base64.b64encode(
            e2e.loadPublicKey(der).encrypt(key, e2e._OAEP)).decode("ascii")
            for name, der in recipients.items()},
        "key_ids": {name: e2e.keyId(der) for name, der in recipients.items()},
    }


class Sharing:
    """
    History sharing, mixed into L{chatd.client.chat.ChatClient}; it uses the
    client's C{rooms}, C{blocked}, C{verdicts}, C{privateKey}, C{runInThread},
    C{call}, C{ui}, C{_members}, C{_sawKey}, C{_trustedKey}, C{_deviceKey},
    C{_tell}, C{entryKey}, C{readersOf} and C{deviceSession}.
    """

    _deviceKey: Any
    _members: Any
    _sawKey: Any
    _tell: Any
    _trustedKey: Any
    blocked: Any
    call: Any
    deviceSession: Any
    entryKey: Any
    privateKey: Any
    protocol: Any
    readersOf: Any
    rooms: Any
    runInThread: Any
    ui: Any
    verdicts: Any

    def _onShareWanted(self, room, newcomer, count):
        d = Deferred.fromCoroutine(self.shareHistory(room, newcomer, count))
        d.addErrback(lambda f: log.failure("sharing {room}'s history with {user}", f,
                                           room=room, user=newcomer))

    async def shareHistory(self, roomName, newcomer, count):
        """
        Share what may be shared of C{roomName}'s latest C{count} messages
        with C{newcomer}'s verified devices.

        @return: how many entries the server added (0 when nothing was sent).
        """
        room = self.rooms.get(fold(roomName))
        if room is None or count <= 0 or not self.deviceSession(self.protocol):
            return 0
        newcomerName = next((m for m in room.members if fold(m) == fold(newcomer)), None)
        if newcomerName is None:
            # Nobody saw this newcomer join: nothing goes to a ghost.
            return 0
        (members,) = await self.call(Op.GET_KEYS, KIND_USER, newcomerName)
        for name, der in self._members(members):
            self._sawKey(name, der)
        identity = self._trustedKey(newcomerName)
        verdict = self.verdicts.get(fold(newcomerName))
        if (identity is None or fold(newcomerName) in self.blocked
                or (verdict is not None and verdict.state == devicechain.REFUSED)):
            return 0
        readers = self.readersOf(newcomerName, identity)
        (rows,) = await self.call(Op.HISTORY, room.name, min(count, MAX_SHARED), 0)
        entries = []
        reader = self.entryKey()
        for age, (sender, _, blob) in enumerate(reversed(rows)):
            try:
                envelope = e2e.Envelope.parse(blob)
                if (envelope.version != 2 or envelope.sender != sender
                        or (envelope.toKind, envelope.toName) != ("room", room.name)
                        or not 0 < age + 1 <= envelope.hist):
                    continue
                key = await self._deviceKey(envelope)
                if not envelope.verifySignature(key):
                    continue
                maps = await self.runInThread(rewrap, envelope, reader, self.privateKey,
                                              readers)
            except Exception as e:
                log.info("not sharing a message of {room}: {why}", room=room.name, why=e)
                continue
            entries.append((envelope.id, json.dumps(maps).encode("utf-8")))
        if not entries:
            return 0
        (added,) = await self.call(DeviceOp.SHARE_HISTORY, room.name, newcomerName,
                                   list(reversed(entries)))
        if added:
            self._tell(self.ui.notice, "shared %d of %s's latest messages with %s's devices"
                       % (added, room.name, newcomerName))
        return added
