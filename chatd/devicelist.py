# -*- test-case-name: chatd.test.test_devicelist -*-
"""
Device lists: which devices may read an account's messages, as its identity
key (IK) signed them.

A list is a short canonical text (docs/protocol.rst, "Device lists"); each list
names the hash of the one before it, so an account's lists form a chain that
clients follow and never go back on. The server checks a published list with
L{checkPublished} and hands out the head; clients check what the server hands
them with L{readServerList} and keep per user a L{DeviceChain}. Nothing here
trusts the server: a device is encrypted to only when a list signed by the
pinned IK names its key hash.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple

from chatd import e2e, names
from chatd.envelopeshape import DEVICE_ID
from chatd.errors import BadRequest, Conflict, Forbidden

DOMAIN = b"chatd-devices-v1\0"
MAX_DEVICES = 16

_HASH = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[1-9][0-9]{0,9}")


class DeviceListError(BadRequest):
    """A list that is not one canonical device list, or not this user's (0x01)."""


class ListSignatureError(Forbidden):
    """A list the identity key did not sign, or that is not signed at all (0x05)."""


class RemovedKeyError(Forbidden):
    """A list naming a key hash an earlier list of the account removed (0x05)."""


class RollbackError(Forbidden):
    """A list older than the one already held for that user."""


class ForkError(Forbidden):
    """
    A list that does not chain from the one held: the same version with another
    hash, or the next version naming another list as its previous one.
    """


class HeadConflict(Conflict):
    """
    A published list that does not follow the server's head (0x07).

    @ivar head: the server's L{Head} (version 0 and an empty hash when the
        account has no list), for the signer to rebuild on.
    """

    def __init__(self, message: str, head: "Head") -> None:
        Conflict.__init__(self, message)
        self.head = head


class Head(NamedTuple):
    """
    What names one list of a chain: its version and the hex SHA-256 of its
    canonical bytes. Envelopes of version 2 sign the sender's head.
    """

    version: int
    hash: str


NO_HEAD = Head(0, "")


def keyHash(spki: bytes) -> str:
    """
    The hex SHA-256 of a device's SPKI DER key: how lists and clients name a
    device, never by its id alone.
    """
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class DeviceList:
    """
    One device list, as its canonical bytes say it.

    @ivar user: the account, as the signer spelt it (compared ignoring case).
    @ivar version: 1 for the first list, one more for each after it.
    @ivar prev: the hex hash of the list before it; C{""} for version 1.
    @ivar entries: C{(device id, key hash)} pairs, sorted by key hash.
    """

    user: str
    version: int
    prev: str
    entries: Tuple[Tuple[str, str], ...]

    @classmethod
    def first(cls, user: str, device: str, spki: bytes) -> "DeviceList":
        """
        The list a registration (or an identity reset) publishes: version 1,
        naming only the registering device.
        """
        return cls.build(user, 1, "", {device: spki})

    @classmethod
    def build(cls, user: str, version: int, prev: str,
              devices: Mapping[str, bytes]) -> "DeviceList":
        """
        A list of C{devices} (device id to SPKI DER), checked as L{parse} checks.
        """
        entries = tuple(sorted(((device, keyHash(spki)) for device, spki in devices.items()),
                               key=lambda entry: entry[1]))
        return cls.parse(cls(user, version, prev, entries).text())

    def text(self) -> bytes:
        """
        The canonical bytes: what IK signs and what the head hashes.
        """
        lines = [self.user, str(self.version), self.prev]
        for device, digest in self.entries:
            lines += [device, digest]
        return DOMAIN + "".join(line + "\n" for line in lines).encode("utf-8")

    @property
    def head(self) -> Head:
        """
        This list's L{Head}.
        """
        return Head(self.version, hashlib.sha256(self.text()).hexdigest())

    @classmethod
    def parse(cls, data: bytes) -> "DeviceList":
        """
        Read canonical list bytes, refusing any other spelling of them.

        @raise DeviceListError: unless C{data} is one canonical list of 1 to
            L{MAX_DEVICES} devices with unique ids and key hashes.
        """
        if not data.startswith(DOMAIN) or not data.endswith(b"\n"):
            raise DeviceListError("device list: not a chatd-devices-v1 text")
        try:
            lines = data[len(DOMAIN):-1].decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise DeviceListError("device list: not UTF-8")
        if len(lines) < 5 or len(lines) % 2 == 0:
            raise DeviceListError("device list: wrong number of lines")
        user, version, prev = lines[:3]
        if not names.isUserName(user):
            raise DeviceListError("device list: not a user name")
        if _VERSION.fullmatch(version) is None:
            raise DeviceListError("device list: version must be a number from 1")
        if (version == "1") != (prev == "") or (prev and _HASH.fullmatch(prev) is None):
            raise DeviceListError(
                "device list: prev must be empty for version 1, else a hex SHA-256")
        entries = tuple(zip(lines[3::2], lines[4::2]))
        if len(entries) > MAX_DEVICES:
            raise DeviceListError(f"device list: more than {MAX_DEVICES} devices")
        for device, digest in entries:
            if DEVICE_ID.fullmatch(device) is None or _HASH.fullmatch(digest) is None:
                raise DeviceListError("device list: a device must be an id and a key hash")
        hashes = [digest for _, digest in entries]
        if hashes != sorted(set(hashes)):
            raise DeviceListError("device list: key hashes must be unique and sorted")
        if len({device for device, _ in entries}) != len(entries):
            raise DeviceListError("device list: device ids must be unique")
        return cls(user, int(version), prev, entries)

    def ids(self) -> Dict[str, str]:
        """
        Device id to key hash.
        """
        return dict(self.entries)

    def keyHashes(self) -> FrozenSet[str]:
        """
        The key hashes this list admits.
        """
        return frozenset(digest for _, digest in self.entries)

    def following(self, add: Mapping[str, bytes] = {},
                  remove: Iterable[str] = ()) -> "DeviceList":
        """
        The next list: this one's devices, less the ids in C{remove}, plus
        C{add} (device id to SPKI DER), chained to this one's head.

        @raise DeviceListError: the result is not a valid list (an id taken,
            too many devices, none left).
        """
        removed = set(remove)
        taken = [device for device in add if device in self.ids() and device not in removed]
        if taken:
            raise DeviceListError(f"device list: device {taken[0]} is already listed")
        entries = [entry for entry in self.entries if entry[0] not in removed]
        entries += [(device, keyHash(spki)) for device, spki in add.items()]
        entries.sort(key=lambda entry: entry[1])
        return self.parse(DeviceList(self.user, self.version + 1, self.head.hash,
                                     tuple(entries)).text())

    def sign(self, identityKey) -> bytes:
        """
        IK's RSA-PSS-SHA256 signature of L{text}.

        @param identityKey: the account's IK, an L{rsa.RSAPrivateKey}.
        """
        return e2e.signBytes(identityKey, self.text())

    def verify(self, identitySpki: bytes, signature: bytes) -> bool:
        """
        Whether C{signature} is IK's signature of this list; never raises.
        """
        return e2e.verifyBytes(identitySpki, signature, self.text())


@dataclass(frozen=True)
class VerifiedList:
    """
    What a client may believe of the devices the server lists for a user.

    @ivar user: the user they are for.
    @ivar list: the signed L{DeviceList}, or L{None} for an account without one.
    @ivar signature: IK's signature of it (C{b""} without a list).
    @ivar keys: device id to SPKI DER, only for devices the list names with
        that key's hash: the only devices to encrypt to.
    @ivar unverified: C{(device id, SPKI DER)} the server listed that the list
        does not vouch for: to be shown as a warning, never given a key.
    """

    user: str
    list: Optional[DeviceList]
    signature: bytes
    keys: Dict[str, bytes]
    unverified: Tuple[Tuple[str, bytes], ...]

    def recipients(self, identitySpki: bytes) -> Dict[str, bytes]:
        """
        Entry key (L{e2e.entryKey}) to SPKI DER of every device to encrypt to:
        the bare user with IK for an account without a list.
        """
        if self.list is None:
            return {self.user: identitySpki}
        return {e2e.entryKey(self.user, device): spki for device, spki in self.keys.items()}

    def serverForm(self) -> Tuple[bytes, bytes, Tuple[Tuple[str, bytes], ...]]:
        """
        The list as the server hands it out: C{(text, signature, devices)}.
        """
        if self.list is None:
            return b"", b"", ()
        return self.list.text(), self.signature, tuple(
            (device, self.keys[device]) for device, _ in self.list.entries
            if device in self.keys)


def _sameUser(a: str, b: str) -> bool:
    return names.fold(a) == names.fold(b)


def readServerList(user: str, identitySpki: bytes, text: bytes, signature: bytes,
                   devices: Sequence[Tuple[str, bytes]]) -> VerifiedList:
    """
    Check the list the server hands out for C{user} against the pinned IK.

    @param devices: the server's C{(device id, SPKI DER)} pairs.
    @raise DeviceListError: the text is not a list, or another user's.
    @raise ListSignatureError: there is a list but IK did not sign it.
    """
    if text == b"":
        return VerifiedList(user, None, b"", {}, tuple(devices))
    devicelist = DeviceList.parse(text)
    if not _sameUser(devicelist.user, user):
        raise DeviceListError(f"device list: for {devicelist.user}, not {user}")
    if not signature:
        raise ListSignatureError(f"device list of {user}: not signed")
    if not devicelist.verify(identitySpki, signature):
        raise ListSignatureError(f"device list of {user}: not signed by the identity key")
    listed = devicelist.ids()
    keys: Dict[str, bytes] = {}
    unverified = []
    for device, spki in devices:
        if listed.get(device) == keyHash(spki) and device not in keys:
            keys[device] = spki
        else:
            unverified.append((device, spki))
    return VerifiedList(user, devicelist, signature, keys, tuple(unverified))


def checkPublished(user: str, identitySpki: bytes, head: Optional[Head],
                   removed: Iterable[str], text: bytes, signature: bytes,
                   devices: Sequence[Tuple[str, bytes]]) -> DeviceList:
    """
    The server's checks of a PUBLISH_DEVICES (and of REGISTER's and
    RESET_IDENTITY's first list, with no head).

    @param head: the account's current L{Head}, or L{None} without a list.
    @param removed: every key hash an earlier list of this account removed.
    @param devices: C{(device id, SPKI DER)} for each device of the list.
    @return: the parsed list, to store as the new head.
    @raise DeviceListError: not a list, another user's, or C{devices} do not
        match its entries (0x01).
    @raise HeadConflict: it does not follow C{head} (0x07).
    @raise ListSignatureError: IK did not sign it (0x05).
    @raise RemovedKeyError: it re-admits a removed key (0x05).
    """
    devicelist = DeviceList.parse(text)
    if not _sameUser(devicelist.user, user):
        raise DeviceListError(f"device list: for {devicelist.user}, not {user}")
    held = head or NO_HEAD
    if devicelist.version != held.version + 1 or devicelist.prev != held.hash:
        raise HeadConflict(
            f"device list: does not follow version {held.version}; rebuild on it", held)
    given = {}
    for device, spki in devices:
        e2e.loadPublicKey(spki)
        given[device] = keyHash(spki)
    if len(given) != len(devices) or given != devicelist.ids():
        raise DeviceListError("device list: the keys given are not the list's devices")
    if not devicelist.verify(identitySpki, signature):
        raise ListSignatureError("device list: not signed by the identity key")
    back = devicelist.keyHashes() & frozenset(removed)
    if back:
        raise RemovedKeyError(
            f"device list: key {min(back)[:16]} was removed from this account; "
            "it cannot come back")
    return devicelist


def removedKeys(old: Optional[DeviceList], new: DeviceList) -> FrozenSet[str]:
    """
    The key hashes C{new} drops from C{old}: never to be admitted again.
    """
    return frozenset() if old is None else old.keyHashes() - new.keyHashes()



class DeviceChain:
    """
    A client's hold on one user's device lists: the newest list it verified and
    every key hash a list it verified removed.

    The server keeps only the head, so a client that missed versions accepts a
    newer list signed by the pinned IK directly, as long as it re-admits no
    key hash it knows was removed; the next version must name the held one as
    its previous list. It never goes back, and two lists of one version (or a
    next version built on another list) are a fork, refused loudly.

    @ivar held: the L{DeviceList} held, or L{None} before the first.
    @ivar removed: key hashes never to be admitted again.
    """

    def __init__(self, held: Optional[DeviceList] = None,
                 removed: Iterable[str] = ()) -> None:
        self.held = held
        self.removed = set(removed)

    @property
    def head(self) -> Optional[Head]:
        """
        The held list's head, or L{None}.
        """
        return None if self.held is None else self.held.head

    def accept(self, devicelist: DeviceList) -> Tuple[Dict[str, str], Dict[str, str]]:
        """
        Take C{devicelist}, already verified against the pinned IK (see
        L{readServerList}), if it chains from the held one.

        @return: C{(added, removed)}: device id to key hash of the devices it
            adds and drops (both empty for the list already held), so that the
            client can say "alice added device laptop".
        @raise RollbackError: it is older than the held list.
        @raise ForkError: it is another list of the held version, or the next
            version built on another list.
        @raise RemovedKeyError: it names a key hash a list removed.
        """
        held = self.held
        if held is not None:
            if devicelist.version < held.version:
                raise RollbackError(
                    f"device list of {devicelist.user}: version {devicelist.version} is "
                    f"older than version {held.version}, already seen")
            if devicelist.version == held.version:
                if devicelist.head != held.head:
                    raise ForkError(
                        f"device list of {devicelist.user}: two different lists of "
                        f"version {held.version}")
                return {}, {}
            if devicelist.version == held.version + 1 and devicelist.prev != held.head.hash:
                raise ForkError(
                    f"device list of {devicelist.user}: version {devicelist.version} "
                    f"does not follow version {held.version}")
        back = devicelist.keyHashes() & self.removed
        if back:
            raise RemovedKeyError(
                f"device list of {devicelist.user}: re-admits the removed key "
                f"{min(back)[:16]}")
        old = {} if held is None else held.ids()
        new = devicelist.ids()
        self.removed |= removedKeys(held, devicelist)
        self.held = devicelist
        return ({device: digest for device, digest in new.items()
                 if old.get(device) != digest},
                {device: digest for device, digest in old.items()
                 if new.get(device) != digest})

    def isNewer(self, head: Optional[Head]) -> bool:
        """
        Whether a signed envelope header naming C{head} means the sender has a
        newer list than the held one (fetch and verify it before sending to
        that user again).

        @raise ForkError: C{head} is the held version with another hash.
        """
        if head is None:
            return False
        if self.held is None:
            return True
        held = self.held.head
        if head.version == held.version and head.hash != held.hash:
            raise ForkError(
                f"device list of {self.held.user}: a message names another list of "
                f"version {held.version}")
        return head.version > held.version

    def asJSON(self) -> dict:
        """
        What a keystore keeps of this chain, as JSON-ready values.
        """
        return {"list": None if self.held is None else self.held.text().decode("utf-8"),
                "removed": sorted(self.removed)}

    @classmethod
    def fromJSON(cls, obj: dict) -> "DeviceChain":
        """
        The chain L{asJSON} described.
        """
        text = obj.get("list")
        held = None if text is None else DeviceList.parse(text.encode("utf-8"))
        return cls(held, obj.get("removed", ()))
