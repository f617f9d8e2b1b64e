"""
Tests for L{chatd.client.devicestore}: this device and the device lists
held per user, kept in the client's home.
"""

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from chatd.client.devicestore import (
    DeviceLists,
    ThisDevice,
    checkDeviceId,
    defaultDeviceId,
    loadDevice,
    saveDevice,
)
from chatd.client.keystore import Home, KeystoreError, publicKeyDer
from chatd.devicelist import DeviceChain, DeviceList
from chatd.test.fakes import privateKey


class DeviceIdTests(SynchronousTestCase):
    """
    Device ids: the default from the host name, and the check.
    """

    def test_defaultFromHostname(self):
        """
        The default device id is the host name's first label, with what a
        device id may not hold replaced.
        """
        self.assertEqual(defaultDeviceId("laptop.example.org"), "laptop")
        self.assertEqual(defaultDeviceId("my laptop!"), "my-laptop")
        self.assertEqual(defaultDeviceId("x" * 40), "x" * 32)

    def test_defaultWhenNothingIsLeft(self):
        """
        A host name with nothing usable gives C{terminal}.
        """
        self.assertEqual(defaultDeviceId(""), "terminal")
        self.assertEqual(defaultDeviceId("\u00e9\u00e9"), "terminal")

    def test_check(self):
        """
        A device id is 1 to 32 of A-Z a-z 0-9 _ . -.
        """
        self.assertEqual(checkDeviceId("a.b_c-9"), "a.b_c-9")
        for bad in ["", "a/b", "x" * 33, "a b", None]:
            self.assertRaises(KeystoreError, checkDeviceId, bad)


class ThisDeviceTests(SynchronousTestCase):
    """
    This device of an account, kept beside its key.
    """

    def setUp(self):
        self.home = Home(self.mktemp())

    def test_noneBeforeSaved(self):
        """
        An account never used with a device has none.
        """
        self.assertIsNone(loadDevice(self.home, "alice"))

    def test_roundTrip(self):
        """
        What is saved is loaded, under the folded name, mode 0600.
        """
        saveDevice(self.home, "Alice", ThisDevice("laptop", b"IK"))
        self.assertEqual(loadDevice(self.home, "alice"), ThisDevice("laptop", b"IK"))
        path = os.path.join(self.home.path, "keys", "alice.device")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_pendingHasNoIdentity(self):
        """
        A device not yet approved holds no identity key.
        """
        saveDevice(self.home, "alice", ThisDevice("phone"))
        self.assertIsNone(loadDevice(self.home, "alice").identity)

    def test_damaged(self):
        """
        A file that cannot be read is an error that names it, not a new
        device.
        """
        saveDevice(self.home, "alice", ThisDevice("laptop", b"IK"))
        with open(os.path.join(self.home.path, "keys", "alice.device"), "w") as f:
            f.write("{")
        self.assertRaises(KeystoreError, loadDevice, self.home, "alice")


class DeviceListsTests(SynchronousTestCase):
    """
    The device chains held per user.
    """

    def setUp(self):
        self.lists = DeviceLists(os.path.join(self.mktemp(), "device_lists"))
        self.v1 = DeviceList.first("Bob", "pc", publicKeyDer(privateKey("bob")))
        self.v2 = self.v1.following({"phone": publicKeyDer(privateKey("bob-phone"))})
        self.v3 = self.v2.following(remove=["phone"])

    def test_nothingHeld(self):
        """
        Nothing is held for a user never seen.
        """
        self.assertIsNone(self.lists.chain("bob").held)

    def test_keepAndRead(self):
        """
        A chain kept is read back whole (its list and the removed keys), by
        folded name; keeping another user's keeps the first; mode 0600.
        """
        chain = DeviceChain()
        for devicelist in (self.v1, self.v2, self.v3):
            chain.accept(devicelist)
        self.lists.keep("Bob", chain)
        self.lists.keep("carol", DeviceChain(DeviceList.first(
            "carol", "x", publicKeyDer(privateKey("carol")))))
        read = self.lists.chain("bob")
        self.assertEqual((read.held, read.removed), (self.v3, chain.removed))
        self.assertEqual(len(read.removed), 1)
        self.assertIsNotNone(self.lists.chain("CAROL").held)
        self.assertEqual(stat.S_IMODE(os.stat(self.lists.path).st_mode), 0o600)

    def test_forget(self):
        """
        A forgotten user's chain is no longer held; the others are.
        """
        self.lists.keep("bob", DeviceChain(self.v1))
        self.lists.keep("carol", DeviceChain(DeviceList.first(
            "carol", "x", publicKeyDer(privateKey("carol")))))
        self.lists.forget("Bob")
        self.assertIsNone(self.lists.chain("bob").held)
        self.assertIsNotNone(self.lists.chain("carol").held)

    def test_damagedIsAnError(self):
        """
        A damaged file is an error rather than nothing held: forgetting the
        heads would let a server roll lists back.
        """
        self.lists.keep("bob", DeviceChain(self.v1))
        with open(self.lists.path, "w") as f:
            f.write('{"bob": {"list": "not a list"}}')
        self.assertRaises(KeystoreError, self.lists.chain, "bob")
