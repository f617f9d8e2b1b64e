# -*- test-case-name: chatd.test.test_devicecodes -*-
"""
Tests for L{chatd.devicecodes}: approval secrets, tags and replies, and
recovery codes and blobs.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from chatd import devicecodes
from chatd.devicecodes import ApprovalError, CodeError, RecoveryError
from chatd.devicelist import DeviceList, readServerList
from chatd.errors import Status
from chatd.test.test_e2e import privateKey, publicDer

SECRET = "ABCDEFGHIJKLMNOPQRST"
RECOVERY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IK = publicDer("alice")
NEW = publicDer("laptop")


def approvedList(device="laptop", key=NEW, signer="alice"):
    """
    alice's list 2, adding C{device} with C{key}, signed by C{signer}, as read
    against IK.
    """
    devicelist = DeviceList.first("alice", "desk", IK).following({device: key})
    signature = devicelist.sign(privateKey(signer))
    return readServerList("alice", publicDer(signer), devicelist.text(), signature,
                          [("desk", IK), (device, key)])


def reply(secret=SECRET, device="laptop", deviceKey=NEW, approved=None, identity=IK):
    """
    An approval reply as alice's identity device builds it.
    """
    return devicecodes.buildReply(
        secret, "alice", device, deviceKey, identity,
        approved if approved is not None else approvedList(),
        {"bob": publicDer("bob")})


class CodeTests(SynchronousTestCase):
    """
    Making, showing and reading codes.
    """

    def test_new(self):
        """
        Fresh codes have their length, are base32, and differ.
        """
        first, second = devicecodes.newApprovalSecret(), devicecodes.newApprovalSecret()
        self.assertEqual((len(first), len(devicecodes.newRecoveryCode())), (20, 26))
        self.assertNotEqual(first, second)
        self.assertEqual(devicecodes.normalizeCode(first, 20), first)

    def test_normalize(self):
        """
        Lower case and dashes are accepted; the canonical form is upper case.
        """
        self.assertEqual(devicecodes.normalizeCode("abcd-efgh-ijkl-mnop-qrst", 20), SECRET)
        self.assertEqual(devicecodes.groupCode(SECRET), "ABCD-EFGH-IJKL-MNOP-QRST")
        self.assertEqual(devicecodes.normalizeCode(devicecodes.groupCode(RECOVERY), 26),
                         RECOVERY)

    def test_malformed(self):
        """
        Spaces, characters outside base32 and wrong lengths are refused.
        """
        for code in ["ABCD EFGH IJKL MNOP QRST", "ABCDEFGHIJKLMNOPQRS1", "ABCDEFGHIJKLMNOPQRS",
                     "ABCDEFGHIJKLMNOPQRSTU", "ABCDEFGHIJKLMNOPQRS\u00c9", ""]:
            error = self.assertRaises(CodeError, devicecodes.normalizeCode, code, 20)
            self.assertEqual(error.status, Status.ERROR)


class TagTests(SynchronousTestCase):
    """
    The tag that binds a pending request to the key its device made.
    """

    def test_verifies(self):
        """
        The tag verifies for the device's key, whatever the code's spelling or
        the user's case.
        """
        tag = devicecodes.approvalTag(SECRET, "alice", NEW)
        self.assertEqual(len(tag), 32)
        self.assertTrue(devicecodes.checkTag("abcd-efgh-ijkl-mnop-qrst", "Alice", NEW, tag))

    def test_swappedKey(self):
        """
        A key the server swapped in behind the tag does not verify, nor does
        another user or secret.
        """
        tag = devicecodes.approvalTag(SECRET, "alice", NEW)
        self.assertFalse(devicecodes.checkTag(SECRET, "alice", publicDer("mallory"), tag))
        self.assertFalse(devicecodes.checkTag(SECRET, "bob", NEW, tag))
        self.assertFalse(devicecodes.checkTag("B" + SECRET[1:], "alice", NEW, tag))

    def test_findPending(self):
        """
        Of the pending devices, the code picks the one whose tag it made; a
        pending key with a copied tag is not picked.
        """
        tag = devicecodes.approvalTag(SECRET, "alice", NEW)
        pending = [("evil", publicDer("mallory"), tag), ("laptop", NEW, tag)]
        self.assertEqual(devicecodes.findPending(SECRET, "alice", pending), ("laptop", NEW))
        self.assertIsNone(devicecodes.findPending(SECRET, "alice", pending[:1]))
        self.assertRaises(CodeError, devicecodes.findPending, "short", "alice", pending)


class ReplyTests(SynchronousTestCase):
    """
    The approver's reply, and the new device's check of it.
    """

    def test_roundTrip(self):
        """
        The new device gets IK, the list naming it and the approver's pins.
        """
        approval = devicecodes.openReply(SECRET, reply(), "alice", "laptop", NEW)
        self.assertEqual(approval.identityKey, IK)
        self.assertEqual(approval.list.keys, {"desk": IK, "laptop": NEW})
        self.assertEqual(approval.pins, {"bob": publicDer("bob")})

    def test_wrongMac(self):
        """
        A reply whose MAC is not the code's (made by the server, or altered) is
        refused before anything in it is read.
        """
        good = reply()
        for bad in [reply(secret="B" + SECRET[1:]), good[:5] + b"x" + good[6:],
                    good[:-1] + b" ", b"", good[:32]]:
            error = self.assertRaises(ApprovalError, devicecodes.openReply, SECRET, bad,
                                      "alice", "laptop", NEW)
            self.assertEqual(error.status, Status.FORBIDDEN)

    def test_fakeIdentity(self):
        """
        A reply naming another identity key than the one that signed its list
        is refused, even with a good MAC.
        """
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET,
                          reply(identity=publicDer("mallory")), "alice", "laptop", NEW)
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET,
                          reply(approved=approvedList(signer="mallory")), "alice", "laptop",
                          NEW)

    def test_otherDevice(self):
        """
        A reply for another device, key or user is refused; so is one whose
        list does not name this device's key.
        """
        good = reply()
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET, good, "alice",
                          "phone", NEW)
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET, good, "alice",
                          "laptop", publicDer("mallory"))
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET, good, "bob",
                          "laptop", NEW)
        self.assertRaises(ApprovalError, devicecodes.openReply, SECRET,
                          reply(approved=approvedList(key=publicDer("mallory"))),
                          "alice", "laptop", NEW)

    def test_garbageBody(self):
        """
        An authentic MAC over a body that is not an approval is refused cleanly.
        """
        for body in [b"not json", b"[]", json.dumps({"identityKey": 5}).encode()]:
            bad = devicecodes._mac(SECRET, devicecodes._APPROVED + body) + body
            self.assertRaises(ApprovalError, devicecodes.openReply, SECRET, bad, "alice",
                              "laptop", NEW)


class RecoveryTests(SynchronousTestCase):
    """
    The identity key sealed under the recovery code.
    """

    def test_roundTrip(self):
        """
        The code opens the blob to IK, in any spelling and user case.
        """
        blob = devicecodes.sealRecovery(RECOVERY, "alice", privateKey("alice"))
        key = devicecodes.openRecovery(devicecodes.groupCode(RECOVERY).lower(), "Alice",
                                       blob, IK)
        self.assertEqual(key.private_numbers(), privateKey("alice").private_numbers())

    def test_wrongCode(self):
        """
        Another code, another account or an altered blob does not open it.
        """
        blob = devicecodes.sealRecovery(RECOVERY, "alice", privateKey("alice"))
        for code, user, data in [("B" + RECOVERY[1:], "alice", blob),
                                 (RECOVERY, "bob", blob),
                                 (RECOVERY, "alice", blob[:-1] + bytes([blob[-1] ^ 1])),
                                 (RECOVERY, "alice", b"")]:
            error = self.assertRaises(RecoveryError, devicecodes.openRecovery, code, user,
                                      data)
            self.assertEqual(error.status, Status.FORBIDDEN)
        self.assertRaises(CodeError, devicecodes.openRecovery, SECRET, "alice", blob)

    def test_otherKey(self):
        """
        A blob holding a key other than the pinned IK is refused.
        """
        blob = devicecodes.sealRecovery(RECOVERY, "alice", privateKey("mallory"))
        self.assertRaises(RecoveryError, devicecodes.openRecovery, RECOVERY, "alice", blob,
                          IK)

    def test_fresh(self):
        """
        Two seals of one key differ (a fresh nonce each time).
        """
        self.assertNotEqual(devicecodes.sealRecovery(RECOVERY, "alice", privateKey("alice")),
                            devicecodes.sealRecovery(RECOVERY, "alice", privateKey("alice")))
