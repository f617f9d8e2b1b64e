# -*- test-case-name: chatd.test.test_device_vectors -*-
"""
Make C{chatd/test/vectors/devices.json}: the bytes of devices that both clients
(the terminal client's tests and the browser check) must build and check the
same way: device lists and their signatures, an envelope of version 2, a
device login, an approval tag and reply, a recovery blob.

Run it from the repository's root::

    python -m chatd.test.vectors.make_devices [--new-keys]

The keys are read back from the file it writes (C{--new-keys} makes new ones);
every other input is fixed, so running it again changes only the RSA
signatures and wrapped keys, which their schemes randomise.

Schema (C{"schema": 1})
=======================

Bytes are standard base64 unless said otherwise.

C{keys}
    Label to C{{"spki", "pkcs8"}} (RSA 2048): C{alice} is alice's IK (and her
    device C{desk}'s key), C{laptop} and C{phone} her other devices, C{bob} bob's
    device C{phone}, C{mallory} nobody's.
C{lists}
    alice's lists in order, each C{{"user", "version", "prev", "devices":
    [{"id", "key"}] (key: a label; in list order, by key hash), "text",
    "signature" (by C{alice}), "head": {"v", "h"}}}: version 1 (C{desk}), 2
    (adds C{laptop}), 3 (removes C{laptop}, adds C{phone}).
C{envelope}
    C{{"json"}} (the envelope's text, as alice's C{desk} sent it to room
    C{#general} with C{hist} 50, for C{alice/desk}, C{alice/phone},
    C{bob/phone}), C{"header"} (the signed header, base64), C{"signer"}
    (label), C{"readers"} (entry key to label), C{"plaintext"} (UTF-8 text).
C{auth}
    C{{"challenge", "user", "device", "message"}}: the bytes a device login
    signs (C{chatd-auth-v2}).
C{approval}
    C{{"secret", "user", "device", "key" (label), "tag", "reply",
    "identityKey" (label), "list" (index into C{lists}), "pins": {user:
    label}}}: the tag the pending device sends and the reply the identity
    device sends back; C{"badReplies"}: replies that must be refused (C{why}:
    C{mac}, C{identity}).
C{recovery}
    C{{"code" (as shown, grouped), "user", "blob", "key" (label of the IK it
    opens to), "wrongCode"}}.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatd import devicecodes, e2e, loginsig
from chatd.devicelist import DeviceList, readServerList
from chatd.test.vectors.make_clients import Keys

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devices.json")

SCHEMA = 1
LABELS = ("alice", "laptop", "phone", "bob", "mallory")
SECRET = "K7QX-M2PD-RT4B-ZW6N-HJ3C"
RECOVERY = "QF3N-7MXK-2VBR-D6TP-ZJ4W-HA5E-YC"
WRONG_RECOVERY = "QF3N-7MXK-2VBR-D6TP-ZJ4W-HA5E-YD"
CHALLENGE = bytes(range(32))
TS = 1_780_000_000_000


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _derived(what, size):
    """
    C{size} fixed bytes named by C{what}.
    """
    return hashlib.sha256(b"chatd-device-vectors\0" + what.encode()).digest()[:size]


def lists(keys):
    """
    alice's three lists, each with IK's signature.
    """
    first = DeviceList.first("alice", "desk", keys.der("alice"))
    second = first.following({"laptop": keys.der("laptop")})
    third = second.following({"phone": keys.der("phone")}, remove=["laptop"])
    labels = {"desk": "alice", "laptop": "laptop", "phone": "phone"}
    return [(devicelist, devicelist.sign(keys.private["alice"]), labels)
            for devicelist in (first, second, third)]


def listJSON(devicelist, signature, labels):
    return {
        "user": devicelist.user, "version": devicelist.version, "prev": devicelist.prev,
        "devices": [{"id": device, "key": labels[device]} for device, _ in devicelist.entries],
        "text": _b64(devicelist.text()), "signature": _b64(signature),
        "head": {"v": devicelist.head.version, "h": devicelist.head.hash},
    }


def envelope(keys, head):
    """
    A version-2 envelope from alice's desk, every input fixed.
    """
    key = _derived("message key", 32)
    nonce = _b64(_derived("nonce", 12))
    envelopeId = base64.urlsafe_b64encode(_derived("id", 16)).decode("ascii")[:22]
    kc = _b64(e2e._commit(key))
    devices = ("desk", (head.version, head.hash), 50)
    header = e2e._header(e2e.MESSAGE_V2, "alice", "room", "#general", envelopeId, TS, nonce,
                         kc, devices)
    plaintext = "hello from alice's desk \u2603"
    encrypted = _b64(AESGCM(key).encrypt(base64.b64decode(nonce), plaintext.encode(), header))
    readers = {"alice/desk": "alice", "alice/phone": "phone", "bob/phone": "bob"}
    obj = {
        "v": 2, "alg": e2e.ALG, "id": envelopeId, "from": "alice",
        "to": {"room": "#general"}, "ts": TS, "nonce": nonce, "kc": kc,
        "dev": "desk", "head": {"v": head.version, "h": head.hash}, "hist": 50,
        "encrypted_message": encrypted,
        "encrypted_keys": {entry: _b64(e2e.loadPublicKey(keys.der(label)).encrypt(key, e2e._OAEP))
                           for entry, label in readers.items()},
        "key_ids": {entry: e2e.keyId(keys.der(label)) for entry, label in readers.items()},
        "signature": _b64(e2e.signBytes(keys.private["alice"],
                                        header + encrypted.encode("ascii"))),
    }
    return {"json": json.dumps(obj), "header": _b64(header), "signer": "alice",
            "readers": readers, "plaintext": plaintext}


def approval(keys, made):
    """
    The approval of alice's laptop (list 2), and replies to refuse.
    """
    devicelist, signature, labels = made[1]
    ik = keys.der("alice")
    verified = readServerList("alice", ik, devicelist.text(), signature,
                              [(device, keys.der(labels[device]))
                               for device, _ in devicelist.entries])
    pins = {"bob": keys.der("bob")}
    laptop = keys.der("laptop")
    reply = devicecodes.buildReply(SECRET, "alice", "laptop", laptop, ik, verified, pins)
    forged = devicecodes.buildReply("A" * 20, "alice", "laptop", laptop, ik, verified, pins)
    fakeList = devicelist.sign(keys.private["mallory"])
    fake = readServerList("alice", keys.der("mallory"), devicelist.text(), fakeList,
                          verified.serverForm()[2])
    fakeIdentity = devicecodes.buildReply(SECRET, "alice", "laptop", laptop, ik, fake, pins)
    return {
        "secret": SECRET, "user": "alice", "device": "laptop", "key": "laptop",
        "tag": _b64(devicecodes.approvalTag(SECRET, "alice", laptop)),
        "reply": _b64(reply), "identityKey": "alice", "list": 1, "pins": {"bob": "bob"},
        "badReplies": [{"why": "mac", "reply": _b64(forged)},
                       {"why": "identity", "reply": _b64(fakeIdentity)}],
    }


def recovery(keys):
    """
    alice's IK sealed under the recovery code, with a fixed nonce.
    """
    nonce = _derived("recovery nonce", 12)
    der = keys.private["alice"].private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    blob = nonce + AESGCM(devicecodes._recoveryKey(RECOVERY)).encrypt(
        nonce, der, devicecodes._recoveryAad("alice"))
    return {"code": RECOVERY, "user": "alice", "blob": _b64(blob), "key": "alice",
            "wrongCode": WRONG_RECOVERY}


def build(keys):
    made = lists(keys)
    return {
        "schema": SCHEMA,
        "generator": "chatd/test/vectors/make_devices.py",
        "keys": keys.asJSON(),
        "lists": [listJSON(*entry) for entry in made],
        "envelope": envelope(keys, made[2][0].head),
        "auth": {"challenge": _b64(CHALLENGE), "user": "alice", "device": "laptop",
                 "message": _b64(loginsig.authMessage(CHALLENGE, "alice", "laptop"))},
        "approval": approval(keys, made),
        "recovery": recovery(keys),
    }


def main(argv):
    keys = Keys.load(PATH, "--new-keys" in argv, LABELS)
    with open(PATH, "w", encoding="utf-8") as f:
        json.dump(build(keys), f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
