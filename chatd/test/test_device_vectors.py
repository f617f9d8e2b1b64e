# -*- test-case-name: chatd.test.test_device_vectors -*-
"""
The shared device vectors (C{chatd/test/vectors/devices.json}, made by
C{make_devices.py}) hold for chatd's own code, so that the browser, which
checks the same file, agrees with it byte for byte.
"""

import base64
import json

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from chatd import devicecodes, e2e, loginsig
from chatd.devicelist import DeviceList, readServerList
from chatd.test.vectors import make_devices

with open(make_devices.PATH, encoding="utf-8") as _f:
    VECTORS = json.load(_f)


def spki(label):
    return base64.b64decode(VECTORS["keys"][label]["spki"])


def private(label):
    return serialization.load_der_private_key(
        base64.b64decode(VECTORS["keys"][label]["pkcs8"]), None)


def b(value):
    return base64.b64decode(value)


class ListVectorTests(SynchronousTestCase):
    """
    The lists' bytes, heads and signatures.
    """

    def test_lists(self):
        """
        Each list's text is the canonical text of its fields, its head the hash
        of that text, and IK signed it.
        """
        for entry in VECTORS["lists"]:
            text = b(entry["text"])
            devicelist = DeviceList.build(
                entry["user"], entry["version"], entry["prev"],
                {d["id"]: spki(d["key"]) for d in entry["devices"]})
            self.assertEqual(devicelist.text(), text)
            self.assertEqual(DeviceList.parse(text), devicelist)
            self.assertEqual(list(devicelist.head), [entry["head"]["v"], entry["head"]["h"]])
            verified = readServerList(entry["user"], spki("alice"), text, b(entry["signature"]),
                                      [(d["id"], spki(d["key"])) for d in entry["devices"]])
            self.assertEqual(verified.unverified, ())

    def test_chained(self):
        """
        Each list names the one before it.
        """
        lists = VECTORS["lists"]
        for before, after in zip(lists, lists[1:]):
            self.assertEqual(after["prev"], before["head"]["h"])


class EnvelopeVectorTests(SynchronousTestCase):
    """
    The version-2 envelope.
    """

    def test_envelope(self):
        """
        Its header is the vector's bytes, its signer's key verifies it, and each
        reader opens it under its entry key.
        """
        vector = VECTORS["envelope"]
        envelope = e2e.Envelope.parse(vector["json"].encode("utf-8"))
        self.assertEqual(envelope.header(), b(vector["header"]))
        self.assertTrue(envelope.verifySignature(spki(vector["signer"])))
        for entry, label in vector["readers"].items():
            self.assertEqual(
                e2e.openEnvelope(envelope.cutFor(entry), entry, private(label),
                                 spki(vector["signer"])).decode("utf-8"),
                vector["plaintext"])

    def test_auth(self):
        """
        The device login's signed bytes.
        """
        vector = VECTORS["auth"]
        self.assertEqual(loginsig.authMessage(b(vector["challenge"]), vector["user"],
                                         vector["device"]), b(vector["message"]))


class CodeVectorTests(SynchronousTestCase):
    """
    The approval and the recovery.
    """

    def test_approval(self):
        """
        The tag is the secret's over the device's key, the reply opens to IK,
        the list and the pins, and the bad replies are refused.
        """
        vector = VECTORS["approval"]
        key = spki(vector["key"])
        self.assertEqual(devicecodes.approvalTag(vector["secret"], vector["user"], key),
                         b(vector["tag"]))
        approval = devicecodes.openReply(vector["secret"], b(vector["reply"]), vector["user"],
                                         vector["device"], key)
        self.assertEqual(approval.identityKey, spki(vector["identityKey"]))
        assert approval.list.list is not None
        self.assertEqual(approval.list.list.text(),
                         b(VECTORS["lists"][vector["list"]]["text"]))
        self.assertEqual(approval.pins, {u: spki(k) for u, k in vector["pins"].items()})
        for bad in vector["badReplies"]:
            self.assertRaises(devicecodes.ApprovalError, devicecodes.openReply,
                              vector["secret"], b(bad["reply"]), vector["user"],
                              vector["device"], key)

    def test_recovery(self):
        """
        The code opens the blob to IK; the wrong code does not.
        """
        vector = VECTORS["recovery"]
        key = devicecodes.openRecovery(vector["code"], vector["user"], b(vector["blob"]),
                                       spki(vector["key"]))
        self.assertEqual(key.private_numbers(), private(vector["key"]).private_numbers())
        self.assertRaises(devicecodes.RecoveryError, devicecodes.openRecovery,
                          vector["wrongCode"], vector["user"], b(vector["blob"]))


class GeneratorTests(SynchronousTestCase):
    """
    The file is what its generator makes.
    """

    def test_sameBytes(self):
        """
        Made again from the same keys, every byte that is not randomised by its
        scheme (signatures, wrapped keys) is the same.
        """
        made = make_devices.build(
            make_devices.Keys.load(make_devices.PATH, False, make_devices.LABELS))
        for old, new in zip(VECTORS["lists"], made["lists"]):
            self.assertEqual(dict(old, signature=None), dict(new, signature=None))
        self.assertEqual(VECTORS["envelope"]["header"], made["envelope"]["header"])
        self.assertEqual(VECTORS["auth"], made["auth"])
        self.assertEqual(VECTORS["approval"]["tag"], made["approval"]["tag"])
        self.assertEqual(VECTORS["recovery"], made["recovery"])
