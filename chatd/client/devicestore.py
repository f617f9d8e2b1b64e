# -*- test-case-name: chatd.test.test_devicestore -*-
"""
What the terminal client keeps about devices (docs/client.rst, "Devices"), in
its home directory next to its keys and pins::

    <home>/
        keys/<user>.device   mode 0600: this device of <user>'s account:
                             C{{"id": NAME, "identity": BASE64 SPKI}}, the
                             account's identity key (IK) as this device
                             adopted it (its own key when it is the identity
                             device)
        device_lists         mode 0600: the device list held for each user
                             (L{chatd.devicelist.DeviceChain}): the last one
                             this client verified, and every key hash a
                             verified list of that user removed

This device's private key stays where it always was, C{keys/<user>.pem}:
the identity device's key is IK itself; another device's is its own.

The lists are held per user, by folded name, because a device list is only
ever accepted when it chains from the held one (L{chatd.client.devicechain}):
a client that forgot its heads could be rolled back. Several clients may share
a home: the file is read afresh for every question and rewritten whole.
"""

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass

from chatd.client.privatefiles import KeystoreError, requireUserName, writePrivately
from chatd.devicelist import DeviceChain
from chatd.errors import BadRequest
from chatd.names import fold

DEVICE_LISTS_FILE = "device_lists"

# docs/protocol.rst: what a device id may be.
DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def defaultDeviceId(hostname):
    """
    The device id a terminal client takes when C{--device} names none: the
    machine's host name (its first label), with what a device id may not hold
    replaced, so that the person recognises it in C{/devices}.
    """
    name = _NOT_IN_ID.sub("-", hostname.split(".")[0]).strip("-.")[:32]
    return name or "terminal"


def checkDeviceId(name):
    """
    @raise KeystoreError: unless C{name} is a device id.
    """
    if not isinstance(name, str) or DEVICE_ID.fullmatch(name) is None:
        raise KeystoreError("%r is not a device id (1 to 32 of A-Z a-z 0-9 _ . -)" % (name,))
    return name


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


class DeviceLists:
    """
    The device lists held for every user, in C{<home>/device_lists}: one
    L{DeviceChain} per user, by folded name, as L{DeviceChain.asJSON} says it.
    """

    def __init__(self, path):
        self.path = path

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return {key: DeviceChain.fromJSON(entry) for key, entry in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError, BadRequest) as e:
            # Losing the heads would let a server roll lists back: refuse to
            # go on rather than start again from nothing.
            raise KeystoreError("cannot read %s: %s" % (self.path, e)) from None

    def _write(self, chains):
        content = json.dumps({key: chain.asJSON() for key, chain in sorted(chains.items())},
                             indent=1, sort_keys=True)
        writePrivately(self.path, content.encode("utf-8"))

    def chain(self, user):
        """
        The L{DeviceChain} held for C{user} (holding nothing when no list of
        C{user} was ever verified).
        """
        return self._read().get(fold(user)) or DeviceChain()

    def keep(self, user, chain):
        """
        Hold C{chain} for C{user} from now on.
        """
        requireUserName(user)
        chains = self._read()
        chains[fold(user)] = chain
        self._write(chains)

    def forget(self, user):
        """
        Hold nothing for C{user} any more: only after the person accepted
        C{user}'s new identity key (an identity reset starts a new chain).
        """
        chains = self._read()
        if chains.pop(fold(user), None) is not None:
            self._write(chains)


@dataclass
class ThisDevice:
    """
    This device of an account.

    @ivar id: its device id.
    @ivar identity: the account's identity key (SPKI DER) as this device
        adopted it (at registration, from an approval or a recovery), or
        L{None} while it is waiting to be approved.
    """

    id: str
    identity: bytes | None = None


def devicePath(home, user):
    """
    Where C{home} keeps C{user}'s L{ThisDevice}.
    """
    requireUserName(user)
    return os.path.join(home.path, "keys", fold(user) + ".device")


def loadDevice(home, user):
    """
    This device of C{user}'s account, or L{None} when the account was never
    used from here with a device (a legacy account, or none).

    @raise KeystoreError: for a file that cannot be read.
    """
    path = devicePath(home, user)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        identity = data.get("identity")
        return ThisDevice(checkDeviceId(data["id"]),
                          _unb64(identity) if identity else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise KeystoreError("cannot read %s: %s" % (path, e)) from None


def saveDevice(home, user, device):
    """
    Keep C{device} as this device of C{user}'s account.
    """
    data = {"id": checkDeviceId(device.id),
            "identity": _b64(device.identity) if device.identity else None}
    writePrivately(devicePath(home, user), json.dumps(data, sort_keys=True).encode("utf-8"))
