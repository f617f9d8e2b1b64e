"""
End-to-end: the real C{twistd chatd} and two real C{python -m chatd.client}
processes driven by scripts, for what only real processes show: the command
line, standard input and output, key files on disk, and the whole path from
one person's typing to the other's screen.
"""

import os
import signal
import sys

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

import chatd
from chatd.test.test_process import _Twistd, freePort

ALICE = """\
/register alice
/join lobby
/expect "bob joined" 30
hello bob, this is alice
/expect "<bob> hi alice" 30
/pm bob a secret for bob
/expect "*dm* <bob> got it" 30
/history
"""

BOB = """\
/register bob
/join lobby
/expect "<alice> hello bob" 30
hi alice
/expect "*dm* <alice> a secret for bob" 30
/pm alice got it
/users lobby
"""


class _Process(_Twistd):
    """
    Collects a child's standard output and error apart.
    """

    def __init__(self):
        _Twistd.__init__(self)
        self.errors = b""
        self.status = None

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        self.status = reason.value.exitCode
        _Twistd.processEnded(self, reason)


class ClientProcessTests(TestCase):
    """
    Two scripted clients talk through a real server.
    """

    timeout = 120

    async def test_twoClientsTalk(self):
        """
        Alice and bob register, meet in a room, exchange room messages and
        direct messages, each waiting (C{/expect}) for the other's words; both
        exit 0 having printed the conversation, decrypted, with times, rooms
        and senders.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        port = freePort()
        self.env = dict(os.environ, PYTHONPATH=os.path.dirname(
            os.path.dirname(os.path.abspath(chatd.__file__))))
        self.env.pop("CHATD_PASSPHRASE", None)
        server = self.spawn(
            workdir, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile=-", "chatd", "--data-dir", os.path.join(workdir, "data"),
            "--binary", "tcp:%d:interface=127.0.0.1" % (port,), "--text", "none", "--web", "none",
            "--bcrypt-cost", "4")
        await self.listening(port, server)

        alice = self.client(workdir, port, "alice", ALICE)
        await self.until(lambda: b"joined #lobby" in alice.output, alice, 60)
        bob = self.client(workdir, port, "bob", BOB)
        await self.until(lambda: alice.ended.called and bob.ended.called, alice, 90)

        for name, child in (("alice", alice), ("bob", bob)):
            with open(os.path.join(workdir, name + ".out"), "wb") as f:
                f.write(child.output)
            self.assertEqual((child.status, child.errors), (0, b""),
                             "%s:\n%s" % (name, child.output.decode()))
        aliceSaw, bobSaw = alice.output.decode(), bob.output.decode()
        for line in ["registered and logged in as alice",
                     "joined #lobby: 1 member (alice)",
                     "-- first contact with bob: key",
                     "#lobby * bob joined (key",
                     "#lobby <alice> hello bob, this is alice",
                     "#lobby <bob> hi alice",
                     "*dm to bob* <alice> a secret for bob",
                     "*dm* <bob> got it",
                     "history of #lobby: 2 messages"]:
            self.assertIn(line, aliceSaw)
        for line in ["registered and logged in as bob",
                     "joined #lobby: 2 members (alice, bob)",
                     "#lobby <alice> hello bob, this is alice",
                     "*dm* <alice> a secret for bob",
                     "*dm to alice* <bob> got it"]:
            self.assertIn(line, bobSaw)
        self.assertRegex(aliceSaw, r"\[\d\d:\d\d:\d\d\] #lobby <bob> hi alice\n")
        self.assertTrue(os.path.exists(os.path.join(workdir, "alice", "keys", "alice.pem")))

        await self.stop(server)
        self.assertNotIn(b"Traceback", server.output)

    def spawn(self, workdir, *args):
        child = _Process()
        process = reactor.spawnProcess(child, sys.executable, [sys.executable] + list(args),
                                       env=self.env, path=workdir)
        child.process = process
        self.addCleanup(lambda: None if child.ended.called else self.stop(child))
        return child

    def client(self, workdir, port, name, script):
        path = os.path.join(workdir, name + ".script")
        with open(path, "w") as f:
            f.write(script)
        child = self.spawn(workdir, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                           "--port", str(port), "--home", os.path.join(workdir, name),
                           "--script", path)
        child.process.closeStdin()
        return child

    async def listening(self, port, server, attempts=200):
        """
        Wait until twistd accepts connections (bounded: 20 s).
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        for _ in range(attempts):
            if server.ended.called:
                self.fail("twistd exited early:\n" + server.output.decode())
            try:
                protocol = await connectProtocol(endpoint, Protocol())
            except Exception:
                await task.deferLater(reactor, 0.1)
            else:
                protocol.transport.loseConnection()
                return
        self.fail("twistd never listened:\n" + server.output.decode())

    async def until(self, condition, child, seconds):
        """
        Wait until C{condition()} holds, for at most C{seconds}.
        """
        for _ in range(int(seconds * 10)):
            if condition():
                return
            await task.deferLater(reactor, 0.1)
        self.fail("timed out; output so far:\n" + child.output.decode() + child.errors.decode())

    def stop(self, child):
        if not child.ended.called:
            child.process.signalProcess(signal.SIGTERM)
        return defer.gatherResults([child.ended])
