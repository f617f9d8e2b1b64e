"""
Tests for L{chatd.core.devices}: device logins, the device list, pending
devices and their approval, the recovery blob and an identity reset.
"""

from chatd import devicelist, loginsig
from chatd.errors import AuthRequired, BadRequest, Conflict, Forbidden, NotFound
from chatd.isession import ISession
from chatd.model import NO_DEVICES
from chatd.test.devicecase import PASSWORD, DeviceCase, OnSQLite, deviceDer, deviceKey
from chatd.test.fakes import privateKey, publicDer


class DeviceLoginTests(DeviceCase):
    """
    Registering, logging in and authenticating as a device.
    """

    def test_interface(self):
        """
        Sessions still provide L{ISession}, device requests included.
        """
        from zope.interface.verify import verifyObject
        self.assertTrue(verifyObject(ISession, self.deviceSession()))

    def test_registerDevice(self):
        """
        A device registers the account with list version 1; it is approved,
        and the list is handed out.
        """
        alice = self.register("alice", "laptop")
        self.assertEqual((alice.name, alice.device, alice.pending), ("alice", "laptop", False))
        listed, pending = self.result(alice.getDevices, "alice")
        self.assertEqual(listed.devices, (("laptop", publicDer("alice")),))
        self.assertEqual(listed.text, self.lists["alice"].text())
        self.assertEqual(pending, [])
        self.assertEqual(alice.devicesOf("alice"), listed)
        self.assertEqual(self.result(alice.getRecovery), b"recovery")

    def test_registerBadList(self):
        """
        A registration whose list is not signed by its key, or names another
        device, is refused and stores nothing.
        """
        session = self.deviceSession()
        first = devicelist.DeviceList.first("alice", "laptop", publicDer("alice"))
        self.assertIsInstance(self.refusal(
            session.registerDevice, "alice", PASSWORD, publicDer("alice"), "laptop",
            first.text(), first.sign(privateKey("mallory")), b""), Forbidden)
        self.assertIsInstance(self.refusal(
            session.registerDevice, "alice", PASSWORD, publicDer("alice"), "phone",
            first.text(), first.sign(privateKey("alice")), b""), BadRequest)
        self.assertIsNone(self.successResultOf(self.store.getAccount("alice")))

    def test_devicesOfOthers(self):
        """
        GET_DEVICES of a guest is an empty list; of nobody, 0x06.
        """
        alice = self.register("alice")
        self.guest("carol")
        self.assertEqual(self.result(alice.getDevices, "carol"), (NO_DEVICES, []))
        self.assertIsInstance(self.refusal(alice.getDevices, "nobody"), NotFound)

    def test_legacyLoginRefused(self):
        """
        A legacy login to an account with a list is refused 0x05, by password
        or by key.
        """
        self.register("alice")
        session = self.connect()
        session.hello(1)
        e = self.refusal(session.login, "alice", PASSWORD)
        self.assertIsInstance(e, Forbidden)
        self.assertIn("log in with a device", e.message)
        challenge = session.challenge()
        e = self.refusal(session.auth, "alice",
                         loginsig.signAuth(privateKey("alice"), challenge, "alice"))
        self.assertIn("log in with a device", e.message)

    def test_legacyAccountLogsInAsDevice(self):
        """
        A legacy account (no list) logs in as a device with its key: approved,
        reading by its bare name.
        """
        self.account("bob")
        session = self.deviceSession()
        self.assertEqual(self.result(session.loginDevice, "bob", "correct horse", "pc",
                                     publicDer("bob")), 0)
        self.assertEqual(session.entryKey, "bob")
        self.assertEqual(session.client.take()[-1], ("caughtUp", (0,)))

    def test_otherKeyConflict(self):
        """
        A listed device id with another key is refused 0x07.
        """
        self.register("alice", "laptop")
        session = self.deviceSession()
        e = self.refusal(session.loginDevice, "alice", PASSWORD, "laptop",
                         deviceDer("alice", "x"))
        self.assertIsInstance(e, Conflict)
        self.assertEqual(e.message, "device laptop exists with another key")

    def test_authDevice(self):
        """
        A listed device logs in by signing the challenge with its key, over
        its name; a pending device, or another device's signature, cannot.
        """
        alice = self.register("alice", "laptop")
        self.addDevice(alice, "alice", "phone")
        session = self.deviceSession()
        challenge = session.challenge()
        self.result(session.authDevice, "alice", "phone", loginsig.signAuth(
            deviceKey("alice", "phone"), challenge, "alice", "phone"))
        self.assertEqual((session.name, session.device), ("alice", "phone"))
        self.assertEqual(session.entryKey, "alice/phone")
        other = self.deviceSession()
        challenge = other.challenge()
        self.assertIsInstance(self.refusal(other.authDevice, "alice", "laptop", loginsig.signAuth(
            deviceKey("alice", "phone"), challenge, "alice", "laptop")), Forbidden)
        self.pendingLogin("alice", "tablet")
        challenge = other.challenge()
        self.assertIsInstance(self.refusal(other.authDevice, "alice", "tablet", loginsig.signAuth(
            deviceKey("alice", "tablet"), challenge, "alice", "tablet")), Forbidden)


class PendingTests(DeviceCase):
    """
    A new device waits to be approved, and may do little meanwhile.
    """

    def test_restrictions(self):
        """
        A pending session may ask to be approved, read its account's devices
        and recovery blob; anything else is refused 0x05.
        """
        self.register("alice")
        pending = self.pendingLogin("alice", "phone")
        self.assertTrue(pending.pending)
        self.assertIsNone(pending.name)
        for method, args in [(pending.listRooms, ()), (pending.join, ("#r", "")),
                             (pending.challenge, ()), (pending.listUsers, ("",))]:
            e = self.refusal(method, *args)
            self.assertIsInstance(e, Forbidden)
            self.assertEqual(e.message, "device not approved yet")
        self.result(pending.getDevices, "alice")
        self.assertEqual(self.result(pending.getRecovery), b"recovery")

    def test_requestAndApprove(self):
        """
        REQUEST_DEVICE tells the account's devices (with the tag), GET_DEVICES
        lists it for the account only, APPROVE relays the reply; the list
        that names it approves the pending session at once.
        """
        alice = self.register("alice", "laptop")
        bob = self.register("bob")
        pending = self.pendingLogin("alice", "phone")
        self.result(pending.requestDevice, b"t" * 32)
        [(told,)] = self.events(alice, "devicePending")
        self.assertEqual((told.device, told.key, told.tag),
                         ("phone", deviceDer("alice", "phone"), b"t" * 32))
        self.assertEqual(self.result(alice.getDevices, "alice")[1], [told])
        self.assertEqual(self.result(bob.getDevices, "alice")[1], [])
        self.result(alice.approve, "phone", b"the reply")
        self.assertEqual(self.events(pending, "approval"), [(b"the reply",)])
        self.publish(alice, "alice", add=["phone"])
        self.assertFalse(pending.pending)
        self.assertEqual((pending.name, pending.device), ("alice", "phone"))
        events = pending.client.take()
        self.assertEqual([name for name, _ in events], ["devicesChanged", "caughtUp"])
        self.assertEqual(self.result(pending.listRooms), [])
        self.assertEqual(self.result(alice.getDevices, "alice")[1], [])

    def test_approveNobody(self):
        """
        APPROVE for a device with no pending session here is refused 0x06;
        only the identity device approves.
        """
        alice = self.register("alice", "laptop")
        self.assertIsInstance(self.refusal(alice.approve, "phone", b"r"), NotFound)
        phone = self.addDevice(alice, "alice", "phone")
        self.pendingLogin("alice", "tablet")
        self.assertIsInstance(self.refusal(phone.approve, "tablet", b"r"), Forbidden)

    def test_requestOnlyPending(self):
        """
        Only a pending session asks to be approved, with a 32-byte tag.
        """
        alice = self.register("alice")
        self.assertIsInstance(self.refusal(alice.requestDevice, b"t" * 32), BadRequest)
        pending = self.pendingLogin("alice", "phone")
        self.assertIsInstance(self.refusal(pending.requestDevice, b"short"), BadRequest)


class PublishTests(DeviceCase):
    """
    The server's checks of a published list, and what a new list does.
    """

    def test_notChaining(self):
        """
        A list that does not build on the head is refused 0x07 with the head.
        """
        alice = self.register("alice")
        self.publish(alice, "alice", add=["phone"])
        stale = devicelist.DeviceList.first("alice", "first", publicDer("alice")).following(
            {"tablet": deviceDer("alice", "tablet")})
        e = self.refusal(alice.publishDevices, stale.text(), stale.sign(privateKey("alice")),
                         [("first", publicDer("alice")),
                          ("tablet", deviceDer("alice", "tablet"))])
        self.assertIsInstance(e, devicelist.HeadConflict)
        self.assertEqual(tuple(e.head), tuple(self.lists["alice"].head))

    def test_notSigned(self):
        """
        A list not signed by the identity key is refused 0x05.
        """
        alice = self.register("alice")
        new = self.lists["alice"].following({"phone": deviceDer("alice", "phone")})
        e = self.refusal(alice.publishDevices, new.text(), new.sign(privateKey("mallory")),
                         [(d, self.keys.get(("alice", d)) or deviceDer("alice", d))
                          for d, _ in new.entries])
        self.assertIsInstance(e, Forbidden)

    def test_removedNeverReadmitted(self):
        """
        A key hash a list removed cannot come back, under any id.
        """
        alice = self.register("alice")
        self.publish(alice, "alice", add=["phone"])
        self.publish(alice, "alice", remove=["phone"])
        again = self.lists["alice"].following({"phone2": deviceDer("alice", "phone")})
        e = self.refusal(alice.publishDevices, again.text(), again.sign(privateKey("alice")),
                         [("first", publicDer("alice")),
                          ("phone2", deviceDer("alice", "phone"))])
        self.assertIsInstance(e, Forbidden)
        self.assertIn("removed", e.message)

    def test_onlyIdentityDevice(self):
        """
        Only the device whose key is the identity key publishes.
        """
        alice = self.register("alice")
        phone = self.addDevice(alice, "alice", "phone")
        new = self.lists["alice"].following({"tab": deviceDer("alice", "tab")})
        self.assertIsInstance(self.refusal(phone.publishDevices, new.text(),
                                           new.sign(privateKey("alice")), []), Forbidden)

    def test_removalClosesSessions(self):
        """
        A list without a device closes that device's sessions; everyone who
        shares a room with the account hears DEVICES_CHANGED.
        """
        alice = self.register("alice")
        bob = self.register("bob")
        self.result(alice.join, "#r", "")
        self.result(bob.join, "#r", "")
        phone = self.addDevice(alice, "alice", "phone")
        bob.client.take()
        self.publish(alice, "alice", remove=["phone"])
        self.assertTrue(phone.client.disconnected)
        [(user, listed)] = self.events(bob, "devicesChanged")
        self.assertEqual((user, [d for d, _ in listed.devices]), ("alice", ["first"]))


class RecoveryAndResetTests(DeviceCase):
    """
    The recovery blob, and starting an identity again.
    """

    def test_setRecovery(self):
        """
        The identity device replaces the blob; no other device may.
        """
        alice = self.register("alice")
        self.result(alice.setRecovery, b"new")
        self.assertEqual(self.result(alice.getRecovery), b"new")
        phone = self.addDevice(alice, "alice", "phone")
        self.assertIsInstance(self.refusal(phone.setRecovery, b"x"), Forbidden)
        self.assertIsInstance(self.refusal(alice.setRecovery, b"x" * 20000), BadRequest)

    def test_resetIdentity(self):
        """
        A pending session resets the identity: a new key (a loud KEY_CHANGED
        to co-members), list version 1 of that device alone, the old devices'
        sessions closed; the session is then approved.
        """
        alice = self.register("alice")
        bob = self.register("bob")
        self.result(alice.join, "#r", "")
        self.result(bob.join, "#r", "")
        bob.client.take()
        pending = self.pendingLogin("alice", "new")
        newKey = deviceDer("alice", "new")
        first = devicelist.DeviceList.first("alice", "new", newKey)
        self.result(pending.resetIdentity, newKey, "new", first.text(),
                    first.sign(deviceKey("alice", "new")), b"blob")
        self.assertTrue(alice.client.disconnected)
        self.assertFalse(pending.pending)
        self.assertEqual(self.events(bob, "keyChanged"), [("alice", newKey)])
        self.assertEqual(self.result(pending.getDevices, "alice")[0].devices,
                         (("new", newKey),))
        self.assertEqual(self.successResultOf(self.store.getAccount("alice")).publicKey,
                         newKey)

    def test_resetOnlyPending(self):
        """
        An approved session does not reset; a guest is not logged in at all.
        """
        alice = self.register("alice")
        self.assertIsInstance(self.refusal(alice.resetIdentity, b"", "x", b"", b"", b""),
                              BadRequest)
        self.assertIsInstance(self.refusal(self.connect().getRecovery), AuthRequired)


class ClusterTests(DeviceCase):
    """
    Device events cross the nodes of a cluster, as KEY_CHANGED does.
    """

    def buildService(self):
        from twisted.internet.task import Clock

        from chatd.store.memory import MemoryStore
        from chatd.test.fakes import FakeHub, makeService, testKeys
        clock = Clock()
        clock.advance(1_700_000_000)
        hub = FakeHub(clock)
        store = MemoryStore(testKeys(), clock)
        self.other = makeService(store=store, clock=clock, fanout=hub.fanout("B"))
        return makeService(store=store, clock=clock, fanout=hub.fanout("A"))

    def onOther(self):
        """
        A greeted device session on node B.
        """
        from chatd.test.fakes import FakeDeviceClient
        other = self.other.connect(FakeDeviceClient(), "10.0.0.2")
        other.hello(1)
        return other

    def test_approvalAcrossNodes(self):
        """
        A pending device on node B is announced to the identity device on
        node A, gets A's APPROVE, and is approved by A's list; a member on B
        hears DEVICES_CHANGED.
        """
        alice = self.register("alice")
        phone = self.onOther()
        self.assertEqual(self.result(phone.loginDevice, "alice", PASSWORD, "phone",
                                     deviceDer("alice", "phone")), 1)
        self.result(phone.requestDevice, b"t" * 32)
        [(told,)] = self.events(alice, "devicePending")
        self.assertEqual(told.device, "phone")
        self.result(alice.approve, "phone", b"reply")
        self.assertEqual(self.events(phone, "approval"), [(b"reply",)])
        self.publish(alice, "alice", add=["phone"])
        self.assertFalse(phone.pending)
        self.assertEqual(phone.name, "alice")
        self.assertEqual(self.other.devices.held("alice").devices,
                         self.service.devices.held("alice").devices)

    def test_removalAcrossNodes(self):
        """
        A list published on node A closes the removed device's session on B.
        """
        alice = self.register("alice")
        phone = self.onOther()
        self.result(phone.loginDevice, "alice", PASSWORD, "phone", deviceDer("alice", "phone"))
        self.publish(alice, "alice", add=["phone"])
        self.publish(alice, "alice", remove=["phone"])
        self.assertTrue(phone.client.disconnected)


    def test_shareWantedAcrossNodes(self):
        """
        An account joining on node B makes a member's device session on A
        hear SHARE_WANTED.
        """
        alice = self.register("alice")
        self.result(alice.create, "#h", "", 3)
        self.result(alice.join, "#h", "")
        self.register("bob").closed()
        bob = self.onOther()
        self.result(bob.loginDevice, "bob", PASSWORD, "first", publicDer("bob"))
        alice.client.take()
        self.result(bob.join, "#h", "")
        self.assertEqual(self.events(alice, "shareWanted"), [("#h", "bob", 3)])

class SQLitePublishTests(OnSQLite, PublishTests):
    """
    The list's checks, on SQLite.
    """


class SQLitePendingTests(OnSQLite, PendingTests):
    """
    Pending devices, on SQLite.
    """

