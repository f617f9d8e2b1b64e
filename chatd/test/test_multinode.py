"""
A real cluster: three C{twistd chatd} processes on one PostgreSQL database
(C{CHATD_TEST_POSTGRES}) and one Redis, with binary-protocol clients on
different nodes.

Skipped unless both C{CHATD_TEST_REDIS} and C{CHATD_TEST_POSTGRES} are set. The
nodes meet in a redis-server of this test's own, on a free loopback port in a
throwaway directory, so that it can be restarted mid-traffic without touching
a shared one; the test needs C{redis-server} on the PATH for that.
"""

import os
import shutil
import time
import uuid

from cryptography.fernet import Fernet
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import SkipTest, TestCase

from chatd import e2e
try:
    from chatd.fanout.redis import BEAT, TTL
except ImportError:  # the redis extra is not installed: the test skips
    BEAT = TTL = None
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.processes import (connectWhenListening, freePort, listening, spawn, spawnChatd,
                                  waitFor)

OK = 0


class Peer(Int32StringReceiver):
    """
    A binary-protocol client: one request at a time is answered in order;
    events are kept in C{self.events} as C{(op, values)}.
    """

    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self):
        self.pending = []
        self.events = []
        self.name = None
        self.lost = defer.Deferred()

    def request(self, op, *values):
        d = defer.Deferred()
        self.pending.append((op, d))
        self.transport.write(opcodes.request(op, *values))
        return d

    def stringReceived(self, body):
        op, payload = opcodes.parseBody(body)
        if op == Op.RESPONSE:
            request, d = self.pending.pop(0)
            d.callback(opcodes.decodeResponse(request, payload))
        else:
            self.events.append((op, opcodes.decodeEvent(op, payload)))

    def connectionLost(self, reason):
        for _, d in self.pending:
            d.errback(reason)
        self.pending = []
        self.lost.callback(None)

    def take(self, op):
        taken = [values for o, values in self.events if o == op]
        self.events = [e for e in self.events if e[0] != op]
        return taken

    async def call(self, op, *values):
        status, result = await self.request(op, *values)
        if status != OK:
            raise AssertionError("%s %r: status %d %r" % (self.name, op, status, result))
        return result

    async def guest(self, name):
        await self.call(Op.HELLO)
        await self.call(Op.NICK, name)
        await self.call(Op.SET_KEY, publicDer(name))
        self.name = name
        return self

    def seal(self, to, recipients, text):
        return e2e.seal(self.name, privateKey(self.name), to, recipients, text.encode(),
                        ts=int(time.time() * 1000))


class Cluster:
    """
    A redis-server and chatd nodes, each a child process, in one directory.
    """

    def __init__(self, workdir, database):
        self.workdir = workdir
        self.database = database
        self.redisPort = freePort()
        self.redis = None
        self.nodes = {}
        self.keyFile = os.path.join(workdir, "at-rest.key")
        with open(os.open(self.keyFile, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(Fernet.generate_key() + b"\n")

    async def startRedis(self):
        self.redis = spawn("redis", [
            shutil.which("redis-server"), "--port", str(self.redisPort), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.workdir], self.workdir)
        await listening(self.redisPort, self.redis, 10)

    async def restartRedis(self):
        await self.redis.signal("TERM")
        await self.startRedis()

    async def startNode(self, name, *extra):
        port = freePort()
        data = os.path.join(self.workdir, name)
        child = spawnChatd(
            name, self.workdir, "--data-dir", data,
            "--binary", "tcp:%d:interface=127.0.0.1" % (port,), "--text", "none", "--web", "none",
            "--db", self.database, "--redis", "redis://127.0.0.1:%d/0" % (self.redisPort,),
            "--key-file", self.keyFile, "--rate-limit", "100000/1", "--bcrypt-cost", "4",
            *extra)
        child.port = port
        self.nodes[name] = child
        await listening(port, child)
        return child

    async def stop(self):
        for child in list(self.nodes.values()):
            await child.signal("TERM")
        if self.redis is not None:
            await self.redis.signal("TERM")

    def logs(self):
        return "\n".join("---- %s\n%s" % (name, child.output.decode(errors="replace")[-4000:])
                         for name, child in self.nodes.items())


class MultiNodeTests(TestCase):
    """
    Three nodes, a room and direct messages across them, a node killed, and
    Redis restarted mid-traffic.
    """

    timeout = 180

    def setUp(self):
        database = os.environ.get("CHATD_TEST_POSTGRES")
        if not (os.environ.get("CHATD_TEST_REDIS") and database):
            raise SkipTest("needs CHATD_TEST_REDIS and CHATD_TEST_POSTGRES")
        if TTL is None:
            raise SkipTest("the Redis fan-out needs txredisapi")
        if not shutil.which("redis-server"):
            raise SkipTest("needs redis-server on the PATH for a Redis of its own")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.cluster = Cluster(workdir, database)
        self.peers = []
        self.addCleanup(self.cluster.stop)
        self.addCleanup(self.disconnect)

    async def disconnect(self):
        for peer in self.peers:
            if peer.transport.connected:
                peer.transport.loseConnection()
                await peer.lost

    async def peer(self, node, name):
        child = self.cluster.nodes[node]
        peer = await connectWhenListening(TCP4ClientEndpoint(reactor, "127.0.0.1", child.port),
                                          Peer, child)
        self.peers.append(peer)
        return await peer.guest(name)

    async def test_cluster(self):
        """
        Clients on three nodes see one list of users and rooms, chat in a room
        and by DM; with Redis restarted mid-traffic every acknowledged room
        message still reaches every member once; a node killed with SIGKILL
        leaves the others' lists within the heartbeat bound.
        """
        cluster = self.cluster
        await cluster.startRedis()
        for node in ("n1", "n2", "n3"):
            await cluster.startNode(node)
        try:
            await self.scenario()
        except BaseException:
            print(cluster.logs())
            raise
        if os.environ.get("CHATD_TEST_SHOW_LOGS"):
            print(cluster.logs())

    async def scenario(self):
        cluster = self.cluster
        tag = uuid.uuid4().hex[:6]
        alice, bob, carol = [await self.peer(node, "%s%s" % (name, tag)) for node, name in
                             (("n1", "alice"), ("n2", "bob"), ("n3", "carol"))]
        everyone = sorted(p.name for p in (alice, bob, carol))

        async def listsAgree(room=""):
            for peer in (alice, bob, carol):
                (names,) = await peer.call(Op.LIST_USERS, room)
                if not set(everyone) <= set(names):
                    return False
            return True
        await waitFor(listsAgree, 15, "every node to list every user")

        room = "#m" + tag
        await alice.call(Op.JOIN, room, "")

        async def roomKnown(peer):
            return room in (await peer.call(Op.LIST_ROOMS))[0]
        for peer in (bob, carol):
            await waitFor(lambda peer=peer: roomKnown(peer), 10, "the room to reach " + peer.name)
            await peer.call(Op.JOIN, room, "")
        await waitFor(lambda: listsAgree(room), 10, "every node to list the room's members")
        (members,) = await alice.call(Op.GET_KEYS, 0, room)
        members = dict(members)
        self.assertEqual(sorted(members), everyone)

        (ts,) = await bob.call(Op.ROOM_MSG, room, bob.seal(("room", room), members, "hello"))
        for peer in (alice, carol):
            await waitFor(lambda peer=peer: peer.events and any(
                e[0] == Op.ROOM_MSG for e in peer.events), 10, "the message at " + peer.name)
            [(_, sender, got, envelope)] = peer.take(Op.ROOM_MSG)
            self.assertEqual((sender, got), (bob.name, ts))
            self.assertEqual(e2e.openEnvelope(envelope, peer.name, privateKey(peer.name),
                                              publicDer(bob.name)), b"hello")
        pair = {alice.name: publicDer(alice.name), carol.name: publicDer(carol.name)}
        await alice.call(Op.DM, carol.name, alice.seal(("user", carol.name), pair, "psst"))
        await waitFor(lambda: any(e[0] == Op.DM for e in carol.events), 10, "the DM")
        [(sender, _, envelope)] = carol.take(Op.DM)
        self.assertEqual(e2e.openEnvelope(envelope, carol.name, privateKey(carol.name),
                                          publicDer(alice.name)), b"psst")

        # Redis restarts while bob keeps posting: what was acknowledged arrives,
        # once, at alice (n1) and carol (n3).
        acked = []
        for number in range(40):
            if number == 10:
                await cluster.restartRedis()
            try:
                status, result = await bob.request(
                    Op.ROOM_MSG, room, bob.seal(("room", room), members, "m%d" % (number,)))
            except Exception:
                status = None
            if status == OK:
                acked.append(result[0])
            await task.deferLater(reactor, 0.05)
        self.assertGreater(len(acked), 20)

        def received(peer):
            return [e[1][2] for e in peer.events if e[0] == Op.ROOM_MSG]
        for peer in (alice, carol):
            await waitFor(lambda peer=peer: set(acked) <= set(received(peer)), 30,
                          "every acknowledged message at " + peer.name)
        await task.deferLater(reactor, 2)
        for peer in (alice, carol):
            stamps = received(peer)
            self.assertEqual(len(stamps), len(set(stamps)), "a message delivered twice")
        await waitFor(lambda: listsAgree(room), 20, "the lists to agree after the restart")

        # n3 is killed: carol leaves the others' lists within TTL + BEAT.
        killed = time.monotonic()
        await cluster.nodes["n3"].signal("KILL")
        del cluster.nodes["n3"]

        async def carolGone():
            for peer in (alice, bob):
                (names,) = await peer.call(Op.LIST_USERS, "")
                (inRoom,) = await peer.call(Op.LIST_USERS, room)
                if carol.name in names or carol.name in inRoom:
                    return False
            return True
        await waitFor(carolGone, TTL + BEAT + 5, "carol to leave the lists", interval=0.25)
        self.assertLessEqual(time.monotonic() - killed, TTL + BEAT + 2)
        self.assertIn((room, carol.name), alice.take(Op.LEFT))
        for name in ("n1", "n2"):
            self.assertNotIn(b"Traceback", cluster.nodes[name].output, name)
