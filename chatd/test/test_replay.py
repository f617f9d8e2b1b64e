"""
Tests for L{chatd.client.replay}: the window of seen envelopes, kept next to
the account's key so that a replay is dropped across restarts, and the signed
time shown for each message.
"""

import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.client import chat
from chatd.client.replay import SEEN_IDS, SKEW_MS, SeenEnvelopes, signedDigest
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.lying import serverEvent
from chatd.test.test_client import (
    PASSWORD,
    ClientTestCase,
    RecordingUI,
    TestHome,
    der,
    seedIdentity,
)

MINUTE = 60_000
NOW = 1_700_000_000_000


def envelopeId(n):
    """
    A valid envelope id, different for each C{n}.
    """
    return "%021dA" % (n,)


class WindowTests(SynchronousTestCase):
    """
    The window in memory.
    """

    def test_sameRuleAsTheBrowser(self):
        """
        The window and the slack are those chatd/web/replay.js uses.
        """
        with open(os.path.join(os.path.dirname(e2e.__file__), "web", "replay.js")) as f:
            script = f.read()
        self.assertIn("export const SEEN_IDS = %d;" % (SEEN_IDS,), script)
        self.assertIn("export const SKEW_MS = %d;" % (SKEW_MS,), script)

    def test_seenAgain(self):
        """
        An envelope remembered is a replay, by sender (in any case) and id.
        """
        seen = SeenEnvelopes()
        seen.remember("Bob", envelopeId(1), NOW, NOW)
        self.assertEqual(seen.replayed("bob", envelopeId(1), NOW),
                         "replayed message id %s" % (envelopeId(1),))
        self.assertIsNone(seen.replayed("carol", envelopeId(1), NOW))
        self.assertIsNone(seen.replayed("bob", envelopeId(2), NOW))

    def test_horizon(self):
        """
        What falls out of the window raises the horizon: an envelope signed
        more than the slack before it is a replay; one within it is not.
        """
        seen = SeenEnvelopes(window=2)
        for n in range(3):
            seen.remember("bob", envelopeId(n), NOW + n * MINUTE, NOW + 10 * MINUTE)
        self.assertEqual(seen.horizon, NOW)
        self.assertIsNone(seen.replayed("bob", envelopeId(0), NOW))
        self.assertIsNone(seen.replayed("bob", envelopeId(9), NOW - SKEW_MS))
        self.assertIn("signed earlier than every message this device still remembers",
                      seen.replayed("bob", envelopeId(9), NOW - SKEW_MS - 1))

    def test_futureCountsAsNow(self):
        """
        An envelope signed in the future counts as signed now, so that it
        cannot raise the horizon over honest messages once forgotten.
        """
        seen = SeenEnvelopes(window=1)
        seen.remember("mallory", envelopeId(1), NOW + 365 * 24 * 60 * MINUTE, NOW)
        seen.remember("bob", envelopeId(2), NOW, NOW)
        self.assertEqual(seen.horizon, NOW)


    def test_repeats(self):
        """
        An envelope remembered with its digest repeats it when its digest is
        that one, and not when it is another; one remembered without a
        digest, or not at all, cannot be compared.
        """
        seen = SeenEnvelopes()
        seen.remember("Bob", envelopeId(1), NOW, NOW, b"first")
        seen.remember("bob", envelopeId(2), NOW, NOW)
        self.assertIs(seen.repeats("bob", envelopeId(1), b"first"), True)
        self.assertIs(seen.repeats("bob", envelopeId(1), b"other"), False)
        self.assertIsNone(seen.repeats("bob", envelopeId(2), b"first"))
        self.assertIsNone(seen.repeats("carol", envelopeId(1), b"first"))

    def test_repeatsForgotten(self):
        """
        An envelope forgotten to make room takes its digest with it, and
        cannot be compared any more.
        """
        seen = SeenEnvelopes(window=1)
        seen.remember("bob", envelopeId(1), NOW, NOW, b"first")
        seen.remember("bob", envelopeId(2), NOW, NOW, b"second")
        self.assertIsNone(seen.repeats("bob", envelopeId(1), b"first"))
        self.assertIs(seen.repeats("bob", envelopeId(2), b"second"), True)


class DigestTests(SynchronousTestCase):
    """
    L{signedDigest}: what tells a sender's retry from another envelope.
    """

    def seal(self, **kwargs):
        return e2e.seal("bob", privateKey("bob"), ("room", "lobby"),
                        {"alice": der("alice"), "bob": der("bob")}, b"hi", ts=NOW, **kwargs)

    def test_cutsAlike(self):
        """
        The same envelope as each reader receives it (cut to its own key
        entry, written anew by the server) has one digest.
        """
        envelope = e2e.Envelope.parse(self.seal())
        cuts = [e2e.Envelope.parse(envelope.cutFor(reader)) for reader in ("alice", "bob")]
        self.assertNotEqual(cuts[0].raw, cuts[1].raw)
        self.assertEqual({signedDigest(e) for e in [envelope] + cuts},
                         {signedDigest(envelope)})

    def test_otherSignature(self):
        """
        The same id sealed again (another ciphertext, another signature) has
        another digest; so has the same envelope read as a file envelope.
        """
        blob = self.seal(envelopeId=envelopeId(1))
        again = self.seal(envelopeId=envelopeId(1))
        self.assertNotEqual(signedDigest(e2e.Envelope.parse(blob)),
                            signedDigest(e2e.Envelope.parse(again)))
        self.assertNotEqual(signedDigest(e2e.Envelope.parse(blob)),
                            signedDigest(e2e.Envelope.parse(blob), e2e.FILE))

    def test_signatureCounts(self):
        """
        The same signed bytes under another signature (one a server swapped
        in) have another digest.
        """
        blob = self.seal()
        other = e2e.Envelope.parse(self.seal()).signature
        swapped = json.loads(blob)
        swapped["signature"] = other
        self.assertNotEqual(signedDigest(e2e.Envelope.parse(blob)),
                            signedDigest(e2e.Envelope.parse(json.dumps(swapped).encode())))


class FileTests(SynchronousTestCase):
    """
    The window kept in a file.
    """

    def test_keptAcrossRuns(self):
        """
        A window attached to a file is there for the next one attached to it,
        with the horizon, in a file only its owner may read; what was seen
        before attaching is kept too.
        """
        path = os.path.join(self.mktemp(), "keys", "alice.seen")
        first = SeenEnvelopes(window=2)
        first.remember("bob", envelopeId(0), NOW, NOW)
        first.attach(path)
        for n in (1, 2):
            first.remember("bob", envelopeId(n), NOW + n, NOW + n)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        second = SeenEnvelopes(window=2)
        second.attach(path)
        self.assertEqual(second.horizon, NOW)
        self.assertIsNotNone(second.replayed("bob", envelopeId(2), NOW + 2))
        self.assertIsNotNone(second.replayed("bob", envelopeId(1), NOW + 1))
        self.assertIsNone(second.replayed("bob", envelopeId(0), NOW))

    def test_compacted(self):
        """
        The file is rewritten to the window once it holds twice as much.
        """
        path = os.path.join(self.mktemp(), "alice.seen")
        seen = SeenEnvelopes(window=3)
        seen.attach(path)
        for n in range(20):
            seen.remember("bob", envelopeId(n), NOW + n, NOW + n)
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertLessEqual(len(lines), 7)
        again = SeenEnvelopes(window=3)
        again.attach(path)
        self.assertIsNotNone(again.replayed("bob", envelopeId(19), NOW + 19))
        self.assertEqual(again.horizon, NOW + 16)

    def test_sharedHome(self):
        """
        Two clients sharing a home each add to the file, and one compacting
        it keeps what the other added.
        """
        path = os.path.join(self.mktemp(), "alice.seen")
        one, two = SeenEnvelopes(window=4), SeenEnvelopes(window=4)
        one.attach(path)
        two.attach(path)
        for n in range(1, 8):
            one.remember("bob", envelopeId(n), NOW + n, NOW + n)
        two.remember("carol", envelopeId(8), NOW + 8, NOW + 8)
        one.remember("bob", envelopeId(9), NOW + 9, NOW + 9)
        again = SeenEnvelopes(window=4)
        again.attach(path)
        self.assertIsNotNone(again.replayed("carol", envelopeId(8), NOW + 8))
        self.assertIsNotNone(again.replayed("bob", envelopeId(9), NOW + 9))

    def test_badLinesSkipped(self):
        """
        Lines that cannot be read are skipped; the others count.
        """
        path = os.path.join(self.mktemp())
        with open(path, "w") as f:
            f.write("garbage\n%d bob %s\n%d bad/name %s\nhorizon x\n"
                    % (NOW, envelopeId(1), NOW, envelopeId(2)))
        seen = SeenEnvelopes()
        seen.attach(path)
        self.assertIsNotNone(seen.replayed("bob", envelopeId(1), NOW))
        self.assertEqual(seen.horizon, 0)


class TimedUI(RecordingUI):
    """
    Records messages with the time the client gives for them.
    """

    def messageReceived(self, room, sender, timestamp, text):
        self.events.append(("message", room, sender, timestamp, text))

    def directMessageReceived(self, sender, peer, timestamp, text):
        self.events.append(("dm", sender, peer, timestamp, text))


class RestartTests(ClientTestCase):
    """
    A client that restarts remembers what it saw; within one run, it tells
    its sender's retry (the same envelope again: nothing said) from a replay.
    """

    def inject(self, client, op, *values):
        client.protocol.dataReceived(serverEvent(client.protocol, op, *values))
        self.flush()

    def seal(self, text, ts, sender="bob", to=("room", "lobby"), envelopeId=None):
        return e2e.seal(sender, privateKey(sender), to,
                        {"alice": der("alice"), sender: der(sender)}, text.encode(), ts=ts,
                        envelopeId=envelopeId)

    def test_retrySilent(self):
        """
        A message shown, delivered again as the same envelope (its sender's
        retry after the server failed to store it), cut and written anew by
        the server and with another server time, is shown once and nothing
        is said; a direct message too.
        """
        alice, aliceUI = self.account("alice", "lobby")
        self.account("bob", "lobby")
        aliceUI.take()
        now = int(self.clock.seconds() * 1000)
        blob = self.seal("once", now)
        direct = self.seal("psst", now, to=("user", "alice"))
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, blob)
        self.inject(alice, Op.DM, "bob", now, direct)
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now + 1,
                    e2e.Envelope.parse(blob).cutFor("alice"))
        self.inject(alice, Op.DM, "bob", now + 1, direct)
        self.assertEqual(aliceUI.take(), [("message", "lobby", "bob", "once"),
                                          ("dm", "bob", "bob", "psst")])

    def test_otherContentSaid(self):
        """
        Another envelope under the id of one shown (another text, another
        signature) is a replay, said.
        """
        alice, aliceUI = self.account("alice", "lobby")
        self.account("bob", "lobby")
        aliceUI.take()
        now = int(self.clock.seconds() * 1000)
        blob = self.seal("pay carol 10", now)
        envelopeId = e2e.Envelope.parse(blob).id
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, blob)
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now,
                    self.seal("pay mallory 10", now, envelopeId=envelopeId))
        self.assertEqual(aliceUI.take(), [
            ("message", "lobby", "bob", "pay carol 10"),
            ("dropped", "dropped a message from bob in room lobby: replayed message id %s"
             % (envelopeId,))])

    def test_retryBelowHorizonSaid(self):
        """
        The same envelope again, once the horizon has risen past the time it
        was signed, is a replay, said: a repeat passes in silence only where
        the window still covers it.
        """
        alice, aliceUI = self.account("alice", "lobby")
        self.account("bob", "lobby")
        aliceUI.take()
        now = int(self.clock.seconds() * 1000)
        blob = self.seal("once", now)
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, blob)
        alice.seenEnvelopes.horizon = now + SKEW_MS + 1
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, blob)
        self.assertEqual(aliceUI.take(), [
            ("message", "lobby", "bob", "once"),
            ("dropped", "dropped a message from bob in room lobby: replayed message id %s"
             % (e2e.Envelope.parse(blob).id,))])

    def test_replayAfterRestart(self):
        """
        An envelope alice was shown, replayed by the server after she starts
        her client again, is dropped and said: that run cannot compare it
        with the one shown.
        """
        home = TestHome(self.mktemp())
        alice, aliceUI = self.account("alice", "lobby", home=home)
        self.account("bob", "lobby")
        now = int(self.clock.seconds() * 1000)
        blob = self.seal("pay carol 10", now)
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, blob)
        self.assertEqual(aliceUI.take("message"), [("message", "lobby", "bob", "pay carol 10")])
        self.stop(alice)

        again, againUI = self.client(home)
        self.do(again.auth("alice"))
        againUI.take()
        self.inject(again, Op.ROOM_MSG, "lobby", "bob", now + 5000, blob)
        self.assertEqual(againUI.take("message", "dropped"), [
            ("dropped", "dropped a message from bob in room lobby: replayed message id %s"
             % (e2e.Envelope.parse(blob).id,))])
        path = os.path.join(home.path, "keys", "alice.seen")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_ownMessageReplayed(self):
        """
        alice's own message, handed back to her by the server as it was, is
        nothing new: neither shown nor said; another under its id is a replay.
        """
        alice, aliceUI = self.account("alice", "lobby")
        self.account("bob", "lobby")
        sent = []
        send = alice.protocol.request

        def recording(op, *values):
            if op == Op.ROOM_MSG:
                sent.append(values[1])
            return send(op, *values)
        alice.protocol.request = recording
        self.do(alice.send("mine"))
        [blob] = sent
        envelopeId = e2e.Envelope.parse(blob).id
        self.inject(alice, Op.ROOM_MSG, "lobby", "alice", 0, blob)
        self.assertEqual(aliceUI.take("message", "dropped"), [])
        self.inject(alice, Op.ROOM_MSG, "lobby", "alice", 0,
                    self.seal("not mine", int(self.clock.seconds() * 1000), sender="alice",
                              envelopeId=envelopeId))
        self.assertEqual(aliceUI.take("message", "dropped"), [
            ("dropped", "dropped a message from alice in room lobby: replayed message id %s"
             % (envelopeId,))])

    def test_signedTimeShown(self):
        """
        The time given for a message, room or direct, live or in history, is
        the one its sender signed, not the server's; so is the one /send
        gives back. (Sessions without devices: the envelopes made here name
        their readers by user name.)
        """
        self.patch(chat, "PROTOCOL_VERSIONS", (2,))
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice")
        alice, _ = self.client(home)
        ui = alice.ui = TimedUI()
        self.do(alice.register("alice", PASSWORD))
        self.do(alice.join("lobby"))
        bob, _ = self.account("bob", "lobby")
        signed = int(self.clock.seconds() * 1000) - 90_000
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", signed + 3_600_000,
                    self.seal("an hour off", signed))
        self.inject(alice, Op.DM, "bob", 1, self.seal("psst", signed + 1, to=("user", "alice")))
        self.assertEqual(ui.take("message", "dm"), [
            ("message", "lobby", "bob", signed, "an hour off"),
            ("dm", "bob", "bob", signed + 1, "psst")])
        timestamp, _ = self.do(bob.send("sent now"))
        self.assertEqual(timestamp, int(self.clock.seconds() * 1000))
        d = bob.protocol.request(Op.ROOM_MSG, "lobby", self.seal("stored", signed))
        self.flush()
        self.assertNotEqual(self.successResultOf(d), (signed,))
        rows = self.do(alice.history())[1]
        self.assertEqual([(sender, shown, text) for sender, shown, text, _ in rows],
                         [("bob", timestamp, "sent now"), ("bob", signed, "stored")])
