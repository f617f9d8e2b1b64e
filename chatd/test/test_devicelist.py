# -*- test-case-name: chatd.test.test_devicelist -*-
"""
Tests for L{chatd.devicelist}: device lists built, signed, checked by the
server, verified and chained by clients.
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from chatd.devicelist import (
    DOMAIN,
    NO_HEAD,
    DeviceChain,
    DeviceList,
    DeviceListError,
    ForkError,
    Head,
    HeadConflict,
    ListSignatureError,
    RemovedKeyError,
    RollbackError,
    checkPublished,
    keyHash,
    readServerList,
    removedKeys,
)
from chatd.errors import Status
from chatd.test.test_e2e import privateKey, publicDer

IK = publicDer("alice")
LAPTOP = publicDer("laptop")
PHONE = publicDer("phone")


def first():
    """
    alice's first list: her identity device "desk", whose key is IK.
    """
    return DeviceList.first("alice", "desk", IK)


def signed(devicelist, key="alice"):
    """
    C{devicelist}'s signature by the key called C{key}.
    """
    return devicelist.sign(privateKey(key))


def serverForm(devicelist, keys):
    """
    C{(device id, SPKI)} pairs for C{devicelist}'s devices, from C{keys}.
    """
    return [(device, keys[device]) for device, _ in devicelist.entries]


KEYS = {"desk": IK, "laptop": LAPTOP, "phone": PHONE}


class CanonicalTests(SynchronousTestCase):
    """
    The canonical bytes and their one spelling.
    """

    def test_bytes(self):
        """
        The domain, the user, the version, prev, then id and key hash per
        device, sorted by key hash, each on its own line.
        """
        second = first().following({"laptop": LAPTOP})
        entries = sorted([("desk", keyHash(IK)), ("laptop", keyHash(LAPTOP))],
                         key=lambda e: e[1])
        expected = (b"chatd-devices-v1\0alice\n2\n" + first().head.hash.encode() + b"\n"
                    + b"".join(f"{d}\n{h}\n".encode() for d, h in entries))
        self.assertEqual(second.text(), expected)
        self.assertEqual(second.head, Head(2, hashlib.sha256(expected).hexdigest()))

    def test_first(self):
        """
        The first list is version 1 with an empty prev and one device.
        """
        self.assertEqual(first().text(),
                         DOMAIN + b"alice\n1\n\ndesk\n" + keyHash(IK).encode() + b"\n")

    def test_roundTrip(self):
        """
        Parsing canonical bytes gives the same list back.
        """
        second = first().following({"laptop": LAPTOP, "phone": PHONE})
        self.assertEqual(DeviceList.parse(second.text()), second)

    def test_nonCanonical(self):
        """
        Every other spelling is refused: leading zeros, unsorted or repeated
        devices, a prev on version 1 or none after it, bad ids, bad hashes,
        trailing bytes, no device, too many.
        """
        h = keyHash(IK)
        g = keyHash(LAPTOP)
        low, high = sorted([h, g])
        bad = [
            b"alice\n01\n\ndesk\n" + h.encode() + b"\n",
            b"alice\n1\n" + h.encode() + b"\ndesk\n" + h.encode() + b"\n",
            b"alice\n2\n\ndesk\n" + h.encode() + b"\n",
            b"alice\n0\n\ndesk\n" + h.encode() + b"\n",
            b"alice\n1\n\nd\n" + high.encode() + b"\ne\n" + low.encode() + b"\n",
            b"alice\n1\n\nd\n" + h.encode() + b"\ne\n" + h.encode() + b"\n",
            b"alice\n1\n\nd\n" + low.encode() + b"\nd\n" + high.encode() + b"\n",
            b"alice\n1\n\nde sk\n" + h.encode() + b"\n",
            b"alice\n1\n\ndesk\n" + h.upper().encode() + b"\n",
            b"alice\n1\n\ndesk\n" + h.encode() + b"\nx",
            b"alice\n1\n\ndesk\n" + h.encode(),
            b"alice\n1\n\n",
            b"al ice\n1\n\ndesk\n" + h.encode() + b"\n",
            b"alice\n1\n\n" + b"".join(
                b"d%d\n%s\n" % (n, d.encode()) for n, d in enumerate(
                    sorted(hashlib.sha256(b"%d" % i).hexdigest() for i in range(17)))),
            b"alice\n1\n\ndesk\n\xff\n",
        ]
        for text in bad:
            error = self.assertRaises(DeviceListError, DeviceList.parse, DOMAIN + text)
            self.assertEqual(error.status, Status.ERROR)
        self.assertRaises(DeviceListError, DeviceList.parse,
                          b"chatd-devices-v2\0alice\n1\n\ndesk\n" + h.encode() + b"\n")

    def test_following(self):
        """
        The next list chains to this one: version + 1, prev = its hash; ids
        removed and added as asked.
        """
        second = first().following({"laptop": LAPTOP})
        third = second.following({"phone": PHONE}, remove=["laptop"])
        self.assertEqual((third.version, third.prev), (3, second.head.hash))
        self.assertEqual(third.ids(), {"desk": keyHash(IK), "phone": keyHash(PHONE)})
        self.assertEqual(removedKeys(second, third), {keyHash(LAPTOP)})
        self.assertEqual(removedKeys(None, third), frozenset())

    def test_followingTakenId(self):
        """
        Adding an id the list has already is refused.
        """
        self.assertRaises(DeviceListError, first().following, {"desk": LAPTOP})

    def test_signVerify(self):
        """
        IK's signature verifies; another key's, or one over another list, does not.
        """
        devicelist = first().following({"laptop": LAPTOP})
        self.assertTrue(devicelist.verify(IK, signed(devicelist)))
        self.assertFalse(devicelist.verify(IK, signed(devicelist, "mallory")))
        self.assertFalse(devicelist.verify(IK, signed(first())))
        self.assertFalse(devicelist.verify(b"garbage", signed(devicelist)))


class PublishTests(SynchronousTestCase):
    """
    L{checkPublished}: what the server accepts as the next list.
    """

    def publish(self, devicelist, head, removed=(), signature=None, devices=None):
        return checkPublished(
            "alice", IK, head, removed, devicelist.text(),
            signed(devicelist) if signature is None else signature,
            serverForm(devicelist, KEYS) if devices is None else devices)

    def test_first(self):
        """
        With no head, a signed version 1 is accepted.
        """
        self.assertEqual(self.publish(first(), None), first())

    def test_next(self):
        """
        The list following the head is accepted.
        """
        second = first().following({"laptop": LAPTOP})
        self.assertEqual(self.publish(second, first().head), second)

    def test_userCase(self):
        """
        The user is compared ignoring case, as names are.
        """
        devicelist = DeviceList.first("Alice", "desk", IK)
        self.assertEqual(self.publish(devicelist, None), devicelist)

    def test_otherUser(self):
        """
        bob's list cannot be published as alice's.
        """
        devicelist = DeviceList.first("bob", "desk", IK)
        self.assertRaises(DeviceListError, self.publish, devicelist, None)

    def test_notFollowing(self):
        """
        A list not built on the head is a conflict carrying the head.
        """
        second = first().following({"laptop": LAPTOP})
        error = self.assertRaises(HeadConflict, self.publish, second, None)
        self.assertEqual((error.head, error.status), (NO_HEAD, Status.CONFLICT))
        third = second.following({"phone": PHONE})
        error = self.assertRaises(HeadConflict, self.publish, third, first().head)
        self.assertEqual(error.head, first().head)
        fork = DeviceList.build("alice", 2, "00" * 32, {"desk": IK})
        self.assertRaises(HeadConflict, self.publish, fork, first().head)

    def test_unsigned(self):
        """
        A list not signed by IK is refused (0x05).
        """
        second = first().following({"laptop": LAPTOP})
        for signature in [b"", signed(second, "laptop")]:
            error = self.assertRaises(ListSignatureError, self.publish, second,
                                      first().head, signature=signature)
            self.assertEqual(error.status, Status.FORBIDDEN)

    def test_keysNotTheList(self):
        """
        Keys that are not the list's devices (a key missing, another key, an
        extra device) are refused.
        """
        second = first().following({"laptop": LAPTOP})
        for devices in [[("desk", IK)], [("desk", IK), ("laptop", PHONE)],
                        [("desk", IK), ("laptop", LAPTOP), ("phone", PHONE)],
                        [("desk", IK), ("laptop", LAPTOP), ("laptop", LAPTOP)]]:
            self.assertRaises(DeviceListError, self.publish, second, first().head,
                              devices=devices)

    def test_removedKey(self):
        """
        A key an earlier list removed cannot come back (0x05).
        """
        second = first().following({"laptop": LAPTOP})
        third = second.following(remove=["laptop"])
        fourth = third.following({"laptop2": LAPTOP})
        error = self.assertRaises(
            RemovedKeyError, self.publish, fourth, third.head,
            removed=removedKeys(second, third),
            devices=[("desk", IK), ("laptop2", LAPTOP)])
        self.assertEqual(error.status, Status.FORBIDDEN)


class ReadServerListTests(SynchronousTestCase):
    """
    L{readServerList}: what a client believes of the server's list.
    """

    def test_verified(self):
        """
        The devices a signed list names with their keys are the recipients.
        """
        second = first().following({"laptop": LAPTOP})
        signature = signed(second)
        verified = readServerList("alice", IK, second.text(), signature,
                                  serverForm(second, KEYS))
        self.assertEqual(verified.keys, {"desk": IK, "laptop": LAPTOP})
        self.assertEqual(verified.unverified, ())
        self.assertEqual(verified.recipients(IK), {"alice/desk": IK, "alice/laptop": LAPTOP})
        self.assertEqual(verified.serverForm(),
                         (second.text(), signature, tuple(serverForm(second, KEYS))))

    def test_unsignedDevice(self):
        """
        A device the list does not name, or names with another key, is kept
        apart as unverified and never becomes a recipient.
        """
        second = first().following({"laptop": LAPTOP})
        verified = readServerList("alice", IK, second.text(), signed(second),
                                  [("desk", IK), ("laptop", PHONE), ("ghost", PHONE)])
        self.assertEqual(verified.keys, {"desk": IK})
        self.assertEqual(verified.unverified, (("laptop", PHONE), ("ghost", PHONE)))
        self.assertEqual(verified.recipients(IK), {"alice/desk": IK})

    def test_noList(self):
        """
        An account without a list is its bare name with IK; any device the
        server lists for it is unverified.
        """
        verified = readServerList("carol", IK, b"", b"", [("ghost", PHONE)])
        self.assertIsNone(verified.list)
        self.assertEqual(verified.recipients(IK), {"carol": IK})
        self.assertEqual(verified.unverified, (("ghost", PHONE),))

    def test_unsignedList(self):
        """
        A list with no signature, or one not by the pinned IK, is refused.
        """
        second = first().following({"laptop": LAPTOP})
        for signature in [b"", signed(second, "mallory")]:
            self.assertRaises(ListSignatureError, readServerList, "alice", IK,
                              second.text(), signature, serverForm(second, KEYS))

    def test_otherUsersList(self):
        """
        bob's list served as alice's is refused.
        """
        bobs = DeviceList.first("bob", "desk", IK)
        self.assertRaises(DeviceListError, readServerList, "alice", IK, bobs.text(),
                          signed(bobs), [("desk", IK)])


class ChainTests(SynchronousTestCase):
    """
    L{DeviceChain}: never back, never a fork, never a removed key.
    """

    def setUp(self):
        self.second = first().following({"laptop": LAPTOP})
        self.third = self.second.following({"phone": PHONE}, remove=["laptop"])

    def test_firstContact(self):
        """
        The first list is taken as it is (pinned like IK), all devices added.
        """
        chain = DeviceChain()
        added, removed = chain.accept(self.second)
        self.assertEqual(added, {"desk": keyHash(IK), "laptop": keyHash(LAPTOP)})
        self.assertEqual((removed, chain.head), ({}, self.second.head))

    def test_next(self):
        """
        The next version is taken; what it adds and removes is reported, and
        the removed key remembered.
        """
        chain = DeviceChain(self.second)
        added, removed = chain.accept(self.third)
        self.assertEqual((added, removed),
                         ({"phone": keyHash(PHONE)}, {"laptop": keyHash(LAPTOP)}))
        self.assertEqual(chain.removed, {keyHash(LAPTOP)})

    def test_same(self):
        """
        The list already held changes nothing.
        """
        chain = DeviceChain(self.second)
        self.assertEqual(chain.accept(self.second), ({}, {}))

    def test_rollback(self):
        """
        An older list is refused and the held one kept.
        """
        chain = DeviceChain(self.third)
        self.assertRaises(RollbackError, chain.accept, self.second)
        self.assertEqual(chain.held, self.third)

    def test_fork(self):
        """
        Another list of the held version, or a next version built on another
        list, is a fork.
        """
        other = first().following({"phone": PHONE})
        chain = DeviceChain(self.second)
        self.assertRaises(ForkError, chain.accept, other)
        self.assertRaises(ForkError, chain.accept, other.following({"laptop": LAPTOP}))
        self.assertEqual(chain.held, self.second)

    def test_jump(self):
        """
        A newer list several versions on is taken when it re-admits nothing
        removed.
        """
        chain = DeviceChain(first())
        chain.accept(self.third)
        self.assertEqual(chain.head, self.third.head)

    def test_readmitRemoved(self):
        """
        A later list naming a removed key hash again is refused, even after a jump.
        """
        chain = DeviceChain(self.second)
        chain.accept(self.third)
        back = self.third.following({"laptop2": LAPTOP})
        self.assertRaises(RemovedKeyError, chain.accept, back)
        self.assertRaises(RemovedKeyError, chain.accept, back.following({"x": publicDer("x")}))
        self.assertEqual(chain.held, self.third)

    def test_isNewer(self):
        """
        A message naming a newer head asks for a fetch; the held one or an
        older one does not; the held version with another hash is a fork.
        """
        chain = DeviceChain(self.second)
        self.assertTrue(chain.isNewer(self.third.head))
        self.assertFalse(chain.isNewer(self.second.head))
        self.assertFalse(chain.isNewer(first().head))
        self.assertFalse(chain.isNewer(None))
        self.assertRaises(ForkError, chain.isNewer, Head(2, "00" * 32))
        self.assertTrue(DeviceChain().isNewer(first().head))

    def test_json(self):
        """
        A chain kept as JSON comes back the same.
        """
        chain = DeviceChain(self.second)
        chain.accept(self.third)
        again = DeviceChain.fromJSON(chain.asJSON())
        self.assertEqual((again.held, again.removed), (chain.held, chain.removed))
        self.assertEqual(DeviceChain.fromJSON(DeviceChain().asJSON()).held, None)
