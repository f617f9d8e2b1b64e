# -*- test-case-name: chatd.test.test_tap -*-
"""
chatd's settings: one frozen value built from defaults, a config file and the
command line, in that order of precedence (the command line wins).

Both sources speak in the same keys: each long command-line option (C{--idle-timeout
30}) is also a key of the config file's C{[chatd]} section (C{idle-timeout = 30}).
Every key has a parser here that turns its text into a typed value or raises
L{ValueError} with a sentence saying what was expected; L{readConfigFile} and the
options in L{chatd.options} both use them, so a value means the same wherever it is
written. L{settingsFrom} then checks the values against each other and fills in
the defaults that depend on the data directory.
"""

import configparser
import ipaddress
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, replace
from typing import Any, Dict, Tuple

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError

from chatd.datadir import tlsPaths
from chatd.endpoints import DEFAULT_LISTENERS, DISABLED, parseEndpoints, withDataDirCertificate
from chatd.redisurl import parseRedis
from chatd.registration import parseRegistration
from chatd.store.engines import engineForURL
from chatd.tls import DEFAULT_GROUPS, knownGroups


@dataclass(frozen=True)
class Settings:
    """
    Everything the service and its front doors are configured with.

    Durations are seconds; limits are C{(count, seconds)} sliding windows.
    """

    dataDir: str = "chatd-data"
    binary: Tuple[str, ...] = ()
    text: Tuple[str, ...] = ()
    web: Tuple[str, ...] = ()
    db: str = ""
    allowGuests: bool = True
    idleWarning: float = 20.0
    idleTimeout: float = 30.0
    rateLimit: Tuple[int, float] = (5, 5.0)
    loginLimit: Tuple[int, float] = (5, 60.0)
    addressLimit: Tuple[int, float] = (20, 60.0)
    loginDelay: float = 10.0
    registerLimit: Tuple[int, float] = (30, 60.0)
    maxFrame: int = 1048576
    historyLimit: int = 50
    historyMax: int = 500
    memoryHistory: int = 1000
    sendQueue: int = 4 * 1024 * 1024
    sendBudget: int = 64 * 1024 * 1024
    createLimit: Tuple[int, float] = (20, 60.0)
    createAddressLimit: Tuple[int, float] = (60, 60.0)
    joinLimit: Tuple[int, float] = (60, 60.0)
    joinAddressLimit: Tuple[int, float] = (300, 60.0)
    guestRooms: int = 3
    addressConnections: int = 256
    helloTimeout: float = 10.0
    replayEntries: int = 200000
    bcryptCost: int = 12
    clockSkew: float = 300.0
    challengeLifetime: float = 60.0
    window: int = 8
    offerTimeout: float = 60.0
    chunkTimeout: float = 30.0
    maxFileSize: int = 0
    maxTransfers: int = 4
    redis: str = ""
    keyFile: str = ""
    startTimeout: float = 30.0
    dbTimeout: float = 5.0
    webOrigins: Tuple[str, ...] = ()
    stopTimeout: float = 5.0
    trustedProxies: Tuple[str, ...] = ()
    metrics: str = ""
    accessLog: str = ""
    logFormat: str = "text"
    registration: str = "open"
    retentionDays: int = 0
    tlsGroups: str = DEFAULT_GROUPS


DEFAULTS = Settings()

SECTION = "chatd"

# The binary protocol's length prefix is a uint32; below this, a REGISTER with
# a 2048-bit key would not fit.
MIN_FRAME = 1024
MAX_FRAME = 2**32 - 1


class ConfigError(UsageError):
    """
    A setting is missing, malformed or contradicts another; the message names it.

    A L{UsageError}, so that twistd reports it with the usage text rather than a
    traceback.
    """


def parseText(value):
    """
    A non-empty string, such as a directory name.
    """
    value = value.strip()
    if not value:
        raise ValueError("expected a value, got nothing")
    return value


def parseDatabase(value):
    """
    A database URL that L{chatd.store.makeStore} accepts: C{memory:},
    C{sqlite:relative/path}, C{sqlite:///absolute/path} or
    C{postgresql://user:password@host:port/database}.
    """
    value = value.strip()
    if value != "memory:":
        engineForURL(value)
    return value


def parseBoolean(value):
    """
    C{yes}/C{no}, C{true}/C{false}, C{on}/C{off} or C{1}/C{0}, any case.
    """
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[value.strip().lower()]
    except KeyError:
        raise ValueError("%r is not yes or no" % (value,))


def parseSeconds(value):
    """
    A positive, finite number of seconds, fractions allowed.
    """
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("%r is not a number of seconds" % (value,))
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("%r is not a positive number of seconds" % (value,))
    return seconds


def _parseWhole(value, low, high):
    """
    A whole number from C{low} to C{high}.
    """
    try:
        number = int(value)
    except ValueError:
        raise ValueError("%r is not a whole number" % (value,))
    if not low <= number <= high:
        raise ValueError("%r is not between %d and %d" % (value, low, high))
    return number


def parseCount(value):
    """
    A whole number, at least 1.
    """
    return _parseWhole(value, 1, MAX_FRAME)


def parseSize(value):
    """
    A size in bytes, of a frame or a buffer: from L{MIN_FRAME} to the largest
    uint32.
    """
    return _parseWhole(value, MIN_FRAME, MAX_FRAME)


def parseGuestRooms(value):
    """
    How many rooms one guest may create: a whole number, 0 for none.
    """
    return _parseWhole(value, 0, MAX_FRAME)


def parseBcryptCost(value):
    """
    A bcrypt cost factor, 4 to 31 (each step doubles the work).
    """
    return _parseWhole(value, 4, 31)


def parseWindow(value):
    """
    A file-transfer window: how many chunks a sender may be ahead, 1 to 65535
    (1 is stop-and-wait).
    """
    return _parseWhole(value, 1, 0xFFFF)


def parseFileSize(value):
    """
    The largest file that may be offered, in bytes; 0 for no limit.
    """
    return _parseWhole(value, 0, 2**64 - 1)


def parseRate(value):
    """
    C{N/SECONDS}: at most N events (messages, failures, registrations) in any
    window of SECONDS.

    @return: C{(N, SECONDS)}
    """
    count, slash, seconds = value.partition("/")
    if not slash:
        raise ValueError(
            "%r is not a rate (expected MESSAGES/SECONDS, such as 5/5)" % (value,)
        )
    return parseCount(count.strip()), parseSeconds(seconds.strip())


def _splitList(value):
    """
    The items of a list written one per line, or separated by commas or spaces.
    """
    return [part for part in re.split(r"[,\s]+", value) if part]


DEFAULT_PORTS = {"http": 80, "https": 443}


def normalOrigin(text):
    """
    An origin as browsers write it: C{scheme://host} with the port only when it
    is not the scheme's default, in lower case.

    @raise ValueError: when C{text} is not an C{http} or C{https} origin.
    """
    parts = urllib.parse.urlsplit(text.strip())
    expected = "(expected an origin such as https://chat.example.com)"
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("%r is not an http or https origin %s" % (text, expected))
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("%r has more than scheme, host and port %s" % (text, expected))
    try:
        port = parts.port
    except ValueError:
        raise ValueError("%r has a bad port %s" % (text, expected))
    host = parts.hostname
    if ":" in host:
        host = "[%s]" % (host,)
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return "%s://%s" % (parts.scheme, host)
    return "%s://%s:%d" % (parts.scheme, host, port)


def parseOrigins(value):
    """
    Web origins allowed to open the WebSocket door besides the site's own,
    such as C{https://chat.example.com}, separated by commas or spaces.

    @return: a L{tuple} of origins, as browsers write them.
    """
    return tuple(normalOrigin(part) for part in _splitList(value))


def parseRetentionDays(value):
    """
    How many days room history is kept: a whole number, 0 to keep it forever.
    """
    return _parseWhole(value, 0, 100000)


def parseNetworks(value):
    """
    IP addresses or networks (C{10.0.0.0/8}, C{::1}), separated by commas or
    spaces.

    @return: a L{tuple} of networks, written as L{ipaddress} writes them.
    """
    networks = []
    for part in _splitList(value):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError("%r is not an IP address or network (such as 10.0.0.0/8)"
                             % (part,))
    return tuple(networks)


def parseGroups(value):
    """
    The key-exchange groups of the TLS listeners, in order of preference,
    separated by C{:} (see L{chatd.tls.knownGroups}); checked against this
    OpenSSL now, so that a misspelt group stops the start rather than a
    listener.
    """
    value = value.strip()
    knownGroups(value)
    return value


LOG_FORMATS = ("text", "json")


def parseLogFormat(value):
    """
    How the log is written: C{text} (twistd's lines) or C{json} (one JSON
    object per line, for log collectors).
    """
    value = value.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError("%r is not a log format (expected %s)"
                         % (value, " or ".join(LOG_FORMATS)))
    return value


# Each key, the Settings field it sets, and the parser for its text.
FIELDS = {
    "data-dir": ("dataDir", parseText),
    "binary": ("binary", parseEndpoints),
    "text": ("text", parseEndpoints),
    "web": ("web", parseEndpoints),
    "db": ("db", parseDatabase),
    "allow-guests": ("allowGuests", parseBoolean),
    "idle-warning": ("idleWarning", parseSeconds),
    "idle-timeout": ("idleTimeout", parseSeconds),
    "rate-limit": ("rateLimit", parseRate),
    "login-limit": ("loginLimit", parseRate),
    "address-limit": ("addressLimit", parseRate),
    "login-delay": ("loginDelay", parseSeconds),
    "register-limit": ("registerLimit", parseRate),
    "max-frame": ("maxFrame", parseSize),
    "history-limit": ("historyLimit", parseCount),
    "memory-history": ("memoryHistory", parseCount),
    "send-queue": ("sendQueue", parseSize),
    "send-budget": ("sendBudget", parseSize),
    "create-limit": ("createLimit", parseRate),
    "create-address-limit": ("createAddressLimit", parseRate),
    "join-limit": ("joinLimit", parseRate),
    "join-address-limit": ("joinAddressLimit", parseRate),
    "guest-rooms": ("guestRooms", parseGuestRooms),
    "address-connections": ("addressConnections", parseCount),
    "hello-timeout": ("helloTimeout", parseSeconds),
    "replay-entries": ("replayEntries", parseCount),
    "bcrypt-cost": ("bcryptCost", parseBcryptCost),
    "window": ("window", parseWindow),
    "offer-timeout": ("offerTimeout", parseSeconds),
    "chunk-timeout": ("chunkTimeout", parseSeconds),
    "max-file-size": ("maxFileSize", parseFileSize),
    "max-transfers": ("maxTransfers", parseCount),
    "redis": ("redis", parseRedis),
    "key-file": ("keyFile", parseText),
    "start-timeout": ("startTimeout", parseSeconds),
    "db-timeout": ("dbTimeout", parseSeconds),
    "web-origins": ("webOrigins", parseOrigins),
    "stop-timeout": ("stopTimeout", parseSeconds),
    "trusted-proxies": ("trustedProxies", parseNetworks),
    "metrics": ("metrics", parseText),
    "access-log": ("accessLog", parseText),
    "log-format": ("logFormat", parseLogFormat),
    "registration": ("registration", parseRegistration),
    "retention-days": ("retentionDays", parseRetentionDays),
    "tls-groups": ("tlsGroups", parseGroups),
}


def readConfigFile(path):
    """
    Read the C{[chatd]} section of an INI file.

    Relative paths in it (C{data-dir}, file names in endpoint strings) are
    relative to the directory chatd runs in, not to the file.

    @raise ConfigError: when the file cannot be read or parsed, has no
        C{[chatd]} section or another section, or has an unknown key or a bad
        value.
    @return: a L{dict} from key to parsed value, holding only the keys the file
        sets.
    """
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#",)
    )
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e.strerror))
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError("cannot parse config file %s: %s" % (path, e))
    others = [name for name in parser.sections() if name != SECTION]
    if others:
        raise ConfigError(
            "%s: unknown section [%s]; chatd reads only [%s]"
            % (path, others[0], SECTION)
        )
    if not parser.has_section(SECTION):
        raise ConfigError("%s has no [%s] section" % (path, SECTION))
    values = {}
    for key, text in parser.items(SECTION):
        if key not in FIELDS:
            raise ConfigError(
                "%s: unknown key %r (known keys: %s)"
                % (path, key, ", ".join(sorted(FIELDS)))
            )
        try:
            values[key] = FIELDS[key][1](text)
        except ValueError as e:
            raise ConfigError("%s: %s: %s" % (path, key, e))
    return values


def _checkEndpoint(door, description, dataDir):
    """
    Check that an endpoint string describes a server endpoint, without listening.

    Parsing an C{ssl:} endpoint reads its key and certificate. Those of the data
    directory may not exist yet, because L{chatd.datadir.prepare} makes them
    when the service is made; only their absence is forgiven.

    @raise ConfigError: when the string cannot be used.
    """
    try:
        serverFromString(MemoryReactor(), description)
    except FileNotFoundError as e:
        generated = {os.path.abspath(p) for p in tlsPaths(dataDir)}
        if e.filename is None or os.path.abspath(e.filename) not in generated:
            raise ConfigError(
                "%s: cannot use endpoint %r: %s: %s"
                % (door, description, e.filename, e.strerror)
            )
    except Exception as e:
        raise ConfigError("%s: cannot use endpoint %r: %s" % (door, description, e))


def settingsFrom(values):
    """
    Build the settings from parsed values, filling in the defaults and checking
    the values against each other.

    @param values: a mapping from key (see L{FIELDS}) to parsed value; keys
        left out take their defaults.
    @raise ConfigError: when values contradict each other or an endpoint
        cannot be used.
    @return: a L{Settings}
    """
    settings = Settings(**{FIELDS[key][0]: value for key, value in values.items()})
    dataDir = settings.dataDir
    # Any: the values go to replace() by keyword, each a field of Settings.
    listeners: Dict[str, Any] = {}
    for door, default in DEFAULT_LISTENERS.items():
        chosen = getattr(settings, door) or (default(dataDir),)
        listeners[door] = () if chosen == (DISABLED,) else tuple(
            withDataDirCertificate(description, dataDir) for description in chosen)
    db = settings.db or "sqlite:" + os.path.join(dataDir, "chatd.sqlite")
    if settings.idleWarning >= settings.idleTimeout:
        raise ConfigError(
            "idle-warning (%g) must be shorter than idle-timeout (%g)"
            % (settings.idleWarning, settings.idleTimeout)
        )
    if settings.sendQueue < settings.maxFrame:
        raise ConfigError(
            "send-queue (%d) must be at least max-frame (%d), or one large "
            "message would disconnect every reader"
            % (settings.sendQueue, settings.maxFrame)
        )
    if settings.sendBudget < settings.sendQueue:
        raise ConfigError(
            "send-budget (%d) must be at least send-queue (%d), or one slow "
            "reader could use more than all of them together"
            % (settings.sendBudget, settings.sendQueue)
        )
    if settings.historyLimit > settings.historyMax:
        raise ConfigError(
            "history-limit (%d) must be at most %d"
            % (settings.historyLimit, settings.historyMax)
        )
    for door, descriptions in listeners.items():
        for description in descriptions:
            _checkEndpoint(door, description, dataDir)
    if settings.metrics:
        _checkEndpoint("metrics", settings.metrics, dataDir)
    return replace(settings, db=db, **listeners)
