# -*- test-case-name: chatd.test.test_store -*-
"""
The message store on an SQL database, through L{twisted.enterprise.adbapi}.

Every query runs in a L{twisted.enterprise.adbapi.ConnectionPool} thread inside
C{runInteraction}, so the reactor never waits on the database; what differs
between databases comes from an L{chatd.store.engines.Engine}. The schema is
the numbered files in C{chatd/store/schema}, applied in order by
L{AdbapiStore.open}.

Writes go through one queue and commit in the order they were called, on every
engine: on PostgreSQL the pool holds several connections, and without the
queue a write could overtake an earlier one nobody waited for (a room dropped
and then made again), and two appends could get message ids out of call order,
which history breaks timestamp ties with. Reads run on any free connection.

Appending is the hot path: one sender may have many messages in flight across
many connections, and a commit per message would cost a disk flush each. So
writes queue up while a write is running and the next transaction stores all
of them (a group commit); a savepoint per write keeps one refused write from
undoing the others.
"""

import re
from importlib import resources
from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import Conflict, Forbidden, NotFound, Unavailable
from chatd.istore import IMessageStore
from chatd.model import Account, DeviceList
from chatd.names import fold
from chatd.startup import StartupError
from chatd.store import devices, operations
from chatd.store.devices import DeviceStore
from chatd.store.engines import Engine
from chatd.store.keycheck import checkStoredKeys
from chatd.store.moderation import ModerationStore
from chatd.store.numbering import SEQUENCE_SCHEMA, Numbering, readNumbering
from chatd.store.rooms import RoomStore
from chatd.store.seal import AtRestKeys, DamageReport
from chatd.store.waiting import WaitingStore

# What a write raises to refuse: its changes are undone alone, the other
# writes of its transaction kept. (Unavailable, though a ChatError too, is the
# database failing, which undoes them all.)
_REFUSALS = (Conflict, Forbidden, NotFound)

# NNN-what.sql is for every engine, NNN-what.DIALECT.sql for one.
_MIGRATION_NAME = re.compile(r"([0-9]+)-[A-Za-z0-9_-]+(?:\.([a-z]+))?\.sql")


def loadMigrations(dialect: str, directory: Optional[Any] = None) -> List[Tuple[int, str]]:
    """
    Read the schema files of one engine, named C{NNN-what.sql} when every
    engine runs them and C{NNN-what.DIALECT.sql} when the engines need
    different DDL, from a directory.

    @param dialect: the L{chatd.store.engines.Engine.dialect} to read for;
        other dialects' files are left out.
    @param directory: a L{pathlib.Path} or L{importlib.resources} traversable,
        or L{None} for the files shipped in C{chatd/store/schema}.
    @return: a list of (version, script) pairs, numbered from 1 without gaps,
        in order.
    @raise RuntimeError: when the files for C{dialect} are not numbered 1, 2,
        3... or two of them have one number.
    """
    if directory is None:
        directory = resources.files(__package__).joinpath("schema")
    found = {}
    for entry in directory.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match is None or match.group(2) not in (None, dialect):
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(
                f"two {dialect} schema files are numbered {version}"
            )
        found[version] = entry.read_text(encoding="utf-8")
    versions = sorted(found)
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(
            f"{dialect} schema files are numbered {versions},"
            f" not 1 to {len(found)}"
        )
    return [(version, found[version]) for version in versions]


def _atOnce(work: Callable[[], object]) -> None:
    work()


@implementer(IMessageStore)
class AdbapiStore(RoomStore, ModerationStore, DeviceStore, WaitingStore):
    """
    An L{IMessageStore} on a database reached through a
    L{twisted.enterprise.adbapi.ConnectionPool}.

    @ivar _queue: (write, arguments, L{Deferred}) triples queued since the
        running write started.
    @ivar _writing: whether a group-commit write is running.
    @ivar _idleWaiters: L{Deferred}s of L{close} calls waiting for the writes
        to finish.
    @ivar numbering: once open, the L{Numbering} of a database this process
        alone writes (L{Engine.numbersAhead}); L{None} otherwise.
    """

    _log = Logger()

    def __init__(
        self, engine: Engine, connectionArgs: Sequence[str], keys: AtRestKeys,
        pool: Optional[ConnectionPool] = None, reactor: Optional[Any] = None,
        migrations: Optional[List[Tuple[int, str]]] = None,
        afterTurn: Optional[Callable[[Callable[[], object]], None]] = None,
    ) -> None:
        """
        @param engine: the L{chatd.store.engines.Engine} of the database.
        @param connectionArgs: what to connect with (for SQLite, the path; for
            PostgreSQL, the URL); used only to build a pool when C{pool} is
            L{None}.
        @param keys: the L{chatd.store.seal.AtRestKeys} envelopes are sealed
            with.
        @param pool: the L{twisted.enterprise.adbapi.ConnectionPool} to run
            on, or L{None} to build one for C{engine}.
        @param reactor: the reactor, for the pool and for the creation times
            of accounts and rooms; L{None} for the global one.
        @param migrations: (version, script) pairs numbered from 1, or
            L{None} for the schema files shipped with chatd for C{engine}.
        @param afterTurn: what a write queued while none runs is started
            through: L{chatd.turn.TurnEnd.later}, so that the transaction
            begins once the turn's deliveries are sent (L{makeStore} passes
            it); L{None} to begin at once.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        if pool is None:
            pool = engine.connectionPool(connectionArgs, reactor)
        if migrations is None:
            migrations = loadMigrations(engine.dialect)
        self._engine = engine
        self._where = engine.describe(connectionArgs)
        self._keys = keys
        self._damage = DamageReport()
        self._pool = pool
        self._clock = reactor
        self._migrations = migrations
        self._queue: List[Tuple[Callable[..., Any], tuple, Deferred]] = []
        self._writing = False
        self._afterTurn = afterTurn or _atOnce
        self._idleWaiters: List[Deferred] = []
        self.numbering: Optional[Numbering] = None

    # Plumbing

    def _interact(self, interaction, *args):
        """
        Run C{interaction(txn, *args)} in one transaction in a pool thread.

        @return: a L{Deferred} that fires with what C{interaction} returns,
            once committed. Cancelling it before a thread has taken the work
            up (the caller's deadline passed while the database was frozen)
            drops the work, rather than run it for nobody later.
        """
        dropped = []
        result: Deferred = Deferred(lambda _: dropped.append(True))

        def deliver(outcome):
            # Nobody hears the outcome of work whose caller stopped waiting.
            if not result.called:
                result.callback(outcome)

        self._pool.runInteraction(
            self._transaction, dropped, interaction, *args
        ).addErrback(self._unavailable).addBoth(deliver)
        return result

    def _unavailable(self, failure):
        """
        Report an error that says the database cannot work right now as
        L{Unavailable}, which the doors answer with a status of its own.
        """
        if self._engine.isUnavailable(failure.value):
            raise Unavailable("the database is unavailable; try again") from failure.value
        return failure

    def _transaction(self, txn, dropped, interaction, *args):
        """
        Open the transaction explicitly, so that schema changes and savepoints
        are inside it too and it has the isolation the engine asks for.

        @param dropped: not empty if nobody waits for this work any more.
        """
        if dropped:
            raise CancelledError("dropped: the caller stopped waiting")
        txn.execute(self._engine.beginStatement)
        return interaction(txn, *args)

    def _execute(self, txn, query, parameters=()):
        txn.execute(self._engine.sql(query), parameters)

    def _now(self):
        return int(self._clock.seconds() * 1000)

    # Opening and closing

    def open(self) -> "Deferred[None]":
        """
        Create or upgrade the schema.

        @return: a L{Deferred} that fires once the database is ready, or fails
            with L{StartupError} when it cannot be used (a damaged file, a
            schema newer than this chatd).
        """
        return Deferred.fromCoroutine(self._open()).addErrback(self._cannotOpen)

    def _cannotOpen(self, failure):
        """
        A database server that cannot be reached may come up: the caller may
        try again (L{Unavailable}). Any other error of the database, or a file
        that cannot be used, will not go away by itself (L{StartupError}).
        """
        error = failure.value
        if isinstance(error, Unavailable):
            if self._engine.remote:
                return failure
            error = error.__cause__
        elif not self._engine.isDatabaseError(error):
            return failure
        raise StartupError(f"cannot open the {self._engine.name} database {self._where}:"
                           f" {error}") from error

    async def _open(self):
        stored = await self._interact(self._readVersion)
        newest = len(self._migrations)
        if stored > newest:
            raise StartupError(
                f"the database {self._where} has schema version {stored}; "
                f"this chatd knows versions up to {newest} only"
            )
        for version, script in self._migrations[stored:]:
            if await self._interact(self._migrate, version, script):
                self._log.info("Applied schema version {version}.", version=version)
        await self._interact(checkStoredKeys, self._execute, self._keys)
        if self._engine.numbersAhead and newest >= SEQUENCE_SCHEMA:
            self.numbering = await self._interact(readNumbering, self._execute)

    def _lockSchema(self, txn):
        """
        Keep other servers on the same database from reading or changing the
        schema version until this transaction ends.
        """
        if self._engine.schemaLockStatement is not None:
            txn.execute(self._engine.schemaLockStatement)

    def _readVersion(self, txn):
        """
        Create the version table of a new database, and read the version.

        The table holds one row (its key can only be 1) of one integer: the
        number of the last schema file applied, 0 before the first.
        """
        self._lockSchema(txn)
        self._execute(
            txn,
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
            " version INTEGER NOT NULL)",
        )
        self._execute(
            txn,
            "INSERT INTO schema_version (singleton, version) VALUES (1, 0)"
            " ON CONFLICT DO NOTHING",
        )
        return self._storedVersion(txn)

    def _storedVersion(self, txn):
        self._execute(txn, "SELECT version FROM schema_version")
        [(version,)] = txn.fetchall()
        return version

    def _migrate(self, txn, version, script):
        """
        Apply one schema file and record it, together or not at all.

        @return: whether it was applied here; L{False} when another server on
            the same database applied it since this one read the version.
        """
        self._lockSchema(txn)
        if self._storedVersion(txn) >= version:
            return False
        for statement in self._engine.splitScript(script):
            txn.execute(statement)
        self._execute(txn, "UPDATE schema_version SET version = ?", (version,))
        return True

    def close(self) -> "Deferred[None]":
        waiting = self._whenIdle()
        waiting.addCallback(self._closePool)
        return waiting

    def _whenIdle(self):
        """
        @return: a L{Deferred} that fires once no write is queued or running,
            so that closing does not strand them.
        """
        if not self._writing:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._idleWaiters.append(waiter)
        return waiter

    def _closePool(self, ignored):
        self._pool.close()

    # Writing, in call order

    def _write(self, write, *args):
        """
        Queue C{write(txn, *args)} to run after every write called before it.

        @param write: raises one of L{_REFUSALS} to refuse; its changes
            are then undone and the other writes of its transaction kept.
        @return: a L{Deferred} that fires with what C{write} returns once
            committed, or fails with its refusal.
        """
        committed: Deferred = Deferred()
        self._queue.append((write, args, committed))
        if not self._writing:
            self._writing = True
            self._afterTurn(self._writeQueued)
        return committed

    def _writeQueued(self):
        """
        Start one transaction that runs every queued write.
        """
        # A write whose caller stopped waiting (its deadline passed while the
        # database was frozen) is dropped: the caller was told it failed.
        batch = [entry for entry in self._queue if not entry[2].called]
        self._queue = []
        if not batch:
            self._writing = False
            self._idle()
            return
        self._writing = True
        written = self._interact(
            self._runWrites, [(write, args) for write, args, _ in batch]
        )
        written.addBoth(self._written, [committed for _, _, committed in batch])

    def _written(self, outcomes, waiting):
        """
        Tell each caller of a finished transaction how its write fared, in the
        order they called, then write what queued up meanwhile.

        @param outcomes: one result or refusal (a L{Failure}) per write; or a
            L{Failure} when the whole transaction failed and kept none of them.
        @param waiting: the callers' L{Deferred}s, in the same order.
        """
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(waiting)
        # Still writing while the callbacks run: a write they make must queue
        # behind the writes not told yet rather than overtake them.
        for committed, outcome in zip(waiting, outcomes):
            if isinstance(outcome, Failure):
                committed.errback(outcome)
            else:
                committed.callback(outcome)
        self._writing = False
        if self._queue:
            self._writeQueued()
        else:
            self._idle()

    def _idle(self):
        """
        No write is queued or running: let L{close} go on.
        """
        idleWaiters, self._idleWaiters = self._idleWaiters, []
        for waiter in idleWaiters:
            waiter.callback(None)

    def _runWrites(self, txn, writes):
        """
        Run C{writes}, each under its own savepoint so that a refused one is
        undone alone; an unexpected error undoes them all.

        @return: per write, what it returned, or its refusal as a L{Failure}.
        """
        outcomes = []
        for write, args in writes:
            self._execute(txn, "SAVEPOINT queued_write")
            try:
                outcomes.append(write(txn, *args))
            except _REFUSALS:
                outcomes.append(Failure())
                self._execute(txn, "ROLLBACK TO SAVEPOINT queued_write")
            self._execute(txn, "RELEASE SAVEPOINT queued_write")
        return outcomes

    def run(self, operation: Callable[..., Any], *args: Any) -> Deferred:
        """
        Run C{operation(txn, execute, *args)}, one of L{chatd.store.operations},
        as a write in call order.

        @return: a L{Deferred} that fires with what it returns once committed,
            or fails with its refusal (a L{ChatError}).
        """
        return self._write(operation, self._execute, *args)

    # Operators

    def createInvite(self, token: str, uses: int,
                     expiresMs: Optional[int]) -> "Deferred[None]":
        return self.run(operations.createInvite, token, uses, expiresMs, self._now())

    def deleteHistoryBefore(self, timestampMs: int) -> "Deferred[int]":
        return self.run(operations.deleteHistoryBefore, timestampMs)

    # Accounts

    def getAccount(self, name: str) -> "Deferred[Optional[Account]]":
        return self._interact(self._getAccount, fold(name))

    def _getAccount(self, txn, key):
        self._execute(
            txn,
            "SELECT name, password_hash, public_key, banned FROM accounts"
            " WHERE name_key = ?",
            (key,),
        )
        rows = txn.fetchall()
        if not rows:
            return None
        [(name, passwordHash, publicKey, banned)] = rows
        return Account(name, passwordHash, publicKey, bool(banned))

    def createAccount(self, name: str, passwordHash: Optional[bytes], publicKey: bytes,
                      invite: Optional[str] = None, devices: Optional[DeviceList] = None,
                      recovery: bytes = b"") -> "Deferred[None]":
        return self._write(self._createAccount, name, passwordHash, publicKey, invite,
                           devices, recovery)

    def _createAccount(self, txn, name, passwordHash, publicKey, invite, deviceList,
                       recovery):
        if invite is not None:
            operations.useInvite(txn, self._execute, invite, self._now())
        try:
            self._execute(
                txn,
                "INSERT INTO accounts (name_key, name, password_hash, public_key,"
                " created_ms) VALUES (?, ?, ?, ?, ?)",
                (fold(name), name, passwordHash, publicKey, self._now()),
            )
        except Exception as error:
            if self._engine.isUniqueViolation(error):
                raise Conflict("that name is taken") from None
            raise
        devices.createDevices(txn, self._execute, fold(name), deviceList, recovery)

    def setPublicKey(self, name: str, publicKey: bytes) -> "Deferred[None]":
        return self._write(self._setPublicKey, fold(name), publicKey)

    def _setPublicKey(self, txn, key, publicKey):
        self._execute(
            txn,
            "UPDATE accounts SET public_key = ? WHERE name_key = ?",
            (publicKey, key),
        )
        if txn.rowcount == 0:
            raise NotFound("no such account")
