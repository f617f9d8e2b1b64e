"""
End-to-end: a real C{twistd chatd} that cannot serve what it was configured to
serve exits at once with a non-zero status and one line naming the cause,
without a traceback, instead of lingering.
"""

import os
import socket
import sys

from twisted.trial.unittest import TestCase

from chatd.startup import EXIT_STATUS
from chatd.test.processes import freePort, spawnChatd, waitFor

# How long a failed start may take, at most: seconds, not the trial timeout.
PROMPTLY = 15


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
