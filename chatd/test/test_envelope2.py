# -*- test-case-name: chatd.test.test_envelope2 -*-
"""
Tests for envelope version 2 (L{chatd.e2e}, L{chatd.envelopeshape}): the fields
devices add, their signed header, entry keys and device logins.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e, loginsig
from chatd.e2e import BadSignature, Envelope, EnvelopeError
from chatd.test.test_e2e import HAND, HAND_HEADER, privateKey, publicDer

HEAD = (3, "ab" * 32)

# HAND as version 2: sent by zoë's device "laptop" at list version 3, to a
# room keeping 50 messages for newcomers, keyed by entry keys.
HAND2 = dict(
    HAND, v=2, dev="laptop", head={"v": 3, "h": "ab" * 32}, hist=50,
    encrypted_keys={"bob": "a2V5Ym9i", "zoe/laptop": "a2V5em9l"},
    key_ids={"bob": "0123456789abcdef", "zoe/laptop": "fedcba9876543210"},
)
HAND2_HEADER = (
    b"chatd-e2e-v2" + HAND_HEADER[len(b"chatd-e2e-v1"):]
    + b"laptop\n3\n" + b"ab" * 32 + b"\n50\n"
)

DROP = object()


def hand2With(**changes):
    """
    L{HAND2} as UTF-8 JSON with some fields replaced, or dropped by giving
    L{DROP}.
    """
    envelope = {k: v for k, v in dict(HAND2, **changes).items() if v is not DROP}
    return json.dumps(envelope).encode("utf-8")


def sealFromLaptop(plaintext=b"hello", to=("room", "#Lobby"), hist=50, **kw):
    """
    A version-2 envelope alice's device "laptop" sealed for alice's two devices,
    bob's phone and carol (an account without devices).
    """
    recipients = {"alice/laptop": publicDer("alice"), "alice/phone": publicDer("alice2"),
                  "bob/phone": publicDer("bob"), "carol": publicDer("carol")}
    return e2e.seal("alice", privateKey("alice"), to, recipients, plaintext,
                    device="laptop", head=HEAD, hist=hist, **kw)


class EntryKeyTests(SynchronousTestCase):
    """
    L{e2e.entryKey}, the one spelling of a reader's map key.
    """

    def test_device(self):
        """
        A device of an account with a list is C{user/device}.
        """
        self.assertEqual(e2e.entryKey("alice", "laptop"), "alice/laptop")

    def test_noDevice(self):
        """
        Without a device (L{None} or empty) the entry key is the bare name.
        """
        self.assertEqual(e2e.entryKey("alice", None), "alice")
        self.assertEqual(e2e.entryKey("alice", ""), "alice")
        self.assertEqual(e2e.entryKey("alice"), "alice")


class SealTests(SynchronousTestCase):
    """
    L{e2e.seal} with a device: version 2, opened by entry key.
    """

    def test_roundTrip(self):
        """
        Every device opens it under its entry key; the device fields are kept.
        """
        data = sealFromLaptop(b"caf\xc3\xa9")
        envelope = Envelope.parse(data)
        self.assertEqual(
            (envelope.version, envelope.device, envelope.head, envelope.hist,
             envelope.senderEntry),
            (2, "laptop", HEAD, 50, "alice/laptop"))
        self.assertEqual(envelope.readers(),
                         {"alice/laptop", "alice/phone", "bob/phone", "carol"})
        for entry, name in [("alice/laptop", "alice"), ("alice/phone", "alice2"),
                            ("bob/phone", "bob"), ("carol", "carol")]:
            self.assertEqual(
                e2e.openEnvelope(data, entry, privateKey(name), publicDer("alice")),
                b"caf\xc3\xa9")

    def test_fieldOrder(self):
        """
        The JSON gives the device fields after C{kc}, in the order of the header.
        """
        self.assertEqual(list(json.loads(sealFromLaptop())),
                         ["v", "alg", "id", "from", "to", "ts", "nonce", "kc", "dev",
                          "head", "hist", "encrypted_message", "encrypted_keys",
                          "key_ids", "signature"])

    def test_legacyAccount(self):
        """
        An account without a list seals version 2 with an empty device and a
        null head.
        """
        data = e2e.seal("carol", privateKey("carol"), ("user", "bob"),
                        {"carol": publicDer("carol"), "bob/phone": publicDer("bob")},
                        b"hi", device="")
        envelope = Envelope.parse(data)
        self.assertEqual((envelope.version, envelope.device, envelope.head, envelope.hist,
                          envelope.senderEntry), (2, "", None, 0, "carol"))
        self.assertEqual(json.loads(data)["head"], None)
        self.assertEqual(e2e.openEnvelope(data, "bob/phone", privateKey("bob"),
                                          publicDer("carol")), b"hi")
        self.assertIn(b"\n\n0\n\n0\n", envelope.header())

    def test_versionOneUnchanged(self):
        """
        Without a device, seal makes version 1 exactly as before: no device
        fields, the version-1 domain.
        """
        data = e2e.seal("alice", privateKey("alice"), ("room", "#Lobby"),
                        {"alice": publicDer("alice")}, b"hi")
        obj = json.loads(data)
        self.assertEqual(obj["v"], 1)
        self.assertFalse({"dev", "head", "hist"} & obj.keys())
        envelope = Envelope.parse(data)
        self.assertTrue(envelope.header().startswith(b"chatd-e2e-v1\n"))
        self.assertEqual((envelope.device, envelope.head, envelope.hist), ("", None, 0))

    def test_fileDomain(self):
        """
        A version-2 file envelope signs under chatd-file-v2: it verifies as a
        file, never as a message.
        """
        envelope = Envelope.parse(sealFromLaptop(domain=e2e.FILE))
        self.assertTrue(envelope.verifySignature(publicDer("alice"), e2e.FILE))
        self.assertFalse(envelope.verifySignature(publicDer("alice")))
        self.assertTrue(envelope.header(e2e.FILE).startswith(b"chatd-file-v2\n"))

    def test_signedDeviceFields(self):
        """
        Changing the device, the head or the history setting breaks the
        signature: the server cannot claim a bigger history or another device.
        """
        obj = json.loads(sealFromLaptop())
        for field, value in [("dev", "phone"), ("head", {"v": 4, "h": "ab" * 32}),
                             ("head", {"v": 3, "h": "cd" * 32}), ("hist", 500)]:
            changed = Envelope.parse(json.dumps(dict(obj, **{field: value})).encode())
            self.assertFalse(changed.verifySignature(publicDer("alice")), field)
            self.assertRaises(BadSignature, e2e.openEnvelope, changed, "bob/phone",
                              privateKey("bob"), publicDer("alice"))

    def test_notAVersionOneSignature(self):
        """
        A version-1 envelope relabelled as version 2 (the device fields added)
        does not verify: the domains differ.
        """
        obj = json.loads(e2e.seal("alice", privateKey("alice"), ("room", "#Lobby"),
                                  {"carol": publicDer("carol")}, b"hi"))
        obj.update(v=2, dev="", head=None, hist=0)
        relabelled = Envelope.parse(json.dumps(obj).encode())
        self.assertFalse(relabelled.verifySignature(publicDer("alice")))


class HeaderTests(SynchronousTestCase):
    """
    The version-2 header, byte for byte.
    """

    def test_bytes(self):
        """
        Version 1's lines under chatd-e2e-v2, then the device, the head's
        version and hash, and the history setting.
        """
        self.assertEqual(Envelope.parse(hand2With()).header(), HAND2_HEADER)

    def test_file(self):
        """
        A file's version-2 header differs only in its first line.
        """
        self.assertEqual(Envelope.parse(hand2With()).header(e2e.FILE),
                         b"chatd-file-v2" + HAND2_HEADER[len(b"chatd-e2e-v2"):])


class CutTests(SynchronousTestCase):
    """
    L{Envelope.cutFor} by entry key.
    """

    def test_ownEntry(self):
        """
        A device's cut keeps only its own entry and every signed field, and
        still opens.
        """
        envelope = Envelope.parse(sealFromLaptop(b"secret"))
        cut = Envelope.parse(envelope.cutFor("bob/phone"))
        self.assertEqual(cut.readers(), {"bob/phone"})
        self.assertEqual((cut.version, cut.device, cut.head, cut.hist),
                         (2, "laptop", HEAD, 50))
        self.assertEqual(e2e.openEnvelope(cut, "bob/phone", privateKey("bob"),
                                          publicDer("alice")), b"secret")

    def test_otherDeviceOfSameUser(self):
        """
        Another device of a reader gets nothing from an entry that is not its own.
        """
        envelope = Envelope.parse(sealFromLaptop())
        cut = Envelope.parse(envelope.cutFor("bob/desk"))
        self.assertEqual((cut.encryptedKeys, cut.keyIds), ({}, {}))

    def test_fieldsKept(self):
        """
        A cut carries every field but the maps exactly as the original has it.
        """
        original = json.loads(hand2With())
        cut = json.loads(Envelope.parse(hand2With()).cutFor("zoe/laptop"))
        for mapName in ("encrypted_keys", "key_ids"):
            self.assertEqual(cut.pop(mapName),
                             {"zoe/laptop": original.pop(mapName)["zoe/laptop"]})
        self.assertEqual(cut, original)


class MalformedTests(SynchronousTestCase):
    """
    Version-2 envelopes of the wrong shape are refused with a clear message.
    """

    def assertMalformed(self, data, why):
        """
        Assert that C{data} is refused with L{EnvelopeError} naming C{why}.
        """
        error = self.assertRaises(EnvelopeError, Envelope.parse, data)
        self.assertIn(why, error.message, data)

    def test_valid(self):
        """
        The hand-built envelope itself parses.
        """
        Envelope.parse(hand2With())

    def test_missingField(self):
        """
        Each of the fifteen fields is required.
        """
        for name in HAND2:
            self.assertMalformed(hand2With(**{name: DROP}), f"missing field '{name}'")

    def test_unknownVersion(self):
        """
        A version other than 1 and 2 is refused.
        """
        self.assertMalformed(hand2With(v=3), "v must be 1 or 2")

    def test_device(self):
        """
        C{dev} must be empty or a device id.
        """
        for value in ["lap top", "x" * 33, "a/b", 5, None]:
            self.assertMalformed(hand2With(dev=value), "dev")

    def test_head(self):
        """
        C{head} must be null or a version from 1 and a lowercase hex SHA-256.
        """
        for value in [{"v": 0, "h": "ab" * 32}, {"v": True, "h": "ab" * 32},
                      {"v": 1, "h": "AB" * 32}, {"v": 1, "h": "ab"},
                      {"v": 1, "h": "ab" * 32, "x": 1}, [1, "ab" * 32], "ab" * 32]:
            self.assertMalformed(hand2With(head=value), "head")

    def test_headWithoutDevice(self):
        """
        A device without a head, or a head without a device, is refused.
        """
        self.assertMalformed(hand2With(head=None), "head must be null exactly")
        self.assertMalformed(hand2With(dev=""), "head must be null exactly")

    def test_hist(self):
        """
        C{hist} is an integer from 0 to 500, and 0 for a direct message.
        """
        for value in [-1, 501, True, 1.0, "5", None]:
            self.assertMalformed(hand2With(hist=value), "hist")
        self.assertMalformed(hand2With(to={"user": "bob"}, hist=1), "hist")
        Envelope.parse(hand2With(hist=500))
        Envelope.parse(hand2With(to={"user": "bob"}, hist=0))

    def test_entryKeys(self):
        """
        Map keys must be entry keys (C{user} or C{user/device}), the same in
        both maps; a newline cannot smuggle two names into one.
        """
        for bad in ["bob/", "/laptop", "bob/lap/top", "bob\nzo", "bob\n", "", "b b",
                    "bob/" + "x" * 33]:
            self.assertMalformed(
                hand2With(encrypted_keys={bad: "a2V5Ym9i"}, key_ids={bad: "0123456789abcdef"}),
                "encrypted_keys")
        self.assertMalformed(hand2With(key_ids={"bob": "0123456789abcdef"}),
                             "key_ids must be keyed like encrypted_keys")

    def test_versionOneKeysUnchecked(self):
        """
        Version 1 keeps its rules: its map keys are not entry keys and are not
        checked.
        """
        Envelope.parse(json.dumps(dict(HAND, encrypted_keys={"b b": "a2V5Ym9i"})).encode())


class AuthTests(SynchronousTestCase):
    """
    Login challenges signed by a device.
    """

    def test_message(self):
        """
        The signed bytes are the version-2 prefix, the challenge, the user, a
        newline and the device.
        """
        self.assertEqual(loginsig.authMessage(b"\x01\x02", "zo\u00eb", "laptop"),
                         b"chatd-auth-v2\x00\x01\x02zo\xc3\xab\nlaptop")

    def test_valid(self):
        """
        A device's signature over its challenge verifies for that device.
        """
        signature = loginsig.signAuth(privateKey("bob"), b"challenge", "bob", "phone")
        self.assertTrue(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob", signature,
                                       "phone"))

    def test_otherDevice(self):
        """
        A signature for one device does not log in another, nor as a login
        naming no device, and a version-1 signature does not log in a device.
        """
        signature = loginsig.signAuth(privateKey("bob"), b"challenge", "bob", "phone")
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob", signature,
                                        "desk"))
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob", signature))
        legacy = loginsig.signAuth(privateKey("bob"), b"challenge", "bob")
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob", legacy,
                                        "phone"))
