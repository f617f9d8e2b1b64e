# -*- test-case-name: chatd.test.test_bench_pacing -*-
"""
Tests for the latency shapes' load generators (C{bench/}: the shared pacing,
chatd's C{chatload} and the IRC generator C{ircpace}) and for how
C{bench.shapes} reads them; L{chatd.test.benchtree} finds C{bench/}.
"""

import asyncio
import io
import os
import sys
import time
from argparse import Namespace

from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.words import service as words
from zope.interface import implementer

from chatd.test.benchtree import benchModule, benchRoot
from chatd.test.processes import spawn, waitFor

try:
    ROOT = benchRoot()
    chatload, pacing, shapes = map(benchModule, ("chatload", "pacing", "shapes"))
except SkipTest as noTree:
    skip = str(noTree)


def runAsyncio(coroutine):
    """
    Run C{coroutine} to its end on an asyncio loop of its own, as the load
    generators run (not Twisted's reactor); at most 30 seconds.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, 30))
    finally:
        loop.close()


class FakeTime:
    """
    A clock in nanoseconds that moves only when slept on.
    """

    def __init__(self, now=0):
        self.now = now
        self.sleeps = []

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += round(seconds * 1e9)


def arguments(**changes):
    """
    What the generators' options parse to, for a small paced run.
    """
    values = dict(port=0, clients=4, senders=4, messages=3, bytes=10, rate=20.0,
                  stagger=False, kernel_stamps=False, timeout=5.0, server_pid=0, window=32)
    values.update(changes)
    return Namespace(**values)


class ScheduleTests(SynchronousTestCase):
    """
    With C{--stagger} the senders' schedules are spread over one period;
    without it they start together, as before.
    """

    def dueTimes(self, args):
        """
        The send times L{pacing.measure} gives the senders, relative to its
        start.
        """
        seen = []

        def startSenders(first, due):
            seen.append([times and [at - first for at in times] for times in due])
            return []

        clients = [Namespace(received=0)]
        stats = pacing.Stats(pacing.Clock(False))
        result, senders, timedOut = runAsyncio(
            pacing.measure(args, stats, clients, 0, startSenders))
        self.assertFalse(timedOut)
        return seen[0]

    def test_stagger(self):
        """
        Sender k of S starts k/S of a period (1/rate) after the first, and
        each then sends once a period: 4 senders at 20/s offer one message
        every 12.5 ms.
        """
        self.assertEqual(self.dueTimes(arguments(stagger=True)), [
            [0, 50_000_000, 100_000_000],
            [12_500_000, 62_500_000, 112_500_000],
            [25_000_000, 75_000_000, 125_000_000],
            [37_500_000, 87_500_000, 137_500_000],
        ])

    def test_together(self):
        """
        Without C{--stagger} every sender's message n is due at the same time.
        """
        self.assertEqual(self.dueTimes(arguments()),
                         [[0, 50_000_000, 100_000_000]] * 4)

    def test_fullSpeed(self):
        """
        Without a rate there is no schedule: the senders go as fast as they
        may.
        """
        self.assertEqual(self.dueTimes(arguments(rate=0.0, stagger=True)), [None] * 4)

    def test_pacedWaitsForEachTime(self):
        """
        L{pacing.paced} sends each message at its due time, not before, and
        one already due at once, without sleeping.
        """
        fake = FakeTime(now=1000)
        sent = []
        runAsyncio(pacing.paced([500, 1000, 4000, 9000],
                                lambda n: sent.append((n, fake.now)), fake.clock, fake.sleep))
        self.assertEqual(sent, [(0, 1000), (1, 1000), (2, 4000), (3, 9000)])
        self.assertEqual(len(fake.sleeps), 2)

    def test_chatloadTimesEachSend(self):
        """
        chatload's paced sender sends its frames in order and keeps each
        envelope's actual send time under its id, the time its latency is
        measured from.
        """
        fake = FakeTime(now=7)
        clock = pacing.Clock(False)
        clock.now = fake.clock
        stats = pacing.Stats(clock)
        written = []

        class Client:
            def send(self, frame):
                written.append(frame)
                fake.now += 3
                answer = asyncio.get_running_loop().create_future()
                answer.set_result(b"\x00")
                return answer

        refused = runAsyncio(chatload.sendAll(Client(), [b"f0", b"f1"], [b"id0", b"id1"],
                                              stats, arguments(), due=[0, 5]))
        self.assertEqual((refused, written), (0, [b"f0", b"f1"]))
        self.assertEqual(stats.sentAt, {b"id0": 7, b"id1": 10})


class KernelStampTests(SynchronousTestCase):
    """
    C{--kernel-stamps} times a read by the kernel's receive stamp.
    """

    if not sys.platform.startswith("linux"):
        skip = "SO_TIMESTAMPNS is Linux's"

    def test_stamped(self):
        """
        A read through L{pacing.StampedTransport} comes with a stamp from the
        clock the send times use, between the peer's write and the read.
        Linux turns stamping on a moment after the first socket asks for it
        (from a work queue): a read before then is counted as unstamped, and
        the peer is asked again until one is stamped.
        """
        reads = []
        written = []
        answered = []

        class Reader(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def dataArrived(self, data, arrived):
                reads.append((data, arrived, time.time_ns(), self.transport.unstamped))

        async def answer(reader, writer):
            try:
                while await reader.read(1):
                    written.append(time.time_ns())
                    writer.write(b"hello")
                writer.close()
            finally:
                answered.append(True)

        async def exchange():
            server = await asyncio.start_server(answer, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            client = await pacing.connect(port, Reader(), pacing.Clock(True))
            for asked in range(1, 101):
                client.transport.write(b"?")
                # Wait for this question's own answer: comparing the reads
                # with the peer's writes let a question not yet read by the
                # peer pass for answered, and the loop ran on unanswered.
                while len(reads) < asked:
                    await asyncio.sleep(0.01)
                if client.transport.unstamped < len(reads):
                    break
            client.transport.close()
            while not answered:
                await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()

        runAsyncio(exchange())
        unstamped = 0
        stamped = []
        for (data, arrived, readAt, count), sent in zip(reads, written):
            self.assertEqual(data, b"hello")
            if count == unstamped:
                stamped.append((sent, arrived, readAt))
            unstamped = count
        self.assertEqual(len(stamped), 1, reads)
        [(sent, arrived, readAt)] = stamped
        self.assertTrue(sent <= arrived <= readAt, (sent, arrived, readAt))


class ShapeTests(SynchronousTestCase):
    """
    The paced shapes give both generators the same options.
    """

    def test_pacedShapes(self):
        """
        C{lat50e} and C{lat1e} are C{lat50} and C{lat1} with the senders
        staggered and kernel stamps; C{+stagger} and C{+stamps} add one.
        """
        lat50 = shapes.parseShape("lat50")[1]
        self.assertEqual(shapes.parseShape("lat50e")[1],
                         lat50[:6] + (("--stagger", "--kernel-stamps"),))
        self.assertEqual(shapes.parseShape("lat50+stagger")[1], lat50[:6] + (("--stagger",),))
        self.assertEqual(shapes.parseShape("lat1/5+stamps")[1],
                         (50, 1, 10, 100, 5, 0, ("--kernel-stamps",)))
        self.assertEqual(lat50[6], ())

    def test_badModifier(self):
        """
        An unknown modifier, or C{+stagger} on a shape without a rate, is
        refused.
        """
        for text in ("lat50+fast", "d+stagger"):
            self.assertRaises(shapes.argparse.ArgumentTypeError, shapes.parseShape, text)

    def test_ircloadOnlyWhenNeeded(self):
        """
        twisted.words on paced shapes needs no C{--ircload} (bench.ircpace
        runs them); on the others it does.
        """
        tac = ["--chatd", f"here={ROOT}", "--words-tac", "words.tac"]
        self.patch(sys, "stderr", io.StringIO())
        self.assertEqual(shapes.parseArguments(tac + ["--shape", "lat1e"]).ircload, None)
        self.assertRaises(SystemExit, shapes.parseArguments, tac + ["--shape", "lat1"])


class PinTests(SynchronousTestCase):
    """
    With C{--pin}, each server runs on a CPU of its own and the load
    generator on the others.
    """

    def test_pinning(self):
        """
        The server gets the first CPU this process may use, the generator
        every other one; without C{--pin}, neither is placed.
        """
        self.patch(shapes.os, "sched_getaffinity", lambda pid: {3, 1, 2})
        self.assertEqual(shapes.pinning(True), ({1}, {2, 3}))
        self.assertEqual(shapes.pinning(False), (None, None))

    def test_oneCPU(self):
        """
        One CPU cannot be shared out: the command stops and says so.
        """
        self.patch(shapes.os, "sched_getaffinity", lambda pid: {0})
        self.assertRaises(SystemExit, shapes.pinning, True)

    def test_childOnItsCPUs(self):
        """
        A child started with L{shapes.onCPUs} runs on those CPUs only.
        """
        cpu = max(os.sched_getaffinity(0))
        shown = shapes.subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True, text=True, check=True, preexec_fn=shapes.onCPUs({cpu}))
        self.assertEqual(shown.stdout.strip(), str([cpu]))
        self.assertIsNone(shapes.onCPUs(None))

    def test_option(self):
        """
        C{--pin} is off unless asked for.
        """
        tree = ["--chatd", "here=" + ROOT]
        self.assertFalse(shapes.parseArguments(tree).pin)
        self.assertTrue(shapes.parseArguments(tree + ["--pin"]).pin)


@implementer(ICredentialsChecker)
class AnyNick:
    """
    Any nick logs in with the password C{bench}.
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        if creds.password in (b"bench", "bench"):
            return defer.succeed(creds.username)
        return defer.fail(error.UnauthorizedLogin())


class IRCPaceTests(TestCase):
    """
    C{python -m bench.ircpace} against twisted.words' IRC server, here on
    loopback.
    """

    def setUp(self):
        realm = words.InMemoryWordsRealm("test")
        realm.createGroupOnRequest = realm.createUserOnRequest = True
        factory = words.IRCFactory(realm, portal.Portal(realm, [AnyNick()]))
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        address = listening.getHost()
        assert isinstance(address, IPv4Address)
        self.port = address.port

    async def pace(self, password, *options):
        """
        Run the generator for a small paced load; its output, read as
        L{bench.shapes} reads it.
        """
        child = spawn("ircpace", [sys.executable, "-m", "bench.ircpace",
                                  "--port", str(self.port), "--password", password,
                                  "--clients", "3", "--senders", "2", "--messages", "4",
                                  "--rate", "50", "--timeout", "20",
                                  "--server-pid", str(os.getpid()), *options], ROOT)
        self.addCleanup(child.signal, "KILL")
        await waitFor(lambda: child.ended.called, 60, "ircpace to end", child)
        return child, shapes.parseResult(child.output.decode())

    async def test_result(self):
        """
        Every message reaches the two other clients once, and the C{RESULT}
        line carries what L{bench.shapes} summarises.
        """
        child, result = await self.pace("bench", "--stagger", "--kernel-stamps")
        self.assertEqual(child.status, 0, child.printed())
        self.assertEqual((result["ok"], result["expected"], result["received"]),
                         (True, 16, 16), result)
        self.assertEqual((result["min_per_client"], result["max_per_client"]), (4, 8))
        self.assertEqual((result["stagger"], result["kernel_stamps"],
                          result["unstamped_reads"]), (True, True, 0))
        self.assertTrue(0 < result["lat_p50_ms"] <= result["lat_p99_ms"]
                        <= result["lat_max_ms"], result)
        self.assertIn("server_cpu_ms_per_1000_deliveries", result)
        out = io.StringIO()
        shapes.summarise({"lat1e": {"twisted.words": [result]}}, out)
        self.assertIn("1/1", out.getvalue())

    async def test_refused(self):
        """
        A wrong password fails the run with the server's refusal in its
        C{RESULT} line, and a non-zero exit status.
        """
        child, result = await self.pace("nope")
        self.assertNotEqual(child.status, 0)
        self.assertFalse(result["ok"])
        self.assertTrue(result["errors"], result)
