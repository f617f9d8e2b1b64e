# -*- test-case-name: chatd.test.test_client -*-
"""
The terminal client's connection to the server: dialled, and redialled with
backoff, by a L{ClientService}, and prepared before any command may use it.

Its C{prepareConnection} brings each new connection back to where the last one
was (greeted, logged in, rooms rejoined: L{chatd.client.chat.ChatClient}'s
C{_resume}) before any command may use it. That preparation never fails:
L{ClientService} cannot take a connection that is lost while it is being
prepared and then reported as failed (automat raises C{NoTransition} for the
loss), so a preparation that goes wrong closes its connection, waits until it
is gone and returns; the service then sees an ordinary disconnection and
redials. What cannot get better by redialling (a refused certificate, a refused
login) stops the client instead.
"""

from typing import Any

from OpenSSL import SSL
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.client.connection import CertificateRefused, ClientProtocol, ServerError
from chatd.client.errors import ClientError

log = Logger()

RATE_LIMITED = 0x02

# How many times a command waits for a fresh connection before giving up; each
# wait ends with a connection, or a failed attempt.
CONNECT_TRIES = 3


class Reconnecting:
    """
    The connection part of L{chatd.client.chat.ChatClient}, which it is mixed
    into: a mixin rather than an object of its own so that splitting the
    client's module changed no behaviour; it uses the client's C{clock},
    C{ui}, C{checkPeer}, C{files}, C{_resume}, C{_event} and C{_tell}.

    @ivar protocol: the connection ready for commands, or L{None}.
    """

    # What the object this is mixed into provides (for type checkers).
    _event: Any
    _resume: Any
    _tell: Any
    checkPeer: Any
    clock: Any
    files: Any
    ui: Any

    def _initConnection(self, endpoint, retryPolicy):
        """
        Set up, without connecting yet (L{start} does).
        """
        self.protocol = None
        self._preparing = None
        self._everConnected = False
        self._stopping = False
        self._connectionWaiters = []
        self._service = ClientService(
            endpoint, Factory.forProtocol(self._buildProtocol),
            retryPolicy=retryPolicy or backoffPolicy(maxDelay=30),
            clock=self.clock, prepareConnection=self._prepare)

    def start(self):
        """
        Connect, and keep reconnecting when the connection drops.
        """
        self._service.startService()

    def stop(self):
        """
        Close the connection for good.

        @return: a L{Deferred} that fires once it is closed.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self):
        self._stopping = True
        self._stopWaiting()
        if self._preparing is not None:
            # ClientService cannot be stopped while a connection is being
            # prepared (it would cancel the preparation and then trip over the
            # connection's loss): close that connection, let the service see
            # an ordinary disconnection, then stop it.
            preparing = self._preparing
            preparing.transport.loseConnection()
            await preparing.prepared
            await deferLater(self.clock, 0)
        await self._service.stopService()
        # The connection is gone, and with it every transfer: let their
        # temporary files be deleted before the process may end.
        await self.files.settled()

    def _buildProtocol(self):
        # Events carry the connection they came on: a file transfer lives and
        # dies with its connection.
        protocol = ClientProtocol(self.clock, None, self.checkPeer)
        protocol.onEvent = lambda op, values: self._event(op, values, protocol)
        return protocol

    async def _prepare(self, proxy):
        """
        Make a new connection usable (see the module docstring for why this
        never fails).

        @param proxy: what L{ClientService} wraps our protocol in.
        """
        if self._stopping:
            await self._drop(proxy)
            return
        self._preparing = proxy
        proxy.prepared = Deferred()
        try:
            await self._prepareOn(proxy)
        finally:
            self._preparing = None
            proxy.prepared.callback(None)

    async def _prepareOn(self, proxy):
        try:
            protocol = await proxy.ready
            if protocol.peerNotice:
                self.ui.notice(protocol.peerNotice)
            await self._resume(protocol)
        except Exception as e:
            failure = Failure()
            wasLost = not proxy.connected
            await self._drop(proxy)
            if self._stopping:
                return
            if isinstance(e, CertificateRefused):
                self._fatal(str(e))
            elif isinstance(e, SSL.Error):
                self._fatal("TLS with the server failed, so nothing was sent: %s. Is the "
                            "certificate right for this host (--ca), and does the server "
                            "speak TLS on this port?" % (_sslReason(e),))
            elif isinstance(e, ServerError) and e.status != RATE_LIMITED:
                self._fatal("the server refused to resume the session: %s" % (e.message,))
            elif isinstance(e, (ServerError, ClientError)):
                self.ui.notice("could not resume the session (%s); trying again" % (e,))
            elif not wasLost:
                log.failure("preparing a connection", failure)
            return
        if self._stopping:
            await self._drop(proxy)
            return
        self.protocol = protocol
        protocol.lost.addCallback(self._lost, protocol)
        waiters, self._connectionWaiters = self._connectionWaiters, []
        for d in waiters:
            d.callback(None)

    @property
    def connected(self) -> bool:
        """
        Whether a connection is ready for commands (greeted, logged in again,
        rooms rejoined).
        """
        return self.protocol is not None

    def whenConnected(self):
        """
        Wait, however many attempts it takes, until a connection is ready.

        @return: a L{Deferred} that fires with L{None} then, or fails with
            L{ClientError} when the client stops first.
        """
        if self.protocol is not None:
            return succeed(None)
        if self._stopping:
            return fail(ClientError("the client has stopped"))
        d: Deferred = Deferred()
        self._connectionWaiters.append(d)
        return d

    def _stopWaiting(self):
        waiters, self._connectionWaiters = self._connectionWaiters, []
        for d in waiters:
            d.errback(ClientError("the client has stopped"))

    async def _drop(self, proxy):
        """
        Close a connection we will not use, and wait until it is gone.
        """
        if proxy.lost.called:
            return
        proxy.transport.loseConnection()
        await proxy.lost

    def _fatal(self, message):
        """
        Stop for good and tell the person why. Called as a preparation ends;
        the telling (which may stop the client) waits a turn of the reactor,
        until the service has seen the connection go.
        """
        self._stopping = True
        self._stopWaiting()

        def tell():
            self.ui.fatal(message)
            return self._service.stopService()
        self.clock.callLater(0, tell)

    def _lost(self, reason, protocol):
        self.files.connectionLost(protocol)
        if self.protocol is protocol:
            self.protocol = None
            if not self._stopping:
                self._tell(self.ui.notice, "connection to the server lost; reconnecting")

    async def _connected(self):
        """
        The connection commands may use, waiting for one when there is none.

        The service hands out connections (and failures) from inside its state
        machine, which must not be asked anything before it has finished; so
        every wait ends with a turn of the reactor.

        @raise ClientError: when none comes (the server cannot be reached, or
            the client stopped).
        """
        for _ in range(CONNECT_TRIES):
            if self.protocol is not None:
                return self.protocol
            try:
                protocol = await self._service.whenConnected(failAfterFailures=1)
            except CancelledError:
                await deferLater(self.clock, 0)
                raise ClientError("not connected to the server") from None
            except Exception as e:
                await deferLater(self.clock, 0)
                raise ClientError("cannot reach the server: %s" % (e,)) from None
            await deferLater(self.clock, 0)
            if protocol is self.protocol:
                return protocol
        raise ClientError("not connected to the server")

    async def call(self, op, *values):
        """
        One request on the current connection.
        """
        protocol = await self._connected()
        return await protocol.request(op, *values)


def _sslReason(error):
    """
    The readable part of an OpenSSL error (its reason strings).
    """
    reasons = [entry[-1] for entry in (error.args[0] if error.args else [])
               if isinstance(entry, tuple) and entry]
    return ", ".join(reasons) or str(error)
