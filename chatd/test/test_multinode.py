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
import urllib.parse
import uuid
from typing import List, Optional, Tuple

from cryptography.fernet import Fernet
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import FailTest, SkipTest, TestCase

from chatd import e2e

try:
    from chatd.fanout.redis import BEAT, TTL
except ImportError as e:  # the redis extra is not installed: the test skips
    noFanout: Optional[str] = "the Redis fan-out needs txredisapi: %s" % (e,)
else:
    noFanout = None
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.processes import (
    Child,
    connectWhenListening,
    freePort,
    listening,
    spawn,
    spawnChatd,
    waitFor,
)

OK = 0


class Peer(Int32StringReceiver):
    """
    A binary-protocol client: one request at a time is answered in order;
    events are kept in C{self.events} as C{(op, values)}.
    """

    MAX_LENGTH = 16 * 1024 * 1024

    transport: ITransport

    def __init__(self):
        self.pending = []
        self.events = []
        self.name = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    def request(self, op, *values):
        d: defer.Deferred[Tuple[int, tuple]] = defer.Deferred()
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

    def connectionLost(self, reason=connectionDone):
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

    async def account(self, name, register):
        await self.call(Op.HELLO)
        if register:
            await self.call(Op.REGISTER, name, "password-" + name, publicDer(name))
        else:
            await self.call(Op.LOGIN, name, "password-" + name)
        self.name = name
        return self

    def delivered(self):
        """
        The envelope ids of the room messages this peer received, in order.
        """
        return [e2e.Envelope.parse(values[3]).id for op, values in self.events
                if op == Op.ROOM_MSG]

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
        self.redis: Optional[Child] = None
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
        await self.stopRedis()
        await self.startRedis()

    async def stopRedis(self):
        assert self.redis is not None, "Redis was never started"
        await self.redis.signal("TERM")

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
    Redis restarted mid-traffic; two nodes posting through Redis outages.
    """

    timeout = 180

    def setUp(self):
        database = os.environ.get("CHATD_TEST_POSTGRES")
        if not (os.environ.get("CHATD_TEST_REDIS") and database):
            raise SkipTest("needs CHATD_TEST_REDIS and CHATD_TEST_POSTGRES")
        if noFanout:
            raise SkipTest(noFanout)
        if not shutil.which("redis-server"):
            raise SkipTest("needs redis-server on the PATH for a Redis of its own")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.cluster = Cluster(workdir, self.ownSchema(database))
        self.peers = []
        self.addCleanup(self.cluster.stop)
        self.addCleanup(self.disconnect)

    def ownSchema(self, database):
        """
        A schema of this test's own in the database, dropped when it ends: each
        test's cluster has an at-rest key of its own, which cannot open another
        test's messages.

        @return: the database URL, naming the schema first on the search path.
        """
        import psycopg
        schema = "chatd_multinode_%s" % (uuid.uuid4().hex,)
        admin = psycopg.connect(database, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute("CREATE SCHEMA %s" % (schema,))
        self.addCleanup(admin.execute, "DROP SCHEMA %s CASCADE" % (schema,))
        separator = "&" if "?" in database else "?"
        return database + separator + "options=" + urllib.parse.quote(
            "-c search_path=" + schema)

    async def disconnect(self):
        for peer in self.peers:
            if peer.transport.connected:
                peer.transport.loseConnection()
                await peer.lost

    async def peer(self, node, name, account=None):
        """
        A guest named C{name} on C{node}; with C{account}, that account instead,
        registered when C{account} is C{"register"} and logged in otherwise.
        """
        child = self.cluster.nodes[node]
        peer = await connectWhenListening(TCP4ClientEndpoint(reactor, "127.0.0.1", child.port),
                                          Peer, child)
        self.peers.append(peer)
        if account is not None:
            return await peer.account(name, account == "register")
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

    async def test_outages(self):
        """
        One account posting from both nodes, and a guest on each, keep posting
        through two Redis outages: every acknowledged message has a timestamp
        of its own, HISTORY pages of 1, 50 and 500 give each exactly once, and
        each is delivered live exactly once to every member on either node.
        """
        cluster = self.cluster
        await cluster.startRedis()
        for node in ("n1", "n2"):
            # The peers stay silent while waiting for deliveries.
            await cluster.startNode(node, "--idle-warning", "600", "--idle-timeout", "900")
        try:
            await self.outages()
        except BaseException:
            print(cluster.logs())
            raise

    async def outages(self):
        cluster = self.cluster
        tag = uuid.uuid4().hex[:6]
        dave1 = await self.peer("n1", "dave" + tag, "register")
        dave2 = await self.peer("n2", "dave" + tag, "login")
        erin = await self.peer("n1", "erin" + tag)
        frank = await self.peer("n2", "frank" + tag)
        reader1 = await self.peer("n1", "rita" + tag)
        reader2 = await self.peer("n2", "rob" + tag)
        peers = [dave1, dave2, erin, frank, reader1, reader2]
        room = "#o" + tag
        await dave1.call(Op.JOIN, room, "")

        async def everyoneIn():
            # Each node, since the keys are read on n1 and the last JOIN is on n2.
            for dave in (dave1, dave2):
                (names,) = await dave.call(Op.LIST_USERS, room)
                if len(names) != 5:  # dave counts once
                    return False
            return True
        async def roomKnown(peer):
            return room in (await peer.call(Op.LIST_ROOMS))[0]
        for peer in peers[2:]:  # dave2 is dave1's account, in the room already
            await waitFor(lambda peer=peer: roomKnown(peer), 10, "the room to reach " + peer.name)
            await peer.call(Op.JOIN, room, "")
        await waitFor(everyoneIn, 10, "both nodes to list the room's members")
        (members,) = await dave1.call(Op.GET_KEYS, 0, room)
        members = dict(members)
        for peer in peers:
            peer.events.clear()

        sent = {}  # envelope id -> the session that sent it
        stamps = {}  # envelope id -> its acknowledged timestamp

        async def burst(count):
            requests = []
            for number in range(count):
                for peer in (dave1, dave2, erin, frank):
                    envelope = peer.seal(("room", room), members, "m%d" % (number,))
                    envelopeId = e2e.Envelope.parse(envelope).id
                    sent[envelopeId] = peer
                    requests.append((envelopeId, peer.request(Op.ROOM_MSG, room, envelope)))
            for envelopeId, request in requests:
                try:
                    status, result = await request
                except Exception:
                    continue
                if status == OK:
                    stamps[envelopeId] = result[0]

        for _ in range(2):
            await burst(20)
            await cluster.stopRedis()
            await task.deferLater(reactor, 0.5)
            await burst(60)
            await cluster.startRedis()
            await task.deferLater(reactor, 1)
        await burst(20)
        self.assertGreater(len(stamps), 500)

        def missing(peer):
            expected = {i for i, sender in sent.items() if i in stamps and sender is not peer}
            return expected - set(peer.delivered())
        try:
            await waitFor(lambda: not any(missing(peer) for peer in peers), 30,
                          "every acknowledged message at every member")
        except FailTest:
            pass
        await task.deferLater(reactor, 2)
        faults = ["%d of %d acknowledged messages never delivered to %s"
                  % (len(missing(peer)), len(stamps), peer.name) for peer in peers
                  if missing(peer)]

        shared = len(stamps) - len(set(stamps.values()))
        if shared:
            faults.append("%d of %d messages shared a timestamp" % (shared, len(stamps)))
        for peer in peers:
            got = peer.delivered()
            if len(got) != len(set(got)):
                faults.append("%d messages delivered twice to %s"
                              % (len(got) - len(set(got)), peer.name))
        for size in (1, 50, 500):
            pages: List[list] = []
            before = 0
            while True:
                (rows,) = await reader2.call(Op.HISTORY, room, size, before)
                pages.extend(e2e.Envelope.parse(envelope).id for _, _, envelope in rows)
                if len(rows) < size:
                    break
                before = rows[0][1]
            if len(pages) != len(set(pages)):
                faults.append("paging at size %d gave %d messages twice"
                              % (size, len(pages) - len(set(pages))))
            if set(stamps) - set(pages):
                faults.append("paging at size %d skipped %d of %d"
                              % (size, len(set(stamps) - set(pages)), len(stamps)))
        self.assertEqual(faults, [])
