"""
Tests for L{chatd.client.resend}: the terminal client sends a message the
server could not store (0x0a) again, the same envelope, after a pause.
"""

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost

from chatd import e2e
from chatd.client.connection import ServerError
from chatd.client.errors import ClientError
from chatd.client.resend import RESEND_PAUSES
from chatd.protocols.opcodes import Op
from chatd.test.test_client import ClientTestCase

NOT_STORED = "the message could not be stored; try again"


class ResendTests(ClientTestCase):
    """
    A ROOM_MSG or DM refused with 0x0a is sent again as it is, up to 3 times,
    1, 2 and 4 seconds apart.
    """

    def setUp(self):
        ClientTestCase.setUp(self)
        self.alice, self.aliceUI = self.account("alice", "lobby")
        self.bob, self.bobUI = self.account("bob", "lobby")
        self.aliceUI.take()
        self.sent = []

    def refuse(self, answers):
        """
        Make alice's messages meet C{answers} in turn: C{"ahead"} (the
        members get it, alice is refused 0x0a, as after a failed commit on a
        server that delivers ahead of it), C{"lost"} (the server stores it,
        alice is refused 0x0a), C{"unavailable"} (only the refusal),
        C{"replayed"} (a refusal with 0x07), C{"dropped"} (the server stores
        it, the connection is lost before the answer comes), C{"cut"} (the
        connection is lost before it reaches the server) or C{"pass"} (the
        server answers).
        Each envelope sent is kept in C{self.sent}.
        """
        call = self.alice.call

        def calling(op, *args):
            if op not in (Op.ROOM_MSG, Op.DM):
                return call(op, *args)
            self.sent.append(args[-1])
            answer = answers.pop(0) if answers else "pass"
            if answer == "pass":
                return call(op, *args)
            if answer == "ahead":
                self.inject(self.bob, Op.ROOM_MSG, "lobby", "alice",
                            int(self.clock.seconds() * 1000), args[-1])
            elif answer == "lost":
                # Stored; the answer is what goes missing.
                Deferred.fromCoroutine(call(op, *args))
            elif answer == "dropped":
                return Deferred.fromCoroutine(call(op, *args)).addBoth(self.lose)
            elif answer == "cut":
                return self.lose(None)
            elif answer == "replayed":
                return fail(ServerError(0x07, "replayed message id"))
            return fail(ServerError(0x0A, NOT_STORED))
        self.patch(self.alice, "call", calling)

    def lose(self, _):
        """
        Drop alice's connection, and fail her request as a lost connection
        fails it.
        """
        self.alice.endpoint.drop()
        return fail(ConnectionLost("dropped by the test"))

    def sending(self, coroutine):
        d = Deferred.fromCoroutine(coroutine)
        self.flush()
        return d

    def throughEveryPause(self, d):
        """
        Let every resend pause pass, checking that C{d} waits through each.
        """
        for pause in RESEND_PAUSES:
            self.assertNoResult(d)
            self.advance(pause)

    def test_resentAsItWas(self):
        """
        After a failed commit whose message reached the members, the same
        envelope is sent again after 1 s, the person told once; the members
        show the message once, and the send gives the envelope's signed time.
        """
        self.refuse(["ahead"])
        d = self.sending(self.alice.send("hello"))
        self.assertEqual(self.bobUI.take("message"), [("message", "lobby", "alice", "hello")])
        self.assertNoResult(d)
        self.assertEqual(self.aliceUI.take("notice"), [
            ("notice", "the server could not store your message to room lobby; "
                       "sending it again in 1 s")])
        self.advance(1)
        timestamp, room = self.successResultOf(d)
        self.assertEqual(len(self.sent), 2)
        self.assertEqual(self.sent[0], self.sent[1])
        self.assertEqual((timestamp, room), (e2e.Envelope.parse(self.sent[0]).ts, "lobby"))
        self.assertEqual(self.bobUI.take("message", "dropped"), [])
        self.assertEqual(self.aliceUI.take("notice"), [])

    def test_storedAfterAll(self):
        """
        A resend refused as a replayed id (0x07) means the one refused before
        was stored after all: the message is sent, and shown once.
        """
        self.refuse(["lost"])
        d = self.sending(self.alice.send("hello"))
        self.advance(1)
        timestamp, _ = self.successResultOf(d)
        self.assertEqual(timestamp, e2e.Envelope.parse(self.sent[0]).ts)
        self.assertEqual(self.sent, [self.sent[0]] * 2)
        self.assertEqual(self.bobUI.take("message", "dropped"),
                         [("message", "lobby", "alice", "hello")])

    def test_directMessage(self):
        """
        A direct message is sent again the same way.
        """
        self.refuse(["unavailable", "unavailable"])
        d = self.sending(self.alice.pm("bob", "psst"))
        self.advance(1)
        self.assertNoResult(d)
        self.advance(2)
        self.successResultOf(d)
        self.assertEqual(self.sent, [self.sent[0]] * 3)
        self.assertEqual(self.bobUI.take("dm"), [("dm", "alice", "alice", "psst")])
        self.assertEqual(len(self.aliceUI.take("notice")), 1)

    def test_givesUp(self):
        """
        A message refused with 0x0a four times, 1, 2 and 4 seconds apart, is
        not sent, and the error says so.
        """
        self.refuse(["unavailable"] * 4)
        d = self.sending(self.alice.send("hello"))
        self.throughEveryPause(d)
        error = self.failureResultOf(d, ServerError).value
        self.assertEqual((error.status, str(error)), (
            0x0A, "not sent: the server refused it 4 times (%s)" % (NOT_STORED,)))
        self.assertEqual(self.sent, [self.sent[0]] * 4)
        self.assertEqual(self.bobUI.take("message"), [])

    def test_replayedAtFirst(self):
        """
        A 0x07 that answers the first send is a refusal, as before.
        """
        self.refuse(["replayed"])
        error = self.runFails(self.alice.send("hello"), ServerError)
        self.assertEqual(error.status, 0x07)
        self.assertEqual(len(self.sent), 1)

    def test_staleAfterUnavailable(self):
        """
        A resend the server refuses as stale (0x09) is sealed again for the
        new members, as any stale refusal.
        """
        carol, carolUI = self.account("carol")
        self.refuse(["unavailable"])
        d = self.sending(self.alice.send("hello"))
        self.do(carol.join("lobby"))
        self.advance(1)
        self.successResultOf(d)
        self.assertEqual(len(self.sent), 3)
        self.assertEqual(self.sent[0], self.sent[1])
        self.assertNotEqual(self.sent[1], self.sent[2])
        self.assertEqual(carolUI.take("message"), [("message", "lobby", "alice", "hello")])

    def test_noAnswerStored(self):
        """
        When the connection is lost before the server's answer, the message
        may be stored: once reconnected, the same envelope goes again, the
        person told once; refused as a replayed id, it was stored after all:
        sent, and shown once.
        """
        self.refuse(["dropped"])
        d = self.sending(self.alice.send("hello"))
        self.assertEqual(self.bobUI.take("message"), [("message", "lobby", "alice", "hello")])
        self.assertNoResult(d)
        self.assertIn(("notice", "the connection was lost before the server answered your "
                                 "message to room lobby; sending it again in 1 s"),
                      self.aliceUI.take("notice"))
        self.advance(2)
        timestamp, _ = self.successResultOf(d)
        self.assertEqual(timestamp, e2e.Envelope.parse(self.sent[0]).ts)
        self.assertEqual(self.sent, [self.sent[0]] * 2)
        self.assertEqual(self.bobUI.take("message", "dropped"), [])

    def test_noAnswerNotStored(self):
        """
        Lost before it reached the server, the same envelope goes once
        reconnected, and the members get it once.
        """
        self.refuse(["cut"])
        d = self.sending(self.alice.pm("bob", "psst"))
        self.advance(2)
        self.successResultOf(d)
        self.assertEqual(self.sent, [self.sent[0]] * 2)
        self.assertEqual(self.bobUI.take("dm"), [("dm", "alice", "alice", "psst")])

    def test_noAnswerGivesUp(self):
        """
        Four tries without an answer, 1, 2 and 4 seconds apart: the error
        says the message may not have been sent.
        """
        self.refuse(["cut"] * 4)
        d = self.sending(self.alice.send("hello"))
        self.throughEveryPause(d)
        error = self.failureResultOf(d, ClientError).value
        self.assertEqual(str(error), "perhaps not sent: the connection was lost before the "
                                     "server answered, 4 times")
        self.assertEqual(self.sent, [self.sent[0]] * 4)

    def test_noAnswerNoReconnection(self):
        """
        When no connection comes back for the resend, the error says the
        message may not have been sent.
        """
        self.refuse(["cut"])
        self.alice.endpoint.refusing = True
        d = self.sending(self.alice.send("hello"))
        self.advance(2)
        error = self.failureResultOf(d, ClientError).value
        self.assertTrue(str(error).startswith(
            "perhaps not sent: the connection was lost before the server answered, and then "
            "cannot reach the server: "), str(error))
