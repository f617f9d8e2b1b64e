# -*- test-case-name: chatd.test.test_tap -*-
"""
C{twistd chatd}: the service tree its options (L{chatd.options}) describe.

The tree is::

    MultiService
        ChatService                 the core, opening the store as it starts
        ListenWhenReady             starts its children once the core is ready
            StreamServerEndpointService(--binary endpoint, BinaryFactory)
            ...

so that no connection is accepted before the store is open and the rooms are
loaded, and stopping closes the listeners before the store.
"""

import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, maybeDeferred
from twisted.logger import Logger

import chatd
from chatd import datadir
from chatd.collector import CollectorThresholds
from chatd.core.service import ChatService
from chatd.logs import LoggedService, certificateOf, jsonObserver, logListening
from chatd.metrics import Metrics, TimedStore
from chatd.options import Options as Options  # twistd reads them as chatd.tap.Options
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.proxied import serverEndpoint
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeOperatorSite, makeSite
from chatd.retention import Retention
from chatd.shutdown import stopCleanlyOnTerm
from chatd.startup import FailedStart, StartupError, describe
from chatd.store import makeStore
from chatd.tls import RestrictedTLSReactor

log = Logger()


# The browser client, served at / by the web door.
WEB_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(chatd.__file__)), "web")


class ListenWhenReady(MultiService):
    """
    A L{MultiService} that starts its children (the listeners) only once the core
    is ready, so that no client connects to a server that cannot serve it yet.

    Its children are not started in the privileged phase either, since that
    comes before readiness; a port below 1024 therefore needs the process to
    keep the right to bind it (for example systemd's
    C{AmbientCapabilities=CAP_NET_BIND_SERVICE}).

    If the core never becomes ready, or a door cannot listen, the start has
    failed: see L{chatd.startup}.

    @ivar _whenReady: a callable returning a L{Deferred} that fires when the core
        is ready, or fails if it never will be.
    @ivar _failedStart: called with the L{Failure} of a start that failed, a
        L{chatd.startup.FailedStart}.
    @ivar _doors: what each listener added by L{listen} serves, for messages.
    """

    def __init__(self, whenReady, failedStart):
        MultiService.__init__(self)
        self._whenReady = whenReady
        self._failedStart = failedStart
        self._doors = {}

    def listen(self, door, description, endpoint, factory):
        """
        Add a listener of C{door} on C{endpoint} (made from C{description}),
        serving C{factory}.
        """
        listener = StreamServerEndpointService(endpoint, factory)
        # Raise from startService when the endpoint cannot listen, rather than
        # only log it, as twisted.application.strports.service has it do.
        listener._raiseSynchronously = True
        self._doors[listener] = (door, description)
        listener.setServiceParent(self)

    def privilegedStartService(self):
        """
        Bind nothing yet: see the class docstring.
        """
        Service.privilegedStartService(self)

    def startService(self):
        Service.startService(self)
        self._whenReady().addCallback(self._ready).addErrback(self._failedStart)

    def _ready(self, ignored):
        if self.running:
            for child in self:
                self._startListener(child)
            self._logListening()

    def _logListening(self):
        """
        Log where every listener listens, once all are up (see
        L{chatd.logs.logListening}). The port is only reachable through the
        private C{_waitingForPort} of L{StreamServerEndpointService}: its
        endpoint may choose the port (C{tcp:0}), so the description may not say.
        """
        doors = [self._doors[child] for child in self if child in self._doors]
        ports = [child._waitingForPort for child in self if child in self._doors]
        certificates = [certificateOf(description) for _, description in doors]
        certificate = next((path for path in certificates if path), None)

        def listening(results):
            logListening([(door, port) for (door, _), (ok, port) in zip(doors, results) if ok],
                         certificate)
        DeferredList(ports, consumeErrors=True).addCallback(listening)

    def _startListener(self, child):
        """
        Start one listener; a port in use or not allowed is a failed start,
        naming the door and the endpoint.
        """
        try:
            child.startService()
        except Exception as e:
            door, description = self._doors.get(child, ("a", repr(child)))
            reason = getattr(getattr(e, "socketError", None), "strerror", None) or str(e)
            raise StartupError("the %s door cannot listen on %s: %s"
                               % (door, description, reason)) from e

    def stopService(self):
        """
        Stop the children that were started; those still waiting for the core
        never will be, since L{_ready} checks that this service still runs.
        """
        Service.stopService(self)
        running = [child for child in reversed(self.services) if child.running]
        return DeferredList([maybeDeferred(child.stopService) for child in running])


def makeFanout(settings, reactor):
    """
    The fan-out C{--redis} asks for, or L{None} for a node that is its own
    cluster.

    @raise StartupError: when txredisapi, which C{--redis} needs, is missing.
    """
    if not settings.redis:
        return None
    try:
        from chatd.fanout.redis import RedisFanout
    except ImportError as e:
        raise StartupError("--redis needs txredisapi (pip install 'chatd[redis]'): %s"
                           % (e,)) from None
    if not settings.db.startswith("postgresql:"):
        log.warn("--redis with a database no other node shares ({db}): the nodes will "
                 "not see each other's accounts and history", db=settings.db)
    return RedisFanout(settings.redis, reactor, startTimeout=settings.startTimeout)


def makeService(config, reactor=None, failedStart=None):
    """
    Prepare the data directory and build the service tree.

    @param config: parsed L{Options}.
    @param reactor: what the service listens and keeps time with; the global
        reactor when L{None}.
    @param failedStart: called with the L{Failure} of a start that fails once
        the service runs; by default a L{FailedStart} that stops C{reactor}
        and makes the process exit with an error status.
    @return: an L{IService} to run.
    @raise SystemExit: with one line saying why, when chatd cannot start.
    """
    if reactor is None:
        from twisted.internet import reactor
    if failedStart is None:
        failedStart = FailedStart(reactor)
    try:
        top = _buildService(config["settings"], reactor, failedStart)
    except StartupError as e:
        raise SystemExit(describe(e)) from None
    if config["settings"].logFormat == "json":
        logged = LoggedService(jsonObserver(getattr(config, "parent", None)))
        top.setServiceParent(logged)
        return logged
    return top


def _buildService(settings, reactor, failedStart):
    """
    The work of L{makeService}.

    @raise StartupError: when chatd cannot start.
    """
    dataDir = datadir.prepare(settings.dataDir, keyFile=settings.keyFile or None)
    metrics = Metrics()
    store = TimedStore(makeStore(settings.db, dataDir.keys, reactor, timeout=settings.dbTimeout,
                                 memoryHistory=settings.memoryHistory),
                       metrics)
    chat = ChatService(store, settings, reactor, fanout=makeFanout(settings, reactor),
                       metrics=metrics)
    reactor.callWhenRunning(stopCleanlyOnTerm, reactor)
    top = MultiService()
    chat.setServiceParent(top)
    listeners = ListenWhenReady(chat.whenReady, failedStart)
    listeners.setServiceParent(top)
    if settings.retentionDays:
        Retention(store, settings.retentionDays, reactor, chat.whenReady).setServiceParent(top)
    CollectorThresholds().setServiceParent(top)
    doors = {
        "binary": BinaryFactory(chat),
        "text": TextFactory(chat),
        "web": makeSite(chat, WEB_DIRECTORY, reactor, operatorPages=not settings.metrics),
    }
    listening = RestrictedTLSReactor(reactor, settings.tlsGroups)
    for door, factory in doors.items():
        for description in getattr(settings, door):
            listeners.listen(door, description, serverEndpoint(listening, description),
                             factory)
    if settings.metrics:
        listeners.listen("metrics", settings.metrics,
                         serverEndpoint(listening, settings.metrics),
                         makeOperatorSite(chat, reactor))
    return top
