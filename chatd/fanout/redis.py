# -*- test-case-name: chatd.test.test_fanout -*-
"""
The fan-out of a node in a cluster that meets in Redis (C{--redis}): the
events it publishes and receives, and the parts that do the rest.

What lives where::

    chatd:<db>:cluster            channel: presence, membership, rooms, keys, DMs
    chatd:<db>:room:<room>        channel per room: its messages; a node listens
                                  while it has local members in the room
    chatd:<db>:node:<id>          channel per node: file transfers' events for it
    chatd:node:<id>               heartbeat, expires TTL after the last beat
    chatd:node:<id>:users         hash: this node's users (name, key, account, rooms)
    chatd:nodes                   set of the node ids that have beaten lately
    chatd:guests                  counter handing out blocks of guest numbers
    chatd:ts:<room>               the room's newest timestamp (kept by a script)
    chatd:window:<name>:<key>     sorted set: one sliding-window limit's events
    chatd:direct                  sorted set: direct messages of the last minutes,
                                  for nodes that could not hear them

The parts, each in a module of its own::

    connections   the command and subscriber connections, reconnecting
    outbox        what waits to be sent, and what is sent again after a loss
    presence      this node's user hash and its whole-state C{sync}
    nodes         heartbeats, the other nodes' users, declaring a node gone
    rooms         room channels, room-message deliveries, catch-up from the database
    receiving     reading and checking other nodes' messages, handing them on
    directlog     direct messages kept for nodes that could not hear them
    limits        windows, room timestamps and guest numbers shared in Redis
    scripts       the Lua scripts
    view          what the fan-out reads of the core (L{IDirectoryView})

Every published event carries the node id, an incarnation and a sequence
number. A node drops its own echoes, and any event whose number it has already
seen from that node, so re-sending after a reconnect never delivers twice.

Disconnects: each connection reconnects with backoff, and the node keeps
serving; what it publishes meanwhile waits in the outbox. After reconnecting, a
node rewrites its hash, waits (at most C{SUBSCRIBERS_WAIT} seconds) until as
many nodes listen as it knows, since after a Redis restart whatever is
published before a node resubscribes never reaches it, and then publishes its
whole state (C{sync}), so that nodes that gave it up take its users back,
followed by its queue. Once its subscriber is back, it reads everyone else's
hashes, and catches its local members up on room messages from the database
and on direct messages kept in Redis, from C{CATCH_UP_MARGIN} seconds before
the connection was lost.
"""

import json
import uuid
from functools import partial
from typing import TYPE_CHECKING, Optional

import txredisapi
from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.config import DEFAULTS
from chatd.core.events import Event, fromWire
from chatd.fanout import directlog
from chatd.fanout.checks import Dropped
from chatd.fanout.connections import CommandProtocol, Connections, failedWrite
from chatd.fanout.events import encodeValue
from chatd.fanout.limits import GuestNumbers, RedisWindow, timestamp
from chatd.fanout.nodes import BEAT, TTL, Nodes
from chatd.fanout.outbox import Outbox
from chatd.fanout.presence import Presence
from chatd.fanout.receiving import PRESENCE, Reader, Receiver
from chatd.fanout.rooms import CATCH_UP_MARGIN, RoomEvents
from chatd.interfaces import IFanout
from chatd.names import fold
from chatd.outage import Outage

if TYPE_CHECKING:
    from chatd.core.service import ChatService

log = Logger()

SUBSCRIBERS_WAIT = 5.0


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

    def __init__(self, url: str, clock: IReactorTime, nodeId: Optional[str] = None,
                 endpoint: Optional[IStreamClientEndpoint] = None, ttl: float = TTL,
                 beat: float = BEAT, startTimeout: float = DEFAULTS.startTimeout) -> None:
        self.clock = clock
        self.nodeId = nodeId or uuid.uuid4().hex[:12]
        self.connections = Connections(url, clock, self.nodeId, endpoint)
        self.where = self.connections.where
        self._source = {"n": self.nodeId, "i": uuid.uuid4().hex[:8]}
        self.ttl = ttl
        self.beat = beat
        self.startTimeout = startTimeout
        # Commands that fail on a connection that seems up (a frozen Redis)
        # fall back to this node's own answers; logged once per outage.
        self.outage = Outage("Redis at " + self.where, clock,
                             "limits and room timestamps come from this node alone "
                             "until it is back")
        self.outbox = Outbox(self.connections)
        self.invalid = Dropped()
        self._guests = GuestNumbers(self.connections)
        self.service: Optional[ChatService] = None
        self._joined = False
        self._sequence = 0
        self.beating: Optional[LoopingCall] = None
        self._recovering: Optional[Deferred] = None
        # The wait for subscribers after the command connection came up
        # (L{_release}); stopping cancels it, so what it holds goes out
        # before the goodbye and no timer outlives the node.
        self._releasing: Optional[Deferred] = None

    def attach(self, service: "ChatService") -> None:
        """
        Serve C{service} (the core), without connecting yet: L{start} does both.
        """
        self.service = service
        view = service.view
        self._view = view
        deliver = partial(_deliver, service)
        self.rooms = RoomEvents(self.connections, self.outbox, view, deliver)
        self.presence = Presence(self.connections, self.outbox, view, self.rooms, self._source,
                                 self.ttl)
        self.nodes = Nodes(self.nodeId, self.connections, self.outbox, view, self.presence,
                           self.rooms, service, self.invalid, self._expired, self.ttl)
        reader = Reader(view, self.invalid)
        self.directs = directlog.DirectLog(self.nodeId, self.connections, self.outbox, reader,
                                           deliver)
        self.receiver = Receiver(self.nodeId, reader, service, self.nodes, self.rooms,
                                  self.presence, self.directs, self.outbox)

    # -- lifecycle ----------------------------------------------------------

    def start(self, service: "ChatService") -> "Deferred[None]":
        self.attach(service)
        self.connections.start(self._commandsUp, self._commandsLost, self._subscriberUp,
                               self.receiver)
        log.info("node {node} joining the cluster at redis {where}", node=self.nodeId,
                 where=self.where)
        return Deferred.fromCoroutine(self._join())

    async def _join(self):
        await self.connections.waitUntilUp(self.startTimeout)
        await self._guests.fetch()
        await self.nodes.reconcileAll()
        self._joined = True
        self.beating = beating = LoopingCall(self._beat)
        beating.clock = self.clock
        beating.start(self.beat, now=False)
        log.info("node {node} joined: {nodes} other node(s)", node=self.nodeId,
                 nodes=len(self.nodes.known))

    def stop(self) -> "Deferred[None]":
        return Deferred.fromCoroutine(self._leave())

    async def _leave(self):
        connections = self.connections
        connections.stopping = True
        if self.beating is not None and self.beating.running:
            self.beating.stop()
        if self._releasing is not None:
            self._releasing.cancel()
        commands = connections.commands
        if commands is not None:
            bye = json.dumps(dict(self._source, c="bye"))
            d = gatherResults([
                maybeDeferred(commands.execute_command, *args) for args in [
                    ("DEL", self.presence.heartbeatKey, self.presence.usersKey),
                    ("SREM", "chatd:nodes", self.nodeId),
                    ("PUBLISH", connections.cluster, bye)]], consumeErrors=True)
            try:
                await d.addTimeout(2, self.clock)
            except Exception:
                log.warn("node {node} left without saying goodbye", node=self.nodeId)
        if self.outbox:
            log.warn("{count} events were never published", count=len(self.outbox))
        await connections.stop()

    # -- connections coming and going ---------------------------------------

    def _commandsUp(self, protocol):
        """
        A command connection is up: tell the cluster who is here, then send
        what waited.
        """
        self.outbox.hold()
        self.presence.writeAll()
        self._releasing = Deferred.fromCoroutine(self._release(protocol))
        self._releasing.addErrback(_releaseFailed)

    async def _release(self, protocol: CommandProtocol) -> None:
        """
        Publish this node's state and what it queued once the other nodes
        listen again: after Redis restarts, every node reconnects at its own
        pace, and what is published before a node resubscribes never reaches
        it (a direct message is stored nowhere else). Waits at most
        C{SUBSCRIBERS_WAIT} seconds for as many subscribers as there are known
        nodes, this one included.
        """
        connections = self.connections
        try:
            deadline = self.clock.seconds() + SUBSCRIBERS_WAIT
            while self.clock.seconds() < deadline and connections.commands is protocol:
                reply = await protocol.execute_command("PUBSUB", "NUMSUB", connections.cluster)
                if int(reply[1]) >= len(self.nodes.known) + 1:
                    break
                await deferLater(self.clock, 0.05)
            if connections.commands is protocol:
                self.presence.publishSync()
        except txredisapi.ConnectionError:
            pass
        finally:
            self.outbox.release()

    def _commandsLost(self):
        self.outbox.lost()
        if not self.connections.stopping:
            log.warn("redis command connection lost; {queued} event(s) queued",
                     queued=len(self.outbox))

    async def _subscriberUp(self, protocol):
        await self.rooms.resubscribe(protocol)
        if self._joined:
            self._recover()

    def _expired(self):
        if self._joined:
            log.warn("node {node}'s heartbeat had expired; announcing it again",
                     node=self.nodeId)
            self.presence.announce()

    def _recover(self):
        """
        The subscriber connection is back: read everyone's state again and
        catch local members up on the messages missed meanwhile.
        """
        since, self.connections.lostAt = self.connections.lostAt, None

        async def recover():
            try:
                await self.connections.whenCommandsUp()
                await self.nodes.reconcileAll()
            except Exception:
                log.failure("re-reading the cluster's state after reconnecting")
            if since is not None:
                await self.rooms.catchUp(list(self.rooms.wanted), since)
                await self.directs.catchUp(since, CATCH_UP_MARGIN)
        d = Deferred.fromCoroutine(recover())
        self._recovering = d
        d.addErrback(lambda f: log.failure("recovering after a reconnect", f))

    # -- publishing ---------------------------------------------------------

    def publish(self, typed: Event) -> None:
        if self.service is None or self.connections.stopping:
            return
        # The core's typed event; the parts below work on its wire form.
        event = typed.toWire()
        kind = event["t"]
        if kind == "message":
            self.rooms.record(fold(event["room"]), event["ts"], event["sender"],
                              event["envelope"])
        if kind in PRESENCE:
            self.presence.changed(event, local=True)
        self._sequence += 1
        payload = json.dumps(dict(self._source, s=self._sequence, e=encodeValue(event)),
                             separators=(",", ":"))
        if kind == "message":
            channel = self.rooms.channel(event["room"])
        elif kind.startswith("file-"):
            channel = self.connections.nodeChannel(event["node"])
        else:
            channel = self.connections.cluster
        self.outbox.enqueue(("PUBLISH", channel, payload))
        if kind == "direct":
            self.directs.keep(payload)
        self.outbox.flush()

    # -- heartbeats ---------------------------------------------------------

    def _beat(self):
        """
        One beat of the L{LoopingCall}: never fails, or the loop would stop.
        """
        if self.connections.commands is None:
            return None
        return Deferred.fromCoroutine(self._beatAndSweep()).addErrback(
            lambda f: log.failure("heartbeat", f))

    async def _beatAndSweep(self):
        self._prune()
        subscriber = self.connections.subscriber
        if subscriber is not None:
            maybeDeferred(subscriber.ping).addErrback(failedWrite, "PING")
        await self.nodes.sweep()
        if self._guests.low():
            await self._guests.fetch()

    def _prune(self):
        """
        Forget delivered messages too old for any catch-up to ask about; kept
        whole while a catch-up may still come.
        """
        if self.connections.lostAt is not None or self.connections.subscriber is None:
            return
        now = self.clock.seconds()
        self.rooms.prune(int((now - 2 * CATCH_UP_MARGIN) * 1000))
        self.directs.prune(now)

    # -- the rest of IFanout, and health --------------------------------------

    def connected(self) -> bool:
        """
        Whether both connections to Redis are up, for the metrics.
        """
        return self.connections.connected()

    def ping(self) -> Deferred:
        """
        A round trip to Redis, for the health check.

        @return: a L{Deferred} that fails when Redis is not connected or errs.
        """
        return self.connections.command("PING")

    def guestNumber(self) -> int:
        return self._guests.next(refill=self._joined)

    def window(self, name: str, count: Optional[int], seconds: float) -> RedisWindow:
        owner = "%s:%s" % (self.nodeId, self._source["i"])
        return RedisWindow(self.connections, self.outage, owner, name, count, seconds)

    def timestamp(self, room: str, now: int, last: int) -> "Deferred[int]":
        return timestamp(self.connections, self.outage, room, now, last)


def _releaseFailed(failure: Failure) -> None:
    if not failure.check(CancelledError):
        log.failure("resuming publishing", failure)


def _deliver(service: "ChatService", node: str, event: dict) -> None:
    """
    Hand the core an event read from Redis, in the core's typed form.
    """
    service.remoteEvent(node, fromWire(event))
