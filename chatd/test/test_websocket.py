"""
Tests for L{chatd.protocols.websocket}: JSON messages over an in-memory
WebSocket, a C{twisted.web} site on one side and a wsproto client on the other,
joined by L{twisted.test.iosim}.
"""

import base64
import hashlib
import itertools
import json
import os
from typing import Any, Dict

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from zope.interface.verify import verifyObject

from chatd import e2e, loginsig
from chatd.config import Settings
from chatd.core.service import ChatService
from chatd.credentials import Credentials
from chatd.interfaces import IFileClient
from chatd.protocols import jsonwire
from chatd.protocols.outbox import Outbox
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.protocols.websocket import WebSocketChatProtocol
from chatd.store.memory import MemoryStore
from chatd.test.fakes import makeService, privateKey, publicDer, testKeys
from chatd.test.test_text import LineClient


def pem(name):
    return jsonwire.derToPem(publicDer(name))


class WebSocketClient(Protocol):
    """
    A WebSocket client speaking through wsproto, recording what it receives.

    @ivar messages: the JSON objects received and not yet taken.
    @ivar closeCode: the code of the server's close frame, once one came.
    @ivar closeReason: its reason.
    @ivar pump: the L{iosim.IOPump} between it and the server.
    @ivar server: the server's protocol.
    """

    transport: ITransport
    pump: iosim.IOPump
    server: Any

    def __init__(self, path="/ws"):
        self.path = path
        self.connection = WSConnection(ConnectionType.CLIENT)
        self.accepted = False
        self.messages = []
        self.closeCode = None
        self.closeReason = None
        self.lost = False
        self._pieces = []
        self._ids = itertools.count(1)

    def connectionMade(self):
        self.transport.write(self.connection.send(Request(host="localhost", target=self.path)))

    def dataReceived(self, data):
        self.connection.receive_data(data)
        for event in self.connection.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, TextMessage):
                self._pieces.append(event.data)
                if event.message_finished:
                    self.messages.append(json.loads("".join(self._pieces)))
                    self._pieces = []
            elif isinstance(event, CloseConnection):
                self.closeCode = event.code
                self.closeReason = event.reason
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    self.transport.write(self.connection.send(event.response()))

    def connectionLost(self, reason=connectionDone):
        self.lost = True

    def sendRaw(self, data):
        self.transport.write(data)
        self.pump.flush()

    def sendText(self, text, finished=True):
        self.sendRaw(self.connection.send(TextMessage(text, message_finished=finished)))

    def send(self, obj):
        self.sendText(json.dumps(obj))

    def take(self):
        """
        Every message received and not yet taken, after delivering what the
        server has written.
        """
        self.pump.flush()
        messages, self.messages = self.messages, []
        return messages

    def request(self, kind, **fields):
        """
        Send a request with a fresh id and return its one response, without
        the id; the events that came meanwhile stay in C{messages}.
        """
        requestId = next(self._ids)
        self.send(dict(type=kind, id=requestId, **fields))
        responses = [m for m in self.messages if m.get("id") == requestId]
        assert len(responses) == 1, self.messages
        self.messages.remove(responses[0])
        assert not any("id" in m for m in self.messages), self.messages
        del responses[0]["id"]
        return responses[0]

    def ok(self, kind, **fields):
        response = self.request(kind, **fields)
        assert response["type"] != "error", response
        return response


def connectWebSocket(site, host="10.0.0.1"):
    """
    Open a WebSocket to C{site}'s C{/ws} in memory, from C{host}.

    @return: the L{WebSocketClient}, upgraded, with its C{pump}.
    """
    address = IPv4Address("TCP", host, 40000)
    server = site.buildProtocol(address)
    client = WebSocketClient()
    client.pump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True, peerAddress=address),
        client, iosim.FakeTransport(client, isServer=False))
    assert client.accepted
    client.server = server
    return client


class WebSocketTestCase(SynchronousTestCase):
    """
    Common set-up: a core on an in-memory store and a site on a
    L{MemoryReactorClock}, which is also the core's clock.
    """

    settings: Dict[str, Any] = {}

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor, **self.settings)
        self.site = Site(makeWebResource(self.service), reactor=self.reactor)

    def connect(self, host="10.0.0.1"):
        return connectWebSocket(self.site, host)

    def account(self, name, host="10.0.0.1"):
        """
        A connection logged in as a new key-only account C{name}.
        """
        client = self.connect(host)
        assert client.ok("register", userId=name, publicKey=pem(name)) == {
            "type": "registered", "userId": name}
        client.name = name
        return client

    def seal(self, sender, to, members, text):
        return json.loads(e2e.seal(sender, privateKey(sender), to, members, text.encode(),
                                   ts=int(self.reactor.seconds() * 1000)))

    def now(self):
        return jsonwire.formatTimestamp(int(self.reactor.seconds() * 1000))


class LoginTests(WebSocketTestCase):
    """
    Nothing before login but logging in; the three ways to log in.
    """

    def test_authRequiredBeforeLogin(self):
        """
        Every request but the login ones, C{get_challenge} and C{ping} gets
        C{auth_required} before login, with the id echoed.
        """
        client = self.connect()
        for kind, fields in [("join", {}), ("list_rooms", {}), ("list_users", {}),
                             ("leave", {"roomId": "#a"}), ("get_keys", {"userId": "a"}),
                             ("set_key", {"publicKey": pem("a")}),
                             ("history", {"roomId": "#a"}),
                             ("dm", {"to": "a", "envelope": {}})]:
            client.send(dict(type=kind, id="r", **fields))
            self.assertEqual(client.take(), [{"type": "error", "id": "r", "code": "auth_required",
                                              "message": "Authentication required"}])
        self.assertEqual(client.request("ping"), {"type": "pong"})
        self.assertEqual(client.request("get_challenge")["type"], "challenge")

    def test_malformedBeforeAuthRequired(self):
        """
        A malformed request before login is a bad request, not an
        unauthenticated one: malformed ranks first.
        """
        client = self.connect()
        self.assertEqual(client.request("join", room="#a")["code"], "bad_request")
        self.assertEqual(client.request("leave")["code"], "bad_request")

    def test_registerWithoutPasswordThenChallenge(self):
        """
        An account registered without a password logs in on another connection
        by signing a challenge; the challenge is used up either way.
        """
        self.account("alice")
        client = self.connect()
        challenge = base64.b64decode(client.ok("get_challenge")["challenge"])
        self.assertEqual(len(challenge), 32)
        signature = base64.b64encode(loginsig.signAuth(privateKey("alice"), challenge, "alice"))
        self.assertEqual(client.request("authenticate", userId="alice",
                                        signature=signature.decode()),
                         {"type": "authenticated", "userId": "alice"})
        self.assertEqual(client.ok("list_rooms"), {"type": "rooms", "rooms": []})
        other = self.connect()
        other.ok("get_challenge")
        self.assertEqual(other.request("authenticate", userId="alice",
                                       signature=signature.decode())["code"], "forbidden")
        self.assertEqual(other.request("login", userId="alice", password="anything1")["code"],
                         "forbidden")

    def test_registerWithPasswordThenLogin(self):
        """
        An account registered with a password logs in with it; a wrong one is
        forbidden, and logging in twice is a conflict.
        """
        client = self.connect()
        self.assertEqual(client.request("register", userId="bob", publicKey=pem("bob"),
                                        password="secret123"),
                         {"type": "registered", "userId": "bob"})
        other = self.connect()
        self.assertEqual(other.request("login", userId="bob", password="nope-nope")["code"],
                         "forbidden")
        self.assertEqual(other.request("login", userId="BOB", password="secret123"),
                         {"type": "authenticated", "userId": "bob"})
        self.assertEqual(other.request("login", userId="bob", password="secret123")["code"],
                         "conflict")

    def test_badKeyRefused(self):
        """
        A PEM block that is not an RSA key of 2048 bits or more is a bad
        request.
        """
        client = self.connect()
        small = jsonwire.derToPem(publicDer("tiny", bits=1024))
        self.assertEqual(client.request("register", userId="t", publicKey=small)["code"],
                         "bad_request")


class RegistrationLimitTests(WebSocketTestCase):
    """
    The per-address registration limit.
    """

    settings = {"registerLimit": (2, 60.0)}

    def test_registrationLimitedPerAddress(self):
        """
        Registrations past the per-address limit are rate limited; another
        address may still register.
        """
        self.account("a1", host="10.0.0.9")
        self.account("a2", host="10.0.0.9")
        client = self.connect(host="10.0.0.9")
        response = client.request("register", userId="a3", publicKey=pem("a3"))
        self.assertEqual(response["code"], "rate_limited")
        self.assertEqual(self.account("a3", host="10.0.0.8").name, "a3")


class MalformedTests(WebSocketTestCase):
    """
    What the door refuses, and that the connection stays.
    """

    def test_badRequestsKeepTheConnection(self):
        """
        A binary frame, non-object JSON, duplicate keys, a missing or
        non-string type, a missing or wrong-typed field and an unknown type each
        get C{bad_request}, with the id when there is one; the connection stays.
        """
        client = self.account("alice")
        client.sendRaw(client.connection.send(BytesMessage(b'{"type":"ping"}')))
        for text in ["[1]", "nope", '{"type":"ping","type":"ping"}', '{"id":1}',
                     '{"type":7,"id":2}', '{"type":"leave","id":3}',
                     '{"type":"leave","roomId":["#a"],"id":4}', '{"type":"x","id":5}']:
            client.sendText(text)
        errors = client.take()
        self.assertEqual([(e["type"], e["code"], e.get("id")) for e in errors],
                         [("error", "bad_request", None)] * 4
                         + [("error", "bad_request", i) for i in range(1, 6)])
        self.assertEqual(errors[-1]["message"], "Unknown message type: x")
        self.assertFalse(client.lost)
        self.assertEqual(client.request("ping"), {"type": "pong"})

    def test_idEcho(self):
        """
        Responses, errors included, echo the request's id whatever its JSON
        type; a request without one gets a response without one.
        """
        client = self.account("alice")
        for requestId in ["abc", 12, None, {"n": 1}]:
            client.send({"type": "ping", "id": requestId})
            client.send({"type": "leave", "roomId": "#none", "id": requestId})
        self.assertEqual(client.take(), [
            m for requestId in ["abc", 12, None, {"n": 1}] for m in [
                {"type": "pong", "id": requestId},
                {"type": "error", "id": requestId, "code": "not_found",
                 "message": "no such room: #none"}]])
        client.send({"type": "ping"})
        self.assertEqual(client.take(), [{"type": "pong"}])


class SizeLimitTests(WebSocketTestCase):
    """
    The message size limit, enforced while a message arrives.
    """

    settings = {"maxFrame": 1024, "sendQueue": 8192}

    def test_largestMessageAccepted(self):
        """
        A message of exactly the limit in UTF-8 bytes is read and answered.
        """
        client = self.connect()
        text = json.dumps({"type": "ping", "id": ""})
        text = text.replace('""', '"%s"' % ("é" * ((1024 - len(text)) // 2)))
        self.assertEqual(len(text.encode()), 1024)
        client.sendText(text)
        self.assertEqual([m["type"] for m in client.take()], ["pong"])

    def test_fragmentedMessageOverLimitCloses(self):
        """
        A message sent in fragments gets C{too_large} and close code 1009 as soon
        as its fragments pass the limit, before it is finished.
        """
        client = self.connect()
        client.sendText("[" + "1," * 255, finished=False)
        client.sendText("1," * 255, finished=False)
        self.assertEqual((client.take(), client.closeCode), ([], None))
        client.sendText("1," * 10, finished=False)
        self.assertEqual(client.take(), [{"type": "error", "code": "too_large",
                                          "message": "a message holds at most 1024 bytes"}])
        self.assertEqual(client.closeCode, 1009)
        self.assertTrue(client.lost)

    def test_oneFrameOverLimitClosesBeforeItEnds(self):
        """
        A single frame announcing more than the limit is refused once the bytes
        read pass the limit, without waiting for the rest of the frame.
        """
        client = self.connect()
        frame = client.connection.send(TextMessage("x" * 100000))
        client.sendRaw(frame[:1200])
        self.assertEqual([m["code"] for m in client.take()], ["too_large"])
        self.assertEqual(client.closeCode, 1009)

    def test_binaryMessagesCountToo(self):
        """
        A binary message over the limit is too large, not merely refused.
        """
        client = self.connect()
        client.sendRaw(client.connection.send(BytesMessage(b"x" * 1025)))
        self.assertEqual([m["code"] for m in client.take()], ["too_large"])
        self.assertEqual(client.closeCode, 1009)


class RoomTests(WebSocketTestCase):
    """
    Joining, switching, leaving and messages between WebSocket users.
    """

    def setUp(self):
        WebSocketTestCase.setUp(self)
        self.alice, self.bob = self.account("alice"), self.account("bob")
        self.keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}

    def members(self, *names):
        return [{"userId": n, "publicKey": pem(n), "guest": False} for n in sorted(names)]

    def membersOf(self, room):
        """
        The names in C{room}, as a third user sees them; none once the room is
        gone (whether an emptied room stays is the core's business).
        """
        response = self.account("observer%d" % len(self.service.directory.users)).request(
            "list_users", roomId=room)
        return [] if response.get("code") == "not_found" else response["users"]

    def test_joinOwnRoom(self):
        """
        C{join} without a roomId joins the room named as the user.
        """
        self.assertEqual(self.alice.request("join"), {
            "type": "joined", "roomId": "alice", "members": self.members("alice")})

    def test_joinTellsTheOthers(self):
        """
        C{join} answers with the members; the others get C{user_joined}.
        """
        self.alice.ok("join", roomId="#a")
        self.assertEqual(self.bob.request("join", roomId="#A"), {
            "type": "joined", "roomId": "#a", "members": self.members("alice", "bob")})
        self.assertEqual(self.alice.take(), [{"type": "user_joined", "userId": "bob",
                                              "roomId": "#a", "publicKey": pem("bob"),
                                              "guest": False}])

    def test_switchRoom(self):
        """
        C{switch_room} joins the new room and then leaves the current one: the
        old room's members get C{user_left}, the new room's C{user_joined}.
        """
        carol = self.account("carol")
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        carol.ok("join", roomId="#b")
        self.alice.take()
        self.assertEqual(self.bob.request("switch_room", roomId="#b"), {
            "type": "joined", "roomId": "#b", "members": self.members("bob", "carol")})
        self.assertEqual(self.alice.take(),
                         [{"type": "user_left", "userId": "bob", "roomId": "#a"}])
        self.assertEqual(carol.take(), [{"type": "user_joined", "userId": "bob",
                                         "roomId": "#b", "publicKey": pem("bob"), "guest": False}])
        self.assertEqual(self.bob.ok("list_users", roomId="#a")["users"], ["alice"])

    def test_refusedSwitchChangesNothing(self):
        """
        A switch the core refuses (wrong room password, already a member)
        leaves the user where it was.
        """
        carol = self.account("carol")
        carol.ok("join", roomId="#club", password="hunter22")
        self.alice.ok("join", roomId="#a")
        self.assertEqual(self.alice.request("switch_room", roomId="#club",
                                            password="wrong")["code"], "forbidden")
        self.assertEqual(self.alice.request("switch_room", roomId="#a")["code"], "conflict")
        self.assertEqual(self.alice.ok("list_users", roomId="#a")["users"], ["alice"])
        self.alice.ok("switch_room", roomId="#club", password="hunter22")
        self.assertEqual(self.membersOf("#a"), [])

    def test_switchAfterLeavingJoinsOnly(self):
        """
        Once the current room has been left, a switch only joins; the answer
        names the room as the server spells it.
        """
        self.alice.ok("join", roomId="#a")
        self.alice.ok("join", roomId="#b")
        self.assertEqual(self.alice.request("leave", roomId="#B"),
                         {"type": "left", "roomId": "#b"})
        self.alice.ok("switch_room", roomId="#c")
        self.assertEqual(self.alice.ok("list_users", roomId="#a")["users"], ["alice"])

    def test_leave(self):
        """
        C{leave} answers C{left}; the others get C{user_left}; an empty roomId
        is a bad request rather than "every room".
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.take()
        self.assertEqual(self.bob.request("leave", roomId="#a"), {"type": "left", "roomId": "#a"})
        self.assertEqual(self.alice.take(),
                         [{"type": "user_left", "userId": "bob", "roomId": "#a"}])
        self.assertEqual(self.alice.request("leave", roomId="")["code"], "bad_request")
        self.assertEqual(self.alice.ok("list_users", roomId="#a")["users"], ["alice"])

    def test_chatMessage(self):
        """
        A C{chat_message} is answered C{sent}; the other member gets the event
        with the envelope cut to its own entry, which opens.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.take()
        envelope = self.seal("alice", ("room", "#a"), self.keys, "hello")
        self.assertEqual(self.alice.request("chat_message", roomId="#a", envelope=envelope),
                         {"type": "sent", "roomId": "#a", "timestamp": self.now()})
        [event] = self.bob.take()
        self.assertEqual({k: v for k, v in event.items() if k != "envelope"},
                         {"type": "chat_message", "userId": "alice", "roomId": "#a",
                          "timestamp": self.now()})
        self.assertEqual(set(event["envelope"]["encrypted_keys"]), {"bob"})
        self.assertEqual(e2e.openEnvelope(json.dumps(event["envelope"]).encode(), "bob",
                                          privateKey("bob"), publicDer("alice")), b"hello")
        self.assertEqual(self.alice.take(), [])

    def test_staleRecipients(self):
        """
        An envelope missing a member gets C{stale_recipients} with the members
        and their PEM keys.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        envelope = self.seal("alice", ("room", "#a"), {"alice": publicDer("alice")}, "x")
        response = self.alice.request("chat_message", roomId="#a", envelope=envelope)
        self.assertEqual((response["code"], response["members"]),
                         ("stale_recipients", self.members("alice", "bob")))

    def test_directMessage(self):
        """
        A C{dm} is answered C{sent}; the recipient gets a C{dm} event.
        """
        envelope = self.seal("alice", ("user", "bob"), self.keys, "psst")
        self.assertEqual(self.alice.request("dm", to="bob", envelope=envelope),
                         {"type": "sent", "to": "bob", "timestamp": self.now()})
        [event] = self.bob.take()
        self.assertEqual((event["type"], event["userId"], event["timestamp"]),
                         ("dm", "alice", self.now()))
        self.assertEqual(e2e.openEnvelope(json.dumps(event["envelope"]).encode(), "bob",
                                          privateKey("bob"), publicDer("alice")), b"psst")

    def test_history(self):
        """
        C{history} pages back with C{before} as ISO text or milliseconds.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        stamps = []
        for text in ("one", "two", "three"):
            self.alice.ok("chat_message", roomId="#a",
                          envelope=self.seal("alice", ("room", "#a"), self.keys, text))
            stamps.append(int(self.reactor.seconds() * 1000))
            self.reactor.advance(1)
        page = self.bob.ok("history", roomId="#a")
        self.assertEqual([m["timestamp"] for m in page["messages"]],
                         [jsonwire.formatTimestamp(t) for t in stamps])
        self.assertEqual([m["userId"] for m in page["messages"]], ["alice"] * 3)
        older = self.bob.ok("history", roomId="#a", before=page["messages"][2]["timestamp"])
        self.assertEqual(older["messages"], page["messages"][:2])
        older = self.bob.ok("history", roomId="#a", limit=1, before=stamps[2])
        self.assertEqual(older["messages"], page["messages"][1:2])

    def test_keys(self):
        """
        C{get_keys} lists a room's or a user's keys; C{set_key} answers
        C{key_set} and co-members get C{key_changed}.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.take()
        self.assertEqual(self.alice.request("get_keys", roomId="#a"),
                         {"type": "keys", "members": self.members("alice", "bob")})
        self.assertEqual(self.alice.request("get_keys", userId="bob"),
                         {"type": "keys", "members": self.members("bob")})
        self.assertEqual(self.bob.request("set_key", publicKey=pem("bob2")), {"type": "key_set"})
        self.assertEqual(self.alice.take(), [{"type": "key_changed", "userId": "bob",
                                              "publicKey": pem("bob2"), "guest": False}])

    def test_lists(self):
        """
        C{list_rooms} and C{list_users} list what the core knows.
        """
        self.alice.ok("join", roomId="#a")
        self.assertEqual(self.bob.request("list_rooms"), {"type": "rooms", "rooms": ["#a"]})
        self.assertEqual(self.bob.request("list_users"),
                         {"type": "users", "users": ["alice", "bob"], "guests": []})
        self.assertEqual(self.bob.request("list_users", roomId="#a"),
                         {"type": "users", "users": ["alice"], "guests": []})

    def test_membershipsRestoredAtLogin(self):
        """
        An account's rooms that still exist come back at its next login,
        announced to it as C{user_joined} events of its own.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.pump.serverIO.loseConnection()
        self.alice.pump.flush()
        again = self.connect()
        challenge = base64.b64decode(again.ok("get_challenge")["challenge"])
        signature = base64.b64encode(loginsig.signAuth(privateKey("alice"), challenge, "alice"))
        again.ok("authenticate", userId="alice", signature=signature.decode())
        self.assertEqual(again.take(), [{"type": "user_joined", "userId": "alice", "roomId": "#a",
                                         "publicKey": pem("alice"), "guest": False}])

    def test_disconnectCleansUp(self):
        """
        When a WebSocket client goes, the members of its rooms get C{user_left}
        and the user is no longer online.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.take()
        self.bob.pump.clientIO.loseConnection()
        self.bob.pump.flush()
        self.assertEqual(self.alice.take(),
                         [{"type": "user_left", "userId": "bob", "roomId": "#a"}])
        self.assertEqual(self.alice.ok("list_users")["users"], ["alice"])

    def test_closeFrameCleansUp(self):
        """
        A client's close frame is answered, the send queue is unregistered
        (a TLS transport would not shut down otherwise), and the session ends as
        on a lost connection.
        """
        self.alice.ok("join", roomId="#a")
        self.bob.ok("join", roomId="#a")
        self.alice.take()
        self.bob.sendRaw(self.bob.connection.send(CloseConnection(1000)))
        self.assertEqual(self.bob.closeCode, 1000)
        self.assertIsNone(self.bob.pump.serverIO.producer)
        self.assertEqual(self.alice.take(),
                         [{"type": "user_left", "userId": "bob", "roomId": "#a"}])


class FlowTests(WebSocketTestCase):
    """
    Producers, idle timers and ordering.
    """

    settings = {"maxFrame": 1024, "sendQueue": 4096}

    def test_providesIFileClient(self):
        """
        The protocol is an L{IFileClient}: it takes part in file transfers.
        """
        self.assertTrue(verifyObject(IFileClient, WebSocketChatProtocol(self.service, "h")))

    def test_outboxIsTheProducer(self):
        """
        The send queue replaces the HTTP channel as the connection's producer.
        """
        client = self.connect()
        self.assertIsInstance(client.pump.serverIO.producer, Outbox)

    def test_slowReaderAborted(self):
        """
        A client that stops reading while events pile up past the send queue is
        aborted, and its rooms see it leave.
        """
        alice, bob = self.account("alice"), self.account("bob")
        alice.ok("join", roomId="#r")
        bob.ok("join", roomId="#r")
        alice.take()
        bob.pump.serverIO.producer.pauseProducing()
        for i in range(10):
            carol = self.account("carol%d" % i)
            carol.ok("join", roomId="#r")
            carol.pump.clientIO.loseConnection()
            carol.pump.flush()
        self.assertTrue(bob.pump.serverIO.disconnecting)
        bob.pump.flush()
        self.assertIn({"type": "user_left", "userId": "bob", "roomId": "#r"}, alice.take())

    def test_idleWarningThenClose(self):
        """
        Twenty seconds without a byte bring a C{warning} event; thirty close
        the connection with code 1000, the send queue unregistered first; any
        frame in between, a WebSocket ping too, starts the count again.
        """
        client = self.connect()
        self.reactor.advance(19)
        client.sendRaw(client.connection.send(Ping(b"x")))
        self.reactor.advance(19)
        client.pump.flush()
        self.assertEqual(client.take(), [])
        self.reactor.advance(1)
        client.pump.flush()
        [warning] = client.take()
        self.assertEqual((warning["type"], warning["code"]), ("warning", 3))
        self.reactor.advance(10)
        client.pump.flush()
        self.assertIsNone(client.pump.serverIO.producer)
        self.assertEqual(client.closeCode, 1000)
        self.assertTrue(client.lost)

    def test_pipelinedRequestsAnsweredInOrder(self):
        """
        Requests sent while a slow one (bcrypt in a thread) runs are answered
        after it, in order.
        """
        slow = Credentials(cost=4, runInThread=lambda f, *a: deferLater(self.reactor, 1, f, *a))
        self.service = ChatService(MemoryStore(testKeys()), Settings(bcryptCost=4),
                                   self.reactor, credentials=slow)
        self.service.startService()
        site = Site(makeWebResource(self.service), reactor=self.reactor)
        client = connectWebSocket(site)
        client.send({"type": "register", "id": 1, "userId": "alice", "publicKey": pem("alice"),
                     "password": "secret123"})
        client.send({"type": "ping", "id": 2})
        client.send({"type": "list_rooms", "id": 3})
        self.assertEqual(client.take(), [])
        self.reactor.advance(1)
        client.pump.flush()
        self.assertEqual([m["id"] for m in client.take()], [1, 2, 3])


class FileTransferTests(WebSocketTestCase):
    """
    File transfer mirrored as JSON.
    """

    def setUp(self):
        WebSocketTestCase.setUp(self)
        self.alice, self.bob = self.account("alice"), self.account("bob")
        self.alice.ok("join", roomId="#f")
        self.bob.ok("join", roomId="#f")
        self.alice.take()
        self.keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        self.fileKey = bytes(range(32))

    def offer(self, data, chunkSize, to=("room", "#f"), members=None):
        chunks = max(1, -(-len(data) // chunkSize))
        meta = {"name": "a.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "chunk_size": chunkSize, "chunks": chunks,
                "file_key": base64.b64encode(self.fileKey).decode()}
        sealed = e2e.seal("alice", privateKey("alice"), to, members or self.keys,
                          json.dumps(meta).encode(), domain=e2e.FILE,
                          ts=int(self.reactor.seconds() * 1000))
        target = {"roomId": to[1]} if to[0] == "room" else {"to": to[1]}
        response = self.alice.request("file_offer", size=len(data), chunks=chunks,
                                      chunkSize=chunkSize, envelope=json.loads(sealed), **target)
        return response, json.loads(sealed)["id"]

    def test_offerAcceptChunksDone(self):
        """
        An offer is answered C{file_ok} with the transfer id; the recipient gets
        C{file_offered} with the envelope cut to it, accepts, receives the
        chunks in base64 and acknowledges them; C{file_done} then reaches both.
        """
        data = b"hello, file!"
        response, envelopeId = self.offer(data, 8)
        self.assertEqual(response["type"], "file_ok")
        transferId = response["transferId"]
        [offered] = self.bob.take()
        envelope = offered.pop("envelope")
        self.assertEqual(offered, {"type": "file_offered", "transferId": transferId,
                                   "from": "alice", "roomId": "#f", "size": 12, "chunks": 2,
                                   "chunkSize": 8})
        self.assertEqual(set(envelope["key_ids"]), {"bob"})
        meta = json.loads(e2e.openEnvelope(json.dumps(envelope).encode(), "bob",
                                           privateKey("bob"), publicDer("alice"), e2e.FILE))
        self.assertEqual(meta["size"], 12)
        self.assertEqual(self.bob.request("file_answer", transferId=transferId, accept=True),
                         {"type": "file_ok", "transferId": transferId})
        self.assertEqual(self.alice.take(), [{"type": "file_start", "transferId": transferId,
                                              "accepted": 1, "window": 8}])
        for index in range(2):
            sealed = e2e.sealChunk(self.fileKey, envelopeId, index, data[index * 8:][:8])
            self.alice.ok("file_chunk", transferId=transferId, index=index,
                          data=base64.b64encode(sealed).decode())
        received = b""
        for chunk in self.bob.take():
            self.assertEqual((chunk["type"], chunk["transferId"]), ("file_chunk", transferId))
            received += e2e.openChunk(self.fileKey, envelopeId, chunk["index"],
                                      base64.b64decode(chunk["data"]))
            self.bob.ok("file_ack", transferId=transferId, index=chunk["index"])
        self.assertEqual(received, data)
        self.alice.ok("file_done", transferId=transferId)
        done = {"type": "file_done", "transferId": transferId}
        self.assertEqual((self.alice.take(), self.bob.take()), ([done], [done]))

    def test_declineAndCancel(self):
        """
        A declined offer is cancelled for the sender; a direct offer names its
        recipient in C{to}; requests on a transfer that is over get
        C{not_found}.
        """
        response, _ = self.offer(b"x", 8, to=("user", "bob"))
        transferId = response["transferId"]
        [offered] = self.bob.take()
        self.assertEqual((offered["to"], "roomId" in offered), ("bob", False))
        self.bob.ok("file_answer", transferId=transferId, accept=False)
        [cancel] = self.alice.take()
        self.assertEqual((cancel["type"], cancel["transferId"]), ("file_cancel", transferId))
        self.assertEqual(self.alice.request("file_done", transferId=transferId)["code"],
                         "not_found")

    def test_textMembersAreNotOffered(self):
        """
        The text door takes no files: a room whose only other member is on it
        has nobody to offer a file to.
        """
        text = LineClient(TextFactory(self.service))
        text.ok("CMD::/nick carol")
        text.ok("CMD::/key " + base64.b64encode(publicDer("carol")).decode())
        text.ok("CMD::/join #t")
        self.alice.ok("join", roomId="#t")
        members = {"alice": publicDer("alice"), "carol": publicDer("carol")}
        response, _ = self.offer(b"x", 8, to=("room", "#t"), members=members)
        self.assertEqual((response["code"], response["message"]),
                         ("not_found", "nobody in #t can receive files"))
        self.assertEqual(text.takeEvents("file_offered"), [])


class SiteTests(SynchronousTestCase):
    """
    The resource tree.
    """

    def test_staticDirectoryAtRoot(self):
        """
        Given a directory, the site serves its files at C{/} beside C{/ws}.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "index.html"), "w") as f:
            f.write("<title>chatd</title>")
        root = makeWebResource(makeService(), directory)
        self.assertIn(b"ws", root.children)
        self.assertEqual(root.getChild(b"index.html", None).path,
                         os.path.join(os.path.abspath(directory), "index.html"))

    def test_webSocketOnlyWithoutDirectory(self):
        """
        Without a directory, C{/ws} is the only child.
        """
        self.assertEqual(list(makeWebResource(makeService()).children), [b"ws"])
