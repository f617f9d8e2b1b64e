# -*- test-case-name: chatd.test.test_tap -*-
"""
C{twistd chatd}: command-line options, and the service tree they describe.

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
from twisted.python import usage

import chatd
from chatd import datadir
from chatd.config import (
    DEFAULT_LISTENERS,
    DEFAULTS,
    FIELDS,
    parseBcryptCost,
    parseCount,
    parseDatabase,
    parseFileSize,
    parseGuestRooms,
    parseLogFormat,
    parseNetworks,
    parseOrigins,
    parseRate,
    parseRedis,
    parseRetentionDays,
    parseSeconds,
    parseSize,
    parseText,
    parseWindow,
    readConfigFile,
    settingsFrom,
)
from chatd.core.service import ChatService
from chatd.logs import LoggedService, certificateOf, jsonObserver, logListening
from chatd.metrics import Metrics, TimedStore
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.proxied import serverEndpoint
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeOperatorSite, makeSite
from chatd.registration import parseRegistration
from chatd.retention import Retention
from chatd.shutdown import stopCleanlyOnTerm
from chatd.startup import FailedStart, StartupError, describe
from chatd.store import makeStore
from chatd.tls import RestrictedTLSReactor

log = Logger()


class Options(usage.Options):
    """
    The options of C{twistd chatd}. After parsing, C{self["settings"]} is the
    L{chatd.config.Settings} to run with.

    Every option is left unset (L{None}) unless given, so that C{postOptions} can
    tell an option given with its default value from one not given at all, and
    let the command line override the config file only where it says something.
    """

    synopsis = "[options]"
    longdesc = (
        "Run chatd, an end-to-end encrypted chat server. Listeners are Twisted "
        "server endpoint strings, such as tcp:4017:interface=127.0.0.1 or "
        "ssl:4017:privateKey=key.pem:certKey=cert.pem; an ssl: listener that "
        "names no key, such as the default ssl:4017, uses the certificate chatd "
        "generates in its data directory. Every "
        "option but --config and --no-guests can also be set in the [chatd] "
        "section of the config file, under the same name without dashes in "
        "front (idle-timeout = 30); the command line wins over the file."
    )

    optParameters = [
        ["config", None, None, "Read settings from this INI file."],
        [
            "data-dir",
            None,
            None,
            "Directory for the database, the at-rest key and the TLS "
            "certificate, created on first start [default: %s]." % (DEFAULTS.dataDir,),
            parseText,
        ],
        [
            "db",
            None,
            None,
            "Database URL [default: sqlite:DATA-DIR/chatd.sqlite].",
            parseDatabase,
        ],
        [
            "idle-warning",
            None,
            None,
            "Seconds of silence before a session is warned [default: %g]."
            % (DEFAULTS.idleWarning,),
            parseSeconds,
        ],
        [
            "idle-timeout",
            None,
            None,
            "Seconds of silence before a session is disconnected [default: %g]."
            % (DEFAULTS.idleTimeout,),
            parseSeconds,
        ],
        [
            "rate-limit",
            None,
            None,
            "Messages a user may send per window, as MESSAGES/SECONDS "
            "[default: %d/%g]." % DEFAULTS.rateLimit,
            parseRate,
        ],
        [
            "login-limit",
            None,
            None,
            "Failed logins or room passwords allowed per account or room from one "
            "address, as FAILURES/SECONDS [default: %d/%g]; past as many from all "
            "addresses, attempts are slowed down." % DEFAULTS.loginLimit,
            parseRate,
        ],
        [
            "login-delay",
            None,
            None,
            "Longest wait before checking a password for an account or room that "
            "has many failures from all addresses, in seconds [default: %g]."
            % (DEFAULTS.loginDelay,),
            parseSeconds,
        ],
        [
            "address-limit",
            None,
            None,
            "Failed logins or room passwords allowed per client address, as "
            "FAILURES/SECONDS [default: %d/%g]." % DEFAULTS.addressLimit,
            parseRate,
        ],
        [
            "register-limit",
            None,
            None,
            "Registration attempts allowed per client address, as "
            "ATTEMPTS/SECONDS [default: %d/%g]." % DEFAULTS.registerLimit,
            parseRate,
        ],
        [
            "max-frame",
            None,
            None,
            "Largest frame a client may send, in bytes [default: %d]."
            % (DEFAULTS.maxFrame,),
            parseSize,
        ],
        [
            "history-limit",
            None,
            None,
            "Messages HISTORY returns when the client asks for 0 "
            "[default: %d, at most %d]." % (DEFAULTS.historyLimit, DEFAULTS.historyMax),
            parseCount,
        ],
        [
            "send-queue",
            None,
            None,
            "Bytes that may wait to be sent to one connection before it is "
            "dropped as too slow [default: %d]." % (DEFAULTS.sendQueue,),
            parseSize,
        ],
        [
            "send-budget",
            None,
            None,
            "Bytes that may wait to be sent to all connections together; the "
            "connection that goes over it is dropped [default: %d]."
            % (DEFAULTS.sendBudget,),
            parseSize,
        ],
        [
            "create-limit",
            None,
            None,
            "Rooms a user may create per window, as ROOMS/SECONDS "
            "[default: %d/%g]." % DEFAULTS.createLimit,
            parseRate,
        ],
        [
            "create-address-limit",
            None,
            None,
            "Rooms that may be created from one client address per window, as "
            "ROOMS/SECONDS [default: %d/%g]." % DEFAULTS.createAddressLimit,
            parseRate,
        ],
        [
            "join-limit",
            None,
            None,
            "JOIN requests a user may make per window, as JOINS/SECONDS "
            "[default: %d/%g]." % DEFAULTS.joinLimit,
            parseRate,
        ],
        [
            "join-address-limit",
            None,
            None,
            "JOIN requests one client address may make per window, as "
            "JOINS/SECONDS [default: %d/%g]." % DEFAULTS.joinAddressLimit,
            parseRate,
        ],
        [
            "guest-rooms",
            None,
            None,
            "Rooms one guest may create, 0 for none [default: %d]."
            % (DEFAULTS.guestRooms,),
            parseGuestRooms,
        ],
        [
            "address-connections",
            None,
            None,
            "Connections one client address may hold open at once [default: %d]."
            % (DEFAULTS.addressConnections,),
            parseCount,
        ],
        [
            "hello-timeout",
            None,
            None,
            "Seconds a new connection has to say HELLO before it is closed "
            "[default: %g]." % (DEFAULTS.helloTimeout,),
            parseSeconds,
        ],
        [
            "replay-entries",
            None,
            None,
            "Envelope ids the replay cache holds at most [default: %d]."
            % (DEFAULTS.replayEntries,),
            parseCount,
        ],
        [
            "bcrypt-cost",
            None,
            None,
            "bcrypt cost factor for new password hashes, 4 to 31 [default: %d]."
            % (DEFAULTS.bcryptCost,),
            parseBcryptCost,
        ],
        [
            "window",
            None,
            None,
            "Chunks a file sender may send ahead of the slowest recipient, 1 to "
            "65535 [default: %d]." % (DEFAULTS.window,),
            parseWindow,
        ],
        [
            "offer-timeout",
            None,
            None,
            "Seconds recipients have to answer a file offer [default: %g]."
            % (DEFAULTS.offerTimeout,),
            parseSeconds,
        ],
        [
            "chunk-timeout",
            None,
            None,
            "Seconds a file recipient has to acknowledge a chunk, and a sender to "
            "send the next [default: %g]." % (DEFAULTS.chunkTimeout,),
            parseSeconds,
        ],
        [
            "max-file-size",
            None,
            None,
            "Largest file that may be offered, in bytes; 0 for no limit "
            "[default: %d]." % (DEFAULTS.maxFileSize,),
            parseFileSize,
        ],
        [
            "max-transfers",
            None,
            None,
            "File transfers one user may have pending or running at once "
            "[default: %d]." % (DEFAULTS.maxTransfers,),
            parseCount,
        ],
        [
            "redis",
            None,
            None,
            "Join a cluster through this Redis, redis://host:port/N (rediss:// "
            "for TLS; [user]:password@ before the host to log in); every node "
            "of it shares one database (--db postgresql://...) and one at-rest "
            "key (--key-file) [default: no cluster].",
            parseRedis,
        ],
        [
            "key-file",
            None,
            None,
            "Read the at-rest keys from this file (mode 0600) instead of "
            "DATA-DIR/at-rest.key; every node of a cluster gets a copy of one.",
            parseText,
        ],
        [
            "start-timeout",
            None,
            None,
            "Seconds to keep trying to reach the database server and Redis at "
            "start before giving up [default: %g]." % (DEFAULTS.startTimeout,),
            parseSeconds,
        ],
        [
            "db-timeout",
            None,
            None,
            "Seconds the database has to answer each request before the client "
            "is told it is unavailable; also PostgreSQL's connect and statement "
            "timeouts [default: %g]." % (DEFAULTS.dbTimeout,),
            parseSeconds,
        ],
        [
            "stop-timeout",
            None,
            None,
            "Seconds a stopping server gives its connections to finish the "
            "requests they sent, after telling them it is going away "
            "[default: %g]." % (DEFAULTS.stopTimeout,),
            parseSeconds,
        ],
        [
            "web-origins",
            None,
            None,
            "Web origins whose pages may open the WebSocket door besides the "
            "site's own, such as https://chat.example.com, separated by commas "
            "[default: none].",
            parseOrigins,
        ],
        [
            "trusted-proxies",
            None,
            None,
            "Addresses or networks (10.0.0.0/8) of HTTP proxies in front of the "
            "web door; from these, X-Forwarded-For names the client "
            "[default: none].",
            parseNetworks,
        ],
        [
            "metrics",
            None,
            None,
            "Serve /metrics and /healthz on this endpoint (such as "
            "tcp:9017:interface=127.0.0.1) instead of on the web door "
            "[default: on the web door].",
            parseText,
        ],
        [
            "access-log",
            None,
            None,
            "Write an HTTP access log of the web door to this file "
            "[default: none].",
            parseText,
        ],
        [
            "log-format",
            None,
            None,
            "How the log is written: text or json, one JSON object per line "
            "[default: text].",
            parseLogFormat,
        ],
        [
            "registration",
            None,
            None,
            "Who may register an account: open (anyone), invite (with a token "
            "from python -m chatd.admin invite) or closed (accounts only from "
            "python -m chatd.admin create-user) [default: %s]."
            % (DEFAULTS.registration,),
            parseRegistration,
        ],
        [
            "retention-days",
            None,
            None,
            "Delete room history older than this many days, at start and then "
            "daily; 0 keeps it forever [default: %d]." % (DEFAULTS.retentionDays,),
            parseRetentionDays,
        ],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        for door in DEFAULT_LISTENERS:
            self[door] = []
        self["allow-guests"] = None

    def opt_version(self):
        """Print chatd's version and exit."""
        chatd.printVersion()

    def opt_binary(self, description):
        """Listen for the binary protocol here; repeatable; "none" for no
        binary door [default: ssl:4017]."""
        self["binary"].append(description)

    def opt_text(self, description):
        """Listen for the text protocol here; repeatable; "none" for no text
        door [default: ssl:4018]."""
        self["text"].append(description)

    def opt_web(self, description):
        """Serve the browser client and its WebSocket door (/ws) here;
        repeatable; "none" for no web door [default: tcp:8017:interface=127.0.0.1]."""
        self["web"].append(description)

    def opt_allow_guests(self):
        """Let people in without an account [default]."""
        self["allow-guests"] = True

    def opt_no_guests(self):
        """Accept only registered accounts."""
        self["allow-guests"] = False

    def parseOptions(self, options=None):
        """
        Parse the command line; under twistd, report a mistake in it as one
        line, rather than let twistd print it under its whole usage text.

        @raise UsageError: for a mistake, when not run by twistd (the tests).
        @raise SystemExit: for a mistake, under twistd (whose options are
            then this one's parent).
        """
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            raise SystemExit("chatd: %s (twistd chatd --help lists the options)" % (e,))

    def postOptions(self):
        """
        Merge the defaults, the config file and the command line into
        C{self["settings"]}, and check the result.
        """
        values = readConfigFile(self["config"]) if self["config"] else {}
        for key in FIELDS:
            if key in DEFAULT_LISTENERS:
                if self[key]:
                    values[key] = tuple(self[key])
            elif self[key] is not None:
                values[key] = self[key]
        self["settings"] = settingsFrom(values)


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
    store = TimedStore(makeStore(settings.db, dataDir.keys, reactor, timeout=settings.dbTimeout),
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
    doors = {
        "binary": BinaryFactory(chat),
        "text": TextFactory(chat),
        "web": makeSite(chat, WEB_DIRECTORY, reactor, operatorPages=not settings.metrics),
    }
    listening = RestrictedTLSReactor(reactor)
    for door, factory in doors.items():
        for description in getattr(settings, door):
            listeners.listen(door, description, serverEndpoint(listening, description),
                             factory)
    if settings.metrics:
        listeners.listen("metrics", settings.metrics,
                         serverEndpoint(listening, settings.metrics),
                         makeOperatorSite(chat, reactor))
    return top
