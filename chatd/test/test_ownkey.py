"""
Tests for L{chatd.client.ownkey} in the terminal client: a server that lies
about our own key (L{chatd.test.lying}) gets nothing it can open, and the
person is told loudly; the person's own password login that publishes this
device's key is no lie.
"""

from twisted.internet.defer import Deferred

from chatd import e2e
from chatd.client.chat import ClientError
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.lying import (
    GET_KEYS,
    JOIN,
    JOINED,
    KEY_CHANGED,
    STALE,
    Liar,
    LyingFactory,
    readable,
    serverEvent,
)
from chatd.test.test_client import (
    PASSWORD,
    ClientTestCase,
    MemoryEndpoint,
    TestHome,
    der,
    seedIdentity,
)

REFUSED = ("not sent: the server lists you with a key that is not this device's (%s); "
           "the server, or someone with your password, changed your key")


class LyingServerTests(ClientTestCase):
    """
    A server that gives alice mallory's key, in one place at a time.
    """

    # What a session without devices checks: with devices, the key the
    # server gives for us is the identity key, checked against ours.
    protocolVersions = (2,)

    def liarFor(self, where, user="alice"):
        liar = Liar(user, der("mallory"), {where})
        return liar, MemoryEndpoint(self, LyingFactory(self.factory, liar))

    def aliceThrough(self, where, home=None):
        """
        alice, registered through a server that lies in C{where}.
        """
        liar, endpoint = self.liarFor(where)
        home = home or TestHome(self.mktemp())
        seedIdentity(home, "alice")
        alice, ui = self.client(home, endpoint=endpoint)
        self.do(alice.register("alice", PASSWORD))
        ui.take()
        return liar, alice, ui

    def assertWarnedAndRefused(self, alice, ui, liar):
        """
        alice was warned once that the server gives her mallory's key; she
        can send nothing more; and nothing the lying server got opens with
        mallory's key.
        """
        self.assertEqual(ui.take("ownKeyChanged"), [
            ("ownKeyChanged", "alice", e2e.fingerprint(der("alice")),
             e2e.fingerprint(der("mallory")))])
        if alice.active is None:
            self.do(alice.join("lobby"))
        sent = len(liar.envelopes)
        error = self.runFails(alice.send("anyone there?"), ClientError)
        self.assertEqual(str(error), REFUSED % (e2e.fingerprint(der("mallory")),))
        self.runFails(alice.pm("alice", "a note to myself"), ClientError)
        self.assertEqual(len(liar.envelopes), sent)
        self.assertOpenedByNone(liar)

    def assertOpenedByNone(self, liar):
        self.assertEqual([blob for blob in liar.envelopes
                          if readable(blob, "alice", privateKey("mallory"))], [])

    def test_joinAnswer(self):
        """
        A JOIN answer that lists alice with another key: she is warned, and
        the lying server receives no envelope at all.
        """
        liar, alice, ui = self.aliceThrough(JOIN)
        self.account("bob", "lobby")
        self.do(alice.join("lobby"))
        self.assertEqual(liar.lies, 1)
        self.assertWarnedAndRefused(alice, ui, liar)
        self.assertEqual(liar.envelopes, [])

    def test_roomKeys(self):
        """
        GET_KEYS for a room (C{/keys room}) that lists alice with another key
        shows it as changed, warns and stops her sending.
        """
        liar, alice, ui = self.aliceThrough(GET_KEYS)
        self.do(alice.join("lobby"))
        rows = self.do(alice.keysOf("room", "lobby"))
        self.assertEqual(rows, [("alice", e2e.fingerprint(der("mallory")), "changed")])
        self.assertWarnedAndRefused(alice, ui, liar)

    def test_userKeyAtKeyLogin(self):
        """
        After a login by key, GET_KEYS for alice must give the key that signed
        the challenge: another one is a lie.
        """
        home = TestHome(self.mktemp())
        self.account("alice", home=home)[0].stop()
        self.flush()
        liar, endpoint = self.liarFor(GET_KEYS)
        alice, ui = self.client(home, endpoint=endpoint)
        self.do(alice.auth("alice"))
        self.assertWarnedAndRefused(alice, ui, liar)

    def test_joinedAtLogin(self):
        """
        JOINED for alice's restored room with another key, at a login by key.
        """
        home = TestHome(self.mktemp())
        first, _ = self.account("alice", "lobby", home=home)
        self.stop(first)
        liar, endpoint = self.liarFor(JOINED)
        alice, ui = self.client(home, endpoint=endpoint)
        self.do(alice.auth("alice"))
        self.assertEqual(liar.lies, 1)
        self.assertWarnedAndRefused(alice, ui, liar)

    def test_keyChanged(self):
        """
        KEY_CHANGED for alice with a key this device does not hold.
        """
        liar, alice, ui = self.aliceThrough(KEY_CHANGED)
        self.do(alice.join("lobby"))
        alice.protocol.dataReceived(serverEvent(alice.protocol, Op.KEY_CHANGED, "alice",
                                                der("mallory")))
        self.flush()
        self.assertWarnedAndRefused(alice, ui, liar)

    def test_staleMembers(self):
        """
        A 0x09 refusal whose member list gives alice another key: the client
        does not seal again for it; the one envelope sent before is sealed to
        alice's own key.
        """
        liar, alice, ui = self.aliceThrough(STALE)
        self.do(alice.join("lobby"))
        carol, _ = self.account("carol")
        joining = Deferred.fromCoroutine(carol.join("lobby"))
        carol.endpoint.pumps[-1].flush()
        self.successResultOf(joining)
        error = self.runFails(alice.send("all of you"), ClientError)
        self.assertEqual(str(error), REFUSED % (e2e.fingerprint(der("mallory")),))
        self.assertEqual(len(liar.envelopes), 1)
        self.assertWarnedAndRefused(alice, ui, liar)

    def test_ownSignaturesWithOwnKey(self):
        """
        A copy of "our own" direct message signed by the key the server claims
        for us is dropped: our signatures are checked with our own key.
        """
        liar, alice, ui = self.aliceThrough(GET_KEYS)
        self.account("bob")
        self.do(alice.keysOf("user", "alice"))
        ui.take()
        now = int(self.clock.seconds() * 1000)
        forged = e2e.seal("alice", privateKey("mallory"), ("user", "bob"),
                          {"alice": der("alice"), "bob": der("bob")}, b"I owe mallory",
                          ts=now)
        alice.protocol.dataReceived(opcodes.event(Op.DM, "alice", now, forged))
        self.flush()
        self.assertEqual(ui.take("dm", "dropped"), [
            ("dropped", "dropped a message from alice (direct): "
                        "envelope: signature does not verify")])


class OwnActTests(ClientTestCase):
    """
    A password login that publishes this device's key is the person's own
    act, not a lie.
    """

    # What a session without devices checks: with devices, the key the
    # server gives for us is the identity key, checked against ours.
    protocolVersions = (2,)

    def test_passwordLoginPublishes(self):
        """
        alice logs in with her password on a device with another key while
        the server restores her room: the key being replaced, which the server
        names until the new one is published, raises no warning, and she can
        send; her first device is warned and stops sending.
        """
        first, firstUI = self.account("alice", "lobby")
        self.account("bob", "lobby")
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice", keyName="alice2")
        other, otherUI = self.client(home)
        self.do(other.login("alice", PASSWORD))
        self.assertEqual(otherUI.take("ownKeyChanged"), [])
        self.do(other.send("from my new device"))
        self.assertEqual(firstUI.take("ownKeyChanged"), [
            ("ownKeyChanged", "alice", e2e.fingerprint(der("alice")),
             e2e.fingerprint(der("alice2")))])
        self.runFails(first.send("from the old one"), ClientError)
