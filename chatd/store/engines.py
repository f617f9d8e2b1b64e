# -*- test-case-name: chatd.test.test_store -*-
"""
What differs between the databases the SQL store runs on.

L{chatd.store.sql.AdbapiStore} is written once, in SQL both SQLite and PostgreSQL
accept (C{?} placeholders, C{INSERT ... ON CONFLICT DO NOTHING}, C{RETURNING},
savepoints). Everything that cannot be written once lives in an L{Engine}: the
DB-API module and how to connect with it, how many connections a pool may hold,
how a transaction is opened, how concurrent schema upgrades are kept apart, how
an error says which constraint it broke, and how a schema file is cut into
statements. Where the tables themselves must be declared differently (column
types, how message ids are generated), the schema files are per dialect too:
see L{chatd.store.sql.loadMigrations}.
"""

import functools
import importlib
import math
import os
import sqlite3
import stat
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from twisted.enterprise.adbapi import ConnectionPool


@dataclass(frozen=True)
class Engine:
    """
    One database flavour, as data.

    @ivar name: a short name for messages.
    @ivar dialect: the suffix of schema files written for this engine alone.
    @ivar dbapiName: the DB-API module that L{ConnectionPool} imports.
    @ivar placeholder: the parameter marker of that module; the store writes
        C{?} and L{sql} rewrites it.
    @ivar poolSize: how many connections (and threads) a pool holds.
    @ivar reconnect: whether the pool replaces a connection that broke
        (L{ConnectionPool}'s C{cp_reconnect}).
    @ivar connectionKeywords: keyword arguments for the module's C{connect}.
    @ivar connectStatements: run once on every new connection.
    @ivar beginStatement: opens each interaction's transaction.
    @ivar schemaLockStatement: run first in each transaction that reads or
        changes the schema version, so that servers sharing a database do not
        upgrade it at the same time; L{None} when C{beginStatement} already
        keeps other writers out.
    @ivar errorCodeAttribute: the attribute of the module's exceptions that
        names the failure precisely.
    @ivar uniqueViolationCodes: values of that attribute for a broken
        C{UNIQUE} or C{PRIMARY KEY} constraint.
    @ivar foreignKeyViolationCodes: values of that attribute for a broken
        C{REFERENCES} constraint.
    @ivar splitScript: cuts a schema file into what one C{execute} accepts.
    @ivar protectFiles: called with a cursor on every new connection, before
        C{connectStatements}, to make the files the connection opened readable
        by their owner only; L{None} for a database that is not a local file.
    @ivar remote: whether the database is a server that may be down for a
        while and come back (worth waiting for at start), rather than a file.
    @ivar rowLock: appended to a C{SELECT} to lock the rows it reads until
        commit; empty when C{beginStatement} already keeps other writers out.
    @ivar connectTimeoutKeyword: the keyword of the module's C{connect} that
        bounds connecting, in whole seconds; L{None} if there is none.
    @ivar statementTimeoutStatement: run on every new connection, with the
        deadline in milliseconds, to make the server give up a statement
        that runs longer; L{None} if there is none.
    @ivar isUnavailable: whether an error of the module says the database
        cannot be reached or cannot work right now (a lost connection, a
        timeout, a full disk), rather than that a query is wrong.
    @ivar numbersAhead: whether one chatd process alone writes the database,
        so that its store numbers messages before their commit
        (L{chatd.store.numbering}); not when the nodes of a cluster share it.
    @ivar threadNiceness: how much lower than the rest of the server (a
        C{nice} increment) the pool's threads run, on Linux, where the
        database's own work is done in them (L{lowerThisThread}).
    """

    name: str
    dialect: str
    dbapiName: str
    placeholder: str
    poolSize: int
    reconnect: bool
    connectionKeywords: Mapping[str, object]
    connectStatements: Sequence[str]
    beginStatement: str
    schemaLockStatement: Optional[str]
    errorCodeAttribute: str
    uniqueViolationCodes: FrozenSet[object]
    foreignKeyViolationCodes: FrozenSet[object]
    splitScript: Callable[[str], List[str]]
    remote: bool
    rowLock: str
    isUnavailable: Callable[[Exception], bool]
    protectFiles: Optional[Callable[[object], None]] = None
    connectTimeoutKeyword: Optional[str] = None
    statementTimeoutStatement: Optional[str] = None
    numbersAhead: bool = False
    threadNiceness: int = 0

    def sql(self, query: str) -> str:
        """
        Rewrite C{query}, written with C{?} placeholders, for this engine.
        """
        return query.replace("?", self.placeholder)

    def onConnect(self, connection: Any, statements: Sequence[str] = ()) -> None:
        """
        Set up a new DB-API connection; a L{ConnectionPool} C{cp_openfun}.

        @param statements: run after C{connectStatements}.
        """
        if self.threadNiceness and threading.current_thread() is not threading.main_thread():
            lowerThisThread(self.threadNiceness)
        cursor = connection.cursor()
        if self.protectFiles is not None:
            self.protectFiles(cursor)
        for statement in (*self.connectStatements, *statements):
            cursor.execute(statement)
        cursor.close()

    def describe(self, connectionArgs: Sequence[str]) -> str:
        """
        Name the database C{connectionArgs} connect to, for messages: the
        file of SQLite, C{host:port/database} of PostgreSQL (never the
        password a URL may hold).
        """
        if not self.remote:
            return connectionArgs[0]
        from psycopg.conninfo import conninfo_to_dict
        parts = conninfo_to_dict(connectionArgs[0])
        return "%s:%s/%s" % (parts.get("host", "localhost"), parts.get("port", 5432),
                             parts.get("dbname", ""))

    def isDatabaseError(self, error: BaseException) -> bool:
        """
        Whether C{error} comes from the database (its DB-API module's
        C{Error}), rather than from chatd.
        """
        return isinstance(error, importlib.import_module(self.dbapiName).Error)

    def isUniqueViolation(self, error: BaseException) -> bool:
        """
        Whether C{error} was raised because a row would have duplicated a key.
        """
        return (
            getattr(error, self.errorCodeAttribute, None) in self.uniqueViolationCodes
        )

    def isForeignKeyViolation(self, error: BaseException) -> bool:
        """
        Whether C{error} was raised because a row referred to a missing row.
        """
        return (
            getattr(error, self.errorCodeAttribute, None)
            in self.foreignKeyViolationCodes
        )

    def connectionPool(self, connectionArgs: Sequence[str], reactor: Optional[Any] = None,
                       poolFactory: Callable[..., ConnectionPool] = ConnectionPool,
                       timeout: Optional[float] = None) -> ConnectionPool:
        """
        Build a connection pool for this engine.

        @param connectionArgs: positional arguments for the module's C{connect}
            (for SQLite, the database path; for PostgreSQL, the URL).
        @param reactor: the reactor the pool delivers results on, or L{None}
            for the global one.
        @param poolFactory: L{ConnectionPool} or a subclass of it (the tests
            pass one that runs without threads).
        @param timeout: seconds connecting and each statement may take, where
            the engine can bound them; L{None} for no bound.
        """
        keywords = dict(self.connectionKeywords)
        statements: Tuple[str, ...] = ()
        if timeout is not None:
            if self.connectTimeoutKeyword is not None:
                # libpq takes whole seconds, and treats less than 2 as 2.
                keywords[self.connectTimeoutKeyword] = max(2, math.ceil(timeout))
            if self.statementTimeoutStatement is not None:
                statements = (self.statementTimeoutStatement % (round(timeout * 1000),),)
        return poolFactory(
            self.dbapiName,
            *connectionArgs,
            cp_min=self.poolSize,
            cp_max=self.poolSize,
            cp_reconnect=self.reconnect,
            cp_openfun=functools.partial(self.onConnect, statements=statements),
            cp_reactor=reactor,
            **keywords,
        )


def lowerThisThread(increment: int) -> None:
    """
    Run the calling thread C{increment} lower in CPU priority (C{nice}) than
    it runs now, on Linux, where each thread has its own.

    A SQLite store's thread writes and syncs the database on the server's
    cores. At the same priority the kernel shares a core evenly between it
    and the reactor's thread, so a burst of messages was delivered at half
    speed while the thread committed the one before; lowered, it takes what
    the reactor leaves. It still runs whenever the reactor waits (for the
    GIL it holds, among others), and a commit held back only makes the next
    one take more messages. Lowering a priority needs no privilege; where it
    is refused, the thread keeps its own.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread,
                       os.getpriority(os.PRIO_PROCESS, thread) + increment)
    except OSError:
        pass


def _protectSQLiteFiles(cursor):
    """
    Take every permission but the owner's off the database file and, when they
    exist, its C{-journal} file (and the C{-wal} and C{-shm} files an older
    chatd, which wrote ahead, left).

    SQLite creates these files with the mode of the database file, so once
    the database file is C{0600} they are born C{0600} too. This runs as
    soon as the file is opened, before anything is written to it (its
    directory, refused when open to others, keeps it from anyone else in the
    meantime), and also tightens files an older chatd left readable.
    """
    cursor.execute("PRAGMA database_list")
    for _, schema, path in cursor.fetchall():
        if schema != "main" or not path:
            continue
        for name in (path, path + "-journal", path + "-wal", path + "-shm"):
            try:
                mode = stat.S_IMODE(os.stat(name).st_mode)
                if mode & 0o077:
                    os.chmod(name, mode & 0o700)
            except FileNotFoundError:
                pass


def _sqliteStatements(script):
    """
    Cut an SQLite script into single statements, which is all C{execute} takes.

    C{executescript} would run a whole file at once, but it commits first, so a
    schema file could not be applied inside the transaction that records its
    version. A C{;} ends a statement only where L{sqlite3.complete_statement}
    agrees, so semicolons inside literals and comments are left alone.
    """
    statements = []
    pending = ""
    *pieces, tail = script.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    rest = (pending + tail).strip()
    if rest:
        statements.append(rest)
    return statements


def _wholeScript(script):
    """
    Leave a PostgreSQL script whole: psycopg sends a query without parameters
    as one simple-protocol message, which may hold many statements, and the
    server parses them itself, dollar-quoted bodies included.
    """
    return [script]


# SQLite's primary result codes for a database that cannot work right now:
# locked by another process past busy_timeout, out of memory, read-only, an
# I/O error, a full disk, a file that cannot be opened.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14})


def _sqliteUnavailable(error):
    """
    Whether an SQLite error says the file cannot be used right now.
    """
    code = getattr(error, "sqlite_errorcode", None)
    return (isinstance(error, sqlite3.OperationalError) and code is not None
            and code & 0xFF in _SQLITE_UNAVAILABLE)


def _postgresqlUnavailable(error):
    """
    Whether a psycopg error says the server cannot be reached or cannot work
    right now: connection failures and losses, a statement cancelled by its
    timeout, a server shutting down or out of resources are all
    C{OperationalError}s; a closed connection is an C{InterfaceError}.
    """
    import psycopg
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


SQLITE = Engine(
    name="SQLite",
    dialect="sqlite",
    dbapiName="sqlite3",
    placeholder="?",
    # SQLite allows one writer at a time: a second connection would only wait
    # on the first one's lock.
    poolSize=1,
    # A file does not hang up.
    reconnect=False,
    connectionKeywords={
        # The pool's single thread is not the one that made the pool.
        "check_same_thread": False,
        # The store opens every transaction itself (beginStatement): the
        # module's implicit ones leave DDL outside and trip over SAVEPOINT.
        "isolation_level": None,
    },
    connectStatements=(
        # A rollback journal rather than a write-ahead log: a message's
        # envelope goes onto new pages, which a rollback journal does not
        # copy, so its bytes are written once; a write-ahead log writes them
        # twice (into the log, then into the database at each checkpoint),
        # which cost about a sixth of the server's CPU per delivery in a
        # 200-member room (bench/README.rst, "The rollback journal"). A
        # database an older chatd left in WAL mode is turned back when no
        # other connection holds it; until then it keeps working in WAL mode.
        "PRAGMA journal_mode=TRUNCATE",
        "PRAGMA synchronous=FULL",
        "PRAGMA busy_timeout=5000",
        "PRAGMA foreign_keys=ON",
    ),
    # Take the write lock up front, so a transaction that reads and then
    # writes never has to upgrade its lock against another process. That lock
    # also keeps two processes from upgrading the schema at once.
    beginStatement="BEGIN IMMEDIATE",
    schemaLockStatement=None,
    errorCodeAttribute="sqlite_errorcode",
    uniqueViolationCodes=frozenset(
        {sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE}
    ),
    foreignKeyViolationCodes=frozenset({sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY}),
    splitScript=_sqliteStatements,
    protectFiles=_protectSQLiteFiles,
    remote=False,
    rowLock="",
    isUnavailable=_sqliteUnavailable,
    numbersAhead=True,
    # The database's work is done in the pool's thread, on the server's
    # cores: deliveries go first (bench/README.rst, "The fan-out in one call
    # per door").
    threadNiceness=10,
)

# The key of the advisory lock chatd holds while it reads or upgrades the
# schema: "chat" in ASCII, a constant every chatd sharing a database agrees on.
_SCHEMA_LOCK = 0x63686174

POSTGRESQL = Engine(
    name="PostgreSQL",
    dialect="postgresql",
    # psycopg 3, which reads BYTEA back as bytes (psycopg2 gave memoryviews),
    # so rows need no converting.
    dbapiName="psycopg",
    placeholder="%s",
    # Reads run side by side on several connections; writes still go one
    # transaction at a time through the store's queue, in call order.
    poolSize=5,
    # A server restart or a network failure breaks connections; without this
    # the pool would keep handing out a dead one.
    reconnect=True,
    # As with SQLite, the store opens every transaction itself, so psycopg
    # must not open one implicitly.
    connectionKeywords={"autocommit": True},
    connectStatements=(),
    # Pinned rather than left to the server's default: no interaction reads
    # and then writes what it read except schema upgrades and storing a room
    # message (which picks a free timestamp), which take a lock, so READ
    # COMMITTED is enough and never fails a transaction as a
    # serialisation conflict that would have to be retried.
    beginStatement="BEGIN ISOLATION LEVEL READ COMMITTED",
    # Several chatd nodes may start at once on one new database; this lock,
    # released at commit, makes them create and upgrade the schema in turn.
    schemaLockStatement=f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})",
    errorCodeAttribute="sqlstate",
    uniqueViolationCodes=frozenset({"23505"}),
    foreignKeyViolationCodes=frozenset({"23503"}),
    splitScript=_wholeScript,
    remote=True,
    rowLock=" FOR UPDATE",
    isUnavailable=_postgresqlUnavailable,
    connectTimeoutKeyword="connect_timeout",
    statementTimeoutStatement="SET statement_timeout = %d",
)

_FORMS = (
    "memory:, sqlite:///absolute/path, sqlite:relative/path"
    " or postgresql://user:password@host:port/database"
)

# INSERT ... RETURNING arrived in SQLite 3.35.
_SQLITE_MINIMUM = (3, 35, 0)


def engineForURL(url: str) -> Tuple["Engine", Tuple[str, ...]]:
    """
    Pick the engine for a database URL, and what to connect with.

    @param url: C{sqlite:///absolute/path}, C{sqlite:relative/path} or
        C{postgresql://user:password@host:port/database} (any URL libpq
        takes, C{postgres://} and query parameters included).
    @return: an (L{Engine}, connection arguments) pair.
    @raise ValueError: when the URL is malformed, names a database chatd cannot
        use, the SQLite library is too old or psycopg is not installed.
    """
    scheme, _, rest = url.partition(":")
    if scheme in ("postgresql", "postgres"):
        return POSTGRESQL, (_checkPostgreSQL(url),)
    if scheme != "sqlite":
        raise ValueError(f"unsupported database URL {url!r}: use {_FORMS}")
    if rest.startswith("//"):
        # sqlite:///absolute/path: an empty host, then an absolute path.
        path = rest[2:]
        if not path.startswith("/"):
            raise ValueError(f"sqlite:// URLs take no host, in {url!r}: use {_FORMS}")
    else:
        path = rest
    if not path:
        raise ValueError(f"no database path in {url!r}: use {_FORMS}")
    if sqlite3.sqlite_version_info < _SQLITE_MINIMUM:
        raise ValueError(
            "chatd needs SQLite 3.35 or later;"
            f" this Python has {sqlite3.sqlite_version}"
        )
    return SQLITE, (path,)


def _checkPostgreSQL(url):
    """
    Check that a PostgreSQL URL can be used, before any connection is tried.

    @return: C{url}, which psycopg's C{connect} takes as it is.
    @raise ValueError: when psycopg is missing or libpq would not parse the
        URL. The message leaves the URL out: it may hold a password.
    """
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise ValueError(
            "PostgreSQL needs psycopg: install chatd with its postgres extra"
            " (pip install 'chatd[postgres]')"
        ) from None
    try:
        conninfo_to_dict(url)
    except ProgrammingError:
        raise ValueError(
            "malformed PostgreSQL URL: use"
            " postgresql://user:password@host:port/database"
        ) from None
    return url
