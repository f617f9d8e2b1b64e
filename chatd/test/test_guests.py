"""
Tests that every door marks guests wherever it names a user with a key or lists
users (issue 15.5): flags on the binary door for clients that said version 2,
C{guest} fields on the text and WebSocket doors.
"""

import base64
import json

from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import GUEST, KIND_ROOM, KIND_USER, Op
from chatd.protocols.text import TextFactory
from chatd.test.fakes import publicDer
from chatd.test.test_binary import OK, STALE, Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import WebSocketTestCase, pem


class GuestFlagTests(WebSocketTestCase):
    """
    One room with an account on the WebSocket door (alice), a guest on the
    binary door that said version 2 (vera), a guest on the text door (carol)
    and a binary guest that said version 1 (old).
    """

    def setUp(self):
        WebSocketTestCase.setUp(self)
        self.binary = BinaryFactory(self.service)
        self.text = TextFactory(self.service)
        self.alice = self.account("alice")
        self.alice.ok("join", roomId="#a")

    def binaryGuest(self, name, version):
        wire = Wire(self.binary)
        wire.hello(version)
        assert wire.request(Op.NICK, name)[0] == OK
        assert wire.request(Op.SET_KEY, publicDer(name))[0] == OK
        return wire

    def textGuest(self, name):
        client = LineClient(self.text)
        client.ok("CMD::/nick " + name)
        client.ok("CMD::/key " + base64.b64encode(publicDer(name)).decode())
        return client

    def test_joinAnswersAndEvents(self):
        """
        The JOIN answer flags each member, and JOINED flags the newcomer, for a
        version-2 binary session; the WebSocket and text doors say C{guest}.
        """
        vera = self.binaryGuest("vera", 2)
        self.assertEqual(vera.request(Op.JOIN, "#a", ""), (OK, (
            [("alice", publicDer("alice"), 0), ("vera", publicDer("vera"), GUEST)], "")))
        self.assertEqual(self.alice.take(), [
            {"type": "user_joined", "userId": "vera", "roomId": "#a", "publicKey": pem("vera"),
             "guest": True}])
        carol = self.textGuest("carol")
        self.assertEqual([(m["userId"], m["guest"]) for m in carol.ok("CMD::/join #a")["members"]],
                         [("alice", False), ("carol", True), ("vera", True)])
        self.assertEqual(vera.takeEvents(Op.JOINED),
                         [(Op.JOINED, ("#a", "carol", publicDer("carol"), GUEST))])
        dave = Wire(self.binary)
        dave.hello(2)
        self.assertEqual(dave.request(Op.REGISTER, "dave", "correct horse", publicDer("dave"))[0],
                         OK)
        dave.request(Op.JOIN, "#a", "")
        self.assertEqual(vera.takeEvents(Op.JOINED),
                         [(Op.JOINED, ("#a", "dave", publicDer("dave"), 0))])
        self.assertEqual(carol.takeEvents("user_joined")[0]["guest"], False)

    def test_lists(self):
        """
        LIST_USERS and GET_KEYS flag guests for a version-2 session; the other
        doors' C{users} answer lists the guests apart, their C{keys} answer
        says C{guest} per member.
        """
        vera = self.binaryGuest("vera", 2)
        vera.request(Op.JOIN, "#a", "")
        self.assertEqual(vera.request(Op.LIST_USERS, "#a"),
                         (OK, ([("alice", 0), ("vera", GUEST)],)))
        self.assertEqual(vera.request(Op.GET_KEYS, KIND_ROOM, "#a"), (OK, (
            [("alice", publicDer("alice"), 0), ("vera", publicDer("vera"), GUEST)],)))
        self.assertEqual(vera.request(Op.GET_KEYS, KIND_USER, "alice"),
                         (OK, ([("alice", publicDer("alice"), 0)],)))
        self.assertEqual(self.alice.request("list_users", roomId="#a"),
                         {"type": "users", "users": ["alice", "vera"], "guests": ["vera"]})
        self.assertEqual(
            [(m["userId"], m["guest"])
             for m in self.alice.request("get_keys", roomId="#a")["members"]],
            [("alice", False), ("vera", True)])

    def test_renamedAndKeyChanged(self):
        """
        RENAMED and KEY_CHANGED flag a guest for a version-2 session, and say
        C{guest} on the other doors.
        """
        vera = self.binaryGuest("vera", 2)
        vera.request(Op.JOIN, "#a", "")
        carol = self.textGuest("carol")
        carol.ok("CMD::/join #a")
        vera.takeEvents()
        self.alice.take()
        carol.ok("CMD::/nick carla")
        carol.ok("CMD::/key " + base64.b64encode(publicDer("carla")).decode())
        self.assertEqual(vera.takeEvents(), [
            (Op.RENAMED, ("carol", "carla", GUEST)),
            (Op.KEY_CHANGED, ("carla", publicDer("carla"), GUEST))])
        self.assertEqual([(e["type"], e["guest"]) for e in self.alice.take()],
                         [("renamed", True), ("key_changed", True)])

    def test_staleRecipients(self):
        """
        The members of a 0x09 refusal are flagged for a version-2 session and
        say C{guest} on the other doors.
        """
        vera = self.binaryGuest("vera", 2)
        vera.request(Op.JOIN, "#a", "")
        blob = json.dumps(self.seal("vera", ("room", "#a"), {"vera": publicDer("vera")},
                                    "hi")).encode()
        self.assertEqual(vera.request(Op.ROOM_MSG, "#a", blob), (STALE, (
            [("alice", publicDer("alice"), 0), ("vera", publicDer("vera"), GUEST)],)))
        envelope = self.seal("alice", ("room", "#a"), {"alice": publicDer("alice")}, "hi")
        refusal = self.alice.request("chat_message", roomId="#a", envelope=envelope)
        self.assertEqual([(m["userId"], m["guest"]) for m in refusal["members"]],
                         [("alice", False), ("vera", True)])

    def test_takenNameIsNotTheAccount(self):
        """
        A guest who took the name carol is flagged a guest; the account carol
        that later joins is not.
        """
        vera = self.binaryGuest("vera", 2)
        vera.request(Op.JOIN, "#a", "")
        carol = self.binaryGuest("carol", 1)
        carol.request(Op.JOIN, "#a", "")
        self.assertEqual(vera.takeEvents(Op.JOINED),
                         [(Op.JOINED, ("#a", "carol", publicDer("carol"), GUEST))])
        carol.transport.loseConnection()
        carol.protocol.connectionLost(None)
        account = self.account("carol")
        account.ok("join", roomId="#a")
        self.assertEqual(vera.takeEvents(Op.JOINED),
                         [(Op.JOINED, ("#a", "carol", publicDer("carol"), 0))])

    def test_versionOneUnchanged(self):
        """
        A binary session that said version 1 (or nothing) gets today's bytes:
        no flags in the JOIN answer, JOINED, RENAMED, KEY_CHANGED, LIST_USERS
        or GET_KEYS.
        """
        old = self.binaryGuest("old", 1)
        self.assertEqual(old.request(Op.JOIN, "#a", ""), (OK, (
            [("alice", publicDer("alice")), ("old", publicDer("old"))],)))
        old.transport.clear()
        carol = self.textGuest("carol")
        carol.ok("CMD::/join #a")
        carol.ok("CMD::/nick carla")
        self.assertEqual(old.transport.value(),
                         opcodes.event(Op.JOINED, "#a", "carol", publicDer("carol"))
                         + opcodes.event(Op.RENAMED, "carol", "carla"))
        old.transport.clear()
        old.send(Op.LIST_USERS, "#a")
        self.assertEqual(old.transport.value(),
                         opcodes.okResponse(Op.LIST_USERS, ["alice", "carla", "old"]))
