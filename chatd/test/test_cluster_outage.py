"""
A cluster through Redis outages, on the fake Redis and a fake clock
(L{chatd.test.test_fanout}): room messages keep their order and all reach
everyone, direct messages are not lost, a dead node's rooms go, and events from
other nodes are checked as a client's requests are.
"""

import json
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase

from chatd import e2e
from chatd.fanout.delivered import Delivered, envelopeKey
from chatd.protocols.opcodes import Op
from chatd.redisurl import redisAddress, redisURL
from chatd.test.fakes import privateKey, publicDer
from chatd.test.test_binary import OK
from chatd.test.test_fanout import RECONNECTED, FakeMode, skip
from chatd.test.test_logs import capture

try:
    from chatd.fanout import directlog
    from chatd.fanout.connections import SubscriberProtocol
    from chatd.fanout.events import encodeValue
    from chatd.fanout.redis import RedisFanout
except ImportError:  # the redis extra is not installed: the tests skip (see skip)
    pass


class OutageTests(FakeMode, TestCase):
    """
    Room messages and direct messages while Redis is away.
    """

    skip = skip

    async def test_oneAccountOnTwoNodes(self):
        """
        One account posting from two nodes in the same millisecond while Redis
        is away gets two timestamps, and each message reaches every other
        session on both nodes once it is back, none of them twice.
        """
        a, b = await self.node("A"), await self.node("B")
        alice1 = await self.account(a, "alice")
        alice2 = await self.account(b, "alice", register=False)
        bob, carol = await self.guest(a, "bob"), await self.guest(b, "carol")
        await self.request(alice1, Op.JOIN, "#r", "")
        await self.seesRoom(carol, "#r")
        for wire in (bob, carol):
            await self.request(wire, Op.JOIN, "#r", "")
        await self.advance(1)
        members = {name: publicDer(name) for name in ("alice", "bob", "carol")}
        for wire in (alice1, alice2, bob, carol):
            wire.takeEvents()
        self.redis.restart(down=True)
        await self.quiet()
        stamps = {}
        for wire in (alice1, alice2):
            blob = self.seal("alice", ("room", "#r"), members, "from " + wire.protocol.factory
                             .service.fanout.nodeId)
            status, (stamps[wire],) = await self.request(wire, Op.ROOM_MSG, "#r", blob)
            self.assertEqual(status, OK)
        self.assertNotEqual(stamps[alice1], stamps[alice2])
        self.redis.up()
        await self.advance(RECONNECTED)
        await self.advance(10)
        for wire, expected in [(bob, ["from A", "from B"]), (carol, ["from A", "from B"]),
                               (alice1, ["from B"]), (alice2, ["from A"])]:
            texts = sorted(
                e2e.openEnvelope(envelope, wire.name, privateKey(wire.name),
                                 publicDer(sender)).decode()
                for _, (_, sender, _, envelope) in wire.takeEvents(Op.ROOM_MSG))
            self.assertEqual(texts, expected, wire.name)


class DeliveredTests(TestCase):
    """
    L{Delivered} knows messages by sender and envelope id.
    """

    def test_sameTimestampTwoMessages(self):
        """
        Two messages of one sender with one timestamp are two messages; the
        same envelope again is not, whatever its timestamp; old ones are forgotten.
        """
        delivered = Delivered()
        envelope = self.envelope()
        first, second = envelopeKey("Alice", envelope), envelopeKey("Alice", self.envelope())
        self.assertEqual([delivered.add(100, first), delivered.add(100, second),
                          delivered.add(101, first)], [True, True, False])
        self.assertEqual(envelopeKey("ALICE", e2e.Envelope.parse(envelope)), first)
        delivered.prune(101)
        self.assertTrue(delivered.add(102, first))

    @staticmethod
    def envelope():
        return e2e.seal("Alice", privateKey("Alice"), ("room", "#r"),
                        {"Alice": publicDer("Alice")}, b"x", ts=0)


class RemoteCheckTests(FakeMode, TestCase):
    """
    Events another node publishes are checked as a client's requests are;
    bad ones are dropped, logged once per kind, and never stop the node.
    """

    skip = skip

    def setUp(self):
        FakeMode.setUp(self)
        self.sequence = 0
        self.logged = capture(self)

    def inject(self, channel, event=None, raw=None):
        """
        Publish as a rogue node X would, straight into the fake Redis.
        """
        self.sequence += 1
        if raw is None:
            raw = json.dumps({"n": "X", "i": "x", "s": self.sequence, "e": encodeValue(event)})
        self.redis.cmd_PUBLISH(None, None, "chatd:3:" + channel, raw)

    def forged(self, sender, to, text, signer="mallory"):
        """
        An envelope that says it is from C{sender}, signed by C{signer}.
        """
        blob = json.loads(e2e.seal(signer, privateKey(signer), to,
                                   {"alice": publicDer("alice"), "bob": publicDer("bob")},
                                   text.encode(), ts=int(self.clock.seconds() * 1000)))
        blob["from"] = sender
        return json.dumps(blob).encode()

    async def test_invalidEventsDropped(self):
        """
        Bad names, keys that do not parse, envelopes whose signature is not
        the sender's current key's, and garbage are dropped, with one log line
        per kind; the node goes on mirroring good events.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        await self.request(bob, Op.JOIN, "#r", "")
        await self.advance(1)
        bob.takeEvents()
        now = int(self.clock.seconds() * 1000)
        bad = [
            ("cluster", {"t": "online", "user": "two words", "key": None, "account": False}),
            ("cluster", {"t": "online", "user": "eve", "key": b"not a key", "account": False}),
            ("cluster", {"t": "online", "user": "eve2", "key": None, "account": "yes"}),
            ("cluster", {"t": "key", "user": "alice", "key": b"\x30\x00"}),
            ("cluster", {"t": "joined", "room": "no room name!", "user": "alice"}),
            ("cluster", {"t": "room", "room": "#x", "password": "plain text"}),
            ("room:#r", {"t": "message", "room": "#r", "sender": "alice", "ts": now,
                         "envelope": self.forged("alice", ("room", "#r"), "forged")}),
            ("room:#r", {"t": "message", "room": "#r", "sender": "alice", "ts": now,
                         "envelope": b"{}"}),
            ("cluster", {"t": "direct", "sender": "alice", "peer": "bob", "ts": now,
                         "envelope": self.forged("alice", ("user", "bob"), "forged dm")}),
            ("cluster", {"t": "direct", "sender": "alice", "peer": "bob", "ts": now,
                         "envelope": self.forged("alice", ("user", "bob"), "again")}),
            ("cluster", [1, 2, 3]),
            ("cluster", {"t": "nonsense"}),
        ]
        for channel, event in bad:
            self.inject(channel, event)
        self.inject("cluster", raw="{not json")
        self.inject("cluster", raw=json.dumps({"n": "X", "i": "x", "s": "one", "e": {}}))
        await self.quiet()
        self.assertEqual(await self.users(bob), ["alice", "bob"])
        self.assertEqual(await self.users(bob, "#r"), ["alice", "bob"])
        _, (keys,) = await self.request(bob, Op.GET_KEYS, 1, "alice")
        self.assertEqual(keys, [("alice", publicDer("alice"))])
        self.assertEqual(bob.takeEvents(), [])
        warnings = [event for event in self.logged
                    if "dropping an invalid" in event.get("log_format", "")]
        counts = b.service.fanout.invalid.counts
        # Each of the two nodes logs the first of each kind, and counts the rest.
        self.assertEqual(sorted(event["kind"] for event in warnings), sorted(list(counts) * 2))
        self.assertEqual((counts["online"], counts["message"], counts["direct"]), (2, 2, 2))
        self.assertEqual(sum(counts.values()), len(bad) + 2)
        # A good event from the same node still goes through.
        self.inject("cluster", {"t": "online", "user": "eve", "key": publicDer("eve"),
                                "account": False})
        await self.quiet()
        self.assertEqual(await self.users(bob), ["alice", "bob", "eve"])

    async def test_invalidEntriesDropped(self):
        """
        A node's state (C{sync}) with a bad entry takes in the good entries only.
        """
        a = await self.node("A")
        alice = await self.guest(a, "alice")
        await self.quiet()
        entries = {"eve": {"user": "eve", "key": publicDer("eve"), "account": False,
                           "rooms": ["#e"]},
                   "bad one": {"user": "bad one", "key": None, "account": False, "rooms": []},
                   "mallory": {"user": "mallory", "key": None, "account": False,
                               "rooms": ["not a room!"]}}
        self.inject("cluster", raw=json.dumps({
            "n": "X", "i": "x", "c": "sync",
            "u": {key: encodeValue(entry) for key, entry in entries.items()}}))
        await self.quiet()
        self.assertEqual(await self.users(alice), ["alice", "eve"])


class RedisURLTests(TestCase):
    """
    Redis URLs carry a password, a user name and C{rediss://} for TLS.
    """

    def test_parse(self):
        """
        Each part of the URL lands in its field; the password is unquoted.
        """
        self.assertEqual(redisURL("redis://h"), ("h", 6379, 0, None, None, False))
        self.assertEqual(redisURL("rediss://:p%40ss@h:6380/2"),
                         ("h", 6380, 2, "p@ss", None, True))
        self.assertEqual(redisURL("redis://chatd:secret@10.0.0.1/3"),
                         ("10.0.0.1", 6379, 3, "secret", "chatd", False))
        self.assertEqual(redisAddress("rediss://:pw@h:1/4"), ("h", 1, 4, "pw"))
        for url in ["https://h/0", "rediss://", "redis://user@h/0", "rediss://h/0?ca=x"]:
            self.assertRaises(ValueError, redisURL, url)

    def test_tlsEndpoint(self):
        """
        A C{rediss://} URL makes the fan-out speak TLS, checking the certificate
        against the host name; C{redis://} speaks plain TCP.
        """
        if skip:
            raise SkipTest(skip)
        tls = RedisFanout("rediss://:pw@redis.example:6380/1", Clock())
        plain = RedisFanout("redis://redis.example/1", Clock())
        self.assertIsInstance(plain.connections.endpoint, HostnameEndpoint)
        wrapped: Any = tls.connections.endpoint
        self.assertIsInstance(wrapped._wrappedEndpoint, HostnameEndpoint)
        self.assertEqual(tls.where, "tls:redis.example:6380/1")


class AuthTests(FakeMode, TestCase):
    """
    The fan-out logs in with the URL's user name and password.
    """

    skip = skip

    async def test_auth(self):
        """
        Both connections send AUTH with the user name and password first.
        """
        self.url = "redis://chatd:s3cret@fake.invalid:6379/3"
        original, sent = self.redis.run, []

        def run(connection, args):
            sent.append(args)
            return original(connection, args)
        self.patch(self.redis, "run", run)
        await self.node("A")
        self.assertEqual([args for args in sent if args[0] == "AUTH"],
                         [["AUTH", "chatd", "s3cret"]] * 2)


class DeadNodeTests(FakeMode, TestCase):
    """
    What a node that died leaves behind.
    """

    skip = skip

    async def test_emptiedRoomDropped(self):
        """
        A room whose only members were on a node that died is dropped once the
        node is declared gone, on every node and in the store; a room that a
        password keeps stays.
        """
        a, b, c = await self.node("A"), await self.node("B"), await self.node("C")
        alice, bob = await self.account(a, "alice"), await self.guest(b, "bob")
        carol = await self.guest(c, "carol")
        dave = await self.guest(a, "dave")
        # dave is a guest: no stored membership keeps #gone; alice, an account
        # (guests may not make password rooms), makes #kept without joining it.
        self.assertEqual((await self.request(dave, Op.JOIN, "#gone", ""))[0], OK)
        self.assertEqual((await self.request(alice, Op.CREATE, "#kept", "secret"))[0], OK)
        await self.seesRoom(bob, "#gone")
        await self.seesRoom(carol, "#kept")
        self.kill(a)
        await self.advance(self.ttl + self.beat + 1)
        self.assertEqual(await self.users(bob), ["bob", "carol"])
        for wire in (bob, carol):
            _, (rooms,) = await self.request(wire, Op.LIST_ROOMS)
            self.assertEqual(rooms, ["#kept"])
        stored = await self.store.loadRooms()
        self.assertEqual([record.name for record in stored], ["#kept"])


class DirectOutageTests(FakeMode, TestCase):
    """
    A direct message published while the recipient's node cannot hear Redis.
    """

    skip = skip

    def dropSubscriber(self, nodeId):
        for pump in self.endpoints[nodeId].pumps:
            if isinstance(getattr(pump.client, "_protocol", None), SubscriberProtocol):
                pump.clientIO.loseConnection()

    async def test_missedDirectDelivered(self):
        """
        A DM published while the recipient's node has lost its subscriber
        connection reaches the recipient, once, when it is back; the sender's
        other session on that node gets its copy too.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        self.dropSubscriber("B")
        await self.quiet()
        status, _ = await self.request(alice, Op.DM, "bob",
                                       self.seal("alice", ("user", "bob"), keys, "missed"))
        self.assertEqual(status, OK)
        await self.advance(1)
        self.assertEqual(bob.takeEvents(Op.DM), [])
        await self.advance(RECONNECTED)
        [(_, (sender, _, envelope))] = bob.takeEvents(Op.DM)
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"),
                                          publicDer("alice")), b"missed")
        await self.advance(30)
        self.assertEqual(bob.takeEvents(Op.DM), [])

    async def test_directNotDeliveredTwice(self):
        """
        A DM heard live is not delivered again when the node catches up after
        its subscriber comes back.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        await self.request(alice, Op.DM, "bob", self.seal("alice", ("user", "bob"), keys, "one"))
        await self.advance(1)
        self.assertEqual(len(bob.takeEvents(Op.DM)), 1)
        self.dropSubscriber("B")
        await self.advance(RECONNECTED)
        self.assertEqual(bob.takeEvents(Op.DM), [])

    async def test_keptForAWhile(self):
        """
        Kept direct messages are trimmed once older than L{directlog.KEEP}.
        """
        fanout = (await self.node("A")).service.fanout
        fanout.directs.keep("old")
        await self.quiet()
        self.clock.advance(directlog.KEEP + 1)
        fanout.directs.keep("new")
        fanout.outbox.flush()
        await self.quiet()
        self.assertEqual(list(self.redis.data[3][directlog.KEY]), ["new"])
