# -*- test-case-name: chatd.test.test_e2e -*-
"""
Tests for L{chatd.e2e}: envelopes sealed, parsed, verified, cut and opened.
"""

import base64
import hashlib
import json
import re
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e, envelopeshape, loginsig
from chatd.e2e import BadSignature, Envelope, EnvelopeError
from chatd.errors import BadRequest, Forbidden, Status
from chatd.test.robustness import checkEnvelope


@lru_cache(maxsize=None)
def _generate(name, bits):
    """
    One RSA key per name and size for the whole module, because key generation
    is slow (the name only tells the cache entries apart).
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def privateKey(name, bits=2048):
    """
    The module's RSA key called C{name}.
    """
    return _generate(name, bits)


def publicDer(name, bits=2048):
    """
    The SPKI DER of L{privateKey}'s public half.
    """
    return privateKey(name, bits).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def sealFromAlice(plaintext=b"hello", readers=("alice", "bob", "carol"), **kw):
    """
    An envelope alice sealed to room C{#Lobby} for C{readers}.
    """
    recipients = {name: publicDer(name) for name in readers}
    return e2e.seal("alice", privateKey("alice"), ("room", "#Lobby"), recipients,
                    plaintext, **kw)


# A hand-built envelope whose every field is known, for the exact-bytes and the
# malformed-shape tests (it does not decrypt; its shape is all that matters).
HAND = {
    "v": 1,
    "alg": "RSA-OAEP-256/A256GCM/PS256",
    "id": "AAECAwQFBgcICQoLDA0ODw",
    "from": "zo\u00eb",
    "to": {"room": "#Lobby"},
    "ts": 1700000000000,
    "nonce": "AAECAwQFBgcICQoL",
    "kc": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "encrypted_message": "aGVsbG8=",
    "encrypted_keys": {"bob": "a2V5Ym9i", "zo\u00eb": "a2V5em9l"},
    "key_ids": {"bob": "0123456789abcdef", "zo\u00eb": "fedcba9876543210"},
    "signature": "c2lnbmF0dXJl",
}

HAND_HEADER = (
    b"chatd-e2e-v1\n"
    b"RSA-OAEP-256/A256GCM/PS256\n"
    b"zo\xc3\xab\n"
    b"room:#Lobby\n"
    b"AAECAwQFBgcICQoLDA0ODw\n"
    b"1700000000000\n"
    b"AAECAwQFBgcICQoL\n"
    b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
)


DROP = object()


def handWith(**changes):
    """
    L{HAND} as UTF-8 JSON with some fields replaced, or dropped by giving L{DROP}.
    """
    envelope = {k: v for k, v in dict(HAND, **changes).items() if v is not DROP}
    return json.dumps(envelope).encode("utf-8")


class SealAndOpenTests(SynchronousTestCase):
    """
    L{e2e.seal} and L{e2e.openEnvelope} between several readers.
    """

    def test_roundTrip(self):
        """
        Each of three readers opens what alice sealed and sees her plaintext.
        """
        data = sealFromAlice(b"caf\xc3\xa9 at noon")
        envelope = Envelope.parse(data)
        self.assertEqual(envelope.readers(), {"alice", "bob", "carol"})
        self.assertEqual(envelope.keyIds["bob"], e2e.keyId(publicDer("bob")))
        self.assertEqual((envelope.toKind, envelope.toName), ("room", "#Lobby"))
        for name in ("alice", "bob", "carol"):
            self.assertEqual(
                e2e.openEnvelope(data, name, privateKey(name), publicDer("alice")),
                b"caf\xc3\xa9 at noon")

    def test_givenIdAndTimestamp(self):
        """
        A caller-chosen id and timestamp are used as given.
        """
        envelope = Envelope.parse(
            sealFromAlice(ts=1234, envelopeId="AAECAwQFBgcICQoLDA0ODw"))
        self.assertEqual((envelope.id, envelope.ts), ("AAECAwQFBgcICQoLDA0ODw", 1234))

    def test_freshIds(self):
        """
        Two envelopes sealed without an id get different ids of the right shape.
        """
        first = Envelope.parse(sealFromAlice()).id
        second = Envelope.parse(sealFromAlice()).id
        self.assertNotEqual(first, second)
        self.assertEqual(len(base64.urlsafe_b64decode(first + "==")), 16)

    def test_directMessage(self):
        """
        An envelope to a user names it as C{user:} in its header and still opens.
        """
        recipients = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        data = e2e.seal("alice", privateKey("alice"), ("user", "bob"), recipients,
                        b"hi")
        envelope = Envelope.parse(data)
        self.assertIn(b"\nuser:bob\n", envelope.header())
        self.assertEqual(
            e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
            b"hi")

    def test_notAReader(self):
        """
        A user with no key entry is told so.
        """
        error = self.assertRaises(
            EnvelopeError, e2e.openEnvelope, sealFromAlice(readers=("alice",)),
            "bob", privateKey("bob"), publicDer("alice"))
        self.assertEqual(error.message, "envelope: no key for you")

    def test_wrongReaderKey(self):
        """
        A key entry that the reader's private key cannot unwrap is refused.
        """
        self.assertRaises(
            EnvelopeError, e2e.openEnvelope, sealFromAlice(), "bob",
            privateKey("carol"), publicDer("alice"))

    def test_wrongSenderKey(self):
        """
        A message that decrypts but was not signed by the expected sender raises
        L{BadSignature}, a L{Forbidden}.
        """
        error = self.assertRaises(
            BadSignature, e2e.openEnvelope, sealFromAlice(), "bob",
            privateKey("bob"), publicDer("mallory"))
        self.assertIsInstance(error, Forbidden)
        self.assertEqual(error.status, Status.FORBIDDEN)

    def test_swappedKeyEntry(self):
        """
        A reader's key entry taken from another envelope fails the key commitment.
        """
        victim = json.loads(sealFromAlice(b"one"))
        other = json.loads(sealFromAlice(b"two"))
        victim["encrypted_keys"]["bob"] = other["encrypted_keys"]["bob"]
        error = self.assertRaises(
            EnvelopeError, e2e.openEnvelope, json.dumps(victim).encode("utf-8"),
            "bob", privateKey("bob"), publicDer("alice"))
        self.assertEqual(error.message, "envelope: key commitment does not match")

    def test_modifiedMessage(self):
        """
        A changed ciphertext neither verifies nor opens: it is refused for its
        signature, which is checked before anything is decrypted.
        """
        fields = json.loads(sealFromAlice())
        message = fields["encrypted_message"]
        fields["encrypted_message"] = ("B" if message[0] == "A" else "A") + message[1:]
        data = json.dumps(fields).encode("utf-8")
        self.assertFalse(Envelope.parse(data).verifySignature(publicDer("alice")))
        self.assertRaises(BadSignature, e2e.openEnvelope, data, "bob",
                          privateKey("bob"), publicDer("alice"))

    def test_signatureBeforeDecryption(self):
        """
        An envelope that is not the sender's is refused before the reader's
        private key is used on it.
        """
        class Untouchable:
            def decrypt(self, *args):
                raise AssertionError("the private key was used")

        self.assertRaises(BadSignature, e2e.openEnvelope, sealFromAlice(), "bob",
                          Untouchable(), publicDer("mallory"))

    def test_fileDomain(self):
        """
        A file envelope opens and verifies only as a file, never as a message.
        """
        data = sealFromAlice(b"{}", domain=e2e.FILE)
        envelope = Envelope.parse(data)
        self.assertTrue(envelope.verifySignature(publicDer("alice"), e2e.FILE))
        self.assertFalse(envelope.verifySignature(publicDer("alice")))
        self.assertTrue(envelope.header(e2e.FILE).startswith(b"chatd-file-v1\n"))
        self.assertEqual(
            e2e.openEnvelope(data, "bob", privateKey("bob"), publicDer("alice"),
                             e2e.FILE),
            b"{}")
        self.assertRaises(BadSignature, e2e.openEnvelope, data, "bob",
                          privateKey("bob"), publicDer("alice"))


class SignatureTests(SynchronousTestCase):
    """
    L{Envelope.verifySignature}, as the server uses it.
    """

    def test_senderKey(self):
        """
        The sender's key verifies its envelope.
        """
        self.assertTrue(Envelope.parse(sealFromAlice()).verifySignature(
            publicDer("alice")))

    def test_otherKey(self):
        """
        Another user's key does not verify it.
        """
        self.assertFalse(Envelope.parse(sealFromAlice()).verifySignature(
            publicDer("mallory")))

    def test_badKey(self):
        """
        An unusable key gives C{False} rather than an exception.
        """
        envelope = Envelope.parse(sealFromAlice())
        self.assertFalse(envelope.verifySignature(b"not a key"))
        self.assertFalse(envelope.verifySignature(publicDer("weak", 1024)))

    def test_changedHeader(self):
        """
        A signature does not carry over to a different timestamp.
        """
        fields = json.loads(sealFromAlice())
        fields["ts"] += 1
        envelope = Envelope.parse(json.dumps(fields).encode("utf-8"))
        self.assertFalse(envelope.verifySignature(publicDer("alice")))


class CutTests(SynchronousTestCase):
    """
    L{Envelope.cutFor}, the server's per-recipient fan-out.
    """

    def test_ownEntryOnly(self):
        """
        Each reader's cut keeps only its own entries, and it still opens and
        verifies for that reader.
        """
        envelope = Envelope.parse(sealFromAlice(b"secret"))
        for name in ("alice", "bob", "carol"):
            cut = Envelope.parse(envelope.cutFor(name))
            self.assertEqual(cut.encryptedKeys,
                             {name: envelope.encryptedKeys[name]})
            self.assertEqual(cut.keyIds, {name: envelope.keyIds[name]})
            self.assertTrue(cut.verifySignature(publicDer("alice")))
            self.assertEqual(
                e2e.openEnvelope(cut, name, privateKey(name), publicDer("alice")),
                b"secret")

    def test_otherFieldsKept(self):
        """
        A cut carries every field but the maps exactly as the original has it.
        """
        original = json.loads(handWith())
        cut = json.loads(Envelope.parse(handWith()).cutFor("bob"))
        for mapName in ("encrypted_keys", "key_ids"):
            self.assertEqual(cut.pop(mapName), {"bob": original.pop(mapName)["bob"]})
        self.assertEqual(cut, original)

    def test_nonReader(self):
        """
        A user without an entry gets both maps empty.
        """
        cut = Envelope.parse(Envelope.parse(handWith()).cutFor("mallory"))
        self.assertEqual((cut.encryptedKeys, cut.keyIds), ({}, {}))
        self.assertEqual(cut.header(), HAND_HEADER)

    def test_nonAsciiName(self):
        """
        A reader whose name is not ASCII gets a cut that parses back to its entry.
        """
        cut = Envelope.parse(Envelope.parse(handWith()).cutFor("zo\u00eb"))
        self.assertEqual(cut.encryptedKeys, {"zo\u00eb": "a2V5em9l"})

    def test_cached(self):
        """
        Asking twice for the same reader's cut gives the very same bytes object.
        """
        envelope = Envelope.parse(handWith())
        self.assertIs(envelope.cutFor("bob"), envelope.cutFor("bob"))

    def test_quotedNamesBounded(self):
        """
        Readers' names are kept quoted as JSON writes them, and no more of
        them than the bound: past it, the kept ones are forgotten.
        """
        self.patch(e2e, "_QUOTED_NAMES", 2)
        quoted = e2e._QuotedNames()
        for name in ["bob", "zo\u00eb", 'say "hi"', "bob"]:
            self.assertEqual(quoted[name], json.dumps(name))
            self.assertLessEqual(len(quoted), 2)
        self.assertEqual(set(quoted), {'say "hi"', "bob"})


class HeaderTests(SynchronousTestCase):
    """
    L{Envelope.header}, byte for byte.
    """

    def test_message(self):
        """
        The message header is the section 6 text, names in UTF-8.
        """
        self.assertEqual(Envelope.parse(handWith()).header(), HAND_HEADER)

    def test_file(self):
        """
        The file header differs only in its first line.
        """
        self.assertEqual(
            Envelope.parse(handWith()).header(e2e.FILE),
            b"chatd-file-v1" + HAND_HEADER[len(b"chatd-e2e-v1"):])

    def test_attributes(self):
        """
        The parsed fields are exposed under camelCase names.
        """
        data = handWith()
        envelope = Envelope.parse(data)
        self.assertEqual(
            (envelope.version, envelope.alg, envelope.sender, envelope.ts,
             envelope.signature, envelope.encryptedMessage, envelope.raw),
            (1, e2e.ALG, "zo\u00eb", 1700000000000, "c2lnbmF0dXJl", "aGVsbG8=", data))


class MalformedTests(SynchronousTestCase):
    """
    L{Envelope.parse} refuses every envelope that is not exactly the right shape.
    """

    def assertMalformed(self, data, why=""):
        """
        Assert that C{data} is refused with L{EnvelopeError}, whose message
        contains C{why}.
        """
        error = self.assertRaises(EnvelopeError, Envelope.parse, data)
        self.assertIn(why, error.message, data)
        self.assertEqual(error.status, Status.ERROR)
        self.assertIsInstance(error, BadRequest)

    def test_notJson(self):
        """
        Bytes that are not JSON are refused.
        """
        self.assertMalformed(b"{nope", "not UTF-8 JSON")
        self.assertMalformed(b"", "not UTF-8 JSON")

    def test_invalidUtf8(self):
        """
        JSON that is not valid UTF-8 is refused, even inside a string.
        """
        self.assertMalformed(handWith().replace(b"zo\\u00eb", b"zo\xeb"),
                             "not UTF-8 JSON")
        self.assertMalformed(handWith().decode("utf-8").encode("utf-16"),
                             "not UTF-8 JSON")

    def test_notAnObject(self):
        """
        A JSON array, or any other non-object, is refused.
        """
        self.assertMalformed(b"[]", "not a JSON object")
        self.assertMalformed(b'"v"', "not a JSON object")

    def test_nonJsonConstant(self):
        """
        C{NaN}, which Python's own parser would accept, is refused.
        """
        self.assertMalformed(handWith().replace(b"1700000000000", b"NaN"), "NaN")

    def test_duplicateTopLevelKey(self):
        """
        A field given twice is refused, naming the key.
        """
        self.assertMalformed(handWith()[:-1] + b', "ts": 5}',
                             "envelope: duplicate key 'ts'")

    def test_duplicateNestedKey(self):
        """
        A reader named twice in C{encrypted_keys} is refused.
        """
        data = handWith().replace(b'{"bob": "a2V5Ym9i"',
                                  b'{"bob": "a2V5Ym9i", "bob": "a2V5Ym9i"')
        self.assertMalformed(data, "envelope: duplicate key 'bob'")

    def test_unknownField(self):
        """
        A field section 6 does not define is refused, naming it.
        """
        self.assertMalformed(handWith(note="hi"), "envelope: unknown field 'note'")

    def test_missingField(self):
        """
        Each of the twelve fields is required.
        """
        for name in HAND:
            self.assertMalformed(handWith(**{name: DROP}),
                                 f"envelope: missing field '{name}'")

    def test_wrongTypes(self):
        """
        Fields of the wrong type or value are refused.
        """
        cases = [
            ("v", "1"), ("v", True), ("v", 2), ("v", 1.0),
            ("alg", "RSA-OAEP/A128GCM/PS256"), ("alg", 1),
            ("from", 5), ("from", ""), ("from", "al\nice"),
            ("to", {"room": "a", "user": "b"}), ("to", {"group": "a"}), ("to", {}),
            ("to", "#Lobby"), ("to", {"room": 5}), ("to", {"room": "a\nb"}),
            ("ts", "5"), ("ts", 1.5), ("ts", -1), ("ts", False), ("ts", None),
            ("encrypted_message", ""), ("encrypted_message", 5),
            ("encrypted_keys", []), ("encrypted_keys", {"bob": 5}),
            ("encrypted_keys", {"bob": ""}),
            ("key_ids", {"bob": "0123456789ABCDEF"}), ("key_ids", {"bob": "0123"}),
            ("key_ids", {"bob": "0123456789abcdeg"}), ("key_ids", "x"),
            ("signature", ""), ("signature", ["c2ln"]),
        ]
        for name, value in cases:
            self.assertMalformed(handWith(**{name: value}), name)

    def test_badId(self):
        """
        An id that is not exactly 16 bytes of canonical unpadded base64url is
        refused.
        """
        for value in ["AAECAwQFBgcICQoLDA0O", "AAECAwQFBgcICQoLDA0ODwAA",
                      "AAECAwQFBgcICQoLDA0ODw==", "AAECAwQFBgcICQoLDA0OD+",
                      "AAECAwQFBgcICQoLDA0ODx", 16]:
            self.assertMalformed(handWith(id=value), "id")

    def test_badBase64(self):
        """
        Base64 fields with characters outside the alphabet, wrong padding or the
        wrong decoded size are refused.
        """
        cases = [
            ("nonce", "AAECAwQFBgcICQo!"), ("nonce", "AAECAwQFBgcICQ"),
            ("nonce", "AAECAwQFBgcICQoLDA=="), ("nonce", "AAECAwQFBgc_CQoL"),
            ("kc", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
            ("kc", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9="),
            ("encrypted_message", "aGVsbG8"), ("encrypted_message", "aGVs bG8="),
            ("encrypted_message", "a==="), ("encrypted_message", "aGVsbG8=aGVs"),
            ("encrypted_keys", {"bob": "a2V5Ym9\u00e9"}), ("signature", "c2ln-A=="),
        ]
        for name, value in cases:
            self.assertMalformed(handWith(**{name: value}), name)

    def test_badEntryAmongMany(self):
        """
        One bad entry in a room-sized map is refused, by its reader's name.
        """
        good = base64.b64encode(bytes(256)).decode("ascii")
        keys = {f"u{n}": good for n in range(200)}
        ids = {f"u{n}": "0123456789abcdef" for n in range(200)}
        self.assertMalformed(handWith(encrypted_keys={**keys, "u150": good + "="},
                                      key_ids=ids), "encrypted_keys['u150']")
        self.assertMalformed(handWith(encrypted_keys=keys, key_ids={**ids, "u7": 7}),
                             "key_ids['u7']")

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.one_of(st.text(alphabet="AB+/=a9\n \u00e9-_f0", max_size=18),
                              st.integers()), max_size=4))
    def test_wholeMapChecks(self, values):
        """
        The checks of a whole map's values at once accept exactly the maps
        whose every value the one-at-a-time checks accept.
        """
        self.assertEqual(envelopeshape._allBase64(values),
                         all(map(envelopeshape._isBase64, values)))
        self.assertEqual(envelopeshape._allKeyIds(values),
                         all(map(envelopeshape._isKeyId, values)))

    @settings(max_examples=600, deadline=None)
    @given(st.integers(min_value=0, max_value=3).flatmap(lambda quads: st.lists(
        st.text(alphabet="AB+/=a9\n\u00e9-", min_size=4 * quads, max_size=4 * quads),
        max_size=4)))
    @example(["AAAA\nAAA", "AAAAAAAA"])
    @example(["AAAAAA", "AA"])
    @example(["AAA=AAA=", "AAAAAAA="])
    @example(["AAAAAA==", "AAAAAAA="])
    @example(["AAAAAA=A", "AAAAAA=A"])
    def test_wholeMapOneLength(self, values):
        """
        Values of one length, which the whole map's base64 check reads as
        one text, are accepted exactly when each is on its own: newlines,
        padding within or out of place and stray characters included.
        """
        self.assertEqual(envelopeshape._allBase64(values),
                         all(map(envelopeshape._isBase64, values)))
        if envelopeshape._uniformBase64(values):
            self.assertTrue(all(map(envelopeshape._isBase64, values)))

    def test_oneLengthReadAsOneText(self):
        """
        A room's entries, of one length and padding (none, one or two), are
        accepted by the check of them as one text, without the check of each;
        padding out of place there is left to the check of each.
        """
        for size in (255, 256, 257):
            values = [base64.b64encode(bytes([n]) * size).decode("ascii")
                      for n in range(200)]
            self.assertTrue(envelopeshape._uniformBase64(values), size)
        self.assertFalse(envelopeshape._uniformBase64(["AA==", "AAAA"]))
        self.assertTrue(envelopeshape._allBase64(["AA==", "AAAA"]))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.one_of(st.text(alphabet="0af9\nA", min_size=15, max_size=34),
                              st.sampled_from(["0123456789abcdef", "0123456789abcdef\n"])),
                    max_size=3))
    @example(["0123456789abcdef\n0123456789abcdef"])
    @example(["0123456789abcdef", ""])
    def test_wholeMapKeyIds(self, values):
        """
        The check of a whole map's key ids at once, on values near the right
        length, newlines among them, accepts exactly what the one-at-a-time
        check does.
        """
        self.assertEqual(envelopeshape._allKeyIds(values),
                         all(map(envelopeshape._isKeyId, values)))

    def test_emptyMapsAccepted(self):
        """
        Empty key maps are well-formed: that is what a non-reader's cut holds.
        """
        envelope = Envelope.parse(handWith(encrypted_keys={}, key_ids={}))
        self.assertEqual(envelope.readers(), frozenset())


def _mutate(data, edits):
    """
    C{data} with each C{(position, byte)} edit applied: a byte of 256 deletes the
    byte at that position, any other is written over it.
    """
    buffer = bytearray(data)
    for position, value in edits:
        if not buffer:
            break
        position %= len(buffer)
        if value == 256:
            del buffer[position]
        else:
            buffer[position] = value
    return bytes(buffer)


_SEALED = sealFromAlice(b"fuzz", readers=("alice", "bob"), ts=1,
                        envelopeId="AAECAwQFBgcICQoLDA0ODw")

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)

_FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=200)


class FuzzTests(SynchronousTestCase):
    """
    L{Envelope.parse} on hostile input: it refuses with L{EnvelopeError} or
    returns an envelope that every other method can handle.
    """

    def assertParsesOrRefuses(self, data):
        """
        Assert that C{data} either raises L{EnvelopeError} or parses to an
        envelope whose header, signature check and cuts all work.
        """
        checkEnvelope(data)

    @_FUZZ
    @given(st.binary(max_size=300))
    def test_arbitraryBytes(self, data):
        """
        Arbitrary bytes never raise anything but L{EnvelopeError}.
        """
        self.assertParsesOrRefuses(data)

    @_FUZZ
    @given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 256)),
                    min_size=1, max_size=4))
    def test_mutatedBytes(self, edits):
        """
        A valid envelope with a few bytes changed or deleted never raises anything
        but L{EnvelopeError}.
        """
        self.assertParsesOrRefuses(_mutate(_SEALED, edits))

    @_FUZZ
    @given(st.sampled_from(sorted(HAND) + ["extra"]), _JSON)
    def test_mutatedField(self, name, value):
        """
        A valid envelope with one field replaced by any JSON value never raises
        anything but L{EnvelopeError}.
        """
        fields = json.loads(_SEALED)
        fields[name] = value
        self.assertParsesOrRefuses(json.dumps(fields).encode("utf-8"))


class KeyTests(SynchronousTestCase):
    """
    L{e2e.loadPublicKey}, L{e2e.keyId} and L{e2e.fingerprint}.
    """

    def test_loads(self):
        """
        A 2048-bit RSA key loads, and loading it again gives the cached object.
        """
        key = e2e.loadPublicKey(publicDer("bob"))
        self.assertIsInstance(key, rsa.RSAPublicKey)
        self.assertIs(e2e.loadPublicKey(publicDer("bob")), key)

    def test_weakRsa(self):
        """
        A 1024-bit RSA key is refused.
        """
        error = self.assertRaises(BadRequest, e2e.loadPublicKey,
                                  publicDer("weak", 1024))
        self.assertIn("1024 bits", error.message)

    def test_ecKey(self):
        """
        An EC key is refused: envelopes need RSA.
        """
        der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)
        error = self.assertRaises(BadRequest, e2e.loadPublicKey, der)
        self.assertIn("not an RSA key", error.message)

    def test_garbage(self):
        """
        Bytes that are not a DER key are refused with L{BadRequest}.
        """
        for der in (b"", b"garbage", publicDer("bob")[:-1]):
            self.assertRaises(BadRequest, e2e.loadPublicKey, der)

    def test_keyId(self):
        """
        A key id is the first 16 hex digits of the key's SHA-256.
        """
        der = publicDer("bob")
        self.assertEqual(e2e.keyId(der), hashlib.sha256(der).hexdigest()[:16])
        self.assertEqual(e2e.keyId(b""), "e3b0c44298fc1c14")

    def test_fingerprint(self):
        """
        A fingerprint is the whole SHA-256 in lowercase groups of four.
        """
        self.assertEqual(
            e2e.fingerprint(b""),
            "e3b0 c442 98fc 1c14 9afb f4c8 996f b924 27ae 41e4 649b 934c a495 991b"
            " 7852 b855")
        text = e2e.fingerprint(publicDer("bob"))
        self.assertTrue(re.fullmatch(r"([0-9a-f]{4} ){15}[0-9a-f]{4}", text))
        self.assertEqual(text.replace(" ", ""),
                         hashlib.sha256(publicDer("bob")).hexdigest())


class AuthTests(SynchronousTestCase):
    """
    Login challenge signatures.
    """

    def test_message(self):
        """
        The signed bytes are the prefix, the challenge and the UTF-8 user name.
        """
        self.assertEqual(loginsig.authMessage(b"\x01\x02", "zo\u00eb"),
                         b"chatd-auth-v1\x00\x01\x02zo\xc3\xab")

    def test_valid(self):
        """
        A signature by the user's key over its challenge verifies.
        """
        signature = loginsig.signAuth(privateKey("bob"), b"challenge", "bob")
        self.assertTrue(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob",
                                       signature))

    def test_invalid(self):
        """
        Another key, challenge, user or signature does not verify, and nothing
        raises.
        """
        signature = loginsig.signAuth(privateKey("bob"), b"challenge", "bob")
        self.assertFalse(loginsig.verifyAuth(publicDer("carol"), b"challenge", "bob",
                                        signature))
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"other", "bob", signature))
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"challenge", "carol",
                                        signature))
        self.assertFalse(loginsig.verifyAuth(publicDer("bob"), b"challenge", "bob",
                                        signature[:-1]))
        self.assertFalse(loginsig.verifyAuth(b"garbage", b"challenge", "bob", signature))
        self.assertFalse(loginsig.verifyAuth(publicDer("weak", 1024), b"challenge", "bob",
                                        loginsig.signAuth(privateKey("weak", 1024),
                                                     b"challenge", "bob")))


class ChunkTests(SynchronousTestCase):
    """
    File chunk encryption (section 5).
    """

    key = bytes(range(32))
    fileId = "AAECAwQFBgcICQoLDA0ODw"

    def test_nonceAndAad(self):
        """
        The nonce is four zero bytes and a big-endian u64; the associated data
        names the envelope id and the decimal index.
        """
        self.assertEqual(e2e.chunkNonce(258), b"\0\0\0\0\0\0\0\0\0\0\x01\x02")
        self.assertEqual(e2e.chunkAad(self.fileId, 12),
                         b"chatd-chunk-v1\nAAECAwQFBgcICQoLDA0ODw\n12")

    def test_roundTrip(self):
        """
        A sealed chunk opens at its own index, including an empty one.
        """
        for data in (b"", b"chunk data" * 100):
            sealed = e2e.sealChunk(self.key, self.fileId, 3, data)
            self.assertEqual(len(sealed), len(data) + 16)
            self.assertEqual(e2e.openChunk(self.key, self.fileId, 3, sealed), data)

    def test_tampered(self):
        """
        A chunk at the wrong index, of another file, or altered, is refused.
        """
        sealed = e2e.sealChunk(self.key, self.fileId, 3, b"data")
        altered = bytes([sealed[0] ^ 1]) + sealed[1:]
        for fileId, index, ciphertext in [(self.fileId, 4, sealed),
                                          ("AAECAwQFBgcICQoLDA0OAA", 3, sealed),
                                          (self.fileId, 3, altered)]:
            error = self.assertRaises(EnvelopeError, e2e.openChunk, self.key, fileId,
                                      index, ciphertext)
            self.assertIn(f"chunk {index}", error.message)
