"""
Moderation across the nodes of a cluster, on the fake Redis
(L{chatd.test.test_fanout}): the events of L{chatd.core.moderation} pass the
fan-out's strict reader, and a kick or a destroyed room changes what a node
tells the cluster about its users and which room channels it listens to.
"""

from twisted.trial.unittest import TestCase

from chatd.fanout.events import loads
from chatd.protocols.opcodes import Op
from chatd.test.fakes import publicDer
from chatd.test.test_binary import OK
from chatd.test.test_fanout import FakeMode, skip
from chatd.test.test_moderation_doors import WireV2


class ModerationAcrossNodesTests(FakeMode, TestCase):
    """
    alice, an account on node A, owns C{#r}; bob, a version-2 guest on node
    B, is a member.
    """

    skip = skip

    async def setUpRoom(self):
        a, b = await self.node("A"), await self.node("B")
        alice = await self.account(a, "alice")
        self.assertEqual((await self.request(alice, Op.JOIN, "#r", ""))[0], OK)
        bob = WireV2(b)
        self.wires.append(bob)
        self.assertEqual((await self.request(bob, Op.HELLO, 2))[0], OK)
        bob.version = 2
        self.assertEqual((await self.request(bob, Op.NICK, "bob"))[0], OK)
        self.assertEqual((await self.request(bob, Op.SET_KEY, publicDer("bob")))[0], OK)
        await self.seesRoom(bob, "#r")
        self.assertEqual((await self.request(bob, Op.JOIN, "#r", ""))[0], OK)
        await self.events(alice, Op.JOINED)
        return alice, bob

    def entry(self, node, name):
        """
        The entry of C{name} in node C{node}'s user hash in Redis.
        """
        return loads(self.redis.data[3]["chatd:node:%s:users" % (node,)][name])

    def listening(self, room):
        """
        The nodes' subscriber connections that listen to C{room}'s channel.
        """
        channel = "chatd:3:room:" + room
        return [c for c in self.redis.connections if channel in c.channels]

    async def test_topicReachesOtherNode(self):
        """
        A topic set on one node reaches the room's members on another.
        """
        alice, bob = await self.setUpRoom()
        self.assertEqual(await self.request(alice, Op.SET_TOPIC, "#r", "hello"), (OK, ()))
        [(_, topic)] = await self.events(bob, Op.TOPIC)
        self.assertEqual(topic, ("#r", "alice", "hello"))

    async def test_kickAcrossNodes(self):
        """
        A member on another node kicked is out there too: it hears KICKED,
        its node's entry for it no longer lists the room, and that node, with
        no member left in the room, stops listening to it.
        """
        alice, bob = await self.setUpRoom()
        self.assertEqual(self.entry("B", "bob")["rooms"], ["#r"])
        self.assertEqual(len(self.listening("#r")), 2)
        self.assertEqual(await self.request(alice, Op.KICK, "#r", "bob", "bye"), (OK, ()))
        [(_, kicked)] = await self.events(bob, Op.KICKED)
        self.assertEqual(kicked, ("#r", "bob", "alice", 0, "bye"))
        await self.quiet()
        self.assertEqual(self.entry("B", "bob")["rooms"], [])
        self.assertEqual(len(self.listening("#r")), 1)
        self.assertEqual(await self.users(alice, "#r"), ["alice"])

    async def test_destroyAcrossNodes(self):
        """
        A room destroyed on one node is gone on another: its members there
        hear DESTROYED, their entries no longer list it, and nobody listens
        to its channel any more.
        """
        alice, bob = await self.setUpRoom()
        self.assertEqual(await self.request(alice, Op.DESTROY, "#r"), (OK, ()))
        [(_, destroyed)] = await self.events(bob, Op.DESTROYED)
        self.assertEqual(destroyed, ("#r", "alice"))
        await self.quiet()
        self.assertEqual(self.entry("B", "bob")["rooms"], [])
        self.assertEqual(self.listening("#r"), [])
