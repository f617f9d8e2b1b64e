# -*- test-case-name: chatd.test.test_process,chatd.test.test_client_process,chatd.test.test_files_process,chatd.test.test_multinode -*-  # noqa: E501
"""
Real processes for the end-to-end tests: free loopback ports, child processes
whose output is kept, C{twistd -n chatd} and the stdio client started so that
they run the chatd under test, and bounded waits.

Every wait here is bounded and fails the test (L{FailTest}, as C{self.fail}
would) saying what the child printed: a server that never comes up then fails
its test with the reason, instead of hanging until trial's timeout with
nothing to show.

C{browser_check.py} keeps helpers of its own: it is a plain script, run
without trial or a reactor, with blocking subprocesses and threads.
"""

import os
import socket
import sys
import time
from typing import Optional

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.trial.unittest import FailTest, TestCase

import chatd


def freePort():
    """
    A loopback port nobody listens on right now: the kernel's choice, so that
    test runs side by side do not collide on a fixed number.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(pythonPath=None):
    """
    The environment for a child: this process's, with C{PYTHONPATH} naming the
    directory that holds the imported C{chatd} package, so that the child runs
    the code under test (the source tree or an installed copy alike) and twistd
    finds the chatd plugin beside it; and without C{CHATD_PASSPHRASE}, so that
    a passphrase in the environment of whoever runs the tests does not change
    how a scripted client keeps its keys.

    @param pythonPath: a directory to search before that one, for a test that
        shadows a module.
    """
    path = os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__)))
    if pythonPath is not None:
        path = os.pathsep.join([pythonPath, path])
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("CHATD_PASSPHRASE", None)
    return env


class Child(ProcessProtocol):
    """
    A child process: what it printed, how it ended, and a way to signal it.

    @ivar name: what failure messages call it.
    @ivar output: what it wrote to standard output, and to standard error too
        unless C{errors} keeps that apart: a server's log and a crash before
        its logging began belong to one story.
    @ivar errors: what it wrote to standard error, when kept apart (for a
        client that must write nothing there); else L{None}.
    @ivar status: its exit code once it has ended (L{None} if a signal ended
        it).
    @ivar ended: a L{Deferred} that fires with L{None} when it has ended.
    @ivar process: its process transport, set by L{spawn}.
    @ivar port: for a server, the port it was told to listen on, set by
        whoever chose it.
    """

    def __init__(self, name, errorsApart=False):
        self.name = name
        self.output = b""
        self.errors = b"" if errorsApart else None
        self.status = None
        self.ended: defer.Deferred = defer.Deferred()
        self.process: Optional[IProcessTransport] = None
        self.port = None

    def outReceived(self, data):
        self.output += data

    def errReceived(self, data):
        if self.errors is None:
            self.output += data
        else:
            self.errors += data

    def processEnded(self, reason):
        self.status = reason.value.exitCode
        self.ended.callback(None)

    def printed(self):
        """
        Everything it printed so far, as text, for a failure message.
        """
        return (self.output + (self.errors or b"")).decode(errors="replace")

    def signal(self, signalName):
        """
        Send C{signalName} (C{"TERM"}, C{"KILL"}) unless it has already ended,
        so that this serves as a cleanup whether or not the test got as far as
        stopping it.

        @return: L{ended}
        """
        if not self.ended.called and self.process is not None:
            self.process.signalProcess(signalName)
        return self.ended


def spawn(name, argv, cwd, errorsApart=False, pythonPath=None):
    """
    Start C{argv} in C{cwd} with the L{environment} for a child.

    @return: its L{Child}
    """
    child = Child(name, errorsApart)
    child.process = reactor.spawnProcess(child, argv[0], argv, env=environment(pythonPath),
                                         path=cwd)
    return child


def spawnChatd(name, cwd, *options, errorsApart=False, pythonPath=None):
    """
    Start C{twistd -n chatd} with C{options} in C{cwd}: in the foreground, with
    no pid file (tests side by side would fight over one), logging to standard
    output where its L{Child} keeps it; run by this Python through twistd's
    entry point, so that no C{twistd} script need be on the PATH.

    @return: its L{Child}
    """
    return spawn(name, [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                        "-n", "--pidfile=", "--logfile=-", "chatd", *options], cwd, errorsApart,
                 pythonPath)


async def connectWhenListening(endpoint, protocolFactory, child, seconds=20):
    """
    Connect a new C{protocolFactory()} through C{endpoint} as soon as C{child}
    listens there: a real server takes a moment to start, and how long varies.
    Fails at once if C{child} ends, and after C{seconds} if it never listens.

    @return: the connected protocol
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.ended.called:
            raise FailTest("%s exited early:\n%s" % (child.name, child.printed()))
        try:
            return await connectProtocol(endpoint, protocolFactory())
        except Exception:
            await task.deferLater(reactor, 0.1)
    raise FailTest("%s never listened:\n%s" % (child.name, child.printed()))


async def listening(port, child, seconds=20):
    """
    Wait until C{child} accepts TCP connections on loopback C{port}, as
    L{connectWhenListening} does, and hang up.
    """
    protocol = await connectWhenListening(TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                          Protocol, child, seconds)
    protocol.transport.loseConnection()


async def waitFor(condition, seconds, what, child=None, interval=0.05):
    """
    Poll C{condition} (which may return a L{Deferred}) until it is true, for at
    most C{seconds}: real processes take their time, so a test waits for what
    it needs rather than sleeping a fixed while. On timeout, fail naming
    C{what}, with what C{child} (if given) printed so far.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await defer.maybeDeferred(condition):
            return
        await task.deferLater(reactor, interval)
    message = "waited %g s in vain for %s" % (seconds, what)
    if child is not None:
        message += "; %s printed so far:\n%s" % (child.name, child.printed())
    raise FailTest(message)


class ScriptedClientTestCase(TestCase):
    """
    A real C{twistd chatd} and real C{python -m chatd.client} processes run
    from scripts, in a directory of their own: the base for tests of what only
    real clients show. Every child keeps its standard error apart, and is
    stopped when the test ends, however it ends.

    @ivar workdir: the directory, made afresh for each test.
    """

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def track(self, child):
        """
        Stop C{child} when the test ends, if it has not ended by then.

        @return: C{child}
        """
        self.addCleanup(child.signal, "TERM")
        return child

    async def startServer(self):
        """
        Start C{twistd chatd} with only its binary door, on a free loopback
        port without TLS (the clients are told C{--no-tls}) and at bcrypt's
        lowest cost (so that registering is quick), and wait until it listens.

        @return: its L{Child}, with its C{port}
        """
        port = freePort()
        server = self.track(spawnChatd(
            "twistd", self.workdir, "--data-dir", os.path.join(self.workdir, "data"),
            "--binary", "tcp:%d:interface=127.0.0.1" % (port,), "--text", "none", "--web", "none",
            "--bcrypt-cost", "4", errorsApart=True))
        server.port = port
        await listening(port, server)
        return server

    def client(self, port, name, script, *options):
        """
        Start the stdio client as C{name} against the server on C{port}, with a
        home of its own in the work directory, running C{script} (kept there
        as C{name.script}); its standard input is closed, for nobody types.

        @param options: more command-line options for the client.
        @return: its L{Child}
        """
        path = os.path.join(self.workdir, name + ".script")
        with open(path, "w") as f:
            f.write(script)
        child = self.track(spawn(
            name, [sys.executable, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                   "--port", str(port), "--home", os.path.join(self.workdir, name),
                   *options, "--script", path], self.workdir, errorsApart=True))
        child.process.closeStdin()
        return child

    def assertCleanExits(self, children):
        """
        Each of C{children} (a mapping from name to L{Child}) exited 0 having
        written nothing to standard error. Each one's output is first kept as
        C{name.out} in the work directory, to be read after a failure.
        """
        for name, child in children.items():
            with open(os.path.join(self.workdir, name + ".out"), "wb") as f:
                f.write(child.output)
            self.assertEqual((child.status, child.errors), (0, b""),
                             "%s:\n%s" % (name, child.output.decode()))
