# -*- test-case-name: chatd.test.test_store -*-
"""
What differs between the databases the SQL store runs on.

L{chatd.store.sql.AdbapiStore} is written once, in SQL both SQLite and PostgreSQL
accept (C{?} placeholders, C{INSERT ... ON CONFLICT DO NOTHING}, C{RETURNING},
savepoints). Everything that cannot be written once lives in an L{Engine}: the
DB-API module and how to connect with it, how many connections a pool may hold,
how a transaction is opened, how an error says which constraint it broke, and
how a schema file is cut into statements. Adding PostgreSQL means adding one
more L{Engine} value and one more branch to L{engineForURL}.
"""

import sqlite3
from dataclasses import dataclass
from typing import Callable, FrozenSet, List, Mapping, Optional, Sequence

from twisted.enterprise.adbapi import ConnectionPool


@dataclass(frozen=True)
class Engine:
    """
    One database flavour, as data.

    @ivar name: a short name for messages.
    @ivar dbapiName: the DB-API module that L{ConnectionPool} imports.
    @ivar placeholder: the parameter marker of that module; the store writes
        C{?} and L{sql} rewrites it.
    @ivar poolSize: how many connections (and threads) a pool holds.
    @ivar connectionKeywords: keyword arguments for the module's C{connect}.
    @ivar connectStatements: run once on every new connection.
    @ivar beginStatement: opens each interaction's transaction, or L{None} when
        the module opens one implicitly.
    @ivar errorCodeAttribute: the attribute of the module's exceptions that
        names the failure precisely.
    @ivar uniqueViolationCodes: values of that attribute for a broken
        C{UNIQUE} or C{PRIMARY KEY} constraint.
    @ivar foreignKeyViolationCodes: values of that attribute for a broken
        C{REFERENCES} constraint.
    @ivar splitScript: cuts a schema file into what one C{execute} accepts.
    """

    name: str
    dbapiName: str
    placeholder: str
    poolSize: int
    connectionKeywords: Mapping[str, object]
    connectStatements: Sequence[str]
    beginStatement: Optional[str]
    errorCodeAttribute: str
    uniqueViolationCodes: FrozenSet[object]
    foreignKeyViolationCodes: FrozenSet[object]
    splitScript: Callable[[str], List[str]]

    def sql(self, query):
        """
        Rewrite C{query}, written with C{?} placeholders, for this engine.
        """
        return query.replace("?", self.placeholder)

    def onConnect(self, connection):
        """
        Set up a new DB-API connection; a L{ConnectionPool} C{cp_openfun}.
        """
        cursor = connection.cursor()
        for statement in self.connectStatements:
            cursor.execute(statement)
        cursor.close()

    def isUniqueViolation(self, error):
        """
        Whether C{error} was raised because a row would have duplicated a key.
        """
        return (
            getattr(error, self.errorCodeAttribute, None) in self.uniqueViolationCodes
        )

    def isForeignKeyViolation(self, error):
        """
        Whether C{error} was raised because a row referred to a missing row.
        """
        return (
            getattr(error, self.errorCodeAttribute, None)
            in self.foreignKeyViolationCodes
        )

    def connectionPool(self, connectionArgs, reactor=None, poolFactory=ConnectionPool):
        """
        Build a connection pool for this engine.

        @param connectionArgs: positional arguments for the module's C{connect}
            (for SQLite, the database path).
        @param reactor: the reactor the pool delivers results on, or L{None}
            for the global one.
        @param poolFactory: L{ConnectionPool} or a subclass of it (the tests
            pass one that runs without threads).
        """
        return poolFactory(
            self.dbapiName,
            *connectionArgs,
            cp_min=self.poolSize,
            cp_max=self.poolSize,
            cp_openfun=self.onConnect,
            cp_reactor=reactor,
            **self.connectionKeywords,
        )


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


SQLITE = Engine(
    name="SQLite",
    dbapiName="sqlite3",
    placeholder="?",
    # SQLite allows one writer at a time: a second connection would only wait
    # on the first one's lock.
    poolSize=1,
    connectionKeywords={
        # The pool's single thread is not the one that made the pool.
        "check_same_thread": False,
        # The store opens every transaction itself (beginStatement): the
        # module's implicit ones leave DDL outside and trip over SAVEPOINT.
        "isolation_level": None,
    },
    connectStatements=(
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA busy_timeout=5000",
        "PRAGMA foreign_keys=ON",
    ),
    # Take the write lock up front, so a transaction that reads and then
    # writes never has to upgrade its lock against another process.
    beginStatement="BEGIN IMMEDIATE",
    errorCodeAttribute="sqlite_errorcode",
    uniqueViolationCodes=frozenset(
        {sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE}
    ),
    foreignKeyViolationCodes=frozenset({sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY}),
    splitScript=_sqliteStatements,
)

_FORMS = "memory:, sqlite:///absolute/path or sqlite:relative/path"

# INSERT ... RETURNING arrived in SQLite 3.35.
_SQLITE_MINIMUM = (3, 35, 0)


def engineForURL(url):
    """
    Pick the engine for a database URL, and what to connect with.

    @param url: C{sqlite:///absolute/path} or C{sqlite:relative/path}.
    @return: an (L{Engine}, connection arguments) pair.
    @raise ValueError: when the URL is malformed, names a database chatd cannot
        use (yet), or the SQLite library is too old.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "postgresql":
        raise ValueError("PostgreSQL support is not built yet")
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

