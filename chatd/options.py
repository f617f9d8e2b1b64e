# -*- test-case-name: chatd.test.test_tap -*-
"""
C{twistd chatd}'s command line: every option, its help, and how the command
line, the config file and the defaults are merged into one
L{chatd.config.Settings}.

Its own module because the option table is long and is about what a person
types, while L{chatd.tap} is about the service tree the settings describe;
twistd finds the options as C{chatd.tap.Options}.
"""

from twisted.python import usage

import chatd
from chatd.config import (
    DEFAULTS,
    FIELDS,
    parseBcryptCost,
    parseCount,
    parseDatabase,
    parseFileSize,
    parseGroups,
    parseGuestRooms,
    parseLogFormat,
    parseNetworks,
    parseOrigins,
    parseRate,
    parseRetentionDays,
    parseSeconds,
    parseSize,
    parseText,
    parseWindow,
    readConfigFile,
    settingsFrom,
)
from chatd.endpoints import DEFAULT_LISTENERS
from chatd.redisurl import parseRedis
from chatd.registration import parseRegistration


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
            "memory-history",
            None,
            None,
            "Messages the memory: store keeps per room, the newest "
            "[default: %d]." % (DEFAULTS.memoryHistory,),
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
        [
            "tls-groups",
            None,
            None,
            "Key-exchange groups of the TLS listeners, in order of preference, "
            "separated by ':'; ?NAME is left out where OpenSSL does not know it "
            "[default: %s]." % (DEFAULTS.tlsGroups,),
            parseGroups,
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
