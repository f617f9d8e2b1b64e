"""
Tests for L{chatd.client.chat} and L{chatd.client.connection}: clients against
the real server core and binary front door, connected in memory through
L{twisted.test.iosim}, with RSA work run inline.
"""

import hashlib
import os
from itertools import count
from typing import Any, Dict, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatd import e2e
from chatd.client import chat
from chatd.client.chat import ChatClient, ClientError
from chatd.client.connection import CertificateRefused, PinningTLSOptions, ServerError, ServerPin
from chatd.client.keystore import Home, publicKeyDer
from chatd.client.ui import IClientUI
from chatd.datadir import selfSignedCertificate
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.test.fakes import makeService, privateKey
from chatd.test.lying import serverEvent

PASSWORD = "correct horse"


@implementer(IClientUI)
class RecordingUI:
    """
    Records what the client tells the person, as tuples in C{self.events}
    (timestamps left out, so that tests can compare whole lists).
    """

    def __init__(self):
        self.events = []

    def messageReceived(self, room, sender, timestamp, text):
        self.events.append(("message", room, sender, text))

    def directMessageReceived(self, sender, peer, timestamp, text):
        self.events.append(("dm", sender, peer, text))

    def memberJoined(self, room, user, fingerprint):
        self.events.append(("joined", room, user))

    def memberLeft(self, room, user):
        self.events.append(("left", room, user))

    def renamed(self, old, new):
        self.events.append(("renamed", old, new))

    def keyChanged(self, user, old, new):
        self.events.append(("keyChanged", user, old, new))

    def ownKeyChanged(self, user, ours, claimed):
        self.events.append(("ownKeyChanged", user, ours, claimed))

    def notice(self, text):
        self.events.append(("notice", text))

    def dropped(self, text):
        self.events.append(("dropped", text))

    def held(self, text):
        self.events.append(("held", text))

    def askSecret(self, prompt, optional=False):
        return succeed("") if optional else fail(ClientError("nobody to ask"))

    def fatal(self, text):
        self.events.append(("fatal", text))

    def fileOffered(self, number, sender, room, name, size):
        self.events.append(("offered", number, sender, room, name, size))

    def fileProgress(self, number, direction, name, done, total):
        self.events.append(("progress", number, direction, done, total))

    def fileEnded(self, number, text, failed):
        self.events.append(("ended", number, text, failed))

    def take(self, *kinds):
        """
        The events recorded since the last call (only those of C{kinds}, when
        given), and forget every one.
        """
        events, self.events = self.events, []
        return [e for e in events if not kinds or e[0] in kinds]


class TestHome(Home):
    """
    A real L{Home}, except that guests' keys come from the test key cache:
    generating RSA-3072 keys would make every test slow.
    """

    _guests = count()

    @staticmethod
    def ephemeral():
        return privateKey("guest-%d" % (next(TestHome._guests),))


class TestChatClient(ChatClient):
    """
    A L{ChatClient} that keeps the endpoint it was given, for tests to drop
    or refuse its connections.
    """

    endpoint: Any


def seedIdentity(home, user, keyName=None):
    """
    Put the test key C{keyName} (default: C{user}'s) in C{home} as C{user}'s
    identity key, as if an earlier run had made it.
    """
    directory = os.path.join(home.path, "keys")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pem = privateKey(keyName or user).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path = os.path.join(directory, user.lower() + ".pem")
    with open(path, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def der(name):
    return publicKeyDer(privateKey(name))


class NoServer:
    """
    An endpoint that is never asked: for clients fed events directly, which
    must not need a server.
    """

    def connect(self, factory):
        raise AssertionError("the client asked for a connection")


def offlineClient(testCase, user, key, clock=None):
    """
    A client logged in as C{user} with private key C{key}, never connected:
    tests hand it events with L{ChatClient._event}.

    @return: the client and its L{RecordingUI}.
    """
    ui = RecordingUI()
    client = ChatClient(TestHome(testCase.mktemp()), ui, NoServer(), clock or Clock(),
                        runInThread=maybeDeferred)
    client._becomeAccount(user, key)
    return client, ui


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    A client endpoint whose every connection is a fresh server protocol,
    linked to the client's through an L{iosim.IOPump}.

    @ivar serverFactory: builds the server side; may be replaced between
        connections (a server that changed its certificate).
    @ivar wrapClient: wraps the client's factory (TLS), or L{None}.
    @ivar refusing: fail every connection attempt while true.
    @ivar attempts: how many connections were asked for.
    """

    def __init__(self, world, serverFactory, wrapClient=None):
        self.world = world
        self.serverFactory = serverFactory
        self.wrapClient = wrapClient
        self.refusing = False
        self.attempts = 0
        self.pumps = []

    def connect(self, factory):
        self.attempts += 1
        if self.refusing:
            return fail(ConnectionRefusedError("refused by the test"))
        if self.wrapClient is not None:
            factory = self.wrapClient(factory)
        port = 40000 + self.attempts
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4017))
        server = self.serverFactory.buildProtocol(IPv4Address("TCP", "10.0.0.1", port))
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True, peerAddress=IPv4Address("TCP", "10.0.0.1", port)),
            client, iosim.FakeTransport(client, False), greet=False, clock=self.world.clock)
        self.pumps.append(pump)
        self.world.pumps.append(pump)
        if self.wrapClient is not None:
            client = client.wrappedProtocol
        return succeed(client)

    def drop(self):
        """
        Close the newest connection from the server's side.
        """
        self.pumps[-1].serverIO.loseConnection()


class ClientTestCase(SynchronousTestCase):
    """
    A server core with its binary front door, and clients connected to it in
    memory; L{flush} moves every byte and runs whatever is due now.

    @ivar settings: overrides for the server's settings.
    @ivar rounds: how many rounds of moving bytes L{flush} allows before it
        calls the connections stuck (a subclass whose exchanges take many
        round trips allows more).
    @ivar protocolVersions: the versions the clients greet in, when not the
        client's own (tests of what a session without devices does, as with
        a server that does not serve version 3, say C{(2,)}).
    """

    settings: Dict[str, Any] = {}
    rounds = 100
    protocolVersions: Optional[tuple] = None

    def setUp(self):
        if self.protocolVersions is not None:
            self.patch(chat, "PROTOCOL_VERSIONS", self.protocolVersions)
        self.service = makeService(**self.settings)
        self.clock = self.service.clock
        self.factory = BinaryFactory(self.service)
        self.pumps = []

    def flush(self):
        for _ in range(self.rounds):
            moved = False
            for pump in list(self.pumps):
                moved = pump.flush() or moved
            if not moved:
                return
        self.fail("the connections never went quiet")

    def advance(self, seconds, step=1.0):
        """
        Let C{seconds} pass, moving bytes every C{step} seconds as a real
        network would.
        """
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
            self.flush()

    def client(self, home=None, endpoint=None, checkPeer=None, runInThread=maybeDeferred):
        """
        A started client with a recording UI.
        """
        ui = RecordingUI()
        home = home or TestHome(self.mktemp())
        endpoint = endpoint or MemoryEndpoint(self, self.factory)
        client = TestChatClient(home, ui, endpoint, self.clock, checkPeer=checkPeer,
                                runInThread=runInThread, retryPolicy=lambda attempt: 1.0)
        client.endpoint = endpoint
        client.start()
        self.flush()
        self.addCleanup(self.stop, client)
        return client, ui

    def stop(self, client):
        d = client.stop()
        self.flush()
        self.clock.advance(0)
        self.flush()
        self.successResultOf(d)

    def do(self, coroutine):
        """
        Run one client command to its end and give its result.
        """
        d = Deferred.fromCoroutine(coroutine)
        self.flush()
        return self.successResultOf(d)

    def runFails(self, coroutine, exceptionType):
        d = Deferred.fromCoroutine(coroutine)
        self.flush()
        return self.failureResultOf(d, exceptionType).value

    def account(self, name, room=None, home=None, password=PASSWORD):
        """
        A client registered as C{name} (with the test key C{name}), in C{room}
        when given.
        """
        home = home or TestHome(self.mktemp())
        seedIdentity(home, name)
        client, ui = self.client(home)
        self.do(client.register(name, password))
        if room is not None:
            self.do(client.join(room))
        ui.take()
        return client, ui

    def inject(self, client, op, *values):
        """
        Deliver an event as a hostile server could: straight into the
        client's connection.
        """
        client.protocol.dataReceived(serverEvent(client.protocol, op, *values))
        self.flush()

    def room(self, room, *clients):
        """
        Put every client in C{room}, and forget what their UIs were told.
        """
        for client, _ in clients:
            self.do(client.join(room))
        for _, ui in clients:
            ui.take()


class ChattingTests(ClientTestCase):
    """
    Rooms and direct messages between clients.
    """

    def test_uiInterface(self):
        """
        The recording UI provides the whole L{IClientUI}, so the tests exercise
        every call the console must implement.
        """
        verifyObject(IClientUI, RecordingUI())

    def test_twoClientsInARoom(self):
        """
        Two clients in a room read each other's messages, each exactly once, and
        each learns of the other joining.
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob")
        self.do(bob.join("lobby"))
        self.assertEqual(aliceUI.take("joined"), [("joined", "lobby", "bob")])
        self.assertEqual(sorted(bob.room("lobby").members), ["alice", "bob"])

        timestamp, room = self.do(alice.send("hi bob"))
        self.assertEqual(room, "lobby")
        self.assertEqual(bobUI.take("message"), [("message", "lobby", "alice", "hi bob")])
        self.do(bob.send("hi alice"))
        self.assertEqual(aliceUI.take(), [("message", "lobby", "bob", "hi alice")])
        self.assertEqual(bobUI.take(), [])

    def test_threeClients(self):
        """
        With three in a room each message reaches the two others; a direct
        message between two of them is not seen by the third.
        """
        clients = [self.account(name) for name in ("alice", "bob", "carol")]
        self.room("#hall", *clients)
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = clients
        self.do(alice.send("one"))
        self.do(bob.send("two"))
        self.do(carol.send("three"))
        self.assertEqual(aliceUI.take(), [("message", "#hall", "bob", "two"),
                                          ("message", "#hall", "carol", "three")])
        self.assertEqual(bobUI.take(), [("message", "#hall", "alice", "one"),
                                        ("message", "#hall", "carol", "three")])
        self.assertEqual(carolUI.take(), [("message", "#hall", "alice", "one"),
                                          ("message", "#hall", "bob", "two")])
        self.do(bob.pm("carol", "just us"))
        self.assertEqual(carolUI.take(), [("dm", "bob", "bob", "just us")])
        self.assertEqual(aliceUI.take(), [])

    def test_directMessages(self):
        """
        Direct messages work both ways without a shared room, and another
        session of the sender gets its own readable copy.
        """
        home = TestHome(self.mktemp())
        alice, aliceUI = self.account("alice", home=home)
        bob, bobUI = self.account("bob")
        alice2, alice2UI = self.client(home)
        self.do(alice2.auth("alice"))
        alice2UI.take()
        timestamp, name = self.do(alice.pm("BOB", "psst"))
        self.assertEqual(name, "bob")
        self.assertEqual(bobUI.take("dm"), [("dm", "alice", "alice", "psst")])
        self.assertEqual(alice2UI.take("dm"), [("dm", "alice", "bob", "psst")])
        self.do(bob.pm("alice", "hello yourself"))
        self.assertEqual(aliceUI.take("dm"), [("dm", "bob", "bob", "hello yourself")])
        self.assertEqual(alice2UI.take("dm"), [("dm", "bob", "bob", "hello yourself")])

    def test_guestsChat(self):
        """
        Guests chat too: each publishes a key made for this run when it first
        needs one; a guest's C{randN} name is handed to others later, so its
        key is shown but never pinned.
        """
        alice, aliceUI = self.client()
        bob, bobUI = self.client()
        self.assertIsNone(alice.privateKey)
        self.do(alice.nick("alice"))
        self.do(bob.join("lobby"))
        self.do(alice.join("lobby"))
        self.do(bob.send("hello guest"))
        self.assertEqual(aliceUI.take("message"), [("message", "lobby", bob.user, "hello guest")])
        self.assertEqual(self.do(alice.keysOf("room", "lobby")), [
            ("alice", e2e.fingerprint(alice.publicKey), "self"),
            (bob.user, e2e.fingerprint(bob.publicKey), "guest")])
        self.assertIsNone(alice.home.knownKeys.pinned(bob.user))

    def test_historyDecrypted(self):
        """
        History comes back decrypted, oldest first, for a member who was there;
        one who joined later gets only what was encrypted to it (nothing).
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob", "lobby")
        self.do(alice.send("first"))
        self.advance(1)
        self.do(bob.send("second"))
        room, rows = self.do(bob.history())
        self.assertEqual(room, "lobby")
        self.assertEqual([(sender, text, problem) for sender, _, text, problem in rows],
                         [("alice", "first", None), ("bob", "second", None)])
        self.assertLess(rows[0][1], rows[1][1])
        carol, _ = self.account("carol", "lobby")
        self.assertEqual(self.do(carol.history("LOBBY", 10)), ("lobby", []))

    def test_roomsAndUsers(self):
        """
        Creating, listing, switching and leaving rooms keep the active room
        right.
        """
        alice, aliceUI = self.account("alice")
        self.do(alice.create("quiet"))
        self.do(alice.join("a"))
        self.do(alice.join("b"))
        self.assertEqual(self.do(alice.listRooms()), ["a", "b", "quiet"])
        self.assertEqual(alice.active, "b")
        self.assertEqual(alice.switch("A"), "a")
        self.assertEqual(self.do(alice.listUsers("a")), ["alice"])
        self.assertEqual(self.do(alice.leave()), "a")
        self.assertEqual(alice.active, "b")
        self.assertEqual(self.runFails(alice.send("x", room="a"), ClientError).args,
                         ("not in a",))
        self.assertEqual(self.runFails(alice.join("b"), ServerError).status, 0x07)

    def test_brokenFileOfferDeclined(self):
        """
        A file offer whose envelope does not open is dropped, the person told,
        and declined at once, so that the sender is not kept waiting for the
        offer to expire. (Transfers themselves: L{chatd.test.test_client_files}.)
        """
        alice, aliceUI = self.account("alice", "lobby")
        alice.protocol.dataReceived(opcodes.event(
            Op.OFFERED, 7, "bob", 0, "lobby", 10, 1, 10, b"{}"))
        self.assertEqual(aliceUI.take(), [
            ("dropped",
             "dropped a file offer from bob in lobby: envelope: missing field 'v'; declined")])
        self.assertEqual(alice.protocol._pending[-1][0], Op.ANSWER)


class TrustTests(ClientTestCase):
    """
    Sessions without devices (protocol version 2), where a password login
    from another device publishes its key: the key change this catches.
    Pinning keys on first contact, and what happens when a pinned key changes.
    """

    protocolVersions = (2,)

    def test_firstContactPinned(self):
        """
        The first key seen for a user is pinned (TOFU) and the person told its
        fingerprint; seeing it again says nothing.
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob")
        self.do(bob.join("lobby"))
        self.assertEqual(bobUI.take("notice"), [
            ("notice",
             "first contact with alice: key %s pinned" % (e2e.fingerprint(der("alice")),))])
        self.assertEqual(bob.home.knownKeys.pinned("alice"), (der("alice"), "tofu"))
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("bob"), "tofu"))
        self.assertEqual(self.do(bob.keysOf("room", "lobby")), [
            ("alice", e2e.fingerprint(der("alice")), "tofu"),
            ("bob", e2e.fingerprint(der("bob")), "self")])
        self.assertEqual(bobUI.take(), [])
        self.assertEqual(bob.fingerprint("alice"), e2e.fingerprint(der("alice")))
        self.assertEqual(bob.fingerprint(), e2e.fingerprint(der("bob")))

    def test_guestLoggingInIsNoKeyChange(self):
        """
        A guest in our room that registers is renamed before its account key
        arrives; the account's key is pinned, with no key-change warning.
        """
        alice, aliceUI = self.account("alice", "lobby")
        home = TestHome(self.mktemp())
        seedIdentity(home, "bob")
        bob, bobUI = self.client(home)
        self.do(bob.join("lobby"))
        guest = bob.user
        aliceUI.take()
        self.do(bob.register("bob", PASSWORD))
        self.assertEqual(aliceUI.take(), [
            ("renamed", guest, "bob"),
            ("notice", "first contact with bob: key %s pinned" % (e2e.fingerprint(der("bob")),))])
        self.do(alice.send("welcome"))
        self.assertEqual(bobUI.take("message"), [("message", "lobby", "alice", "welcome")])

    def changeBobsKey(self):
        """
        Alice and bob in a room; then bob logs in from another device, whose
        key (C{bob2}) replaces his on the server (SET_KEY).

        @return: alice, her UI, bob's new session and its UI.
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob", "lobby")
        aliceUI.take()
        home = TestHome(self.mktemp())
        seedIdentity(home, "bob", keyName="bob2")
        newBob, newBobUI = self.client(home)
        self.do(newBob.login("bob", PASSWORD))
        self.assertIn(("notice", "the server had another key for bob; published this device's key"),
                      newBobUI.take())
        return alice, aliceUI, newBob, newBobUI

    def test_keyChangeWarned(self):
        """
        A changed key is reported with the pinned and the new fingerprint, once.
        """
        alice, aliceUI, newBob, _ = self.changeBobsKey()
        self.assertEqual(aliceUI.take(), [
            ("keyChanged", "bob", e2e.fingerprint(der("bob")), e2e.fingerprint(der("bob2")))])
        self.assertEqual(self.do(alice.keysOf("user", "bob")),
                         [("bob", e2e.fingerprint(der("bob2")), "changed")])
        self.assertEqual(aliceUI.take(), [])

    def test_heldUntilTrusted(self):
        """
        After a key change nothing is sent to that user, in the room or
        directly, and what it sends is held, not shown and not dropped, until
        the person accepts the key; then it is shown, in order.
        """
        alice, aliceUI, newBob, newBobUI = self.changeBobsKey()
        error = self.runFails(alice.send("still there?"), ClientError)
        self.assertIn("the key of bob changed", str(error))
        self.runFails(alice.pm("bob", "psst"), ClientError)
        self.do(newBob.send("it's me, new phone"))
        self.do(newBob.pm("alice", "really"))
        self.assertEqual(aliceUI.take("message", "dm", "dropped", "held"), [
            ("held", "held a message from bob in room lobby until you accept or reject "
                     "bob's new key"),
            ("held", "held a message from bob (direct) until you accept or reject bob's new "
                     "key")])

        lastFour = e2e.fingerprint(der("bob2"))[-4:].upper()
        self.assertEqual(self.do(alice.trust("bob", lastFour)), e2e.fingerprint(der("bob2")))
        self.assertEqual(aliceUI.take("message", "dm", "dropped", "held"), [
            ("message", "lobby", "bob", "it's me, new phone"),
            ("dm", "bob", "bob", "really")])
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("bob2"), "tofu"))
        self.do(alice.send("welcome back"))
        self.assertEqual(newBobUI.take("message"), [("message", "lobby", "alice", "welcome back")])
        self.do(newBob.pm("alice", "thanks"))
        self.assertEqual(aliceUI.take("dm"), [("dm", "bob", "bob", "thanks")])

    def test_trustNeedsLastFour(self):
        """
        Accepting a changed key takes the last 4 characters of its new
        fingerprint; anything else (the old key's, a single confirmation)
        changes nothing.
        """
        alice, aliceUI, newBob, _ = self.changeBobsKey()
        for typed in (e2e.fingerprint(der("bob"))[-4:], "yes", ""):
            error = self.runFails(alice.trust("bob", typed), ClientError)
            self.assertIn("not the last 4 characters of bob's new fingerprint", str(error))
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("bob"), "tofu"))
        self.runFails(alice.send("still blocked"), ClientError)

    def test_trustTheKeyShown(self):
        """
        What is accepted is the key the warning showed: a key the server
        gives afterwards is another change, with a warning of its own.
        """
        alice, aliceUI, newBob, _ = self.changeBobsKey()
        aliceUI.take()
        self.inject(alice, Op.KEY_CHANGED, "bob", der("mallory"))
        self.assertEqual(aliceUI.take("keyChanged"), [
            ("keyChanged", "bob", e2e.fingerprint(der("bob")), e2e.fingerprint(der("mallory")))])
        self.runFails(alice.trust("bob", e2e.fingerprint(der("bob2"))[-4:]), ClientError)
        self.do(alice.trust("bob", e2e.fingerprint(der("mallory"))[-4:]))
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("mallory"), "tofu"))

    def test_reject(self):
        """
        Rejecting a changed key drops what was held and keeps the old pin; the
        user stays blocked, and what it sends later is dropped too.
        """
        alice, aliceUI, newBob, _ = self.changeBobsKey()
        self.do(newBob.send("trust me"))
        aliceUI.take()
        self.assertEqual(alice.reject("bob"), e2e.fingerprint(der("bob2")))
        self.flush()
        self.do(newBob.send("please"))
        self.assertEqual(aliceUI.take("message", "dropped", "held"), [
            ("dropped", "dropped a message from bob in room lobby: you rejected bob's new key"),
            ("dropped", "dropped a message from bob in room lobby: you rejected bob's new key")])
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("bob"), "tofu"))
        self.runFails(alice.send("no"), ClientError)
        self.assertRaises(ClientError, alice.reject, "carol")

    def test_verify(self):
        """
        /verify with a wrong fingerprint changes nothing; with the right one the
        key is pinned as verified and sending works again.
        """
        alice, aliceUI, newBob, newBobUI = self.changeBobsKey()
        wrong = e2e.fingerprint(der("carol"))
        error = self.runFails(alice.verify("bob", wrong), ClientError)
        self.assertIn("does not match", str(error))
        self.runFails(alice.send("x"), ClientError)
        right = e2e.fingerprint(der("bob2")).replace(" ", "").upper()
        self.do(alice.verify("bob", right))
        self.assertEqual(alice.home.knownKeys.pinned("bob"), (der("bob2"), "verified"))
        self.do(alice.send("verified hello"))
        self.assertEqual(newBobUI.take("message"),
                         [("message", "lobby", "alice", "verified hello")])


def staleTimes(stale, attempts):
    """
    A request that the server refuses with 0x09 C{stale} times, then takes;
    each envelope sent is appended to C{attempts}.
    """
    def request(blob):
        attempts.append(blob)
        if len(attempts) <= stale:
            return fail(ServerError(0x09, "stale", [("alice", der("alice"))]))
        return succeed(("ok",))
    return request


class EnvelopeTests(ClientTestCase):
    """
    The 0x09 retry, and envelopes a hostile server might deliver.
    """

    def test_sendAttempts(self):
        """
        A message is sealed again each time the server says its readers
        changed (0x09), up to 4 attempts in all, the browser's number.
        """
        alice, _ = self.account("alice", "lobby")
        for stale, succeeds in ((3, True), (4, False)):
            attempts: list = []
            d = Deferred.fromCoroutine(alice.sealAndCall(
                ("room", "lobby"), lambda: {"alice": der("alice")}, lambda members: None,
                b"hi", staleTimes(stale, attempts)))
            self.flush()
            if succeeds:
                self.assertEqual(self.successResultOf(d), ("ok",))
            else:
                self.failureResultOf(d, ServerError)
            self.assertEqual(len(attempts), 4)

    def test_staleRecipientsRetry(self):
        """
        When a member joins between the sender's view of the room and its send,
        the server answers 0x09; the client takes the new member list, seals
        again and sends once more, and the new member can read the message
        (sessions without devices, whose readers are named by user name;
        devices: test_client_devices).
        """
        self.patch(chat, "PROTOCOL_VERSIONS", (2,))
        sealed = []

        def recording(f, *args, **kwargs):
            if f is e2e.seal:
                sealed.append(sorted(args[3]))
            return maybeDeferred(f, *args, **kwargs)

        home = TestHome(self.mktemp())
        seedIdentity(home, "alice")
        alice, aliceUI = self.client(home, runInThread=recording)
        self.do(alice.register("alice", PASSWORD))
        self.do(alice.join("lobby"))
        bob, bobUI = self.account("bob", "lobby")
        carol, carolUI = self.account("carol")

        # Carol's JOIN reaches the server, but alice does not read anything
        # before she sends.
        joining = Deferred.fromCoroutine(carol.join("lobby"))
        carol.endpoint.pumps[-1].flush()
        self.successResultOf(joining)
        sealed.clear()
        sending = Deferred.fromCoroutine(alice.send("all of you"))
        self.flush()
        self.successResultOf(sending)

        self.assertEqual(sealed, [["alice", "bob"], ["alice", "bob", "carol"]])
        self.assertEqual(carolUI.take("message"), [("message", "lobby", "alice", "all of you")])
        self.assertEqual(bobUI.take("message"), [("message", "lobby", "alice", "all of you")])

    def seal(self, sender, to, recipients, text, signer=None, envelopeId=None):
        return e2e.seal(sender, privateKey(signer or sender), to,
                        {name: der(name) for name in recipients}, text.encode(),
                        ts=int(self.clock.seconds() * 1000), envelopeId=envelopeId)

    def test_forgedAndReplayedDropped(self):
        """
        An envelope signed by another key, one whose C{from} is not who the
        server says sent it, one addressed to another room or to someone else,
        and another under the id of one already shown are each dropped with a
        notice; a good one is shown.
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob", "lobby")
        carol, _ = self.account("carol", "lobby")
        aliceUI.take()
        now = int(self.clock.seconds() * 1000)
        genuine = self.seal("bob", ("room", "lobby"), ["alice", "bob"], "genuine")
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now, genuine)
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now,
                    self.seal("bob", ("room", "lobby"), ["alice"], "forged", signer="mallory"))
        self.inject(alice, Op.ROOM_MSG, "lobby", "carol", now,
                    self.seal("bob", ("room", "lobby"), ["alice"], "wrong from"))
        self.inject(alice, Op.ROOM_MSG, "other", "bob", now,
                    self.seal("bob", ("room", "lobby"), ["alice"], "wrong room"))
        self.inject(alice, Op.DM, "bob", now,
                    self.seal("bob", ("user", "carol"), ["alice", "carol"], "not for you"))
        self.inject(alice, Op.ROOM_MSG, "lobby", "bob", now,
                    self.seal("bob", ("room", "lobby"), ["alice", "bob"], "genuine too",
                              envelopeId=e2e.Envelope.parse(genuine).id))
        self.assertEqual(aliceUI.take(), [
            ("message", "lobby", "bob", "genuine"),
            ("dropped", "dropped a message from bob in room lobby: "
                        "envelope: signature does not verify"),
            ("dropped", "dropped a message from carol in room lobby: "
                        "envelope claims to be from bob"),
            ("dropped", "dropped a message from bob in room other: "
                        "envelope is addressed to room lobby"),
            ("dropped", "dropped a message from bob (direct): "
                        "direct message addressed to user carol"),
            ("dropped", "dropped a message from bob in room lobby: replayed message id %s"
             % (e2e.Envelope.parse(genuine).id,)),
        ])

    def test_inOrderWithThreads(self):
        """
        Messages are shown in the order they arrived even when opening them
        finishes out of order.
        """
        pending = []

        def later(f, *args, **kwargs):
            d: Deferred = Deferred()
            pending.append((d, f, args, kwargs))
            return d

        alice, aliceUI = self.account("alice", "lobby")
        alice.home.knownKeys.pin("bob", der("bob"))
        alice.runInThread = later
        now = int(self.clock.seconds() * 1000)
        for text in ("one", "two"):
            blob = self.seal("bob", ("room", "lobby"), ["alice"], text)
            alice._event(Op.ROOM_MSG, ("lobby", "bob", now, blob))
        self.assertEqual(len(pending), 1)
        d, f, args, kwargs = pending.pop()
        d.callback(f(*args, **kwargs))
        d, f, args, kwargs = pending.pop()
        d.callback(f(*args, **kwargs))
        self.assertEqual(aliceUI.take("message"), [("message", "lobby", "bob", "one"),
                                                   ("message", "lobby", "bob", "two")])


def certificate(name):
    """
    A self-signed server certificate and its TLS options; EC keys, since they
    are quick to make.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = selfSignedCertificate(key, name)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.DER), PrivateCertificate.loadPEM(pem).options()


class CertificateTests(ClientTestCase):
    """
    Pinning the server's certificate when no certificate authority is given.
    """

    def test_serverPin(self):
        """
        A first certificate is pinned and the person told; the same one later
        passes silently; another one is refused naming both fingerprints and
        the file to edit.
        """
        home = TestHome(self.mktemp())
        check = ServerPin(home.knownServers, "chat.example:4017")
        first, _ = certificate("chat.example")
        second, _ = certificate("chat.example")

        class X509:
            def __init__(self, der):
                self.der = der

            def to_cryptography(self):
                from cryptography import x509
                return x509.load_der_x509_certificate(self.der)

        notice = check(X509(first))
        self.assertIn("first connection to chat.example:4017", notice)
        self.assertIsNone(check(X509(first)))
        error = self.assertRaises(CertificateRefused, check, X509(second))
        text = str(error)
        self.assertIn(hashlib.sha256(first).hexdigest(), text)
        self.assertIn(hashlib.sha256(second).hexdigest(), text)
        self.assertIn(home.knownServers.path, text)
        self.assertRaises(CertificateRefused, check, None)

    def test_changedCertificateStopsTheClient(self):
        """
        Over TLS in memory: the first connection pins the certificate; when the
        server comes back with another one, the client refuses it, tells the
        person why and stops trying to connect.
        """
        firstDer, firstOptions = certificate("chat.example")
        secondDer, secondOptions = certificate("chat.example")
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice")
        endpoint = MemoryEndpoint(
            self, TLSMemoryBIOFactory(firstOptions, False, self.factory, clock=self.clock),
            wrapClient=lambda f: TLSMemoryBIOFactory(PinningTLSOptions("chat.example"), True, f,
                                                     clock=self.clock))
        pin = ServerPin(home.knownServers, "chat.example:4017")
        alice, aliceUI = self.client(home, endpoint, pin)
        self.do(alice.register("alice", PASSWORD))
        self.assertEqual(home.knownServers.check("chat.example:4017", firstDer), "match")
        self.assertIn("first connection to chat.example:4017", aliceUI.take("notice")[0][1])

        endpoint.serverFactory = TLSMemoryBIOFactory(secondOptions, False, self.factory,
                                                     clock=self.clock)
        endpoint.drop()
        self.flush()
        self.advance(2)
        events = aliceUI.take()
        self.assertEqual(events[0], ("notice", "connection to the server lost; reconnecting"))
        self.assertEqual([kind for kind, *_ in events[1:]], ["fatal"])
        self.assertIn(hashlib.sha256(firstDer).hexdigest(), events[1][1])
        self.assertIn(hashlib.sha256(secondDer).hexdigest(), events[1][1])
        attempts = endpoint.attempts
        self.advance(120, step=10)
        self.assertEqual(endpoint.attempts, attempts)
        self.assertIn("not connected", str(self.runFails(alice.listRooms(), ClientError)))


class ConnectionTests(ClientTestCase):
    """
    Heartbeats, reconnecting, logging back in.
    """

    def test_heartbeatsKeepTheConnection(self):
        """
        A quiet client sends heartbeats, so the server never warns it nor
        closes its connection.
        """
        alice, aliceUI = self.account("alice", "lobby")
        protocol = alice.protocol
        self.advance(120)
        self.assertIs(alice.protocol, protocol)
        self.assertEqual(aliceUI.take(), [])

    def test_reconnectRestoresAccount(self):
        """
        When the connection drops the client reconnects after the backoff,
        logs in again with its key, gets its rooms back and can chat at once.
        """
        alice, aliceUI = self.account("alice", "lobby")
        bob, bobUI = self.account("bob", "lobby")
        aliceUI.take()
        alice.endpoint.drop()
        self.flush()
        self.assertEqual(aliceUI.take(),
                         [("notice", "connection to the server lost; reconnecting")])
        self.assertEqual(bobUI.take(), [("left", "lobby", "alice")])
        self.advance(1)
        self.assertEqual(aliceUI.take(), [("notice", "reconnected as alice"),
                                          ("joined", "lobby", "alice")])
        self.assertEqual(bobUI.take(), [("joined", "lobby", "alice")])
        self.assertEqual(alice.active, "lobby")
        self.do(alice.send("back"))
        self.assertEqual(bobUI.take(), [("message", "lobby", "alice", "back")])

    def test_reconnectRestoresGuest(self):
        """
        A guest gets its name and rooms back by itself after a reconnection.
        """
        guest, guestUI = self.client()
        self.do(guest.nick("visitor"))
        self.do(guest.join("lobby"))
        guest.endpoint.drop()
        self.flush()
        self.advance(1)
        self.assertEqual(guestUI.take(), [("notice", "connection to the server lost; reconnecting"),
                                          ("notice", "reconnected as visitor")])
        self.assertEqual(self.do(guest.listUsers("lobby")), ["visitor"])

    def test_commandWaitsForReconnection(self):
        """
        A command given while the client is reconnecting waits for the new
        connection; when the server cannot be reached it fails with a reason.
        """
        alice, aliceUI = self.account("alice", "lobby")
        alice.endpoint.drop()
        self.flush()
        rooms = Deferred.fromCoroutine(alice.listRooms())
        self.assertNoResult(rooms)
        self.advance(1)
        self.assertEqual(self.successResultOf(rooms), ["lobby"])

        alice.endpoint.refusing = True
        alice.endpoint.drop()
        self.flush()
        rooms = Deferred.fromCoroutine(alice.listRooms())
        self.advance(1)
        error = self.failureResultOf(rooms, ClientError).value
        self.assertIn("cannot reach the server", str(error))

    def test_restoredRoomsAtLogin(self):
        """
        Logging in on a new run puts the account back in its stored rooms; the
        client learns their members and makes the first one active.
        """
        home = TestHome(self.mktemp())
        alice, _ = self.account("alice", "lobby", home=home)
        # A message keeps the room alive while nobody is in it.
        self.do(alice.send("kept"))
        self.stop(alice)
        again, ui = self.client(home)
        self.do(again.auth("alice"))
        self.assertEqual(ui.take(), [("joined", "lobby", "alice")])
        self.assertEqual(again.active, "lobby")
        self.assertEqual(list(again.room().members), ["alice"])

    def test_loginNeedsLocalKey(self):
        """
        Logging in on a device without the account's key is refused before
        anything is sent: it could not read anything anyway (a session
        without devices; with devices, the device waits for approval).
        """
        self.patch(chat, "PROTOCOL_VERSIONS", (2,))
        self.account("alice")
        other, _ = self.client()
        error = self.runFails(other.login("alice", PASSWORD), ClientError)
        self.assertIn("there is no key for alice", str(error))

    def test_ownKeyReplacedElsewhere(self):
        """
        When another device publishes a new key for our account (sessions
        without devices) we are warned
        loudly and this device sends nothing more; when the connection drops,
        the server refuses our old key and the client stops instead of
        redialling.
        """
        self.patch(chat, "PROTOCOL_VERSIONS", (2,))
        alice, aliceUI = self.account("alice", "lobby")
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice", keyName="alice2")
        other, _ = self.client(home)
        self.do(other.login("alice", PASSWORD))
        self.assertEqual(aliceUI.take(), [
            ("ownKeyChanged", "alice", e2e.fingerprint(der("alice")),
             e2e.fingerprint(der("alice2")))])
        self.runFails(alice.send("still here?"), ClientError)
        alice.endpoint.drop()
        self.flush()
        self.advance(3)
        self.assertEqual(aliceUI.take(), [
            ("notice", "connection to the server lost; reconnecting"),
            ("fatal", "the server refused to resume the session: authentication failed")])
        attempts = alice.endpoint.attempts
        self.advance(60, step=10)
        self.assertEqual(alice.endpoint.attempts, attempts)

    def test_nameSpelledAsTheServerDoes(self):
        """
        Logging in with the name in another case takes the account's own
        spelling, so that what we send names us exactly as the server does.
        """
        home = TestHome(self.mktemp())
        alice, _ = self.account("Alice", "lobby", home=home)
        self.do(alice.send("kept"))
        self.stop(alice)
        again, ui = self.client(home)
        self.do(again.auth("ALICE"))
        self.assertEqual(again.user, "Alice")
        self.do(again.send("still me"))
        self.assertEqual([text for _, _, text, _ in self.do(again.history())[1]],
                         ["kept", "still me"])


class InviteTests(ClientTestCase):
    """
    On a server with C{--registration invite}, /register sends the token.
    """

    settings = {"registration": "invite"}

    def test_registerWithInvite(self):
        """
        Without a token the server's refusal comes back; with one made for
        it, the account is registered.
        """
        self.successResultOf(self.service.store.createInvite("tok", 1, None))
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice")
        client, ui = self.client(home)
        error = self.runFails(client.register("alice", PASSWORD), ServerError)
        self.assertIn("registration needs an invite", str(error))
        self.do(client.register("alice", PASSWORD, "tok"))
        self.assertEqual(client.user, "alice")
