"""
End-to-end: a real C{twistd chatd} that cannot serve what it was configured to
serve exits at once with a non-zero status and one line naming the cause,
without a traceback, instead of lingering.
"""

import os
import socket
import sys

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from chatd import datadir
from chatd.startup import EXIT_STATUS
from chatd.store import makeStore
from chatd.store.seal import generateKey
from chatd.test.processes import freePort, spawnChatd, waitFor

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
