"""
Tests for an identity reset in the terminal client (C{/reset-identity},
L{chatd.client.approving}): a device waiting for approval, whose account
lost every other device and its recovery code, becomes the identity device
with its own key; and what other people's clients make of it: the loud key
change, after which (and only after which) the new chain is believed.
"""

from twisted.internet.defer import Deferred

from chatd import devicecodes, e2e
from chatd.client.devicechain import REFUSED, VERIFIED, DeviceChain
from chatd.client.devicestore import ThisDevice, loadDevice
from chatd.client.errors import ClientError
from chatd.client.keystore import publicKeyDer
from chatd.devicelist import DeviceList, readServerList
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.test_client import seedIdentity
from chatd.test.test_client_devices import (
    V2,
    DeviceClientTestCase,
    RecordingConsole,
    RoomTestCase,
    der,
    member,
    signed,
)

# alice's first list after her reset from her phone: signed by its key.
RESET = DeviceList.first("alice", "phone", der("alice-phone"))
RESET_WIRE = signed(RESET, privateKey("alice-phone"), {"phone": der("alice-phone")})


class ResetTests(DeviceClientTestCase):
    """
    /reset-identity on alice's phone, waiting for approval, while this home
    still holds alice's list version 2 (signed by the lost identity key).
    """

    def setUp(self):
        self.phone, self.ui = self.client(device="phone")
        seedIdentity(self.phone.home, "alice", "alice-phone")
        self.phone.deviceLists.keep("alice", DeviceChain(V2))
        self.phone.protocol.answers.update({
            Op.LOGIN: (1,), DeviceOp.REQUEST_DEVICE: (), DeviceOp.RESET_IDENTITY: (),
            Op.GET_KEYS: lambda kind, name: (
                [member("alice", der("alice-phone"), RESET_WIRE), member("bob", der("bob"))],)})
        self.assertIs(self.do(self.phone.login("alice", "pw")), False)

    def test_reset(self):
        """
        RESET_IDENTITY carries this device's key as the new identity key,
        list version 1 naming this device alone signed by it, and a recovery
        blob the code returned opens; the device is then the identity device,
        starting a new chain, and takes what the server sent meanwhile (its
        list, its rooms, the catch-up).
        """
        # What the server sends as it makes the session the identity device.
        self.phone._event(DeviceOp.DEVICES_CHANGED, ("alice", RESET_WIRE))
        self.phone._event(Op.JOINED, ("lobby", "alice", der("alice-phone"), 0, RESET_WIRE))
        self.phone._event(DeviceOp.CAUGHT_UP, (0,))
        self.assertEqual(self.phone.rooms, {})
        code = self.do(self.phone.resetIdentity())
        [(ik, device, text, signature, blob)] = self.phone.protocol.sent(
            DeviceOp.RESET_IDENTITY)
        self.assertEqual((ik, device, text), (der("alice-phone"), "phone", RESET.text()))
        verified = readServerList("alice", ik, text, signature, [("phone", ik)])
        self.assertEqual(verified.keys, {"phone": ik})
        opened = devicecodes.openRecovery(code, "alice", blob)
        self.assertEqual(publicKeyDer(opened), ik)
        self.assertIsNone(self.phone.pending)
        self.assertTrue(self.phone.account)
        self.assertEqual(self.phone.device, ThisDevice("phone", der("alice-phone")))
        self.assertEqual(loadDevice(self.phone.home, "alice"), self.phone.device)
        self.assertEqual(self.phone.ownChain().head, RESET.head)
        self.assertEqual(self.phone.entryKey(), "alice/phone")
        self.assertEqual(list(self.phone.rooms), ["lobby"])
        self.assertFalse(self.phone.catchingUp)
        self.assertEqual(self.ui.take("dropped", "ownKeyChanged"), [])

    def test_notPending(self):
        """
        An approved device has an identity: there is nothing to reset.
        """
        laptop, _ = self.identityDevice()
        e = self.failureResultOf(Deferred.fromCoroutine(laptop.resetIdentity()), ClientError)
        self.assertIn("waiting for approval", str(e.value))
        self.assertEqual(laptop.protocol.sent(DeviceOp.RESET_IDENTITY), [])

    def test_command(self):
        """
        A script's /reset-identity is not asked to confirm (there is nobody to
        ask); it shows the new fingerprint and the recovery code once.
        """
        console = RecordingConsole(self.phone)
        self.do(console._run("/reset-identity"))
        self.assertIn(e2e.fingerprint(der("alice-phone")), console.shown[0])
        codes = [line for line in console.shown if line.startswith("your recovery code")]
        self.assertEqual(len(codes), 1)
        self.assertEqual(len(self.phone.protocol.sent(DeviceOp.RESET_IDENTITY)), 1)

    def test_commandUsage(self):
        """
        Only C{yes} may follow the command.
        """
        console = RecordingConsole(self.phone)
        self.do(console._run("/reset-identity now"))
        self.assertIn("usage: /reset-identity [yes]", console.shown[-1])
        self.assertEqual(self.phone.protocol.sent(DeviceOp.RESET_IDENTITY), [])


class OthersTests(RoomTestCase):
    """
    bob, in lobby with alice's laptop, resets his identity from his tablet,
    after alice's client held his list version 2.
    """

    def setUp(self):
        RoomTestCase.setUp(self)
        self.bobV2 = self.bobList.following({"phone": der("bob-phone")})
        self.laptop._onDevicesChanged("bob", signed(self.bobV2, privateKey("bob"),
                                                    {"pc": der("bob"), "phone": der("bob-phone")}))
        self.ui.take()
        reset = DeviceList.first("bob", "tablet", der("bob-tablet"))
        self.resetWire = signed(reset, privateKey("bob-tablet"), {"tablet": der("bob-tablet")})
        self.resetHead = reset.head

    def assertRefusedAndHeld(self):
        [(kind, text)] = self.ui.take("dropped")
        self.assertIn("WARNING", text)
        self.assertEqual(self.laptop.verdicts["bob"].state, REFUSED)
        self.assertEqual(self.laptop.deviceLists.chain("bob").head, self.bobV2.head)
        self.failureResultOf(Deferred.fromCoroutine(self.laptop.send("hello")), ClientError)

    def test_acceptedWithTheKeyChange(self):
        """
        bob's new key is a loud key change; once alice accepts it, the list
        version 1 it signs starts bob's chain again, and what she sends is
        sealed to his new device alone.
        """
        self.laptop._event(DeviceOp.DEVICES_CHANGED, ("bob", self.resetWire))
        self.assertRefusedAndHeld()
        self.laptop._event(Op.KEY_CHANGED, ("bob", der("bob-tablet"), 0, self.resetWire))
        [change] = self.ui.take("keyChanged")
        self.assertEqual(change, ("keyChanged", "bob", e2e.fingerprint(der("bob")),
                                  e2e.fingerprint(der("bob-tablet"))))
        self.assertEqual(self.laptop.deviceLists.chain("bob").head, self.bobV2.head)
        lastFour = e2e.fingerprint(der("bob-tablet")).replace(" ", "")[-4:]
        self.do(self.laptop.trust("bob", lastFour))
        self.assertEqual(self.laptop.verdicts["bob"].state, VERIFIED)
        self.assertEqual(self.laptop.deviceLists.chain("bob").head, self.resetHead)
        self.do(self.laptop.send("hello"))
        [(room, blob)] = self.laptop.protocol.sent(Op.ROOM_MSG)
        keys = e2e.Envelope.parse(blob).encryptedKeys
        self.assertIn("bob/tablet", keys)
        self.assertNotIn("bob/pc", keys)

    def test_rollbackUnderTheOldKey(self):
        """
        bob's list version 1 signed by the identity key alice pinned, while
        she holds version 2, is a rollback: refused loudly.
        """
        self.laptop._event(DeviceOp.DEVICES_CHANGED, (
            "bob", signed(self.bobList, privateKey("bob"), {"pc": der("bob")})))
        self.assertRefusedAndHeld()

    def test_newChainWithoutKeyChange(self):
        """
        A version 1 signed by another key, with no key change accepted, is
        refused: the chain held stays.
        """
        self.laptop._event(DeviceOp.DEVICES_CHANGED, ("bob", self.resetWire))
        self.assertRefusedAndHeld()
        self.laptop._event(Op.KEY_CHANGED, ("bob", der("bob-tablet"), 0, self.resetWire))
        self.laptop.reject("bob")
        self.assertEqual(self.laptop.deviceLists.chain("bob").head, self.bobV2.head)
