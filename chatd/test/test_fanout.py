"""
Tests for L{chatd.fanout.redis.RedisFanout}: nodes on one store meeting in an
in-memory fake Redis over fake transports (no network; the clock is a L{Clock}),
and the same scenarios against a real redis-server when C{CHATD_TEST_REDIS}
names one (C{redis://127.0.0.1:6390/15}; the tests empty that database).

The fake speaks RESP for the commands the fan-out sends. Redis runs Lua; the
fake cannot, so it runs a Python twin of each of the fan-out's scripts, found by
the script's text: the real-Redis tests are what check the Lua itself.
"""

import hashlib
import json
import os
from typing import Any, Awaitable, Callable, Dict, List, Optional

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatd import e2e
from chatd.interfaces import IFanout
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.test.fakes import makeService, privateKey, publicDer, testKeys
from chatd.test.mixin import TestCaseMixin
from chatd.test.test_binary import CONFLICT, FORBIDDEN, OK, RATE, STALE, Wire

try:
    from chatd.fanout import limits
    from chatd.fanout.connections import CommandProtocol, SubscriberProtocol
    from chatd.fanout.events import decodeValue, dumps, encodeValue, loads
    from chatd.fanout.redis import RedisFanout
    from chatd.fanout.scripts import BEAT_SCRIPT, RESERVE_SCRIPT, TIMESTAMP_SCRIPT
except ImportError as e:  # the redis extra is not installed
    skip: Optional[str] = "the Redis fan-out needs txredisapi: %s" % (e,)
else:
    skip = None

REAL_REDIS = os.environ.get("CHATD_TEST_REDIS")

# Seconds within which a dropped connection is surely back: retries wait up to
# 5 s plus up to 1 s of jitter, and a node may then wait for subscribers.
RECONNECTED = 12


# -- a fake Redis ------------------------------------------------------------


class _Status(str):
    """
    A simple-string reply (C{+OK}).
    """


class _Error(str):
    """
    An error reply (C{-ERR ...}).
    """


def _encode(value):
    if value is None or value is False:
        return b"$-1\r\n"
    if isinstance(value, _Error):
        return b"-" + value.encode() + b"\r\n"
    if isinstance(value, _Status):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, bool) or isinstance(value, int):
        return b":%d\r\n" % (int(value),)
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % (len(value),) + b"".join(_encode(v) for v in value)
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _parseCommand(buffer):
    """
    One RESP command (an array of bulk strings) from the front of C{buffer}.

    @return: C{(args, rest)}, or L{None} when the command is not all there.
    """
    if not buffer.startswith(b"*"):
        raise ValueError("not a RESP array: %r" % (buffer[:20],))
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    count, position, args = int(buffer[1:end]), end + 2, []
    for _ in range(count):
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return None
        size = int(buffer[position + 1:end])
        start = end + 2
        if len(buffer) < start + size + 2:
            return None
        args.append(buffer[start:start + size].decode())
        position = start + size + 2
    return args, buffer[position:]


class FakeRedis:
    """
    The data of an in-memory Redis and the connections to it, timed by a clock.
    """

    def __init__(self, clock):
        self.clock = clock
        self.data = {}
        self.expiry = {}
        self.scripts = {}
        self.connections = []
        self.pumps = []
        self.down = False
        self.commands = []
        self.twins = {
            RESERVE_SCRIPT: self._reserve,
            TIMESTAMP_SCRIPT: self._timestamp,
            BEAT_SCRIPT: self._beat,
        }

    # data with expiry

    def _db(self, connection):
        return self.data.setdefault(connection.db, {})

    def _alive(self, db, key):
        deadline = self.expiry.get((id(db), key))
        if deadline is not None and deadline <= self.clock.seconds():
            db.pop(key, None)
            del self.expiry[(id(db), key)]
        return key in db

    def get(self, db, key, default=None):
        return db[key] if self._alive(db, key) else default

    def put(self, db, key, value):
        db[key] = value
        self.expiry.pop((id(db), key), None)

    def expire(self, db, key, milliseconds):
        if not self._alive(db, key):
            return 0
        self.expiry[(id(db), key)] = self.clock.seconds() + int(milliseconds) / 1000
        return 1

    def delete(self, db, key):
        existed = self._alive(db, key)
        db.pop(key, None)
        self.expiry.pop((id(db), key), None)
        return int(existed)

    # commands

    def run(self, connection, args):
        name = args[0].upper()
        self.commands.append(name)
        if connection.channels and name not in ("SUBSCRIBE", "UNSUBSCRIBE", "PING"):
            return _Error("ERR only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT allowed")
        handler = getattr(self, "cmd_" + name, None)
        if handler is None:
            return _Error("ERR unknown command '%s'" % (name,))
        return handler(connection, self._db(connection), *args[1:])

    def cmd_SELECT(self, connection, db, index):
        connection.db = int(index)
        return _Status("OK")

    def cmd_AUTH(self, connection, db, *args):
        return _Status("OK")

    def cmd_PING(self, connection, db):
        return ["pong", ""] if connection.channels else _Status("PONG")

    def cmd_SUBSCRIBE(self, connection, db, *channels):
        replies = []
        for channel in channels:
            connection.channels.add(channel)
            replies.append(["subscribe", channel, len(connection.channels)])
        return _Many(replies)

    def cmd_UNSUBSCRIBE(self, connection, db, *channels):
        replies = []
        for channel in channels:
            connection.channels.discard(channel)
            replies.append(["unsubscribe", channel, len(connection.channels)])
        return _Many(replies)

    def cmd_PUBSUB(self, connection, db, subcommand, *channels):
        return [part for channel in channels
                for part in (channel, sum(channel in c.channels for c in self.connections))]

    def cmd_PUBLISH(self, connection, db, channel, message):
        receivers = [c for c in self.connections if channel in c.channels]
        for receiver in receivers:
            receiver.transport.write(_encode(["message", channel, message]))
        return len(receivers)

    def cmd_SET(self, connection, db, key, value, *options):
        self.put(db, key, value)
        if options and options[0].upper() == "PX":
            self.expire(db, key, options[1])
        return _Status("OK")

    def cmd_GET(self, connection, db, key):
        return self.get(db, key)

    def cmd_DEL(self, connection, db, *keys):
        return sum(self.delete(db, key) for key in keys)

    def cmd_EXISTS(self, connection, db, key):
        return int(self._alive(db, key))

    def cmd_PEXPIRE(self, connection, db, key, milliseconds):
        return self.expire(db, key, milliseconds)

    def cmd_HSET(self, connection, db, key, *pairs):
        table = self.get(db, key)
        if table is None:
            table = {}
            self.put(db, key, table)
        added = 0
        for field, value in zip(pairs[::2], pairs[1::2]):
            added += field not in table
            table[field] = value
        return added

    def cmd_HDEL(self, connection, db, key, *fields):
        table = self.get(db, key, {})
        removed = sum(1 for field in fields if table.pop(field, None) is not None)
        if not table:
            self.delete(db, key)
        return removed

    def cmd_HGETALL(self, connection, db, key):
        return [part for item in sorted(self.get(db, key, {}).items()) for part in item]

    def cmd_SADD(self, connection, db, key, *members):
        members_ = self.get(db, key)
        if members_ is None:
            members_ = set()
            self.put(db, key, members_)
        before = len(members_)
        members_.update(members)
        return len(members_) - before

    def cmd_SREM(self, connection, db, key, *members):
        members_ = self.get(db, key, set())
        before = len(members_)
        members_.difference_update(members)
        return before - len(members_)

    def cmd_SMEMBERS(self, connection, db, key):
        return sorted(self.get(db, key, set()))

    def cmd_ZREM(self, connection, db, key, *members):
        events = self.get(db, key, {})
        return sum(1 for member in members if events.pop(member, None) is not None)

    def cmd_ZADD(self, connection, db, key, score, member):
        members = self.get(db, key)
        if members is None:
            members = {}
            self.put(db, key, members)
        added = member not in members
        members[member] = float(score)
        return int(added)

    @staticmethod
    def _bound(text):
        if text in ("-inf", "+inf"):
            return float(text), False
        if text.startswith("("):
            return float(text[1:]), True
        return float(text), False

    def _inRange(self, score, low, high):
        (low, lowOpen), (high, highOpen) = self._bound(low), self._bound(high)
        return (low < score if lowOpen else low <= score) and (
            score < high if highOpen else score <= high)

    def cmd_ZRANGEBYSCORE(self, connection, db, key, low, high):
        members = self.get(db, key, {})
        return [member for member, score in sorted(members.items(), key=lambda i: i[1])
                if self._inRange(score, low, high)]

    def cmd_ZREMRANGEBYSCORE(self, connection, db, key, low, high):
        members = self.get(db, key, {})
        gone = [member for member, score in members.items() if self._inRange(score, low, high)]
        for member in gone:
            del members[member]
        return len(gone)

    def cmd_INCRBY(self, connection, db, key, amount):
        value = int(self.get(db, key, "0")) + int(amount)
        self.put(db, key, str(value))
        return value

    def cmd_EVAL(self, connection, db, script, count, *rest):
        sha = hashlib.sha1(script.encode()).hexdigest()
        self.scripts[sha] = script
        return self.cmd_EVALSHA(connection, db, sha, count, *rest)

    def cmd_EVALSHA(self, connection, db, sha, count, *rest):
        script = self.scripts.get(sha)
        if script is None:
            return _Error("NOSCRIPT No matching script. Please use EVAL.")
        count = int(count)
        return self.twins[script](db, list(rest[:count]), list(rest[count:]))

    # the fan-out's scripts, in Python

    def _reserve(self, db, keys, args):
        now, width, limit, member = float(args[0]), float(args[1]), int(args[2]), args[3]
        events = self.get(db, keys[0], {})
        for name in [m for m, score in events.items() if score <= now - width]:
            del events[name]
        if limit and len(events) >= limit:
            return [0, "%.3f" % (min(events.values()) + width - now)]
        count = len(events)
        events[member] = now
        self.put(db, keys[0], events)
        self.expire(db, keys[0], width)
        return [1, count]

    def _timestamp(self, db, keys, args):
        stored = int(self.get(db, keys[0], "0"))
        ts = max(int(args[0]), int(args[1]) + 1, stored + 1)
        self.put(db, keys[0], str(ts))
        self.expire(db, keys[0], args[2])
        return str(ts)

    def _beat(self, db, keys, args):
        existed = int(self._alive(db, keys[1]))
        self.put(db, keys[1], args[0])
        self.expire(db, keys[1], args[1])
        self.expire(db, keys[2], args[3])
        self.cmd_SADD(None, db, keys[0], args[0])
        result = [existed]
        for node in sorted(self.get(db, keys[0], set())):
            if self._alive(db, args[2] + node):
                result.append(node)
            else:
                self.get(db, keys[0]).discard(node)
                self.delete(db, args[2] + node + ":users")
        return result

    # failures

    def restart(self, down=True):
        """
        Drop every connection and lose every key, as a restarted Redis without
        persistence does; with C{down}, refuse connections until L{up}.
        """
        self.data.clear()
        self.expiry.clear()
        self.scripts.clear()
        self.down = down
        for connection in list(self.connections):
            connection.transport.loseConnection()

    def up(self):
        self.down = False


NO_REPLY = object()


class _Many(list):
    """
    Several replies to one command (SUBSCRIBE with several channels).
    """


class FakeRedisProtocol:
    """
    The server end of one connection to a L{FakeRedis}.
    """

    def __init__(self, redis):
        self.redis = redis
        self.db = 0
        self.channels = set()
        self.buffer = b""

    def makeConnection(self, transport):
        self.transport = transport
        self.redis.connections.append(self)

    def dataReceived(self, data):
        self.buffer += data
        while self.buffer:
            parsed = _parseCommand(self.buffer)
            if parsed is None:
                return
            args, self.buffer = parsed
            reply = self.redis.run(self, args)
            if reply is NO_REPLY or self.transport.disconnecting:
                return
            if isinstance(reply, _Many):
                self.transport.write(b"".join(_encode(r) for r in reply))
            else:
                self.transport.write(_encode(reply))

    def connectionLost(self, reason):
        if self in self.redis.connections:
            self.redis.connections.remove(self)


@implementer(IStreamClientEndpoint)
class FakeRedisEndpoint:
    """
    Connects a client factory to a L{FakeRedis} over L{iosim} transports.
    """

    def __init__(self, redis):
        self.redis = redis
        self.down = False
        self.pumps = []

    def connect(self, factory):
        if self.redis.down or self.down:
            return fail(ConnectionRefusedError())
        client = factory.buildProtocol(None)
        server = FakeRedisProtocol(self.redis)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client), greet=False, clock=self.redis.clock)
        self.redis.pumps.append(pump)
        self.pumps.append(pump)
        return succeed(client)

    def cut(self, down=True):
        """
        Drop this client's connections (the network between it and Redis
        failed); with C{down}, refuse new ones until C{self.down} is cleared.
        """
        self.down = down
        for pump in self.pumps:
            pump.clientIO.loseConnection()

    def commandPump(self):
        """
        The pump of the live command connection.
        """
        for pump in reversed(self.pumps):
            protocol = getattr(pump.client, "_protocol", pump.client)
            if isinstance(protocol, CommandProtocol) and not pump.clientIO.disconnected:
                return pump


def flush(redis):
    """
    Move every byte between the fake Redis and its clients, and run what the
    clock has due now, until nothing moves.
    """
    for _ in range(10000):
        moved = False
        for pump in list(redis.pumps):
            if pump.pump(advanceClock=False):
                moved = True
            if pump.clientIO.disconnected and pump.serverIO.disconnected:
                redis.pumps.remove(pump)
        redis.clock.advance(0)
        if not moved:
            return
    raise AssertionError("the fake Redis never settled")


# -- running nodes -----------------------------------------------------------


class _Nodes(TestCaseMixin):
    """
    Nodes on one L{MemoryStore} meeting in one Redis, with binary clients over
    L{StringTransport}s; the mode (fake or real Redis) says how to wait.

    The mode provides C{url} and C{clock}, C{endpoint()} (where nodes connect,
    or L{None} for the URL's address), and the waits: C{wait(d)} for a
    L{Deferred}, C{until(condition)}, C{quiet()} until nothing moves, and
    C{advance(seconds)}.
    """

    ttl, beat = 10.0, 3.0
    # Settings of every node's core, over the defaults.
    nodeSettings: Dict[str, Any] = {}
    url: str
    clock: Any
    endpoint: Callable[[], Optional[IStreamClientEndpoint]]
    wait: Callable[..., Awaitable[Any]]
    until: Callable[..., Awaitable[None]]
    quiet: Callable[[], Awaitable[None]]
    advance: Callable[..., Awaitable[None]]

    def setUp(self):
        self.store = MemoryStore(testKeys())
        self.wires = []
        self.services = []
        self.endpoints = {}

    async def node(self, nodeId):
        endpoint = self.endpoint()
        self.endpoints[nodeId] = endpoint
        fanout = RedisFanout(self.url, self.clock, nodeId, endpoint=endpoint,
                             ttl=self.ttl, beat=self.beat)
        service = makeService(store=self.store, clock=self.clock, fanout=fanout,
                              **self.nodeSettings)
        self.services.append(service)
        await self.wait(service.whenReady())
        return BinaryFactory(service)

    async def tearDownNodes(self):
        for wire in self.wires:
            if wire.protocol.transport.connected:
                wire.protocol.connectionLost(Failure(ConnectionDone()))
        for service in self.services:
            if service.running:
                await self.wait(service.stopService())

    def connect(self, factory):
        wire = Wire(factory)
        self.wires.append(wire)
        return wire

    async def request(self, wire, op, *values):
        """
        Send one request and wait for its one response C{(status, values)}.
        """
        wire.send(op, *values)
        got: List[Any] = []

        def answered():
            got.extend(wire.responses(op))
            return got
        await self.until(answered)
        self.assertEqual(len(got), 1, got)
        return got[0]

    async def hello(self, factory):
        wire = self.connect(factory)
        status, (name,) = await self.request(wire, Op.HELLO)
        self.assertEqual(status, OK)
        wire.name = name
        return wire

    async def guest(self, factory, name):
        wire = await self.hello(factory)
        self.assertEqual((await self.request(wire, Op.NICK, name))[0], OK)
        self.assertEqual((await self.request(wire, Op.SET_KEY, publicDer(name)))[0], OK)
        wire.name = name
        return wire

    async def account(self, factory, name, register=True):
        wire = await self.hello(factory)
        if register:
            status, _ = await self.request(wire, Op.REGISTER, name, "password-" + name,
                                           publicDer(name))
        else:
            status, _ = await self.request(wire, Op.LOGIN, name, "password-" + name)
        self.assertEqual(status, OK)
        wire.name = name
        return wire

    async def events(self, wire, op, count=1):
        """
        Wait for C{count} events C{op} at C{wire}, and take them.
        """
        await self.until(lambda: len([e for e in self._pending(wire) if e[0] == op]) >= count)
        return wire.takeEvents(op)

    def _pending(self, wire):
        wire.takeEvents(-1)
        return wire.events

    async def seesRoom(self, wire, room):
        """
        Wait until C{wire}'s node knows C{room} and a member of it: a room made
        on another node reaches this one through Redis, and joining it before
        would create it a second time (refused by the shared store); its
        creator's join is a later event, and joining before that one arrives
        would answer without the creator.
        """
        for _ in range(1000):
            status, (rooms,) = await self.request(wire, Op.LIST_ROOMS)
            if room in rooms and (await self.request(wire, Op.LIST_USERS, room))[1][0]:
                return
            await self.advance(0.01)
        self.fail("%s never saw %s" % (wire.name, room))

    async def users(self, wire, room=""):
        status, (names,) = await self.request(wire, Op.LIST_USERS, room)
        self.assertEqual(status, OK)
        return names

    def seal(self, sender, to, recipients, text):
        return e2e.seal(sender, privateKey(sender), to, recipients, text.encode(),
                        ts=int(self.clock.seconds() * 1000))

    def kill(self, factory):
        """
        Make a node fall silent as a SIGKILL would: no goodbye, no more beats,
        its connections dropped (its heartbeat key stays until it expires).
        """
        fanout = factory.service.fanout
        fanout.beating.stop()
        fanout.connections.stop()


class FakeMode(_Nodes):
    """
    A L{FakeRedis} and a L{Clock}: everything happens when flushed.
    """

    url = "redis://fake.invalid:6379/3"

    def setUp(self):
        _Nodes.setUp(self)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.redis = FakeRedis(self.clock)
        self.addCleanup(self.tearDownNodes)

    def endpoint(self):
        return FakeRedisEndpoint(self.redis)

    def wait(self, d):
        flush(self.redis)
        return d

    def until(self, condition):
        flush(self.redis)
        if not condition():
            self.fail("never happened: %r" % (condition,))
        return succeed(None)

    def quiet(self):
        flush(self.redis)
        return succeed(None)

    def advance(self, seconds, step=0.1):
        """
        Let C{seconds} pass on the clock, flushing as it goes.
        """
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            flush(self.redis)
        return succeed(None)


class RealMode(_Nodes):
    """
    The real reactor and the Redis C{CHATD_TEST_REDIS} names; waiting is
    polling, bounded.
    """

    ttl, beat = 2.0, 0.5
    timeout = 60

    def setUp(self):
        if not REAL_REDIS:
            raise SkipTest("CHATD_TEST_REDIS names no Redis to test against")
        _Nodes.setUp(self)
        self.url = REAL_REDIS
        self.clock = globalReactor
        self.addCleanup(self.tearDownNodes)
        return flushReal(self.url)

    def endpoint(self):
        return None

    async def wait(self, d, seconds=15):
        return await d.addTimeout(seconds, globalReactor)

    async def until(self, condition, seconds=10):
        for _ in range(int(seconds / 0.01)):
            if condition():
                return
            await deferLater(globalReactor, 0.01)
        self.fail("never happened: %r" % (condition,))

    async def quiet(self):
        await deferLater(globalReactor, 0.3)

    async def advance(self, seconds):
        await deferLater(globalReactor, seconds)


async def flushReal(url):
    """
    Empty the database of a real Redis, so that every test starts alone.
    """
    import txredisapi

    from chatd.redisurl import redisAddress
    host, port, db, password = redisAddress(url)
    connection = await txredisapi.Connection(host, port, dbid=db, password=password,
                                             reconnect=False)
    try:
        await connection.execute_command("FLUSHDB")
    finally:
        await connection.disconnect()


# -- what every cluster must do (after test_cluster.py) -----------------------


class Scenarios(_Nodes):
    """
    The cross-node scenarios of L{chatd.test.test_cluster}, through Redis.
    """

    async def test_usersOnEveryNode(self):
        """
        LIST_USERS on either node names the users of both, guest names are
        unique across the cluster, and a name taken on one node is taken on
        the other.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        guests = [await self.hello(a), await self.hello(b)]
        names = [g.name for g in guests]
        self.assertEqual(len(set(names)), 2)
        await self.quiet()
        for wire in (alice, bob):
            self.assertEqual(await self.users(wire), sorted(["alice", "bob"] + names))
        self.assertEqual((await self.request(bob, Op.NICK, "alice"))[0], CONFLICT)

    async def test_roomAcrossNodes(self):
        """
        A room created on one node is joined from the other; both see each
        other's JOINED and the full member list.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        self.assertEqual((await self.request(alice, Op.JOIN, "#r", ""))[0], OK)
        await self.quiet()
        self.assertEqual(await self.request(bob, Op.LIST_ROOMS), (OK, (["#r"],)))
        status, (members,) = await self.request(bob, Op.JOIN, "#r", "")
        self.assertEqual(dict(members), {"alice": publicDer("alice"), "bob": publicDer("bob")})
        self.assertEqual(await self.events(alice, Op.JOINED),
                         [(Op.JOINED, ("#r", "bob", publicDer("bob")))])
        self.assertEqual(await self.users(alice, "#r"), ["alice", "bob"])
        self.assertEqual((await self.request(bob, Op.LEAVE, "#r"))[0], OK)
        self.assertEqual(await self.events(alice, Op.LEFT), [(Op.LEFT, ("#r", "bob"))])

    async def test_nodeStopsLeavesRooms(self):
        """
        When a node leaves the cluster its users leave every room and every
        list on the other nodes at once.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        await self.request(bob, Op.JOIN, "#r", "")
        await self.events(alice, Op.JOINED)
        await self.wait(b.service.fanout.stop())
        self.assertEqual(await self.events(alice, Op.LEFT), [(Op.LEFT, ("#r", "bob"))])
        self.assertEqual(await self.users(alice), ["alice"])

    async def test_killedNodeGoneWithinBound(self):
        """
        A node that stops without a word (killed) leaves the other nodes' lists
        and rooms once its heartbeat expires: within TTL + BEAT seconds.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        await self.request(bob, Op.JOIN, "#r", "")
        await self.events(alice, Op.JOINED)
        await self.advance(self.ttl)
        self.kill(b)
        await self.advance(1)
        self.assertEqual(await self.users(alice), ["alice", "bob"])
        await self.advance(self.ttl + self.beat)
        self.assertEqual(await self.events(alice, Op.LEFT), [(Op.LEFT, ("#r", "bob"))])
        self.assertEqual(await self.users(alice), ["alice"])

    async def test_lateNodeLearnsWhoIsThere(self):
        """
        A node that starts after others sees their users and memberships.
        """
        a = await self.node("A")
        alice = await self.guest(a, "alice")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.quiet()
        c = await self.node("C")
        carol = await self.guest(c, "carol")
        self.assertEqual(await self.users(carol, "#r"), ["alice"])
        status, (members,) = await self.request(carol, Op.JOIN, "#r", "")
        self.assertEqual(sorted(dict(members)), ["alice", "carol"])

    async def test_accountOnTwoNodes(self):
        """
        An account with sessions on two nodes stays online and in its rooms
        while either session remains; both sessions get the room's messages.
        """
        a, b = await self.node("A"), await self.node("B")
        alice1 = await self.account(a, "alice")
        await self.quiet()
        alice2 = await self.account(b, "alice", register=False)
        bob = await self.guest(a, "bob")
        await self.request(alice1, Op.JOIN, "#r", "")
        self.assertEqual(await self.events(alice2, Op.JOINED),
                         [(Op.JOINED, ("#r", "alice", publicDer("alice")))])
        await self.seesRoom(bob, "#r")
        _, (members,) = await self.request(bob, Op.JOIN, "#r", "")
        await self.quiet()
        blob = self.seal("bob", ("room", "#r"), dict(members), "to both sessions")
        self.assertEqual((await self.request(bob, Op.ROOM_MSG, "#r", blob))[0], OK)
        for wire in (alice1, alice2):
            self.assertEqual(len(await self.events(wire, Op.ROOM_MSG)), 1)
        alice1.protocol.connectionLost(Failure(ConnectionDone()))
        await self.quiet()
        self.assertEqual(bob.takeEvents(), [])
        self.assertEqual(await self.users(bob, "#r"), ["alice", "bob"])
        alice2.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(await self.events(bob, Op.LEFT), [(Op.LEFT, ("#r", "alice"))])

    async def test_roomMessageAcrossNodes(self):
        """
        A message posted on one node reaches the member on the other, once, cut
        to its own entry, and HISTORY on either node has it.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        _, (members,) = await self.request(bob, Op.JOIN, "#r", "")
        blob = self.seal("bob", ("room", "#r"), dict(members), "across")
        status, (ts,) = await self.request(bob, Op.ROOM_MSG, "#r", blob)
        self.assertEqual(status, OK)
        [(_, (room, sender, evts, envelope))] = await self.events(alice, Op.ROOM_MSG)
        self.assertEqual((room, sender, evts), ("#r", "bob", ts))
        self.assertEqual(set(json.loads(envelope)["encrypted_keys"]), {"alice"})
        self.assertEqual(e2e.openEnvelope(envelope, "alice", privateKey("alice"),
                                          publicDer("bob")), b"across")
        [(_, hts, _)] = (await self.request(alice, Op.HISTORY, "#r", 0, 0))[1][0]
        self.assertEqual(hts, ts)
        await self.quiet()
        self.assertEqual(alice.takeEvents(Op.ROOM_MSG), [])
        self.assertEqual(bob.takeEvents(Op.ROOM_MSG), [])

    async def test_staleRecipientsKnowRemoteMembers(self):
        """
        The key-map check counts members on every node.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        await self.request(bob, Op.JOIN, "#r", "")
        await self.events(alice, Op.JOINED)
        blob = self.seal("alice", ("room", "#r"), {"alice": publicDer("alice")}, "only me")
        status, (listed,) = await self.request(alice, Op.ROOM_MSG, "#r", blob)
        self.assertEqual((status, sorted(dict(listed))), (STALE, ["alice", "bob"]))

    async def test_directMessageAcrossNodes(self):
        """
        A DM to a user on another node reaches it, once.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        status, _ = await self.request(alice, Op.DM, "bob",
                                       self.seal("alice", ("user", "bob"), keys, "psst"))
        self.assertEqual(status, OK)
        [(_, (sender, _, envelope))] = await self.events(bob, Op.DM)
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"psst")

    async def test_timestampsIncreaseAcrossNodes(self):
        """
        Messages to one room from two nodes in the same millisecond get strictly
        increasing timestamps.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        await self.seesRoom(bob, "#r")
        _, (members,) = await self.request(bob, Op.JOIN, "#r", "")
        await self.events(alice, Op.JOINED)
        stamps = []
        for wire in (alice, bob, alice, bob):
            blob = self.seal(wire.name, ("room", "#r"), dict(members), "x")
            stamps.append((await self.request(wire, Op.ROOM_MSG, "#r", blob))[1][0])
        self.assertEqual(stamps, sorted(set(stamps)))

    async def test_rateLimitAcrossNodes(self):
        """
        One account's message limit counts its sessions on every node.
        """
        a, b = await self.node("A"), await self.node("B")
        alice1 = await self.account(a, "alice")
        alice2 = await self.account(b, "alice", register=False)
        await self.guest(a, "bob")
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        statuses = []
        for wire in (alice1, alice2, alice1, alice2, alice1, alice2):
            blob = self.seal("alice", ("user", "bob"), keys, "m")
            statuses.append((await self.request(wire, Op.DM, "bob", blob))[0])
        self.assertEqual(statuses, [OK] * 5 + [RATE])

    async def allResponses(self, wires, op, count):
        """
        Wait for C{count} responses to C{op} in all at C{wires}, and take them.
        """
        got: List[Any] = []

        def answered():
            got.extend(r for wire in wires for r in wire.responses(op))
            return len(got) >= count
        await self.until(answered)
        return got

    async def test_pipelinedMessagesHoldTheLimit(self):
        """
        Thirty DMs pipelined on one connection pass the 5-per-5-s limit
        exactly five times: the shared window checks and counts in one step.
        """
        a = await self.node("A")
        alice = await self.account(a, "alice")
        await self.guest(a, "bob")
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        for _ in range(30):
            alice.send(Op.DM, "bob", self.seal("alice", ("user", "bob"), keys, "m"))
        got = await self.allResponses([alice], Op.DM, 30)
        self.assertEqual(sorted(status for status, _ in got), [OK] * 5 + [RATE] * 25)

    async def test_parallelWrongPasswordsAcrossNodes(self):
        """
        Twenty wrong passwords for one account from one address, sent at once
        through two nodes, are checked five times in all: the rest are refused
        before any check.
        """
        a, b = await self.node("A"), await self.node("B")
        await self.account(a, "alice")
        wires = [await self.hello(factory) for factory in (a, b) * 10]
        for wire in wires:
            wire.send(Op.LOGIN, "alice", "wrong password")
        got = await self.allResponses(wires, Op.LOGIN, 20)
        self.assertEqual(sorted(status for status, _ in got),
                         sorted([FORBIDDEN] * 5 + [RATE] * 15))


class FakeRedisClusterTests(FakeMode, Scenarios, TestCase):
    """
    The scenarios through the fake Redis.
    """

    skip = skip


class RealRedisClusterTests(RealMode, Scenarios, TestCase):
    """
    The scenarios through a real Redis (C{CHATD_TEST_REDIS}).
    """

    skip = skip


class FailureTests(FakeMode, TestCase):
    """
    Redis going away, in whole or for one node, on the fake Redis.
    """

    skip = skip

    async def pair(self):
        """
        Node A with alice and node B with bob, both in #r.

        @return: C{(a, b, alice, bob, members)}
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.request(alice, Op.JOIN, "#r", "")
        _, (members,) = await self.request(bob, Op.JOIN, "#r", "")
        await self.events(alice, Op.JOINED)
        return a, b, alice, bob, dict(members)

    async def post(self, wire, members, text):
        blob = self.seal(wire.name, ("room", "#r"), members, text)
        status, (ts,) = await self.request(wire, Op.ROOM_MSG, "#r", blob)
        self.assertEqual(status, OK)
        return ts

    async def texts(self, wire, count):
        """
        Take C{wire}'s room messages (at least C{count}) as opened texts.
        """
        events = await self.events(wire, Op.ROOM_MSG, count)
        return [e2e.openEnvelope(envelope, wire.name, privateKey(wire.name), publicDer(sender))
                .decode() for _, (_, sender, _, envelope) in events]

    async def test_redisRestartLosesNothing(self):
        """
        Redis restarts (losing every key) while both nodes keep taking
        messages: once it is back, every acknowledged room message reaches the
        other node's member exactly once, a DM sent meanwhile arrives once, and
        both nodes list the same users.
        """
        a, b, alice, bob, members = await self.pair()
        self.assertEqual(await self.post(bob, members, "before") and await self.texts(alice, 1),
                         ["before"])
        self.redis.restart(down=True)
        await self.quiet()
        await self.post(bob, members, "during 1")
        await self.post(alice, members, "during 2")
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        status, _ = await self.request(alice, Op.DM, "bob",
                                       self.seal("alice", ("user", "bob"), keys, "dm during"))
        self.assertEqual(status, OK)
        await self.advance(3)
        self.assertEqual(alice.takeEvents(Op.ROOM_MSG), [])
        self.redis.up()
        await self.advance(RECONNECTED)
        self.assertEqual(await self.texts(alice, 1), ["during 1"])
        self.assertEqual(await self.texts(bob, 1), ["during 2"])
        self.assertEqual(len(bob.takeEvents(Op.DM)), 1)
        await self.post(bob, members, "after")
        self.assertEqual(await self.texts(alice, 1), ["after"])
        await self.advance(8)
        self.assertEqual(alice.takeEvents(Op.ROOM_MSG) + bob.takeEvents(Op.ROOM_MSG), [])
        self.assertEqual(await self.users(alice, "#r"), ["alice", "bob"])
        self.assertEqual(await self.users(bob, "#r"), ["alice", "bob"])

    async def test_subscriberLostCatchesUp(self):
        """
        A node whose subscriber connection drops misses what is published
        meanwhile; when it is back, its members get each missed message once,
        from the database.
        """
        a, b, alice, bob, members = await self.pair()
        await self.post(bob, members, "one")
        self.assertEqual(await self.texts(alice, 1), ["one"])
        for pump in self.endpoints["A"].pumps:
            protocol = getattr(pump.client, "_protocol", pump.client)
            if isinstance(protocol, SubscriberProtocol):
                pump.clientIO.loseConnection()
        await self.quiet()
        await self.post(bob, members, "two")
        await self.post(bob, members, "three")
        self.assertEqual(alice.takeEvents(Op.ROOM_MSG), [])
        await self.advance(RECONNECTED)
        self.assertEqual(await self.texts(alice, 2), ["two", "three"])
        await self.advance(10)
        self.assertEqual(alice.takeEvents(Op.ROOM_MSG), [])

    async def test_stopWhileWaitingForSubscribers(self):
        """
        A node that stops while its new command connection waits for the
        other nodes to listen again publishes what it held before it says
        goodbye: the other node's member still gets the message that was
        acknowledged meanwhile, and the node leaves no timer behind.
        """
        a, b, alice, bob, members = await self.pair()
        fanout = a.service.fanout
        for pump in self.endpoints["A"].pumps:
            protocol = getattr(pump.client, "_protocol", pump.client)
            if isinstance(protocol, SubscriberProtocol):
                pump.clientIO.loseConnection()
        await self.quiet()
        # As if the command connection had just come back: it waits for A's
        # own subscriber, which is not back yet.
        fanout._commandsUp(fanout.connections.commands)
        await self.quiet()
        await self.post(alice, members, "held")
        self.assertEqual(bob.takeEvents(Op.ROOM_MSG), [])
        pending = set(self.clock.getDelayedCalls())
        await self.wait(fanout.stop())
        self.assertEqual(await self.texts(bob, 1), ["held"])
        self.assertEqual(len(fanout.outbox), 0)
        # The wait polled every 0.05 s: none of its calls is left.
        soon = self.clock.seconds() + 0.05
        self.assertEqual([call for call in self.clock.getDelayedCalls()
                          if call in pending and call.getTime() <= soon], [])

    async def test_resentPublishNotDeliveredTwice(self):
        """
        A publish that reached Redis but whose reply was lost with the
        connection is sent again on the next one; the receiver drops the second
        copy by its sequence number.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        original, published = self.redis.run, []

        def run(connection, args):
            reply = original(connection, args)
            if args[0] == "PUBLISH" and '"t":"direct"' in args[2]:
                published.append(args[2])
                if len(published) == 1:
                    connection.transport.loseConnection()
                    return NO_REPLY
            return reply
        self.patch(self.redis, "run", run)
        alice.send(Op.DM, "bob", self.seal("alice", ("user", "bob"), keys, "once"))
        await self.advance(RECONNECTED)
        self.assertEqual(len(published), 2)
        self.assertEqual(published[0], published[1])
        self.assertEqual(len(bob.takeEvents(Op.DM)), 1)

    async def test_nodeAwayLongerThanTTL(self):
        """
        A node cut off from Redis for longer than its heartbeat lasts is given
        up by the others; when it is back it announces its users again and
        sends what it queued, so the DM its user sent meanwhile arrives.
        """
        a, b, alice, bob, members = await self.pair()
        self.endpoints["A"].cut()
        await self.quiet()
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        status, _ = await self.request(alice, Op.DM, "bob",
                                       self.seal("alice", ("user", "bob"), keys, "late"))
        self.assertEqual(status, OK)
        await self.advance(self.ttl + self.beat + 1)
        self.assertEqual(await self.events(bob, Op.LEFT), [(Op.LEFT, ("#r", "alice"))])
        self.assertEqual(await self.users(bob), ["bob"])
        self.endpoints["A"].down = False
        await self.advance(RECONNECTED)
        self.assertEqual(await self.events(bob, Op.JOINED),
                         [(Op.JOINED, ("#r", "alice", publicDer("alice")))])
        self.assertEqual(len(bob.takeEvents(Op.DM)), 1)
        self.assertEqual(await self.users(bob), ["alice", "bob"])
        self.assertEqual(await self.users(alice), ["alice", "bob"])

    async def test_missedPresenceConverges(self):
        """
        Presence events a node missed while its subscriber was away are read
        back from the other nodes' hashes when it reconnects.
        """
        a, b = await self.node("A"), await self.node("B")
        alice = await self.guest(a, "alice")
        await self.quiet()
        for pump in self.endpoints["A"].pumps:
            if isinstance(getattr(pump.client, "_protocol", None), SubscriberProtocol):
                pump.clientIO.loseConnection()
        await self.quiet()
        carol = await self.guest(b, "carol")
        await self.request(carol, Op.JOIN, "#c", "")
        self.assertEqual(await self.users(alice), ["alice"])
        await self.advance(RECONNECTED)
        self.assertEqual(await self.users(alice), ["alice", "carol"])
        self.assertEqual(await self.users(alice, "#c"), ["carol"])

    async def test_joinSubscribesBeforePublishing(self):
        """
        The first local member of a room makes the node subscribe to the room's
        channel, and the cluster hears of the join only once the subscription
        is confirmed, so no message sent after the join can miss this node.
        """
        a = await self.node("A")
        alice = await self.guest(a, "alice")
        await self.quiet()
        log = []
        original = self.redis.run

        def run(connection, args):
            log.append((args[0].upper(), args[1] if len(args) > 1 else None))
            return original(connection, args)
        self.patch(self.redis, "run", run)
        await self.request(alice, Op.JOIN, "#r", "")
        subscribed = log.index(("SUBSCRIBE", "chatd:3:room:#r"))
        published = [i for i, entry in enumerate(log) if entry == ("PUBLISH", "chatd:3:cluster")]
        self.assertTrue(published and subscribed < published[-1], log)
        self.assertEqual(self.redis.data[3]["chatd:node:A:users"]["alice"],
                         dumps({"user": "alice", "key": publicDer("alice"), "account": False,
                                "rooms": ["#r"]}))
        await self.request(alice, Op.LEAVE, "#r")
        self.assertIn(("UNSUBSCRIBE", "chatd:3:room:#r"), log)

    async def test_ownEchoesDropped(self):
        """
        A node hears its own events back from Redis and drops them: a message
        reaches the sender's other session once, not twice.
        """
        a = await self.node("A")
        alice1 = await self.account(a, "alice")
        alice2 = await self.account(a, "alice", register=False)
        await self.request(alice1, Op.JOIN, "#r", "")
        await self.events(alice2, Op.JOINED)
        blob = self.seal("alice", ("room", "#r"), {"alice": publicDer("alice")}, "me")
        self.assertEqual((await self.request(alice1, Op.ROOM_MSG, "#r", blob))[0], OK)
        await self.advance(1)
        self.assertEqual(len(alice2.takeEvents(Op.ROOM_MSG)), 1)

    async def test_guestNumbersWithoutRedis(self):
        """
        Guest numbers come at once from a block fetched ahead; with Redis gone
        and the blocks used up, from a random range no block reaches.
        """
        a = await self.node("A")
        fanout = a.service.fanout
        first = [fanout.guestNumber() for _ in range(5)]
        self.assertEqual(first, list(range(5)))
        self.redis.restart(down=True)
        await self.quiet()
        numbers = [fanout.guestNumber() for _ in range(3 * limits.GUEST_BLOCK)]
        self.assertEqual(len(set(numbers)), len(numbers))
        self.assertTrue(numbers[-1] >= limits.GUEST_FALLBACK[0])
        self.assertNotIn(None, numbers)

    async def test_limitsAndTimestampsWithoutRedis(self):
        """
        With the command connection gone, limits count on this node and room
        timestamps come from its clock, so the node keeps serving.
        """
        a = await self.node("A")
        fanout = a.service.fanout
        self.redis.restart(down=True)
        await self.quiet()
        window = fanout.window("w", 2, 10)
        results = [self.successResultOf(window.hit("k")) for _ in range(3)]
        self.assertEqual(results[:2], [None, None])
        self.assertAlmostEqual(results[2], 10)
        self.assertEqual(self.successResultOf(fanout.timestamp("#r", 1000, 5000)), 5001)

    async def test_windowInRedis(self):
        """
        A window kept in Redis answers as L{chatd.ratelimit.SlidingWindow}
        does: slots granted up to the count, each saying how many came before
        it; refused past the count with the wait until the oldest event leaves,
        a refused attempt not counted; a released slot no longer counts.
        """
        a = await self.node("A")
        window = a.service.fanout.window("w", 2, 10)

        def call(method, *args, window=window):
            d = getattr(window, method)(*args)
            flush(self.redis)
            return self.successResultOf(d)
        first, second = call("reserve", "k"), call("reserve", "k")
        self.assertEqual([(r.granted, r.before) for r in (first, second)],
                         [(True, 0), (True, 1)])
        self.clock.advance(4)
        self.assertAlmostEqual(call("hit", "k"), 6)
        self.assertIsNone(call("hit", "other"))
        call("release", "k", first.token)
        self.assertEqual(call("reserve", "k").before, 1)
        self.assertAlmostEqual(call("reserve", "k").wait, 6)
        self.clock.advance(10)
        self.assertIsNone(call("hit", "k"))
        unlimited = a.service.fanout.window("u", None, 10)
        self.assertEqual([call("reserve", "k", window=unlimited).before for _ in range(3)],
                         [0, 1, 2])


class CodecTests(SynchronousTestCase):
    """
    Events cross Redis as JSON with bytes tagged.
    """

    skip = skip

    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20)

    @given(values)
    def test_roundTrip(self, value):
        """
        Whatever an event holds (bytes, nested dicts and lists, keys that look
        like tags) comes back equal; tuples come back as lists.
        """
        self.assertEqual(loads(dumps(value)), value)

    def test_tags(self):
        """
        Bytes are base64 in a C{$bytes} tag; a dict that could pass for a tag is
        wrapped.
        """
        self.assertEqual(encodeValue({"key": b"\x00\xff"}), {"key": {"$bytes": "AP8="}})
        self.assertEqual(encodeValue({"$bytes": "x"}), {"$dict": {"$bytes": "x"}})
        self.assertEqual(decodeValue({"$dict": {"$bytes": "x"}}), {"$bytes": "x"})


class InterfaceTests(SynchronousTestCase):
    """
    L{RedisFanout} is an L{IFanout}, configured by its URL.
    """

    skip = skip

    def test_interface(self):
        """
        It provides L{IFanout}, with a random node id unless given one.
        """
        fanout = RedisFanout("redis://127.0.0.1:6379/2", Clock())
        verifyObject(IFanout, fanout)
        self.assertNotEqual(fanout.nodeId, RedisFanout("redis://h/0", Clock()).nodeId)
        self.assertEqual(RedisFanout("redis://h/0", Clock(), "n1").nodeId, "n1")
        self.assertEqual(fanout.where, "127.0.0.1:6379/2")

    def test_badURL(self):
        """
        A URL that is not C{redis://host:port/N} is refused.
        """
        for url in ["http://h/0", "redis://", "redis://h/x", "redis://h:port/0"]:
            self.assertRaises(ValueError, RedisFanout, url, Clock())


class CoreGapTests(FakeMode, TestCase):
    """
    Races only a cluster has.
    """

    skip = skip

    async def test_sameNewRoomOnTwoNodes(self):
        """
        Two users joining one new room from two nodes at the same moment both
        get in: the node whose store insert loses the race takes the room the
        other node made, instead of refusing the join as a conflict.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        alice.send(Op.JOIN, "#new", "")
        bob.send(Op.JOIN, "#new", "")
        await self.quiet()
        self.assertEqual([alice.responses(Op.JOIN)[0][0], bob.responses(Op.JOIN)[0][0]],
                         [OK, OK])


