# -*- test-case-name: chatd.test.test_client_vectors -*-
"""
Make C{chatd/test/vectors/clients.json}: the envelopes both clients (the
terminal client's tests and the browser check) must accept, refuse, hold or
see as replays, so that the two cannot drift apart on the rules of
docs/client.rst.

Run it from the repository's root::

    python -m chatd.test.vectors.make_clients [--new-keys]

The keys are fixed: they are read back from the file it writes (C{--new-keys}
makes new ones). Every other input is fixed too (ids, times, message keys,
nonces: all derived from the case's name), so running it again changes only
the RSA-OAEP wrapped keys and the RSA-PSS signatures, which those schemes
randomise; what each case expects never changes.

Schema (C{"schema": 1})
=======================

The file is one JSON object:

C{rules}
    The numbers both clients share: C{seenIds} (the replay window, in
    envelopes), C{skewMs} (the slack below the replay horizon),
    C{sendAttempts} (how often a message is sealed again when the server says
    its readers changed, 0x09 / stale_recipients).
C{now}
    The client's clock, in ms since the epoch, while the cases run.
C{me}
    The account the client is logged in as (always with its own key,
    C{keys[me]}).
C{keys}
    Label to C{{"spki": base64 SPKI DER, "pkcs8": base64 PKCS#8 DER}}, RSA
    2048-bit (the least chatd takes). A label names a user's key: C{bob} is
    bob's pinned key, C{bob-new} the key bob changes to, C{mallory} a key
    nobody pinned.
C{cases}
    A list of independent cases; each starts from a fresh client logged in as
    C{me} that has seen nothing:

    C{name}, C{about}
        What it checks, in a few words and in a sentence.
    C{pins}
        User name to key label: the keys pinned (on first use) before the
        case runs; the server gives the same keys until a C{keyChanged} step.
    C{horizon}
        The replay horizon before the case runs, in ms (as if that many
        envelopes had been forgotten that the newest of them was signed
        then); 0 for none.
    C{steps}
        Run in order. Each has an C{op} and an C{expect}: the list of what
        the step makes the client do with messages, in order, each
        C{{"outcome": "show", "sender": ..., "text": ..., "ts": ...}} (shown,
        with the signed time), C{{"outcome": "drop", "reason": ...}} (refused
        and said so) or C{{"outcome": "hold"}} (kept back, not shown, not
        dropped); an empty list when the client does nothing the person
        sees (a message it has shown, come again identical: dropped without
        a word). The ops:

        C{deliver}
            A live message arrives: C{kind} C{"room"} (with C{room}) or
            C{"dm"}, from C{sender}, with C{envelope} (the envelope as the
            server relays it, UTF-8 JSON text, already cut for C{me}).
        C{keyChanged}
            The server announces that C{user}'s key is now C{key} (a label):
            the conversation with that user is blocked until the person
            accepts or rejects it. Expects nothing.
        C{accept}
            The person compared fingerprints and accepts C{user}'s new key:
            the messages held from that user are checked with it and shown (or
            dropped), in the order they came.
        C{reject}
            The person rejects C{user}'s new key: the messages held from that
            user are dropped (reason C{rejected-key}).

The drop reasons, the first that applies in this order (so a client checks in
this order, the signature before it decrypts anything):

C{malformed}
    Not an envelope of the right shape.
C{binding}
    Its C{from} is not the sender the server names, or its C{to} is not the
    room it came in (room) or not C{me} (direct message, unless from C{me}).
C{replay}
    Its sender and id were seen before, or it is signed more than C{skewMs}
    before the horizon. But the very envelope shown before (the same signed
    bytes and signature, however the server wrote it), come again, is no
    replay: it is its sender's retry, dropped without a word (no outcome).
C{signature}
    Its signature does not verify with the sender's key (the pinned one; for
    C{me}, its own key). A message from a user whose key change is pending is
    held instead, and checked with the accepted key.
C{not-for-me}
    It holds no key entry for C{me}.
C{unwrap}
    Its entry for C{me} does not unwrap with C{me}'s key.
C{commitment}
    The unwrapped key does not match the key commitment C{kc}.
C{ciphertext}
    The ciphertext does not decrypt (its tag fails).
C{rejected-key}
    It was held, and the person rejected the sender's new key.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatd import e2e
from chatd.client.replay import SEEN_IDS, SKEW_MS

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients.json")

SCHEMA = 1
SEND_ATTEMPTS = 4
NOW = 1_780_000_000_000
ME = "alice"
LABELS = ("alice", "bob", "bob-new", "carol", "mallory")
# The pins of most cases: alice knows bob and carol.
PINS = {"bob": "bob", "carol": "carol"}
HORIZON = NOW - 3_600_000


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _derived(case, what, size):
    """
    C{size} bytes that depend only on the case and what they are for.
    """
    return hashlib.sha256(("%s\0%s" % (case, what)).encode("utf-8")).digest()[:size]


class Keys:
    """
    The fixed keys, by label.
    """

    def __init__(self, private):
        self.private = private

    @classmethod
    def load(cls, path, new, labels=LABELS):
        """
        The keys of the file at C{path}, or new ones when it has none (or
        when C{new}): one for each of C{labels} (make_devices.py has its own).
        """
        private = {}
        if not new and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                stored = json.load(f)["keys"]
            private = {label: serialization.load_der_private_key(
                base64.b64decode(entry["pkcs8"]), None) for label, entry in stored.items()}
        for label in labels:
            if label not in private:
                private[label] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls({label: private[label] for label in labels})

    def der(self, label):
        return self.private[label].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def asJSON(self):
        return {label: {
            "spki": _b64(self.der(label)),
            "pkcs8": _b64(self.private[label].private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())),
        } for label in self.private}


class Maker:
    """
    Builds the envelopes of one case, with every input fixed and any one of
    them wrong on purpose.
    """

    def __init__(self, keys, case):
        self.keys = keys
        self.case = case
        self.count = 0

    def envelope(self, sender, to, text, readers=("alice",), *, signer=None, ts=None,
                 envelopeId=None, domain=e2e.MESSAGE, wrapWith=None, kc=None, aadTo=None,
                 tamper=None):
        """
        One envelope, as L{e2e.seal} makes it, from fixed inputs.

        @param signer: the key label that signs (the sender's by default).
        @param readers: the names given a key entry, each wrapped for its
            own key, unless C{wrapWith} names another label for all.
        @param kc: the key commitment to claim (the right one by default).
        @param aadTo: encrypt under the header of this C{to} instead of the
            one the envelope states (so the ciphertext does not decrypt).
        @param tamper: called with the finished envelope object to change it
            after signing, as a server could.
        """
        self.count += 1
        label = "%d" % (self.count,)
        key = _derived(self.case, "key" + label, 32)
        nonce = _b64(_derived(self.case, "nonce" + label, 12))
        if envelopeId is None:
            envelopeId = base64.urlsafe_b64encode(
                _derived(self.case, "id" + label, 16)).decode("ascii")[:22]
        if ts is None:
            ts = NOW - 60_000 + self.count * 1000
        kc = kc or _b64(e2e._commit(key))
        header = e2e._header(domain, sender, to[0], to[1], envelopeId, ts, nonce, kc)
        aad = header if aadTo is None else e2e._header(
            domain, sender, aadTo[0], aadTo[1], envelopeId, ts, nonce, kc)
        encrypted = _b64(AESGCM(key).encrypt(base64.b64decode(nonce), text.encode("utf-8"), aad))
        signature = self.keys.private[signer or sender].sign(
            header + encrypted.encode("ascii"), e2e._PSS, hashes.SHA256())
        wrapKeys = {name: self.keys.der(wrapWith or name) for name in readers}
        obj = {
            "v": 1, "alg": e2e.ALG, "id": envelopeId, "from": sender,
            "to": {to[0]: to[1]}, "ts": ts, "nonce": nonce, "kc": kc,
            "encrypted_message": encrypted,
            "encrypted_keys": {name: _b64(e2e.loadPublicKey(der).encrypt(key, e2e._OAEP))
                               for name, der in wrapKeys.items()},
            "key_ids": {name: e2e.keyId(der) for name, der in wrapKeys.items()},
            "signature": _b64(signature),
        }
        if tamper is not None:
            tamper(obj)
        return json.dumps(obj)


def show(sender, text, envelope):
    return {"outcome": "show", "sender": sender, "text": text, "ts": json.loads(envelope)["ts"]}


def drop(reason):
    return {"outcome": "drop", "reason": reason}


HOLD = {"outcome": "hold"}


def room(sender, envelope, expect, name="general"):
    return {"op": "deliver", "kind": "room", "room": name, "sender": sender,
            "envelope": envelope, "expect": expect}


def dm(sender, envelope, expect):
    return {"op": "deliver", "kind": "dm", "sender": sender, "envelope": envelope,
            "expect": expect}


def _flip(field):
    """
    A tamper function that changes one character of a base64 field.
    """
    def tamper(obj):
        value = obj[field]
        obj[field] = ("B" if value[0] == "A" else "A") + value[1:]
    return tamper


def _swapKc(obj):
    obj["kc"] = _b64(hashlib.sha256(b"another key").digest())


def cases(keys):
    """
    Every case, as JSON-ready objects.
    """
    made = []

    def case(name, about, build, pins=PINS, horizon=0):
        steps = build(Maker(keys, name))
        made.append({"name": name, "about": about, "pins": dict(pins), "horizon": horizon,
                     "steps": steps})

    room_ = ("room", "general")
    toMe = ("user", ME)

    def accepted(m):
        e = m.envelope("bob", room_, "hello, room", readers=("alice", "bob", "carol"))
        return [room("bob", e, [show("bob", "hello, room", e)])]
    case("accept-room", "A room message from a pinned member is shown.", accepted)

    def acceptedDm(m):
        e = m.envelope("bob", toMe, "hello, alice \u2603", readers=("alice", "bob"))
        return [dm("bob", e, [show("bob", "hello, alice \u2603", e)])]
    case("accept-dm", "A direct message to me from a pinned user is shown.", acceptedDm)

    def own(m):
        e = m.envelope("alice", room_, "sent from my other session", readers=("alice", "bob"))
        return [room("alice", e, [show("alice", "sent from my other session", e)])]
    case("accept-own", "My own room message (another session) is checked with my key.", own)

    def ownDm(m):
        e = m.envelope("alice", ("user", "bob"), "my copy", readers=("alice", "bob"))
        return [dm("alice", e, [show("alice", "my copy", e)])]
    case("accept-own-dm", "My own copy of a direct message to bob is shown.", ownDm)

    def badSignature(m):
        e = m.envelope("bob", room_, "forged", signer="mallory")
        return [room("bob", e, [drop("signature")])]
    case("reject-signature", "Signed by a key that is not the sender's pinned key.",
         badSignature)

    def tampered(m):
        e = m.envelope("bob", room_, "changed on the way", tamper=_flip("encrypted_message"))
        return [room("bob", e, [drop("signature")])]
    case("reject-tampered-ciphertext",
         "Ciphertext changed after signing: refused for its signature, checked before "
         "anything is decrypted.", tampered)

    def tamperedKeys(m):
        e = m.envelope("bob", room_, "signed text", signer="mallory",
                       tamper=_flip("encrypted_message"))
        return [room("bob", e, [drop("signature")])]
    case("reject-signature-first",
         "Bad signature and a ciphertext that does not decrypt: the signature is named.",
         tamperedKeys)

    def commitment(m):
        e = m.envelope("bob", room_, "two keys", kc=_b64(hashlib.sha256(b"other").digest()))
        return [room("bob", e, [drop("commitment")])]
    case("reject-commitment", "A signed envelope whose key commitment is not its key's.",
         commitment)

    def notForMe(m):
        e = m.envelope("bob", room_, "for carol only", readers=("bob", "carol"))
        return [room("bob", e, [drop("not-for-me")])]
    case("reject-not-for-me", "A signed envelope with no key entry for me.", notForMe)

    def unwrap(m):
        e = m.envelope("bob", room_, "wrapped for mallory", wrapWith="mallory")
        return [room("bob", e, [drop("unwrap")])]
    case("reject-unwrap", "My key entry was wrapped for another key.", unwrap)

    def ciphertext(m):
        e = m.envelope("bob", room_, "encrypted for another room", aadTo=("room", "random"))
        return [room("bob", e, [drop("ciphertext")])]
    case("reject-ciphertext",
         "Signed by the sender, but encrypted under another header: it does not decrypt.",
         ciphertext)

    def wrongRoom(m):
        e = m.envelope("bob", ("room", "random"), "meant for random")
        return [room("bob", e, [drop("binding")])]
    case("reject-wrong-room", "A signed envelope for room random, delivered in general.",
         wrongRoom)

    def wrongTarget(m):
        e = m.envelope("bob", ("user", "carol"), "meant for carol")
        return [dm("bob", e, [drop("binding")])]
    case("reject-wrong-target", "A direct message addressed to carol, delivered to me.",
         wrongTarget)

    def roomAsDm(m):
        e = m.envelope("bob", room_, "a room message")
        return [dm("bob", e, [drop("binding")])]
    case("reject-room-as-dm", "A room envelope delivered as a direct message.", roomAsDm)

    def wrongSender(m):
        e = m.envelope("carol", room_, "from carol")
        return [room("bob", e, [drop("binding")])]
    case("reject-wrong-sender", "Carol's envelope, relayed as bob's.", wrongSender)

    def fileDomain(m):
        e = m.envelope("bob", room_, "a file envelope", domain=e2e.FILE)
        return [room("bob", e, [drop("signature")])]
    case("reject-file-as-message",
         "A file envelope delivered as a message: its signature covers another domain.",
         fileDomain)

    def malformed(m):
        e = m.envelope("bob", room_, "extra field",
                       tamper=lambda obj: obj.update({"extra": 1}))
        return [room("bob", "not an envelope", [drop("malformed")]),
                room("bob", e, [drop("malformed")])]
    case("reject-malformed", "Not JSON, and an envelope with a field of no meaning.",
         malformed)

    def replay(m):
        e = m.envelope("bob", room_, "once")
        return [room("bob", e, [show("bob", "once", e)]), room("bob", e, [])]
    case("replay-same",
         "The same envelope twice (its sender's retry): shown once, then dropped without "
         "a word.", replay)

    def rewritten(m):
        e = m.envelope("bob", room_, "once, however written")
        again = json.dumps(json.loads(e), sort_keys=True, separators=(",", ":"))
        return [room("bob", e, [show("bob", "once, however written", e)]),
                room("bob", again, [])]
    case("replay-same-rewritten",
         "The same envelope written anew (as the server writes each reader's cut): "
         "what is signed and the signature are what count, not the bytes.", rewritten)

    def resigned(m):
        e = m.envelope("bob", room_, "signed twice")
        obj = json.loads(e)
        signed = (e2e.Envelope.parse(e.encode("utf-8")).header()
                  + obj["encrypted_message"].encode("ascii"))
        # RSA-PSS is randomised: the same bytes signed again sign otherwise.
        obj["signature"] = _b64(keys.private["bob"].sign(signed, e2e._PSS, hashes.SHA256()))
        again = json.dumps(obj)
        return [room("bob", e, [show("bob", "signed twice", e)]),
                room("bob", again, [drop("replay")])]
    case("replay-same-id-resigned",
         "The same id and text under another signature: not the envelope shown, a replay.",
         resigned)

    def replayId(m):
        first = m.envelope("bob", room_, "first")
        again = m.envelope("bob", ("user", ME), "same id, other text",
                           envelopeId=json.loads(first)["id"])
        return [room("bob", first, [show("bob", "first", first)]),
                dm("bob", again, [drop("replay")])]
    case("replay-same-id", "Another envelope from the same sender with a seen id.", replayId)

    def sameIdOtherSender(m):
        first = m.envelope("bob", room_, "bob's")
        other = m.envelope("carol", room_, "carol's", envelopeId=json.loads(first)["id"])
        return [room("bob", first, [show("bob", "bob's", first)]),
                room("carol", other, [show("carol", "carol's", other)])]
    case("replay-other-sender", "An id is a replay only from the same sender.",
         sameIdOtherSender)

    def old(m):
        stale = m.envelope("bob", room_, "too old", ts=HORIZON - SKEW_MS - 1)
        fresh = m.envelope("bob", room_, "old but within", ts=HORIZON - SKEW_MS + 1000)
        return [room("bob", stale, [drop("replay")]),
                room("bob", fresh, [show("bob", "old but within", fresh)])]
    case("replay-beyond-window",
         "Signed more than skewMs before the horizon: a replay; just within: shown.",
         old, horizon=HORIZON)

    def held(m):
        first = m.envelope("bob", room_, "new phone", signer="bob-new")
        second = m.envelope("bob", ("user", ME), "it's really me", signer="bob-new")
        return [{"op": "keyChanged", "user": "bob", "key": "bob-new", "expect": []},
                room("bob", first, [HOLD]),
                dm("bob", second, [HOLD]),
                {"op": "accept", "user": "bob",
                 "expect": [show("bob", "new phone", first),
                            show("bob", "it's really me", second)]}]
    case("key-change-accept",
         "Messages from a changed key are held, then shown in order once it is accepted.",
         held)

    def rejected(m):
        first = m.envelope("bob", room_, "trust me", signer="bob-new")
        other = m.envelope("carol", room_, "carol is unaffected")
        return [{"op": "keyChanged", "user": "bob", "key": "bob-new", "expect": []},
                room("bob", first, [HOLD]),
                room("carol", other, [show("carol", "carol is unaffected", other)]),
                {"op": "reject", "user": "bob", "expect": [drop("rejected-key")]}]
    case("key-change-reject",
         "Messages held from a changed key are dropped when the key is rejected.", rejected)

    def oldKeyHeld(m):
        late = m.envelope("bob", room_, "signed with the old key")
        fresh = m.envelope("bob", room_, "signed with the new key", signer="bob-new")
        return [{"op": "keyChanged", "user": "bob", "key": "bob-new", "expect": []},
                room("bob", late, [HOLD]),
                room("bob", fresh, [HOLD]),
                {"op": "accept", "user": "bob",
                 "expect": [drop("signature"), show("bob", "signed with the new key", fresh)]}]
    case("key-change-held-checked",
         "While a change is pending every message from that user is held; once accepted "
         "each is checked with the new key.", oldKeyHeld)

    def heldReplay(m):
        e = m.envelope("bob", room_, "sent twice", signer="bob-new")
        return [{"op": "keyChanged", "user": "bob", "key": "bob-new", "expect": []},
                room("bob", e, [HOLD]),
                room("bob", e, [HOLD]),
                {"op": "accept", "user": "bob", "expect": [show("bob", "sent twice", e)]}]
    case("key-change-held-replay",
         "An envelope held twice is shown once when the key is accepted, and its repeat "
         "dropped without a word.", heldReplay)

    return made


def build(keys):
    return {
        "schema": SCHEMA,
        "generator": "chatd/test/vectors/make_clients.py",
        "rules": {"seenIds": SEEN_IDS, "skewMs": SKEW_MS, "sendAttempts": SEND_ATTEMPTS},
        "now": NOW,
        "me": ME,
        "keys": keys.asJSON(),
        "cases": cases(keys),
    }


def main(argv):
    keys = Keys.load(PATH, "--new-keys" in argv)
    with open(PATH, "w", encoding="utf-8") as f:
        json.dump(build(keys), f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
