# -*- test-case-name: chatd.test.test_store_devices -*-
"""
Devices in the SQL store: an account's device list (its head, its devices,
the key hashes it removed), pending devices and the recovery blob.

The statements are operations in the manner of L{chatd.store.operations};
L{DeviceStore} gives L{chatd.store.sql.AdbapiStore} the
L{chatd.istore.IMessageStore} methods built on them.
"""

from typing import Any, Callable, FrozenSet, Iterable, List, Optional

from twisted.internet.defer import Deferred

from chatd.devicelist import Head, HeadConflict
from chatd.errors import NotFound
from chatd.model import NO_DEVICES, DeviceList, PendingDevice
from chatd.names import fold


def readDevices(txn, execute, userKey: str) -> DeviceList:
    """
    An account's current list, or L{NO_DEVICES}.
    """
    execute(txn, "SELECT version, digest, text, signature FROM device_lists"
                 " WHERE user_key = ?", (userKey,))
    rows = txn.fetchall()
    if not rows:
        return NO_DEVICES
    [(version, digest, text, signature)] = rows
    execute(txn, "SELECT device, public_key FROM devices WHERE user_key = ?"
                 " ORDER BY position", (userKey,))
    devices = tuple((device, bytes(key)) for device, key in txn.fetchall())
    return DeviceList(bytes(text), bytes(signature), devices, version, digest)


def readRemoved(txn, execute, userKey: str) -> FrozenSet[str]:
    execute(txn, "SELECT key_hash FROM removed_devices WHERE user_key = ?", (userKey,))
    return frozenset(keyHash for (keyHash,) in txn.fetchall())


def writeDevices(txn, execute, userKey: str, devices: DeviceList) -> None:
    """
    Make C{devices} the account's list, whatever it had; the pending
    requests of devices it names are answered.
    """
    execute(txn, "DELETE FROM device_lists WHERE user_key = ?", (userKey,))
    execute(txn, "DELETE FROM devices WHERE user_key = ?", (userKey,))
    execute(txn, "INSERT INTO device_lists (user_key, version, digest, text, signature)"
                 " VALUES (?, ?, ?, ?, ?)",
            (userKey, devices.version, devices.digest, devices.text, devices.signature))
    for position, (device, key) in enumerate(devices.devices):
        execute(txn, "INSERT INTO devices (user_key, position, device, public_key)"
                     " VALUES (?, ?, ?, ?)", (userKey, position, device, key))
        execute(txn, "DELETE FROM pending_devices WHERE user_key = ? AND device = ?",
                (userKey, device))


def publishDevices(txn, execute, userKey: str, devices: DeviceList, prev,
                   removed: List[str]) -> None:
    """
    Store the account's next list, if the head is still C{prev}.

    @raise HeadConflict: when the head moved (another node stored a list).
    """
    execute(txn, "SELECT version, digest FROM device_lists WHERE user_key = ?",
            (userKey,))
    rows = txn.fetchall()
    head = tuple(rows[0]) if rows else NO_DEVICES.head
    if head != tuple(prev):
        raise HeadConflict("the device list changed meanwhile", Head(*head))
    writeDevices(txn, execute, userKey, devices)
    for keyHash in removed:
        execute(txn, "INSERT INTO removed_devices (user_key, key_hash) VALUES (?, ?)"
                     " ON CONFLICT DO NOTHING", (userKey, keyHash))


def resetIdentity(txn, execute, userKey: str, publicKey: bytes, devices: DeviceList,
                  recovery: bytes) -> None:
    """
    A new identity key and list version 1: the old list, its removed keys,
    pending devices and marks go.
    """
    execute(txn, "UPDATE accounts SET public_key = ? WHERE name_key = ?", (publicKey, userKey))
    if txn.rowcount != 1:
        raise NotFound("no such account")
    for table in ("removed_devices", "pending_devices", "device_marks"):
        execute(txn, "DELETE FROM " + table + " WHERE user_key = ?", (userKey,))
    writeDevices(txn, execute, userKey, devices)
    setRecovery(txn, execute, userKey, recovery)


def addPending(txn, execute, userKey: str, pending: PendingDevice) -> None:
    execute(txn, "DELETE FROM pending_devices WHERE user_key = ? AND device = ?",
            (userKey, pending.device))
    execute(txn, "INSERT INTO pending_devices (user_key, device, public_key, tag, expires_ms)"
                 " VALUES (?, ?, ?, ?, ?)",
            (userKey, pending.device, pending.key, pending.tag, pending.expires))


def readPending(txn, execute, userKey: str, nowMs: int) -> List[PendingDevice]:
    execute(txn, "DELETE FROM pending_devices WHERE expires_ms <= ?", (nowMs,))
    execute(txn, "SELECT device, public_key, tag, expires_ms FROM pending_devices"
                 " WHERE user_key = ?", (userKey,))
    return sorted((PendingDevice(device, bytes(key), bytes(tag), expires)
                   for device, key, tag, expires in txn.fetchall()),
                  key=lambda pending: pending.device)


def setRecovery(txn, execute, userKey: str, blob: bytes) -> None:
    execute(txn, "DELETE FROM recovery_blobs WHERE user_key = ?", (userKey,))
    if blob:
        execute(txn, "INSERT INTO recovery_blobs (user_key, blob) VALUES (?, ?)",
                (userKey, blob))


def readRecovery(txn, execute, userKey: str) -> bytes:
    execute(txn, "SELECT blob FROM recovery_blobs WHERE user_key = ?", (userKey,))
    rows = txn.fetchall()
    return bytes(rows[0][0]) if rows else b""


def createDevices(txn, execute, userKey: str, devices: Optional[DeviceList],
                  recovery: bytes) -> None:
    """
    The list and recovery blob of an account being registered by a device.
    """
    if devices is not None:
        writeDevices(txn, execute, userKey, devices)
    setRecovery(txn, execute, userKey, recovery)


class DeviceStore:
    """
    The device methods of L{chatd.istore.IMessageStore} for a store with
    C{run} (a write in call order) and C{_interact} (a read).
    """

    run: Callable[..., Deferred]
    _interact: Callable[..., Deferred]
    _execute: Callable[..., None]
    _now: Callable[[], int]

    def _read(self, operation, *args):
        return self._interact(lambda txn: operation(txn, self._execute, *args))

    def getDevices(self, user: str) -> "Deferred[DeviceList]":
        return self._read(readDevices, fold(user))

    def removedDevices(self, user: str) -> "Deferred[FrozenSet[str]]":
        return self._read(readRemoved, fold(user))

    def publishDevices(self, user: str, devices: DeviceList, prev: Any,
                       removed: Iterable[str]) -> "Deferred[None]":
        return self.run(publishDevices, fold(user), devices, prev, sorted(removed))

    def resetIdentity(self, user: str, publicKey: bytes, devices: DeviceList,
                      recovery: bytes) -> "Deferred[None]":
        return self.run(resetIdentity, fold(user), publicKey, devices, recovery)

    def addPending(self, user: str, pending: PendingDevice) -> "Deferred[None]":
        return self.run(addPending, fold(user), pending)

    def pendingDevices(self, user: str) -> "Deferred[List[PendingDevice]]":
        return self.run(readPending, fold(user), self._now())

    def getRecovery(self, user: str) -> "Deferred[bytes]":
        return self._read(readRecovery, fold(user))

    def setRecovery(self, user: str, blob: bytes) -> "Deferred[None]":
        return self.run(setRecovery, fold(user), blob)
