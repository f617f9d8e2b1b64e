"""
End-to-end: a real C{twistd chatd} that cannot serve what it was configured to
serve exits at once with a non-zero status and one line naming the cause,
without a traceback, instead of lingering.
"""

import os
import shutil
import socket
import sqlite3
import time
import urllib.parse
import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITransport
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import SkipTest, TestCase

from chatd import datadir
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.startup import EXIT_STATUS
from chatd.store import makeStore
from chatd.store.seal import generateKey
from chatd.test.fakes import publicDer
from chatd.test.processes import (
    connectWhenListening,
    freePort,
    listening,
    spawn,
    spawnChatd,
    waitFor,
)

# How long a failed start may take, at most: seconds, not the trial timeout.
PROMPTLY = 15


class CommandLineTests(TestCase):
    """
    A mistake on the command line is all twistd prints.
    """

    timeout = 60

    async def test_oneLine(self):
        """
        A contradiction between options: one line, saying what contradicts
        what, and exit status 1.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        child = spawnChatd("twistd", workdir, "--idle-warning", "30", "--idle-timeout", "20")
        self.addCleanup(child.signal, "KILL")
        await waitFor(lambda: child.ended.called, PROMPTLY, "twistd to exit", child)
        self.assertEqual((child.status, child.printed()), (1, (
            "chatd: idle-warning (30) must be shorter than idle-timeout (20) "
            "(twistd chatd --help lists the options)\n")))


class FailedStartTests(TestCase):
    """
    Each way a start can fail, with a real process.
    """

    timeout = 60

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    async def failedStart(self, *options, pythonPath=None):
        """
        Run C{twistd chatd} with C{options} (the binary door on a free port
        unless they say otherwise, no text or web door) and wait for it to end.

        @param pythonPath: a directory to put in front of the child's
            C{PYTHONPATH}.
        @return: the one line it printed about the failure.
        """
        if "--binary" not in options:
            options += ("--binary", "tcp:%d:interface=127.0.0.1" % (freePort(),))
        for door in ("--text", "--web"):
            if door not in options:
                options += (door, "none")
        if "--data-dir" not in options:
            options += ("--data-dir", os.path.join(self.workdir, "data"))
        child = spawnChatd("twistd", self.workdir, *options, pythonPath=pythonPath)
        self.addCleanup(child.signal, "KILL")
        await waitFor(lambda: child.ended.called, PROMPTLY, "twistd to exit", child)
        printed = child.printed()
        self.assertEqual(child.status, EXIT_STATUS, printed)
        self.assertNotIn("Traceback", printed)
        lines = [line for line in printed.splitlines() if "chatd cannot start" in line]
        self.assertEqual(len(lines), 1, printed)
        return lines[0]

    async def test_portInUse(self):
        """
        A door whose port is taken: the process exits, naming the door and the
        port, rather than serving on the other doors.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = await self.failedStart(
            "--binary", "tcp:%d:interface=127.0.0.1" % (port,),
            "--web", "tcp:%d:interface=127.0.0.1" % (freePort(),))
        self.assertIn("the binary door cannot listen on tcp:%d:interface=127.0.0.1: "
                      "Address already in use" % (port,), line)

    async def test_damagedDatabase(self):
        """
        A database file that is not a database: the process exits, naming it.
        """
        data = os.path.join(self.workdir, "data")
        os.makedirs(data)
        os.chmod(data, 0o700)
        with open(os.path.join(data, "chatd.sqlite"), "wb") as f:
            f.write(b"\x42" * 8192)
        line = await self.failedStart()
        self.assertIn("chatd.sqlite", line)
        self.assertIn("file is not a database", line)

    async def test_unusableDataDirectory(self):
        """
        A data directory that cannot be made (a file is in the way): the
        process exits, naming it.
        """
        blocker = os.path.join(self.workdir, "blocker")
        with open(blocker, "w"):
            pass
        line = await self.failedStart("--data-dir", os.path.join(blocker, "data"))
        self.assertIn("cannot use the data directory %s/data" % (blocker,), line)
        self.assertIn("Not a directory", line)

    async def test_missingRedisModule(self):
        """
        C{--redis} where txredisapi cannot be imported (shadowed here by a
        module that raises L{ImportError}, as a missing one would): the process
        exits, saying what to install.
        """
        shadow = os.path.join(self.workdir, "shadow")
        os.makedirs(os.path.join(shadow, "txredisapi"))
        with open(os.path.join(shadow, "txredisapi", "__init__.py"), "w") as f:
            f.write("raise ImportError('No module named txredisapi')\n")
        line = await self.failedStart("--redis", "redis://127.0.0.1:%d/0" % (freePort(),),
                                      pythonPath=shadow)
        self.assertIn("--redis needs txredisapi (pip install 'chatd[redis]')", line)

    async def storedHistory(self):
        """
        A data directory whose database holds a message, written as a server
        on it would (its own key file, the default SQLite file).

        @return: the directory, and the id of the key the message is sealed
            with.
        """
        data = os.path.join(self.workdir, "data")
        prepared = datadir.prepare(data)
        store = makeStore("sqlite:" + os.path.join(data, "chatd.sqlite"),
                          prepared.keys, reactor)
        await store.open()
        await store.createAccount("Alice", None, b"key")
        await store.createRoom("#Lobby", None)
        await store.appendMessage("#Lobby", "Alice", 1000, "e1", b"{}", ["Alice"])
        await store.close()
        return data, prepared.keys.newestId

    async def test_missingKeyFile(self):
        """
        A missing key file beside a database that holds messages: the process
        exits, naming the file and saying to put the original back, instead of
        serving history that no longer opens.
        """
        data, keyId = await self.storedHistory()
        keyFile = os.path.join(data, "at-rest.key")
        os.remove(keyFile)
        line = await self.failedStart()
        self.assertIn(
            "%s was missing, so chatd wrote a new key there, but it does not hold"
            " the at-rest key %s that 1 stored messages are sealed with: put the"
            " original key file in its place" % (keyFile, keyId), line)

    async def test_otherKeyFile(self):
        """
        A key file that is not the one the stored messages were sealed with:
        the process exits, naming it.
        """
        data, keyId = await self.storedHistory()
        keyFile = os.path.join(data, "at-rest.key")
        with open(keyFile, "wb") as f:
            f.write(generateKey() + b"\n")
        line = await self.failedStart()
        self.assertIn(
            "%s does not hold the at-rest key %s that 1 stored messages are sealed"
            " with: put back the key file they were sealed with" % (keyFile, keyId),
            line)


class WaitingForServersTests(TestCase):
    """
    PostgreSQL or Redis that cannot be reached at start: chatd keeps trying,
    a line per attempt, for C{--start-timeout} seconds, then exits; if the
    server comes up meanwhile, chatd starts and listens.
    """

    timeout = 60

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def chatd(self, *options):
        port = freePort()
        child = spawnChatd("twistd", self.workdir, "--data-dir",
                           os.path.join(self.workdir, "data"), "--binary",
                           "tcp:%d:interface=127.0.0.1" % (port,), "--text", "none",
                           "--web", "none", *options)
        child.port = port
        self.addCleanup(child.signal, "KILL")
        return child

    async def gaveUp(self, child, what):
        """
        Wait for C{child} to give up on C{what} and exit 1, having said so
        once, after a line per failed attempt, without a traceback.
        """
        await waitFor(lambda: child.ended.called, PROMPTLY, "twistd to exit", child)
        printed = child.printed()
        self.assertEqual(child.status, EXIT_STATUS, printed)
        self.assertNotIn("Traceback", printed)
        self.assertIn("%s cannot be reached (attempt 1)" % (what,), printed)
        [line] = [line for line in printed.splitlines() if "chatd cannot start" in line]
        self.assertIn("chatd cannot start: %s could not be reached in 2 s" % (what,), line)

    async def test_databaseUnreachable(self):
        """
        PostgreSQL that is not there.
        """
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise SkipTest("PostgreSQL needs psycopg")
        child = self.chatd("--db", "postgresql://chatd:chatd@127.0.0.1:%d/chatd" % (freePort(),),
                           "--start-timeout", "2")
        await self.gaveUp(child, "the database")

    async def test_redisUnreachable(self):
        """
        Redis that is not there.
        """
        redisPort = freePort()
        child = self.chatd("--redis", "redis://127.0.0.1:%d/0" % (redisPort,),
                           "--start-timeout", "2")
        await self.gaveUp(child, "Redis at 127.0.0.1:%d/0" % (redisPort,))

    async def test_redisComesUp(self):
        """
        Redis that comes up while chatd waits for it: chatd joins it and
        listens.
        """
        if not shutil.which("redis-server"):
            raise SkipTest("needs redis-server on the PATH")
        redisPort = freePort()
        child = self.chatd("--redis", "redis://127.0.0.1:%d/0" % (redisPort,),
                           "--start-timeout", "40")
        await waitFor(lambda: b"cannot be reached (attempt 1)" in child.output, PROMPTLY,
                      "a failed attempt", child)
        redis = spawn("redis", [shutil.which("redis-server"), "--port", str(redisPort),
                                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", self.workdir], self.workdir)
        self.addCleanup(redis.signal, "KILL")
        await listening(child.port, child, PROMPTLY)

    async def test_databaseComesUp(self):
        """
        PostgreSQL that comes up while chatd waits for it (here: a forwarder
        to C{CHATD_TEST_POSTGRES} that starts listening late): chatd opens it
        and listens.
        """
        database = os.environ.get("CHATD_TEST_POSTGRES")
        if not database:
            raise SkipTest("CHATD_TEST_POSTGRES is not set")
        import psycopg
        schema = "chatd_test_%s" % (uuid.uuid4().hex,)
        admin = psycopg.connect(database, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute("CREATE SCHEMA %s" % (schema,))
        self.addCleanup(admin.execute, "DROP SCHEMA %s CASCADE" % (schema,))
        real = urllib.parse.urlsplit(database)
        port = freePort()
        late = real._replace(
            netloc="%s@127.0.0.1:%d" % (real.netloc.rpartition("@")[0], port),
            query=urllib.parse.urlencode({"options": "-c search_path=%s" % (schema,)},
                                       quote_via=urllib.parse.quote))
        child = self.chatd("--db", late.geturl(), "--start-timeout", "40")
        await waitFor(lambda: b"cannot be reached (attempt 1)" in child.output, PROMPTLY,
                      "a failed attempt", child)
        # Twisted's port forwarder is a Factory where listenTCP's annotation
        # asks for a ServerFactory, which adds nothing listenTCP uses.
        forwarder = reactor.listenTCP(
            port, ProxyFactory(real.hostname or "", real.port or 5432),  # type: ignore[arg-type]
            interface="127.0.0.1")
        self.addCleanup(forwarder.stopListening)
        await listening(child.port, child, PROMPTLY)
        await child.signal("TERM")


class _Requests(Int32StringReceiver):
    """
    Sends binary requests one at a time and hands over each response.
    """

    transport: ITransport

    def __init__(self):
        self.responses = []
        self.waiting = None

    def ask(self, op, *values):
        self.waiting = (op, Deferred())
        self.transport.write(opcodes.request(op, *values))
        return self.waiting[1]

    def stringReceived(self, body):
        op, payload = opcodes.parseBody(body)
        if op == opcodes.Op.RESPONSE and self.waiting is not None:
            (request, d), self.waiting = self.waiting, None
            d.callback(opcodes.decodeResponse(request, payload))


class FrozenDatabaseTests(TestCase):
    """
    A database that stops answering (here: SQLite locked by another process)
    gives clients status 0x0a within C{--db-timeout}, not a hang.
    """

    timeout = 60

    async def test_lockedDatabase(self):
        """
        LOGIN and REGISTER on a locked database are answered with 0x0a, "the
        database is unavailable; try again", within seconds; once the lock is
        gone, they work; the outage is logged once, with its end.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        port = freePort()
        child = spawnChatd("twistd", workdir, "--data-dir", os.path.join(workdir, "data"),
                           "--binary", "tcp:%d:interface=127.0.0.1" % (port,),
                           "--text", "none", "--web", "none", "--db-timeout", "1",
                           "--bcrypt-cost", "4")
        self.addCleanup(child.signal, "KILL")
        client = await connectWhenListening(TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                            _Requests, child)
        self.addCleanup(client.transport.loseConnection)
        self.assertEqual((await client.ask(Op.HELLO))[0], 0)
        locker = sqlite3.connect(os.path.join(workdir, "data", "chatd.sqlite"),
                                 isolation_level=None)
        self.addCleanup(locker.close)
        locker.execute("BEGIN IMMEDIATE")
        for op, values in [(Op.LOGIN, ("alice", "correct horse")),
                           (Op.REGISTER, ("alice", "correct horse", publicDer("alice")))]:
            started = time.monotonic()
            answer = await client.ask(op, *values)
            self.assertEqual(answer, (0x0A, ("the database is unavailable; try again",)))
            self.assertLess(time.monotonic() - started, 4)
        locker.execute("ROLLBACK")
        await waitFor(lambda: client.ask(Op.REGISTER, "bob", "correct horse",
                                         publicDer("bob")).addCallback(
                                             lambda answer: answer[0] == 0), PROMPTLY,
                      "the database to answer again", child)
        await child.signal("TERM")
        printed = child.printed()
        self.assertEqual(printed.count("the database is unavailable; requests"), 1, printed)
        self.assertEqual(printed.count("the database is back"), 1, printed)
