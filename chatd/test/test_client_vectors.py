"""
The shared client test vectors (C{chatd/test/vectors/clients.json}, made by
L{chatd.test.vectors.make_clients}) run through the terminal client's real
receiving code: every envelope is handed to L{ChatClient} as the server's
event would be, and what the client shows, drops or holds is compared with
what the vector expects. The browser check runs the same file in Chromium.
"""

import base64
import json
import re

from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.client import chat
from chatd.client.replay import SEEN_IDS, SKEW_MS
from chatd.protocols.opcodes import Op
from chatd.test.test_client import offlineClient
from chatd.test.vectors import make_clients

# What the terminal client says when it drops an envelope, for each reason
# the vectors name.
REASONS = {
    "malformed": r"envelope: (not UTF-8 JSON|unknown field|missing field)",
    "binding": r"envelope claims to be from|envelope is addressed to|direct message "
               r"addressed to",
    "replay": r"replayed message id|signed earlier than every message",
    "signature": r"envelope: signature does not verify",
    "not-for-me": r"envelope: no key for you",
    "unwrap": r"envelope: your key entry does not unwrap",
    "commitment": r"envelope: key commitment does not match",
    "ciphertext": r"envelope: message does not decrypt",
    "rejected-key": r"you rejected \S+'s new key",
}


def load():
    with open(make_clients.PATH, encoding="utf-8") as f:
        return json.load(f)


VECTORS = load()


class VectorClient:
    """
    A L{ChatClient} logged in as the vectors' C{me}, fed one case's steps.
    """

    def __init__(self, testCase, vectors, case):
        self.vectors = vectors
        clock = Clock()
        clock.advance(vectors["now"] / 1000)
        me = vectors["me"]
        self.client, self.ui = offlineClient(testCase, me, self.privateKey(me), clock)
        home = self.client.home
        self.client.seenEnvelopes.horizon = case["horizon"]
        for user, label in case["pins"].items():
            home.knownKeys.pin(user, self.der(label))
            self.client.keys[user] = self.der(label)

    def der(self, label):
        return base64.b64decode(self.vectors["keys"][label]["spki"])

    def privateKey(self, label):
        return serialization.load_der_private_key(
            base64.b64decode(self.vectors["keys"][label]["pkcs8"]), None)

    def run(self, step):
        """
        Carry out one step; what it made the client show, drop or hold.
        """
        op = step["op"]
        if op == "deliver":
            blob = step["envelope"].encode("utf-8")
            if step["kind"] == "room":
                self.client._event(Op.ROOM_MSG, (step["room"], step["sender"], 0, blob))
            else:
                self.client._event(Op.DM, (step["sender"], 0, blob))
        elif op == "keyChanged":
            self.client._event(Op.KEY_CHANGED, (step["user"], self.der(step["key"])))
        elif op == "accept":
            code = e2e.fingerprint(self.client.changes[step["user"]][1])[-4:]
            d = Deferred.fromCoroutine(self.client.trust(step["user"], code))
            assert d.called, "accepting a key asked the server"
        elif op == "reject":
            self.client.reject(step["user"])
        else:
            raise ValueError("unknown op %r" % (op,))
        return self.outcomes()

    def outcomes(self):
        seen = []
        for event in self.ui.take("message", "dm", "dropped", "held"):
            kind = event[0]
            if kind == "message":
                seen.append({"outcome": "show", "sender": event[2], "text": event[3]})
            elif kind == "dm":
                seen.append({"outcome": "show", "sender": event[1], "text": event[3]})
            elif kind == "held":
                seen.append({"outcome": "hold"})
            else:
                seen.append({"outcome": "drop", "reason": reasonOf(event[1])})
        return seen


def reasonOf(text):
    """
    The vectors' name for why the client dropped an envelope, from what it
    said.
    """
    for reason, pattern in REASONS.items():
        if re.search(pattern, text):
            return reason
    return "unrecognised: " + text


def comparable(expected):
    """
    An expected outcome as L{VectorClient.outcomes} reports it (the recording
    UI leaves the time out).
    """
    return {key: value for key, value in expected.items() if key != "ts"}


class VectorTests(SynchronousTestCase):
    """
    Every case of the shared vectors, through the terminal client.
    """

    def test_rules(self):
        """
        The file states the numbers the terminal client uses.
        """
        self.assertEqual(VECTORS["rules"], {"seenIds": SEEN_IDS, "skewMs": SKEW_MS,
                                            "sendAttempts": chat.SEND_ATTEMPTS})

    def test_schema(self):
        """
        The file is of the schema this runner reads, and names every drop
        reason that the runner knows.
        """
        self.assertEqual(VECTORS["schema"], 1)
        named = {outcome["reason"] for case in VECTORS["cases"] for step in case["steps"]
                 for outcome in step["expect"] if outcome["outcome"] == "drop"}
        self.assertEqual(named, set(REASONS))

    def test_showsSignedTime(self):
        """
        The time a shown message carries is the one its sender signed, as the
        vectors say.
        """
        case = next(c for c in VECTORS["cases"] if c["name"] == "accept-room")
        client = VectorClient(self, VECTORS, case)
        times = []
        self.patch(client.ui, "messageReceived",
                   lambda room, sender, ts, text: times.append(ts))
        [step] = case["steps"]
        client.run(step)
        self.assertEqual(times, [step["expect"][0]["ts"]])


def _caseTest(case):
    def test(self):
        client = VectorClient(self, VECTORS, case)
        for number, step in enumerate(case["steps"]):
            self.assertEqual(client.run(step), [comparable(e) for e in step["expect"]],
                             "step %d (%s) of %s" % (number, step["op"], case["name"]))
    test.__doc__ = "%s: %s" % (case["name"], case["about"])
    return test


for _case in VECTORS["cases"]:
    setattr(VectorTests, "test_" + re.sub(r"\W", "_", _case["name"]), _caseTest(_case))
