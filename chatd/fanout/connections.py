# -*- test-case-name: chatd.test.test_fanout -*-
"""
A node's two connections to Redis: one for commands and publishing, one in
subscribe mode, each kept up by a L{ClientService} that reconnects with
backoff.

On each new connection this module logs in (C{AUTH}) and chooses the database
(C{SELECT}), then tells the fan-out through the hooks given to
L{Connections.start}; the fan-out decides what to send again. Keys live in the
database the URL names; Redis channels are not per database, so channel names
carry the number, and clusters on different numbers of one Redis do not hear
each other.
"""

from functools import partial
from typing import Any, Awaitable, Callable, List, Optional

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.errors import Unavailable
from chatd.redisurl import redisURL
from chatd.startup import keepTrying

log = Logger()

REPLY_TIMEOUT = 5.0


class CommandProtocol(txredisapi.BaseRedisProtocol):
    """
    The connection for commands and publishing; tells the fan-out when it is lost.
    """

    def connectionLost(self, why: Failure) -> None:
        txredisapi.BaseRedisProtocol.connectionLost(self, why)
        self.factory.lost(self)


class SubscriberProtocol(txredisapi.SubscriberProtocol):
    """
    The connection in subscribe mode; hands each message to the fan-out.
    """

    def messageReceived(self, pattern: Optional[str], channel: str, message: str) -> None:
        self.factory.received(channel, message)

    def connectionLost(self, why: Failure) -> None:
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


class Connections:
    """
    The command and subscriber connections of one node.

    @ivar commands: the connected L{CommandProtocol}, or L{None}.
    @ivar subscriber: the connected L{SubscriberProtocol}, or L{None}.
    @ivar connectedAt: when the command connection last came up.
    @ivar lostAt: when the subscriber connection was lost, until the fan-out
        has caught up on what it missed (it sets this back to L{None}).
    @ivar stopping: whether the node is leaving (losses are then expected).
    @ivar cluster: the channel of everything but room messages and file events.
    """

    def __init__(self, url: str, clock: IReactorTime, nodeId: str,
                 endpoint: Optional[IStreamClientEndpoint] = None) -> None:
        address = redisURL(url)
        host, port, db = address.host, address.port, address.db
        self.clock = clock
        self.where = "%s%s:%d/%d" % ("tls:" if address.tls else "", host, port, db)
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
        self.endpoint = endpoint
        self._channels = "chatd:%d:" % (db,)
        self.cluster = self._channels + "cluster"
        self._own = self.nodeChannel(nodeId)
        # txredisapi's base classes: a test may stand in a fake of its own.
        self.commands: Optional[txredisapi.BaseRedisProtocol] = None
        self.subscriber: Optional[txredisapi.SubscriberProtocol] = None
        self.connectedAt: Optional[float] = None
        self.lostAt: Optional[float] = None
        self.stopping = False
        self._commandService: Optional[ClientService] = None
        self._subscriberService: Optional[ClientService] = None

    def roomChannel(self, roomKey: str) -> str:
        """
        The channel of the room whose folded name is C{roomKey}.
        """
        return self._channels + "room:" + roomKey

    def nodeChannel(self, nodeId: str) -> str:
        """
        The channel of the events for node C{nodeId} alone (file transfers).
        """
        return self._channels + "node:" + nodeId

    def start(self, commandsUp: Callable[[CommandProtocol], object],
              commandsLost: Callable[[], object],
              subscriberUp: Callable[[SubscriberProtocol], Awaitable[object]],
              received: Callable[[str, Any], object]) -> None:
        """
        Connect both, and keep them connected until L{stop}.

        @param commandsUp: called with the command protocol once it is ready.
        @param commandsLost: called once the command connection is lost.
        @param subscriberUp: called with the subscriber protocol once it
            listens on the cluster channel; may return a L{Deferred} the
            connection waits for before it counts as made.
        @param received: called with C{(channel, message)} for each message.
        """
        self._commandsUp, self._commandsLostHook = commandsUp, commandsLost
        self._subscriberUp = subscriberUp
        policy = backoffPolicy(initialDelay=0.5, maxDelay=5.0, factor=2.0)
        self._commandService = commandService = ClientService(
            self.endpoint, _Factory(CommandProtocol, self.clock, self._commandsLost),
            retryPolicy=policy, clock=self.clock, prepareConnection=self._commandsMade)
        self._subscriberService = subscriberService = ClientService(
            self.endpoint, _Factory(SubscriberProtocol, self.clock, self._subscriberLost, received),
            retryPolicy=policy, clock=self.clock, prepareConnection=self._subscriberMade)
        commandService.startService()
        subscriberService.startService()

    async def waitUntilUp(self, timeout: float) -> None:
        """
        Wait until both connections are up, for C{timeout} seconds at most.

        @raise chatd.startup.StartupError: when they are not up in time.
        """
        what = "Redis at " + self.where
        for service in (self._subscriberService, self._commandService):
            # Each attempt waits for the service's next connection attempt,
            # which it makes on its own backoff: no wait of our own between.
            await keepTrying(partial(self._connected, service), self.clock, timeout, what,
                             policy=lambda failures: 0)

    def whenCommandsUp(self) -> Deferred:
        """
        @return: a L{Deferred} that fires with the command protocol once the
            command connection is up.
        """
        service = self._commandService
        if service is None:
            raise RuntimeError("whenCommandsUp() before start()")
        return service.whenConnected()

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

    def stop(self) -> "Deferred[List[None]]":
        """
        Disconnect both and stop reconnecting.

        @return: a L{Deferred} that fires when both are closed.
        """
        self.stopping = True
        return gatherResults([service.stopService()
                              for service in (self._commandService, self._subscriberService)
                              if service is not None and service.running])

    async def _commandsMade(self, protocol):
        """
        A command connection is up: log in, choose the database, then hand it over.
        """
        if self._auth:
            await protocol.execute_command("AUTH", *self._auth)
        if self._db:
            await protocol.execute_command("SELECT", self._db)
        self.commands = protocol
        self.connectedAt = self.clock.seconds()
        log.info("redis command connection up ({where})", where=self.where)
        self._commandsUp(protocol)

    def _commandsLost(self, protocol):
        # ClientService holds one connection at a time, so the one lost is the
        # current one, or one that never became current.
        self.commands = None
        self._commandsLostHook()

    async def _subscriberMade(self, protocol):
        if self._auth:
            await protocol.execute_command("AUTH", *self._auth)
        await protocol.subscribe(self.cluster)
        await protocol.subscribe(self._own)
        self.subscriber = protocol
        log.info("redis subscriber connection up ({where})", where=self.where)
        await self._subscriberUp(protocol)

    def _subscriberLost(self, protocol):
        self.subscriber = None
        if self.lostAt is None:
            self.lostAt = self.clock.seconds()
        if not self.stopping:
            log.warn("redis subscriber connection lost; events from other nodes are "
                     "missed until it is back")

    def connected(self) -> bool:
        """
        Whether both connections are up.
        """
        return self.commands is not None and self.subscriber is not None

    def command(self, *args: Any) -> Deferred:
        """
        Run one command on the command connection.

        @return: a L{Deferred} of its reply; it fails with
            L{txredisapi.ConnectionError} when not connected.
        """
        commands = self.commands
        if commands is None:
            return maybeDeferred(self._notConnected)
        return maybeDeferred(commands.execute_command, *args)

    def eval(self, script: str, keys: List[str], args: List[Any]) -> Deferred:
        """
        Run one of L{chatd.fanout.scripts}, as L{command} runs a command.
        """
        commands = self.commands
        if commands is None:
            return maybeDeferred(self._notConnected)
        return maybeDeferred(commands.eval, script, keys, args)

    def write(self, *args: Any) -> None:
        """
        Run a command whose reply nobody waits for; a failure other than a
        lost connection is logged.
        """
        self.command(*args).addErrback(failedWrite, args[0])

    @staticmethod
    def _notConnected():
        raise txredisapi.ConnectionError("not connected to redis")


def failedWrite(failure: Failure, command: str) -> None:
    """
    Log a write nobody waits for that failed, unless for a lost connection
    (what is lost then is sent again after reconnecting, or not needed).
    """
    if not failure.check(txredisapi.ConnectionError):
        log.failure("redis {command} failed", failure, command=command)
