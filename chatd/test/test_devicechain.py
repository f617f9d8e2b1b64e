"""
Tests for L{chatd.client.devicechain}: what the terminal client believes of
the devices a (possibly lying) server lists.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatd.client.devicechain import LEGACY, REFUSED, VERIFIED, DeviceChain, judge, newerHead
from chatd.client.keystore import publicKeyDer
from chatd.devicelist import DeviceList
from chatd.test.fakes import privateKey


def der(name):
    return publicKeyDer(privateKey(name))


IK = privateKey("alice")


def wire(devicelist, signer=IK, devices=None):
    """
    The server's C{(text, signature, devices)} for C{devicelist}, signed by
    C{signer}, with the keys of the devices named (C{devices}: id to key
    name) or the ones the test names.
    """
    names = devices or {"laptop": "alice", "phone": "alice-phone", "tablet": "alice-tablet"}
    listed = devicelist.ids()
    keys = [(device, der(names[device])) for device in names if device in listed]
    return devicelist.text(), devicelist.sign(signer), keys


class JudgeTests(SynchronousTestCase):
    """
    L{judge} against a chain held for alice.
    """

    def setUp(self):
        self.chain = DeviceChain()
        self.v1 = DeviceList.first("alice", "laptop", der("alice"))
        self.v2 = self.v1.following({"phone": der("alice-phone")})

    def judge(self, text, signature, devices):
        return judge("alice", der("alice"), self.chain, text, signature, devices)

    def test_legacy(self):
        """
        No list from a user whose list was never seen: a legacy account,
        encrypted to by its bare name and identity key.
        """
        verdict = self.judge(b"", b"", [])
        self.assertEqual(verdict.state, LEGACY)
        self.assertEqual(verdict.recipients("alice", der("alice")), {"alice": der("alice")})
        self.assertIsNone(verdict.alarm)

    def test_firstList(self):
        """
        A first list signed by the pinned identity key is taken quietly; its
        devices are encrypted to under their entry keys.
        """
        verdict = self.judge(*wire(self.v2))
        self.assertEqual(verdict.state, VERIFIED)
        self.assertTrue(verdict.changed)
        self.assertEqual((verdict.added, verdict.removed, verdict.warnings), ([], [], []))
        self.assertEqual(verdict.recipients("alice", der("alice")),
                         {"alice/laptop": der("alice"), "alice/phone": der("alice-phone")})
        self.assertEqual(self.chain.head, self.v2.head)

    def test_addedAndRemoved(self):
        """
        The next lists say which devices came and went.
        """
        self.judge(*wire(self.v1))
        verdict = self.judge(*wire(self.v2))
        self.assertEqual(verdict.added, ["phone"])
        v3 = self.v2.following(remove=["phone"])
        verdict = self.judge(*wire(v3))
        self.assertEqual(verdict.removed, ["phone"])
        self.assertEqual(verdict.recipients("alice", der("alice")),
                         {"alice/laptop": der("alice")})

    def test_sameHead(self):
        """
        The list held again changes nothing.
        """
        self.judge(*wire(self.v2))
        verdict = self.judge(*wire(self.v2))
        self.assertEqual(verdict.state, VERIFIED)
        self.assertFalse(verdict.changed)

    def test_unsigned(self):
        """
        A list without a signature gives no device a key, loudly.
        """
        text, _, devices = wire(self.v2)
        verdict = self.judge(text, b"", devices)
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("not signed", verdict.alarm)
        self.assertEqual(verdict.recipients("alice", der("alice")), {})

    def test_signedByAnotherKey(self):
        """
        A list the server signed itself is refused loudly.
        """
        verdict = self.judge(*wire(self.v2, signer=privateKey("mallory")))
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("identity key", verdict.alarm)
        self.assertIsNone(self.chain.held)

    def test_rollback(self):
        """
        An older list than the one held is a rollback: refused, loud, the
        held list stays.
        """
        self.judge(*wire(self.v2))
        verdict = self.judge(*wire(self.v1))
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("older", verdict.alarm)
        self.assertEqual(self.chain.head, self.v2.head)

    def test_noListAfterOne(self):
        """
        No list at all from a user whose list is held is a rollback too.
        """
        self.judge(*wire(self.v1))
        verdict = self.judge(b"", b"", [])
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("rollback", verdict.alarm)

    def test_fork(self):
        """
        Another list of the held version is a fork, refused loudly.
        """
        self.judge(*wire(self.v2))
        other = self.v1.following({"tablet": der("alice-tablet")})
        verdict = self.judge(*wire(other))
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("two different lists", verdict.alarm)

    def test_removedKeyBack(self):
        """
        A list bringing back a key a verified list removed is refused.
        """
        self.judge(*wire(self.v2))
        v3 = self.v2.following(remove=["phone"])
        self.judge(*wire(v3))
        v4 = v3.following({"phone": der("alice-phone")})
        verdict = self.judge(*wire(v4))
        self.assertEqual(verdict.state, REFUSED)
        self.assertIn("removed", verdict.alarm)

    def test_serverAddsADevice(self):
        """
        A device the server lists beside the list without the list naming its
        key gets a warning and no key.
        """
        text, signature, devices = wire(self.v1)
        verdict = self.judge(text, signature, devices + [("ghost", der("mallory"))])
        self.assertEqual(verdict.state, VERIFIED)
        self.assertEqual(verdict.recipients("alice", der("alice")),
                         {"alice/laptop": der("alice")})
        self.assertEqual(len(verdict.warnings), 1)
        self.assertIn("ghost", verdict.warnings[0])

    def test_serverSwapsAKey(self):
        """
        A listed device whose key the server swapped gets no key either.
        """
        text, signature, _ = wire(self.v2)
        verdict = self.judge(text, signature, [("laptop", der("alice")),
                                               ("phone", der("mallory"))])
        self.assertEqual(verdict.recipients("alice", der("alice")),
                         {"alice/laptop": der("alice")})
        self.assertTrue(any("phone" in w for w in verdict.warnings))

    def test_legacyWithServerDevices(self):
        """
        Devices the server lists for an account without a list get a warning
        and no key.
        """
        verdict = self.judge(b"", b"", [("ghost", der("mallory"))])
        self.assertEqual(verdict.state, LEGACY)
        self.assertIn("ghost", verdict.warnings[0])


class NewerHeadTests(SynchronousTestCase):
    """
    L{newerHead}: what an envelope's signed head says of the list held.
    """

    def test_newerAndFork(self):
        """
        A newer version means fetching; the held version with another hash is
        a fork, said.
        """
        v1 = DeviceList.first("alice", "laptop", der("alice"))
        chain = DeviceChain(v1)
        self.assertFalse(newerHead(chain, v1.head))
        self.assertIs(newerHead(chain, (2, "ab" * 32)), True)
        self.assertIn("another list", newerHead(chain, (1, "ab" * 32)))
