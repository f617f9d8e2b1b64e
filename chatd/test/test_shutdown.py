# -*- test-case-name: chatd.test.test_shutdown -*-
"""
Tests for stopping politely: L{chatd.shutdown}, the core's C{stopService},
and each door's going-away notice.
"""

import base64
import json

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from chatd.errors import ChatError
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeSite
from chatd.shutdown import GOING_AWAY_MESSAGE, WARNING_GOING_AWAY
from chatd.test.fakes import FakeChatClient, makeService, publicDer
from chatd.test.test_binary import Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket, pem


class CoreStopTests(SynchronousTestCase):
    """
    The core tells every session the server is going away and waits for them,
    within C{stop-timeout}.
    """

    def setUp(self):
        self.service = makeService(stopTimeout=5.0)
        self.clock = self.service.clock

    def test_everyClientTold(self):
        """
        Every connected client, logged in or not, is told to go away with the
        going-away code; the stop finishes once the last session has closed.
        """
        clients = [FakeChatClient(), FakeChatClient()]
        sessions = [self.service.connect(client, "10.0.0.1") for client in clients]
        sessions[0].hello(1)
        stopped = self.service.stopService()
        for client in clients:
            self.assertEqual(client.take(), [("goAway", (WARNING_GOING_AWAY, GOING_AWAY_MESSAGE))])
        self.assertNoResult(stopped)
        sessions[0].closed()
        self.assertNoResult(stopped)
        sessions[1].closed()
        self.successResultOf(stopped)

    def test_bounded(self):
        """
        A session that never closes holds the stop up for C{stop-timeout}
        seconds only.
        """
        self.service.connect(FakeChatClient(), "10.0.0.1")
        stopped = self.service.stopService()
        self.clock.advance(4.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.2)
        self.successResultOf(stopped)

    def test_nothingToWaitFor(self):
        """
        Without connections the stop does not wait.
        """
        self.successResultOf(self.service.stopService())

    def test_newConnectionsRefused(self):
        """
        A connection that arrives while the server stops is refused, saying so.
        """
        self.service.connect(FakeChatClient(), "10.0.0.1")
        self.service.stopService()
        error = self.assertRaises(ChatError, self.service.connect, FakeChatClient(), "10.0.0.2")
        self.assertIn("shutting down", error.message)

    def test_failingClient(self):
        """
        A client that raises when told does not keep the others from being told.
        """
        class Broken(FakeChatClient):
            def goAway(self, code, message):
                raise RuntimeError("broken")
        self.service.connect(Broken(), "10.0.0.1")
        good = FakeChatClient()
        self.service.connect(good, "10.0.0.1")
        self.service.stopService()
        self.assertEqual(len(good.take()), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def holdCredentials(service):
    """
    Make the core's password checks wait until released.

    @return: a list that fills with C{release()} callables, one per check.
    """
    held = []

    def hold(f, *args):
        d: Deferred = Deferred()
        held.append(lambda: d.callback(f(*args)))
        return d
    service.credentials._run = hold
    return held


class BinaryDoorTests(SynchronousTestCase):
    """
    The binary door's going-away notice.
    """

    def setUp(self):
        self.service = makeService()
        self.factory = BinaryFactory(self.service)

    def test_idleConnection(self):
        """
        A connection with nothing in flight gets WARNING 0x06 and is closed.
        """
        wire = Wire(self.factory)
        wire.hello()
        self.service.stopService()
        self.assertEqual(wire.takeEvents(), [
            (Op.WARNING, (WARNING_GOING_AWAY, GOING_AWAY_MESSAGE))])
        self.assertTrue(wire.transport.disconnecting)

    def test_requestInFlightAnswered(self):
        """
        A request in flight is answered after the notice, and only then is the
        connection closed; requests sent after the notice are not read.
        """
        register = Wire(self.factory)
        register.hello()
        self.assertEqual(register.request(Op.REGISTER, "alice", "password1",
                                          publicDer("alice"))[0], 0)
        register.protocol.connectionLost(None)
        held = holdCredentials(self.service)
        wire = Wire(self.factory)
        wire.hello()
        wire.send(Op.LOGIN, "alice", "password1")
        stopped = self.service.stopService()
        wire.send(Op.LIST_ROOMS)
        self.assertEqual([op for op, _ in wire.frames()], [Op.WARNING])
        self.assertFalse(wire.transport.disconnecting)
        [release] = held
        release()
        [(op, payload)] = wire.frames()
        self.assertEqual(opcodes.decodeResponse(Op.LOGIN, payload)[0], 0)
        self.assertTrue(wire.transport.disconnecting)
        self.assertNoResult(stopped)
        wire.protocol.connectionLost(None)
        self.successResultOf(stopped)


class TextDoorTests(SynchronousTestCase):
    """
    The text door's going-away notice.
    """

    def setUp(self):
        self.service = makeService()
        self.factory = TextFactory(self.service)

    def test_idleConnection(self):
        """
        A connection with nothing in flight gets a C{warning} event with code
        6 and is closed.
        """
        client = LineClient(self.factory)
        self.service.stopService()
        self.assertEqual(client.lines(), [b"EVT::" + json.dumps(
            {"type": "warning", "code": WARNING_GOING_AWAY, "message": GOING_AWAY_MESSAGE},
            separators=(",", ":")).encode()])
        self.assertTrue(client.transport.disconnecting)

    def test_requestInFlightAnswered(self):
        """
        A request in flight is answered after the notice, then the connection
        closes; a later line is not read.
        """
        LineClient(self.factory).ok("CMD::/register alice password1 "
                                    + base64.b64encode(publicDer("alice")).decode())
        held = holdCredentials(self.service)
        client = LineClient(self.factory)
        client.send("CMD::/login alice password1")
        self.service.stopService()
        client.send("CMD::/rooms")
        self.assertEqual(client.replies(), [])
        self.assertEqual([e["code"] for e in client.takeEvents("warning")], [WARNING_GOING_AWAY])
        self.assertFalse(client.transport.disconnecting)
        [release] = held
        release()
        [reply] = client.replies()
        self.assertTrue(reply.startswith(b"OK::"), reply)
        self.assertTrue(client.transport.disconnecting)


class WebSocketDoorTests(SynchronousTestCase):
    """
    The WebSocket door's going-away notice: an event, then close code 1001
    with the reason.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor)
        self.site = makeSite(self.service, None, self.reactor)

    def test_idleConnection(self):
        """
        A connection with nothing in flight gets a C{warning} event with code
        6, then a close frame with 1001 and the message as reason.
        """
        client = connectWebSocket(self.site)
        self.service.stopService()
        self.assertEqual(client.take(), [{"type": "warning", "code": WARNING_GOING_AWAY,
                                          "message": GOING_AWAY_MESSAGE}])
        self.assertEqual((client.closeCode, client.closeReason),
                         (1001, GOING_AWAY_MESSAGE))

    def test_requestInFlightAnswered(self):
        """
        The request in flight is answered before the close; one queued behind
        it is dropped.
        """
        connectWebSocket(self.site).ok("register", userId="alice", publicKey=pem("alice"),
                                       password="password1")
        held = holdCredentials(self.service)
        client = connectWebSocket(self.site)
        client.send({"type": "login", "id": 1, "userId": "alice", "password": "password1"})
        client.send({"type": "list_rooms", "id": 2})
        self.service.stopService()
        self.assertEqual(client.take(), [{"type": "warning", "code": WARNING_GOING_AWAY,
                                          "message": GOING_AWAY_MESSAGE}])
        self.assertIsNone(client.closeCode)
        [release] = held
        release()
        self.assertEqual(client.take(), [{"type": "authenticated", "id": 1, "userId": "alice"}])
        self.assertEqual(client.closeCode, 1001)
