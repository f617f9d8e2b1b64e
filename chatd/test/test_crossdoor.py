"""
One room, three front doors: a binary-protocol user, a text-protocol user and a
WebSocket user read each other's messages through one core.
"""

import base64
import json

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd import e2e
from chatd.protocols import jsonwire
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService, privateKey, publicDer
from chatd.test.test_binary import OK, Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket


class CrossDoorTests(SynchronousTestCase):
    """
    Users of every door share rooms and messages.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor)

    def seal(self, sender, members, text):
        return e2e.seal(sender, privateKey(sender), ("room", "#x"), members, text.encode(),
                        ts=int(self.reactor.seconds() * 1000))

    def read(self, reader, sender, envelope):
        return e2e.openEnvelope(envelope, reader, privateKey(reader),
                                publicDer(sender)).decode()

    def test_threeDoorsOneRoom(self):
        """
        Alice on the binary door, bob on the text door and carol on the
        WebSocket door join one room; each one's message reaches the other two,
        cut to each reader, and opens there.
        """
        alice = Wire(BinaryFactory(self.service))
        alice.hello()
        self.assertEqual(alice.request(Op.NICK, "alice"), (OK, ("alice",)))
        self.assertEqual(alice.request(Op.SET_KEY, publicDer("alice"))[0], OK)
        self.assertEqual(alice.request(Op.JOIN, "#x", "")[0], OK)

        bob = LineClient(TextFactory(self.service))
        bob.ok("CMD::/nick bob")
        bob.ok("CMD::/key " + base64.b64encode(publicDer("bob")).decode())
        bob.ok("CMD::/join #x")

        carol = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        carol.ok("register", userId="carol", publicKey=jsonwire.derToPem(publicDer("carol")))
        joined = carol.ok("join", roomId="#x")
        members = {m["userId"]: jsonwire.pemToDer(m["publicKey"]) for m in joined["members"]}
        self.assertEqual(members, {n: publicDer(n) for n in ("alice", "bob", "carol")})
        alice.takeEvents()
        bob.takeEvents()

        blob = self.seal("alice", members, "from binary")
        self.assertEqual(alice.request(Op.ROOM_MSG, "#x", blob)[0], OK)
        self.assertEqual(bob.ok(b"MSG::" + self.seal("bob", members, "from text"))["type"], "sent")
        envelope = json.loads(self.seal("carol", members, "from the web"))
        self.assertEqual(carol.ok("chat_message", roomId="#x", envelope=envelope)["type"], "sent")

        atAlice = [(sender, self.read("alice", sender, envelope))
                   for _, (_, sender, _, envelope) in alice.takeEvents(Op.ROOM_MSG)]
        atBob = [(e["userId"], self.read("bob", e["userId"], json.dumps(e["envelope"]).encode()))
                 for e in bob.takeEvents("chat_message")]
        atCarol = [(e["userId"], self.read("carol", e["userId"],
                                           json.dumps(e["envelope"]).encode()))
                   for e in carol.take() if e["type"] == "chat_message"]
        self.assertEqual(atAlice, [("bob", "from text"), ("carol", "from the web")])
        self.assertEqual(atBob, [("alice", "from binary"), ("carol", "from the web")])
        self.assertEqual(atCarol, [("alice", "from binary"), ("bob", "from text")])
