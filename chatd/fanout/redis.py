# -*- test-case-name: chatd.test.test_fanout -*-
"""
The fan-out of a node in a cluster that meets in Redis (C{--redis}).

What lives where::

    chatd:<db>:cluster            channel: presence, membership, rooms, keys, DMs
    chatd:<db>:room:<room>        channel per room: its messages; a node listens
                                  while it has local members in the room
    chatd:node:<id>               heartbeat, expires TTL after the last beat
    chatd:node:<id>:users         hash: this node's users (name, key, account, rooms)
    chatd:nodes                   set of the node ids that have beaten lately
    chatd:guests                  counter handing out blocks of guest numbers
    chatd:ts:<room>               the room's newest timestamp (kept by a script)
    chatd:window:<name>:<key>     sorted set: one sliding-window limit's events
    chatd:direct                  sorted set: direct messages of the last minutes,
                                  for nodes that could not hear them (directlog)
                                  (see L{chatd.fanout.window})

Keys live in the database the URL names; Redis channels are not per database,
so channel names carry the number, and clusters on different numbers of one
Redis do not hear each other.

Room messages have a channel per room, as Synapse does per stream, because they
are nearly all of the traffic and a node with nobody in a room has no use for
them; everything else is rare and goes on one channel, in one order. A node
subscribes to a room's channel before it tells the cluster that a first local
user joined (publishing waits for the subscription), so nobody can send it a
message it would not hear.

Every published event carries the node id, an incarnation and a sequence
number. A node drops its own echoes, and any event whose number it has already
seen from that node, so re-sending after a reconnect never delivers twice.

Presence: every C{BEAT} seconds a node refreshes its heartbeat key (TTL C{TTL})
and looks at the others'; a node whose key is gone is given to
L{ChatService.nodeGone<chatd.service.ChatService.nodeGone>}. A node killed with
SIGKILL therefore leaves every other node's lists at most C{TTL + BEAT} seconds
(13 by default) after its last beat. A starting node subscribes first and then
reads the other nodes' user hashes, which are written before the events that
change them; hashes are read again every C{RECONCILE_EVERY} beats, so a node
that missed something converges.

Disconnects: each connection reconnects with backoff, and the node keeps
serving. What it publishes meanwhile is queued (up to C{QUEUE_LIMIT} events,
oldest dropped first, with a log line) rather than dropped, because direct
messages and presence changes are stored nowhere else; events written but not
confirmed when a connection dies are queued again (the sequence numbers make
that safe). After reconnecting, a node rewrites its hash, waits (at most
C{SUBSCRIBERS_WAIT} seconds) until as many nodes listen as it knows, since after a
Redis restart whatever is published before a node resubscribes never reaches it,
and then publishes its whole state (C{sync}), so that nodes that gave it up take
its users back, followed by its queue. It reads everyone else's hashes, and
catches its local members up on room messages from the database, from
C{CATCH_UP_MARGIN} seconds before the connection was lost (through the core's
C{messagesSince}). It remembers which messages it
delivered in that span, by sender and envelope id (the fan-out sees every delivery here, local ones as they
are published, and knows when it was cut off), so none is delivered twice. While the command connection is down, limits are
counted per node and room timestamps come from this node's clock (the shared
store moves one another node took to the next free one); guest numbers come from
the block in hand, then at random from a range blocks never reach.
"""

import json
import random
import uuid
from collections import deque

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import (CancelledError, Deferred, gatherResults, maybeDeferred,
                                    succeed)
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.config import DEFAULTS, redisURL
from chatd.errors import Unavailable
from chatd.fanout.checks import Dropped, InvalidEvent, checkEntry, checkEvent
from chatd.fanout import directlog
from chatd.fanout.delivered import Delivered, envelopeKey
from chatd.fanout.events import MalformedEvent, decodeMessage, dumps, encodeValue, loadEntry
from chatd.fanout.window import RedisWindow
from chatd.interfaces import IFanout
from chatd.names import fold
from chatd.outage import Outage
from chatd.startup import keepTrying

log = Logger()

TTL = 10.0
BEAT = 3.0
RECONCILE_EVERY = 10
REPLY_TIMEOUT = 5.0
QUEUE_LIMIT = 10000
GUEST_BLOCK = 20
# Guest numbers taken while Redis cannot hand out blocks: far above any block.
GUEST_FALLBACK = (10**9, 10**10)
CATCH_UP_MARGIN = 30.0
SUBSCRIBERS_WAIT = 5.0
CATCH_UP_PAGE = 500
TIMESTAMP_EXPIRY = 86400 * 1000
CATCH_UP = "catch-up"

# The queued commands that go out again after a reconnect.
RESENT = frozenset(["PUBLISH"]) | directlog.COMMANDS

# The kinds of event that change who is online or in which room.
PRESENCE = frozenset(["online", "offline", "renamed", "key", "joined", "left", "room"])


# -- scripts ---------------------------------------------------------------
# Each runs atomically in Redis: nothing another node does can fall between its
# steps.

# The next timestamp of a room: above every one given so far, at least now.
TIMESTAMP_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local ts = math.max(tonumber(ARGV[1]), tonumber(ARGV[2]) + 1, stored + 1)
redis.call('SET', KEYS[1], string.format('%d', ts), 'PX', ARGV[3])
return string.format('%d', ts)
"""

# Beat and look around: refresh this node's heartbeat, forget the nodes whose
# heartbeat expired, and answer whether ours had survived since the last beat,
# followed by the live node ids.
BEAT_SCRIPT = """
local existed = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[1], ARGV[1])
local result = {existed}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    table.insert(result, id)
  else
    redis.call('SREM', KEYS[1], id)
    redis.call('DEL', ARGV[3] .. id .. ':users')
  end
end
return result
"""


# -- connections -----------------------------------------------------------


class _CommandProtocol(txredisapi.BaseRedisProtocol):
    """
    The connection for commands and publishing; tells the fan-out when it is lost.
    """

    def connectionLost(self, why):
        txredisapi.BaseRedisProtocol.connectionLost(self, why)
        self.factory.lost(self)


class _SubscriberProtocol(txredisapi.SubscriberProtocol):
    """
    The connection in subscribe mode; hands each message to the fan-out.
    """

    def messageReceived(self, pattern, channel, message):
        self.factory.received(channel, message)

    def connectionLost(self, why):
        txredisapi.SubscriberProtocol.connectionLost(self, why)
        self.factory.lost(self)


class _Factory(Factory):
    """
    Builds txredisapi protocols that keep time with the injected clock (they
    otherwise use the global reactor) and report back to the fan-out.
    """

    def __init__(self, protocolClass, clock, lost, received=None):
        self.protocolClass = protocolClass
        self.clock = clock
        self.lost = lost
        self.received = received

    def buildProtocol(self, addr):
        protocol = self.protocolClass(charset="utf-8", replyTimeout=REPLY_TIMEOUT,
                                      convertNumbers=False)
        protocol.factory = self
        protocol.callLater = self.clock.callLater
        return protocol


@implementer(IFanout)
class RedisFanout:
    """
    One node's fan-out through Redis: see the module docstring.

    @param url: C{redis://[[user]:password@]host[:port][/db]}, or C{rediss://}
        for TLS (the server's certificate checked against the system's
        authorities and the host name).
    @param clock: the reactor: time, and TCP when no C{endpoint} is given.
    @param nodeId: this node's id; a random one by default.
    @param endpoint: where to connect (an L{IStreamClientEndpoint}), instead of
        the URL's host and port; tests connect to a fake Redis through it.
    @param ttl: seconds a heartbeat outlives the last beat.
    @param beat: seconds between beats.
    @param startTimeout: seconds L{start} keeps trying to reach Redis before
        it fails with L{chatd.startup.StartupError}.
    """

    def __init__(self, url, clock, nodeId=None, endpoint=None, ttl=TTL, beat=BEAT,
                 startTimeout=DEFAULTS.startTimeout):
        address = redisURL(url)
        host, port, db = address.host, address.port, address.db
        self.clock = clock
        self.nodeId = nodeId or uuid.uuid4().hex[:12]
        self.where = "%s%s:%d/%d" % ("tls:" if address.tls else "", host, port, db)
        self._incarnation = uuid.uuid4().hex[:8]
        self._db = db
        # AUTH's arguments: the user name (Redis 6 ACLs) is optional.
        self._auth = tuple(part for part in (address.username, address.password)
                           if part is not None)
        if endpoint is None:
            endpoint = HostnameEndpoint(clock, host, port, timeout=REPLY_TIMEOUT)
            if address.tls:
                # Twisted's TLS under txredisapi's protocol: it needs no TLS support
                # of its own, and certificates are checked as everywhere in Twisted.
                endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        self._endpoint = endpoint
        self.ttl = ttl
        self.beat = beat
        self.startTimeout = startTimeout
        # Commands that fail on a connection that seems up (a frozen Redis)
        # fall back to this node's own answers; logged once per outage.
        self.outage = Outage("Redis at " + self.where, clock,
                             "limits and room timestamps come from this node alone "
                             "until it is back")
        self._channels = "chatd:%d:" % (db,)
        self._cluster = self._channels + "cluster"
        self.service = None
        self._commandService = None
        self._subscriberService = None
        self._commands = None
        self._subscriber = None
        self._joined = False
        self._stopping = False
        self._connectedAt = None
        self._lostAt = None
        self._recovering = None
        # Publishing: what waits to be sent, what was sent but not confirmed,
        # and how many subscriptions it waits for.
        self._outbox = deque()
        self._inflight = deque()
        self._holding = 0
        self._dropped = 0
        self._sequence = 0
        # Receiving: the last sequence number heard per (node, incarnation),
        # the nodes known to be alive, and how many presence events each sent.
        self._heard = {}
        self._known = set()
        self._changes = {}
        # The rooms with local members (folded name -> name), and the channels
        # confirmed on the current subscriber connection.
        self._wanted = {}
        self._subscribed = set()
        self._delivered = {}
        self._invalid = Dropped()
        self._directs = directlog.DirectLog(self)
        self._guests = deque()
        self._fetchingGuests = False
        self._beats = 0
        self._beating = None
        self._unsettled = (set(), set())
        self._settling = None

    # -- keys and channels --------------------------------------------------

    @property
    def _heartbeatKey(self):
        return "chatd:node:" + self.nodeId

    @property
    def _usersKey(self):
        return "chatd:node:%s:users" % (self.nodeId,)

    def _roomChannel(self, roomKey):
        return self._channels + "room:" + roomKey

    # -- lifecycle ----------------------------------------------------------

    def start(self, service):
        self.service = service
        policy = backoffPolicy(initialDelay=0.5, maxDelay=5.0, factor=2.0)
        self._commandService = ClientService(
            self._endpoint, _Factory(_CommandProtocol, self.clock, self._commandsLost),
            retryPolicy=policy, clock=self.clock, prepareConnection=self._commandsMade)
        self._subscriberService = ClientService(
            self._endpoint,
            _Factory(_SubscriberProtocol, self.clock, self._subscriberLost, self._received),
            retryPolicy=policy, clock=self.clock, prepareConnection=self._subscriberMade)
        self._commandService.startService()
        self._subscriberService.startService()
        log.info("node {node} joining the cluster at redis {where}", node=self.nodeId,
                 where=self.where)
        return Deferred.fromCoroutine(self._join())

    async def _join(self):
        what = "Redis at " + self.where
        for service in (self._subscriberService, self._commandService):
            # Each attempt waits for the service's next connection attempt,
            # which it makes on its own backoff: no wait of our own between.
            await keepTrying(lambda: self._connected(service), self.clock,
                             self.startTimeout, what, policy=lambda failures: 0)
        await self._fetchGuests()
        await self._reconcileAll()
        self._joined = True
        self._beating = LoopingCall(self._beat)
        self._beating.clock = self.clock
        self._beating.start(self.beat, now=False)
        log.info("node {node} joined: {nodes} other node(s)", node=self.nodeId,
                 nodes=len(self._known))

    @staticmethod
    def _connected(service):
        """
        Wait for C{service}'s connection, or for its next failed attempt to
        connect, which is reported as L{Unavailable} so that L{keepTrying}
        logs it and waits on.
        """
        def failed(failure):
            if failure.check(CancelledError):
                return failure
            raise Unavailable("Redis is unavailable") from failure.value
        return service.whenConnected(failAfterFailures=1).addErrback(failed)

    def stop(self):
        return Deferred.fromCoroutine(self._leave())

    async def _leave(self):
        self._stopping = True
        if self._beating is not None and self._beating.running:
            self._beating.stop()
        commands = self._commands
        if commands is not None:
            bye = json.dumps({"n": self.nodeId, "i": self._incarnation, "c": "bye"})
            d = gatherResults([
                maybeDeferred(commands.execute_command, *args) for args in [
                    ("DEL", self._heartbeatKey, self._usersKey),
                    ("SREM", "chatd:nodes", self.nodeId),
                    ("PUBLISH", self._cluster, bye)]], consumeErrors=True)
            try:
                await d.addTimeout(2, self.clock)
            except Exception:
                log.warn("node {node} left without saying goodbye", node=self.nodeId)
        if self._outbox:
            log.warn("{count} events were never published", count=len(self._outbox))
        for service in (self._commandService, self._subscriberService):
            if service is not None and service.running:
                await service.stopService()

    # -- the command connection ---------------------------------------------

    async def _commandsMade(self, protocol):
        """
        A command connection is up: log in, choose the database, tell the
        cluster who is here, then send what waited.
        """
        if self._auth:
            await protocol.execute_command("AUTH", *self._auth)
        if self._db:
            await protocol.execute_command("SELECT", self._db)
        self._commands = protocol
        self._connectedAt = self.clock.seconds()
        log.info("redis command connection up ({where})", where=self.where)
        self._holding += 1
        self._writePresence()
        Deferred.fromCoroutine(self._release(protocol)).addErrback(
            lambda f: log.failure("resuming publishing", f))

    async def _release(self, protocol):
        """
        Publish this node's state and what it queued once the other nodes
        listen again: after Redis restarts, every node reconnects at its own
        pace, and what is published before a node resubscribes never reaches
        it (a direct message is stored nowhere else). Waits at most
        C{SUBSCRIBERS_WAIT} seconds for as many subscribers as there are known
        nodes, this one included.
        """
        try:
            deadline = self.clock.seconds() + SUBSCRIBERS_WAIT
            while self.clock.seconds() < deadline and self._commands is protocol:
                reply = await protocol.execute_command("PUBSUB", "NUMSUB", self._cluster)
                if int(reply[1]) >= len(self._known) + 1:
                    break
                await deferLater(self.clock, 0.05)
            if self._commands is protocol:
                self._publishSync()
        except txredisapi.ConnectionError:
            pass
        finally:
            self._holding -= 1
            self._flush()

    def _commandsLost(self, protocol):
        # ClientService holds one connection at a time, so the one lost is the
        # current one, or one that never became current.
        self._commands = None
        # Unconfirmed publishes go out again after reconnecting (receivers drop
        # what they already heard by sequence number); hash writes are not
        # needed: the hash is rewritten whole. Direct messages kept for nodes
        # that cannot hear them (directlog) go out again with their publish.
        self._outbox.extendleft(reversed([item for item in self._inflight if item[0] in RESENT]))
        self._inflight.clear()
        self._outbox = deque(item for item in self._outbox if item[0] in RESENT)
        if not self._stopping:
            log.warn("redis command connection lost; {queued} event(s) queued",
                     queued=len(self._outbox))

    def _announce(self):
        """
        Write this node's presence afresh and publish its whole state, so that a
        node that gave it up (its heartbeat expired, Redis lost its data) takes
        its users back.
        """
        self._writePresence()
        self._publishSync()

    def _writePresence(self):
        """
        Rewrite this node's hash and heartbeat, directly, ahead of anything
        queued (which the rewrite supersedes).
        """
        commands = self._commands
        if commands is None or self.service is None:
            return
        entries = [(fold(user.name), dumps(self._entry(user))) for user in self._localUsers()]
        writes = [("DEL", self._usersKey)]
        if entries:
            writes.append(("HSET", self._usersKey, *[part for pair in entries for part in pair]))
        writes += [("SET", self._heartbeatKey, self.nodeId, "PX", int(self.ttl * 1000)),
                   ("SADD", "chatd:nodes", self.nodeId)]
        for args in writes:
            maybeDeferred(commands.execute_command, *args).addErrback(self._failedWrite, args[0])

    def _publishSync(self):
        commands = self._commands
        if commands is None or self.service is None:
            return
        entries = {fold(user.name): encodeValue(self._entry(user)) for user in self._localUsers()}
        sync = json.dumps({"n": self.nodeId, "i": self._incarnation, "c": "sync", "u": entries},
                          separators=(",", ":"))
        maybeDeferred(commands.execute_command, "PUBLISH", self._cluster, sync).addErrback(
            self._failedWrite, "PUBLISH")

    def _failedWrite(self, failure, command):
        if not failure.check(txredisapi.ConnectionError):
            log.failure("redis {command} failed", failure, command=command)

    def _eval(self, script, keys, args):
        commands = self._commands
        if commands is None:
            return maybeDeferred(self._notConnected)
        return maybeDeferred(commands.eval, script, keys, args)

    @staticmethod
    def _notConnected():
        raise txredisapi.ConnectionError("not connected to redis")

    # -- publishing ---------------------------------------------------------

    def publish(self, event):
        if self.service is None or self._stopping:
            return
        kind = event["t"]
        if kind == "message":
            self._record(fold(event["room"]), event["ts"], event["sender"], event["envelope"])
        if kind in PRESENCE:
            self._changed(event, local=True)
        self._sequence += 1
        payload = json.dumps({"n": self.nodeId, "i": self._incarnation, "s": self._sequence,
                              "e": encodeValue(event)}, separators=(",", ":"))
        channel = self._roomChannel(fold(event["room"])) if kind == "message" else self._cluster
        self._enqueue(("PUBLISH", channel, payload))
        if kind == "direct":
            self._directs.keep(payload)
        self._flush()

    def _enqueue(self, command):
        if len(self._outbox) >= QUEUE_LIMIT:
            dropped = self._outbox.popleft()
            if dropped[0] == "PUBLISH":
                self._dropped += 1
                if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                    log.error("publish queue full while redis is away: {count} event(s) dropped",
                              count=self._dropped)
        self._outbox.append(command)

    def _flush(self):
        """
        Send what is queued, in order, unless a subscription must come first.
        """
        while self._outbox and self._holding == 0 and self._commands is not None:
            item = self._outbox.popleft()
            self._inflight.append(item)
            d = maybeDeferred(self._commands.execute_command, *item)
            d.addCallbacks(self._confirmed, self._unconfirmed, callbackArgs=(item,),
                           errbackArgs=(item,))

    def _confirmed(self, result, item):
        if self._inflight and self._inflight[0] is item:
            self._inflight.popleft()
        elif item in self._inflight:
            self._inflight.remove(item)

    def _unconfirmed(self, failure, item):
        if failure.check(txredisapi.ConnectionError):
            return  # queued again when the loss is reported
        self._confirmed(None, item)
        log.failure("redis refused {command}", failure, command=item[0])

    # -- what this node holds -----------------------------------------------

    def _localUsers(self):
        return [user for user in self.service.users.values() if user.sessions]

    @staticmethod
    def _entry(user):
        return {"user": user.name, "key": user.key, "account": user.account,
                "rooms": sorted(room.name for room in user.rooms.values())}

    def _writeUser(self, name, event=None):
        """
        Queue the hash write that makes this node's entry for C{name} current.

        @param event: the event being published about C{name}, when the core
            may publish it before applying it (a leave is published before the
            room it empties can go): the entry is written as it will be.
        """
        user = self.service.users.get(fold(name))
        if user is None or not user.sessions:
            self._enqueue(("HDEL", self._usersKey, fold(name)))
            return
        entry = self._entry(user)
        if event is not None and event["t"] in ("joined", "left"):
            rooms = {fold(room): room for room in entry["rooms"]}
            rooms.pop(fold(event["room"]), None)
            if event["t"] == "joined":
                rooms[fold(event["room"])] = event["room"]
            entry["rooms"] = sorted(rooms.values())
        self._enqueue(("HSET", self._usersKey, fold(name), dumps(entry)))

    def _changed(self, event, local):
        """
        A presence event was published here or applied from another node: keep
        this node's hash and its room subscriptions in step with its local
        users, now as the event says, and once more when the core has finished
        applying it.
        """
        names = [event[field] for field in ("user", "old", "new") if field in event]
        rooms = set()
        if event["t"] in ("joined", "left"):
            rooms.add(fold(event["room"]))
        for name in dict.fromkeys(names):
            user = self.service.users.get(fold(name))
            if user is not None:
                rooms.update(user.rooms)
            if local or (user is not None and user.sessions):
                self._writeUser(name, event)
        for key in rooms:
            self._checkRoom(key, local, event)
        self._settleLater(names, rooms)

    def _settleLater(self, names, rooms):
        self._unsettled[0].update(names)
        self._unsettled[1].update(rooms)
        if self._settling is None:
            self._settling = self.clock.callLater(0, self._settle)

    def _settle(self):
        self._settling = None
        (names, rooms), self._unsettled = self._unsettled, (set(), set())
        if self.service is None or self._stopping:
            return
        for name in names:
            user = self.service.users.get(fold(name))
            if user is not None and user.sessions:
                self._writeUser(name)
        for key in rooms:
            self._checkRoom(key)
        self._flush()

    def _checkRoom(self, key, local=False, event=None):
        room = self.service.rooms.get(key)
        leaving = None
        if event is not None and event["t"] == "left" and fold(event["room"]) == key:
            leaving = fold(event["user"])
        wanted = room is not None and any(
            user.sessions for name, user in room.members.items() if name != leaving)
        if wanted and key not in self._wanted:
            self._wanted[key] = room.name
            self._subscribe(key, local)
        elif not wanted and key in self._wanted:
            del self._wanted[key]
            self._subscribed.discard(key)
            if self._subscriber is not None:
                maybeDeferred(self._subscriber.unsubscribe, self._roomChannel(key)).addErrback(
                    self._failedWrite, "UNSUBSCRIBE")

    def _checkAllRooms(self):
        keys = set(self._wanted)
        for user in self._localUsers():
            keys.update(user.rooms)
        for key in keys:
            self._checkRoom(key)

    def _subscribe(self, key, local):
        """
        Listen to a room's channel. For a local join, publishing waits until
        the subscription is confirmed; for a join learnt from another node, the
        messages sent before it are caught up from the database.
        """
        if self._subscriber is None:
            return  # every wanted room is subscribed on reconnecting
        if local:
            self._holding += 1
        since = self.clock.seconds()
        d = maybeDeferred(self._subscriber.subscribe, self._roomChannel(key))

        def done(result):
            if not isinstance(result, Failure) and key in self._wanted:
                self._subscribed.add(key)
                if not local:
                    self._catchUpLater([key], since)
            if local:
                self._holding -= 1
                self._flush()
        d.addBoth(done)

    # -- receiving ----------------------------------------------------------

    async def _subscriberMade(self, protocol):
        if self._auth:
            await protocol.execute_command("AUTH", *self._auth)
        await protocol.subscribe(self._cluster)
        self._subscriber = protocol
        keys = list(self._wanted)
        await gatherResults([protocol.subscribe(self._roomChannel(key)) for key in keys])
        self._subscribed.update(key for key in keys if key in self._wanted)
        log.info("redis subscriber connection up ({where})", where=self.where)
        if self._joined:
            self._recover()

    def _subscriberLost(self, protocol):
        self._subscriber = None
        self._subscribed.clear()
        if self._lostAt is None:
            self._lostAt = self.clock.seconds()
        if not self._stopping:
            log.warn("redis subscriber connection lost; events from other nodes are "
                     "missed until it is back")

    def _received(self, channel, data):
        """
        A message on a subscribed channel. Nothing raised here may reach the
        protocol, which would drop the connection.
        """
        try:
            self._handle(channel, data)
        except Exception:
            log.failure("handling a message on {channel}", channel=channel)

    def _read(self, channel, data):
        """
        Decode a message read from C{channel}, live or kept.

        @return: the decoded message, or L{None} when it is malformed (said
            once per kind through C{_invalid}).
        """
        try:
            return decodeMessage(data)
        except MalformedEvent as e:
            self._invalid(channel, "malformed", str(e))
            return None

    def _handle(self, channel, data):
        message = self._read(channel, data)
        if message is None:
            return
        node = message.node
        if node == self.nodeId:
            return
        if message.control == "sync":
            self._changes[node] = self._changes.get(node, 0) + 1
            self._apply(node, message.entries, removals=True)
            return
        if message.control == "bye":
            self._gone(node)
            return
        if message.sequence <= self._heard.get(message.source, 0):
            return
        self._heard[message.source] = message.sequence
        self._known.add(node)
        event = message.event
        if not self._valid(node, event):
            return
        kind = event["t"]
        if kind == "message":
            self._deliver(node, event)
            return
        if kind == "direct" and not self._directs.fresh(event):
            return  # caught up from the kept direct messages already
        if kind in PRESENCE:
            self._changes[node] = self._changes.get(node, 0) + 1
        self.service.remoteEvent(node, event)
        if kind in PRESENCE:
            self._changed(event, local=False)
            self._flush()

    def _valid(self, node, event):
        """
        Whether an event from C{node} passes the checks a client's request
        would (L{chatd.fanout.checks}); one that fails is counted and dropped.
        """
        try:
            checkEvent(event, self.service.users)
        except InvalidEvent as e:
            self._invalid(node, event.get("t") if isinstance(event, dict) else None, str(e))
            return False
        return True

    def _deliver(self, node, event):
        """
        Hand a room message to the core unless it was delivered here already.
        """
        # The envelope parses: the event passed L{_valid}.
        if self._record(fold(event["room"]), event["ts"], event["sender"], event["envelope"]):
            self.service.remoteEvent(node, event)

    def _record(self, key, timestamp, sender, envelope):
        delivered = self._delivered.get(key)
        if delivered is None:
            delivered = self._delivered[key] = Delivered()
        return delivered.add(timestamp, envelopeKey(sender, envelope))

    # -- keeping the picture right ------------------------------------------

    def _apply(self, node, entries, removals):
        """
        Make this node's picture of C{node}'s users match C{entries} (folded name
        -> entry), as events from that node would have.

        @param removals: whether users and memberships missing from C{entries}
            are taken away (only when C{entries} is known to be current).
        """
        service = self.service
        self._known.add(node)
        for key, entry in list(entries.items()):
            try:
                checkEntry(entry)
            except InvalidEvent as e:
                self._invalid(node, "entry", str(e))
                del entries[key]
        for entry in entries.values():
            name = entry["user"]
            service.remoteEvent(node, {"t": "online", "user": name, "key": entry["key"],
                                       "account": entry["account"]})
            user = service.users.get(fold(name))
            if user is not None and entry["key"] is not None and user.key != entry["key"]:
                service.remoteEvent(node, {"t": "key", "user": name, "key": entry["key"]})
            for roomName in entry["rooms"]:
                service.remoteEvent(node, {"t": "joined", "room": roomName, "user": name})
        if removals:
            for user in list(service.users.values()):
                if node not in user.nodes:
                    continue
                entry = entries.get(fold(user.name))
                if entry is None:
                    service.remoteEvent(node, {"t": "offline", "user": user.name})
                elif user.nodes == {node} and not user.sessions:
                    rooms = {fold(name) for name in entry["rooms"]}
                    for key, room in list(user.rooms.items()):
                        if key not in rooms:
                            service.remoteEvent(node, {"t": "left", "room": room.name,
                                                       "user": user.name})
        for user in self._localUsers():
            if fold(user.name) in entries:
                self._writeUser(user.name)
        self._checkAllRooms()
        self._flush()

    async def _reconcile(self, node, attempts=3):
        """
        Read C{node}'s hash and apply it. Presence events from that node that
        arrive while the hash is read make it unclear which is newer, so the
        read is tried again, and removals are left out if it never settles.
        """
        for attempt in range(attempts):
            before = self._changes.get(node, 0)
            fields = await self._command("HGETALL", "chatd:node:%s:users" % (node,))
            if self._changes.get(node, 0) == before:
                break
        else:
            attempt = None
        entries = self._parseHash(fields)
        if not self._stopping:
            await self._ensureRooms(entries)
            self._apply(node, entries, removals=attempt is not None)

    @staticmethod
    def _parseHash(fields):
        """
        A node's user hash as folded name to entry; an entry that is not
        well-formed is left out, so that it cannot hide the others.
        """
        if isinstance(fields, dict):
            items = fields.items()
        else:
            items = zip(fields[::2], fields[1::2])
        entries = {}
        for key, value in items:
            try:
                entries[key] = loadEntry(value)
            except MalformedEvent as e:
                log.warn("dropping a malformed user entry {key!r}: {error}", key=key, error=e)
        return entries

    def connected(self):
        """
        Whether both connections to Redis are up, for the metrics.
        """
        return self._commands is not None and self._subscriber is not None

    def ping(self):
        """
        A round trip to Redis, for the health check.

        @return: a L{Deferred} that fails when Redis is not connected or errs.
        """
        return self._command("PING")

    def _command(self, *args):
        commands = self._commands
        if commands is None:
            return maybeDeferred(self._notConnected)
        return maybeDeferred(commands.execute_command, *args)

    async def _ensureRooms(self, entries):
        """
        Learn from the database the rooms named in C{entries} that this node
        has not heard of (created while it was away).
        """
        service = self.service
        names = {name for entry in entries.values() for name in entry["rooms"]}
        if all(fold(name) in service.rooms for name in names):
            return
        for record in await service.store.loadRooms():
            if fold(record.name) in {fold(name) for name in names}:
                service.remoteEvent(CATCH_UP, {"t": "room", "room": record.name,
                                               "password": record.passwordHash})

    async def _reconcileAll(self):
        """
        Beat, then read the hash of every other live node.
        """
        live = await self._beatOnce()
        for node in live:
            if node != self.nodeId:
                await self._reconcile(node)

    def _recover(self):
        """
        The subscriber connection is back: read everyone's state again and
        catch local members up on the room messages missed meanwhile.
        """
        since, self._lostAt = self._lostAt, None

        async def recover():
            try:
                await self._commandService.whenConnected()
                await self._reconcileAll()
            except Exception:
                log.failure("re-reading the cluster's state after reconnecting")
            if since is not None:
                await self._catchUp(list(self._wanted), since)
                await self._directs.catchUp(since, CATCH_UP_MARGIN)
        d = Deferred.fromCoroutine(recover())
        self._recovering = d
        d.addErrback(lambda f: log.failure("recovering after a reconnect", f))

    def _catchUpLater(self, keys, since):
        Deferred.fromCoroutine(self._catchUp(keys, since)).addErrback(
            lambda f: log.failure("catching up", f))

    async def _catchUp(self, keys, since):
        """
        Deliver to local members the stored messages of rooms C{keys} from
        C{CATCH_UP_MARGIN} seconds before C{since} that were not delivered here.

        The core's C{messagesSince(room, after, limit)} gives a L{Deferred} of
        L{chatd.model.HistoryRow}s with timestamps above C{after}, oldest first,
        at most C{limit}.
        """
        fetch = self.service.messagesSince
        after = int((since - CATCH_UP_MARGIN) * 1000)
        delivered = 0
        for key in keys:
            name = self._wanted.get(key)
            cursor = after
            while name is not None:
                rows = await fetch(name, cursor, CATCH_UP_PAGE)
                for row in rows:
                    event = {"t": "message", "room": name, "sender": row.sender,
                             "ts": row.timestamp, "envelope": row.envelope}
                    if self._record(key, row.timestamp, row.sender, row.envelope):
                        delivered += 1
                        self.service.remoteEvent(CATCH_UP, event)
                if len(rows) < CATCH_UP_PAGE:
                    break
                cursor = rows[-1].timestamp
        if delivered:
            log.info("caught up {count} room message(s) from the database", count=delivered)

    # -- heartbeats ---------------------------------------------------------

    def _beat(self):
        """
        One beat of the L{LoopingCall}: never fails, or the loop would stop.
        """
        if self._commands is None:
            return None
        return Deferred.fromCoroutine(self._beatAndSweep()).addErrback(
            lambda f: log.failure("heartbeat", f))

    async def _beatAndSweep(self):
        self._beats += 1
        self._prune()
        if self._subscriber is not None:
            maybeDeferred(self._subscriber.ping).addErrback(self._failedWrite, "PING")
        live = await self._beatOnce()
        now = self.clock.seconds()
        settled = self._connectedAt is not None and now - self._connectedAt >= self.ttl
        for node in list(self._known):
            if node not in live and settled:
                self._gone(node)
        again = self._beats % RECONCILE_EVERY == 0
        for node in live:
            if node != self.nodeId and (again or node not in self._known):
                await self._reconcile(node)
        if len(self._guests) < 2:
            await self._fetchGuests()

    async def _beatOnce(self):
        result = await self._eval(BEAT_SCRIPT, ["chatd:nodes", self._heartbeatKey, self._usersKey],
                                  [self.nodeId, int(self.ttl * 1000), "chatd:node:",
                                   int(self.ttl * 3000)])
        existed, live = result[0], set(result[1:])
        if not existed and self._joined:
            log.warn("node {node}'s heartbeat had expired; announcing it again",
                     node=self.nodeId)
            self._announce()
        return live

    def _gone(self, node):
        if node not in self._known:
            return
        self._known.discard(node)
        self._changes.pop(node, None)
        for source in [source for source in self._heard if source[0] == node]:
            del self._heard[source]
        log.info("node {node} left the cluster", node=node)
        self.service.nodeGone(node)
        self._checkAllRooms()

    def _prune(self):
        """
        Forget delivered messages too old for any catch-up to ask about; kept
        whole while a catch-up may still come.
        """
        if self._lostAt is not None or self._subscriber is None:
            return
        floor = int((self.clock.seconds() - 2 * CATCH_UP_MARGIN) * 1000)
        for delivered in self._delivered.values():
            delivered.prune(floor)
        self._directs.prune(self.clock.seconds())

    # -- counters and limits ------------------------------------------------

    async def _fetchGuests(self):
        if self._fetchingGuests:
            return
        self._fetchingGuests = True
        try:
            end = int(await self._command("INCRBY", "chatd:guests", GUEST_BLOCK))
            self._guests.append(iter(range(end - GUEST_BLOCK, end)))
        except Exception as e:
            log.warn("no block of guest numbers from redis: {error}", error=e)
        finally:
            self._fetchingGuests = False

    def guestNumber(self):
        while self._guests:
            number = next(self._guests[0], None)
            if number is not None:
                if len(self._guests) == 1 and self._joined and self._commands is not None:
                    Deferred.fromCoroutine(self._fetchGuests())
                return number
            self._guests.popleft()
        return random.randrange(*GUEST_FALLBACK)

    def window(self, name, count, seconds):
        return RedisWindow(self, name, count, seconds)

    def timestamp(self, room, now, last):
        fallback = max(now, last + 1)
        if self._commands is None:
            return succeed(fallback)
        d = self._eval(TIMESTAMP_SCRIPT, ["chatd:ts:" + fold(room)],
                       [now, last, TIMESTAMP_EXPIRY])

        def answered(reply):
            self.outage.worked()
            return int(reply)

        def failed(failure):
            self.outage.failed(failure)
            return fallback
        return d.addCallbacks(answered, failed)
