"""
Several nodes on one store and one (in-memory) fan-out: users on any node reach
every room, user and history.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.test.fakes import FakeHub, makeService, privateKey, publicDer, testKeys
from chatd.test.test_binary import CONFLICT, OK, RATE, STALE, Wire


class ClusterTestCase(SynchronousTestCase):
    """
    Two nodes, A and B, sharing a store, a clock and a hub.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore(testKeys())
        self.hub = FakeHub(self.clock)
        self.a = self.node("A")
        self.b = self.node("B")

    def node(self, nodeId):
        service = makeService(store=self.store, clock=self.clock, fanout=self.hub.fanout(nodeId))
        return BinaryFactory(service)

    def guest(self, factory, name):
        wire = Wire(factory)
        wire.hello()
        assert wire.request(Op.NICK, name)[0] == OK
        assert wire.request(Op.SET_KEY, publicDer(name))[0] == OK
        wire.name = name
        return wire

    def account(self, factory, name, register=True):
        wire = Wire(factory)
        wire.hello()
        if register:
            status, _ = wire.request(Op.REGISTER, name, "password-" + name, publicDer(name))
        else:
            status, _ = wire.request(Op.LOGIN, name, "password-" + name)
        assert status == OK, status
        wire.name = name
        return wire

    def seal(self, sender, to, recipients, text):
        return e2e.seal(sender, privateKey(sender), to, recipients, text.encode(),
                        ts=int(self.clock.seconds() * 1000))


class PresenceTests(ClusterTestCase):
    """
    Who is online, and in which rooms, as every node sees it.
    """

    def test_usersOnEveryNode(self):
        """
        LIST_USERS on either node names the users of both, and guest names are
        unique across the cluster.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        names = sorted([Wire(self.a).hello(), Wire(self.b).hello()])
        self.assertEqual(names, ["rand2", "rand3"])
        for wire in (alice, bob):
            self.assertEqual(wire.request(Op.LIST_USERS, "")[1][0],
                             ["alice", "bob", "rand2", "rand3"])
        self.assertEqual(bob.request(Op.NICK, "alice")[0], CONFLICT)

    def test_roomAcrossNodes(self):
        """
        A room created on one node is joined from the other; both see each
        other's JOINED and the full member list.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        self.assertEqual(alice.request(Op.JOIN, "#r", "")[0], OK)
        self.assertEqual(bob.request(Op.LIST_ROOMS), (OK, (["#r"],)))
        status, (members,) = bob.request(Op.JOIN, "#r", "")
        self.assertEqual(dict(members), {"alice": publicDer("alice"), "bob": publicDer("bob")})
        self.assertEqual(alice.takeEvents(), [(Op.JOINED, ("#r", "bob", publicDer("bob")))])
        self.assertEqual(alice.request(Op.LIST_USERS, "#r")[1][0], ["alice", "bob"])
        self.assertEqual(bob.request(Op.LEAVE, "#r")[0], OK)
        self.assertEqual(alice.takeEvents(), [(Op.LEFT, ("#r", "bob"))])

    def test_emptiedRoomGoneEverywhere(self):
        """
        A room emptied on one node disappears from every node's list, unless an
        account is remembered in it.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        carol = self.account(self.a, "carol")
        alice.request(Op.JOIN, "#tmp", "")
        carol.request(Op.JOIN, "#kept", "")
        carol.protocol.connectionLost(None)
        self.assertEqual(bob.request(Op.LIST_ROOMS)[1][0], ["#kept", "#tmp"])
        self.assertEqual(alice.request(Op.LEAVE, "#tmp")[0], OK)
        self.assertEqual(bob.request(Op.LIST_ROOMS)[1][0], ["#kept"])
        self.assertEqual(alice.request(Op.LIST_ROOMS)[1][0], ["#kept"])

    def test_nodeGoneLeavesRooms(self):
        """
        When a node leaves the cluster its users leave every room and every list
        on the other nodes.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        alice.request(Op.JOIN, "#r", "")
        bob.request(Op.JOIN, "#r", "")
        alice.takeEvents()
        self.b.service.fanout.stop()
        self.assertEqual(alice.takeEvents(), [(Op.LEFT, ("#r", "bob"))])
        self.assertEqual(alice.request(Op.LIST_USERS, "")[1][0], ["alice"])

    def test_lateNodeLearnsWhoIsThere(self):
        """
        A node that starts after others sees their users and memberships.
        """
        alice = self.guest(self.a, "alice")
        alice.request(Op.JOIN, "#r", "")
        c = self.node("C")
        carol = self.guest(c, "carol")
        self.assertEqual(carol.request(Op.LIST_USERS, "#r")[1][0], ["alice"])
        status, (members,) = carol.request(Op.JOIN, "#r", "")
        self.assertEqual(sorted(dict(members)), ["alice", "carol"])

    def test_accountOnTwoNodes(self):
        """
        An account with sessions on two nodes stays online and in its rooms
        while either session remains; both sessions get the room's messages.
        """
        alice1 = self.account(self.a, "alice")
        alice2 = self.account(self.b, "alice", register=False)
        bob = self.guest(self.a, "bob")
        alice1.request(Op.JOIN, "#r", "")
        self.assertEqual(alice2.takeEvents(), [(Op.JOINED, ("#r", "alice", publicDer("alice")))])
        _, (members,) = bob.request(Op.JOIN, "#r", "")
        blob = self.seal("bob", ("room", "#r"), dict(members), "to both sessions")
        self.assertEqual(bob.request(Op.ROOM_MSG, "#r", blob)[0], OK)
        for wire in (alice1, alice2):
            self.assertEqual(len(wire.takeEvents(Op.ROOM_MSG)), 1)
        alice1.protocol.connectionLost(None)
        self.assertEqual(bob.takeEvents(), [])
        self.assertEqual(bob.request(Op.LIST_USERS, "#r")[1][0], ["alice", "bob"])
        alice2.protocol.connectionLost(None)
        self.assertEqual(bob.takeEvents(), [(Op.LEFT, ("#r", "alice"))])


class MessageTests(ClusterTestCase):
    """
    Messages, direct messages, history and limits across nodes.
    """

    def test_roomMessageAcrossNodes(self):
        """
        A message posted on one node reaches the member on the other, cut to its
        own entry, and HISTORY on either node has it.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        alice.request(Op.JOIN, "#r", "")
        _, (members,) = bob.request(Op.JOIN, "#r", "")
        blob = self.seal("bob", ("room", "#r"), dict(members), "across")
        status, (ts,) = bob.request(Op.ROOM_MSG, "#r", blob)
        self.assertEqual(status, OK)
        [(_, (room, sender, evts, envelope))] = alice.takeEvents(Op.ROOM_MSG)
        self.assertEqual((room, sender, evts), ("#r", "bob", ts))
        self.assertEqual(set(json.loads(envelope)["encrypted_keys"]), {"alice"})
        self.assertEqual(e2e.openEnvelope(envelope, "alice", privateKey("alice"),
                                          publicDer("bob")), b"across")
        [(_, hts, _)] = alice.request(Op.HISTORY, "#r", 0, 0)[1][0]
        self.assertEqual(hts, ts)

    def test_staleRecipientsKnowRemoteMembers(self):
        """
        The key-map check counts members on every node.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        alice.request(Op.JOIN, "#r", "")
        bob.request(Op.JOIN, "#r", "")
        blob = self.seal("alice", ("room", "#r"), {"alice": publicDer("alice")}, "only me")
        status, (listed,) = alice.request(Op.ROOM_MSG, "#r", blob)
        self.assertEqual((status, sorted(dict(listed))), (STALE, ["alice", "bob"]))

    def test_directMessageAcrossNodes(self):
        """
        A DM to a user on another node reaches it.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        self.assertEqual(alice.request(Op.DM, "bob", self.seal("alice", ("user", "bob"), keys,
                                                                 "psst"))[0], OK)
        [(_, (sender, _, envelope))] = bob.takeEvents(Op.DM)
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"psst")

    def test_timestampsIncreaseAcrossNodes(self):
        """
        Messages to one room from two nodes in the same millisecond get strictly
        increasing timestamps.
        """
        alice, bob = self.guest(self.a, "alice"), self.guest(self.b, "bob")
        alice.request(Op.JOIN, "#r", "")
        _, (members,) = bob.request(Op.JOIN, "#r", "")
        stamps = [wire.request(Op.ROOM_MSG, "#r", self.seal(wire.name, ("room", "#r"),
                                                            dict(members), "x"))[1][0]
                  for wire in (alice, bob, alice, bob)]
        self.assertEqual(stamps, sorted(set(stamps)))

    def test_rateLimitAcrossNodes(self):
        """
        One account's message limit counts its sessions on every node.
        """
        alice1 = self.account(self.a, "alice")
        alice2 = self.account(self.b, "alice", register=False)
        self.guest(self.a, "bob")
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        statuses = [wire.request(Op.DM, "bob", self.seal("alice", ("user", "bob"), keys, "m"))[0]
                    for wire in (alice1, alice2, alice1, alice2, alice1, alice2)]
        self.assertEqual(statuses, [OK] * 5 + [RATE])
