"""
A long soak against a running chatd server: steady chat plus guest churn, with
the server's resident memory sampled throughout, to show that it stays flat.

Many members (C{--clients}, guests on the binary door) sit in a few rooms
(C{--rooms}); together they send C{--rate} room messages a second, each sealed
with L{chatd.e2e.seal} for its room's members as a real client would, and every
second (C{--churn}) a new guest connects, publishes a key, joins one of the
rooms, leaves and disconnects. A message refused because a churning guest came
or went meanwhile (0x09) is sealed again for the members the refusal names.
Every C{--interval} seconds the tool prints the server's RSS (from
C{/proc/PID/status}) with what was sent and delivered, and writes the same to
C{--csv} when asked.

Run it from the repository root (see C{bench/README.rst}):
C{.venv/bin/python -m bench.soak --server 127.0.0.1:47017 --pid PID}.
"""

import argparse
import csv
import itertools
import random
import sys
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from bench.benchclient import (
    BenchClient,
    BenchError,
    bounded,
    connect,
    heartbeats,
    newKey,
    setUpMember,
)
from bench.command import atLeast, main, serverAddress
from bench.procstat import raiseOpenFileLimit, serverRSS
from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op

STALE_RECIPIENTS = 0x09


class CountingClient(BenchClient):
    """
    A member that counts the room messages it receives instead of keeping
    them, so that the tool's own memory stays flat over a long run.
    """

    delivered = 0

    def roomMessageArrived(self, event):
        CountingClient.delivered += 1


class Soak:
    """
    The state of one soak: members by room, their keys, and counters.
    """

    def __init__(self, reactor, args):
        self.reactor = reactor
        self.args = args
        self.keys = [newKey() for _ in range(args.keys)]
        self.members = {}
        self.clients = []
        self.sent = self.stale = self.refused = self.churned = self.skipped = 0
        self.inFlight = 0

    def key(self, index):
        return self.keys[index % len(self.keys)]

    async def setUp(self):
        args = self.args
        lock = DeferredSemaphore(args.parallel)

        async def one(index):
            host, port = args.server
            client = await connectProtocol(
                TCP4ClientEndpoint(self.reactor, host, port, timeout=10), CountingClient())
            self.clients.append(client)
            room = f"{args.room}-{index % args.rooms}"
            name = f"{args.name}{index}"
            await setUpMember(client, name, self.key(index)[1], room)
            self.members.setdefault(room, []).append((client, name, index))

        await gatherResults([lock.run(lambda i=i: Deferred.fromCoroutine(one(i)))
                             for i in range(args.clients)], consumeErrors=True)

    async def send(self, client, name, index, room):
        """
        Send one message to C{room}, sealed for its members as the server
        names them, again after each 0x09.
        """
        (members,) = await client.ok(Op.GET_KEYS, 0, room)
        for _ in range(5):
            envelope = e2e.seal(name, self.key(index)[0], ("room", room), dict(members),
                                b"x" * self.args.size)
            status, result = await client.call(Op.ROOM_MSG,
                                               opcodes.request(Op.ROOM_MSG, room, envelope))
            if status == 0:
                self.sent += 1
                return
            if status != STALE_RECIPIENTS:
                self.refused += 1
                return
            self.stale += 1
            (members,) = result
        self.refused += 1

    def tick(self):
        """
        One message from a member picked at random, unless the server is so
        far behind that 200 are still waiting (counted as skipped).
        """
        if self.inFlight >= 200:
            self.skipped += 1
            return
        room = random.choice(sorted(self.members))
        client, name, index = random.choice(self.members[room])
        if client.lost.called:
            self.skipped += 1
            return
        self.inFlight += 1
        d = Deferred.fromCoroutine(self.send(client, name, index, room))
        d.addErrback(self.failed)
        d.addBoth(self.done)

    def done(self, _):
        self.inFlight -= 1

    def failed(self, failure):
        self.refused += 1
        print(f"a send failed: {failure.getErrorMessage()}", file=sys.stderr)

    async def churn(self, number):
        """
        One guest comes, joins a room, leaves and goes.
        """
        client = await connect(self.reactor, self.args.server)
        try:
            room = f"{self.args.room}-{number % self.args.rooms}"
            await setUpMember(client, f"{self.args.name}g{number}", self.key(number)[1], room)
            await client.ok(Op.LEAVE, room)
            self.churned += 1
        finally:
            client.close()

    def churnTick(self, counter):
        d = Deferred.fromCoroutine(self.churn(next(counter)))
        d.addErrback(self.failed)


async def soak(reactor, args):
    raiseOpenFileLimit(args.clients + 64)
    run = Soak(reactor, args)
    print(f"soak: {args.clients} clients in {args.rooms} rooms, {args.rate:g} msg/s,"
          f" a guest joining and leaving every {args.churn:g} s, for {args.duration:g} s;"
          f" server pid {args.pid}")
    rssStart = serverRSS(args.pid)
    loop = heartbeats(reactor, run.clients)
    loops = []
    out = None
    try:
        await bounded(Deferred.fromCoroutine(run.setUp()), reactor, args.timeout, "setting up")
        print(f"set up: RSS {rssStart} KiB before, {serverRSS(args.pid)} KiB with every"
              " member in its room")
        sender = task.LoopingCall(run.tick)
        sender.clock = reactor
        loops.append(sender)
        sender.start(1.0 / args.rate, now=False)
        churner = task.LoopingCall(run.churnTick, itertools.count())
        churner.clock = reactor
        loops.append(churner)
        churner.start(args.churn, now=False)
        if args.csv:
            out = open(args.csv, "w", newline="")
            writer = csv.writer(out)
            writer.writerow(["seconds", "rss_kib", "sent", "delivered", "stale_resends",
                             "refused", "skipped", "guests_churned", "members_lost"])
        started = time.monotonic()
        samples = []
        while True:
            await task.deferLater(reactor, args.interval, lambda: None)
            elapsed = time.monotonic() - started
            lost = sum(1 for client in run.clients if client.lost.called)
            row = [round(elapsed), serverRSS(args.pid), run.sent, CountingClient.delivered,
                   run.stale, run.refused, run.skipped, run.churned, lost]
            samples.append(row)
            print("t={:>5} s  RSS {:>7} KiB  sent {:>6}  delivered {:>7}  0x09 resends {:>4}"
                  "  refused {:>3}  skipped {:>3}  guests {:>5}  lost {:>3}".format(*row),
                  flush=True)
            if out:
                writer.writerow(row)
                out.flush()
            if elapsed >= args.duration:
                break
        warm = [s for s in samples if s[0] >= args.warmup] or samples[-1:]
        rss = [s[1] for s in warm]
        print(f"after warm-up ({args.warmup:g} s): RSS from {rss[0]} to {rss[-1]} KiB,"
              f" min {min(rss)}, max {max(rss)} ({(rss[-1] - rss[0]) / 1024:+.1f} MiB)")
        if run.refused:
            raise BenchError(f"{run.refused} messages or guests failed; see above")
    finally:
        for each in loops:
            each.stop()
        loop.stop()
        for client in run.clients:
            client.close()
        if out:
            out.close()


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=serverAddress, required=True,
                        help="HOST:PORT of a chatd binary listener on plain TCP")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--duration", type=float, default=1800,
                        help="seconds to run once every member is in [%(default)s]")
    parser.add_argument("--warmup", type=float, default=300,
                        help="seconds after which RSS should be flat [%(default)s]")
    parser.add_argument("--interval", type=float, default=30,
                        help="seconds between RSS samples [%(default)s]")
    parser.add_argument("--clients", type=atLeast(1), default=200,
                        help="members [%(default)s]")
    parser.add_argument("--rooms", type=atLeast(1), default=10, help="rooms [%(default)s]")
    parser.add_argument("--rate", type=float, default=20,
                        help="room messages per second, all members together [%(default)s]")
    parser.add_argument("--churn", type=float, default=1,
                        help="seconds between guests joining and leaving [%(default)s]")
    parser.add_argument("--size", type=atLeast(1), default=200,
                        help="plaintext bytes per message [%(default)s]")
    parser.add_argument("--keys", type=atLeast(1), default=20,
                        help="RSA keys made and shared among the members [%(default)s]")
    parser.add_argument("--room", default="soak", help="room name prefix [%(default)s]")
    parser.add_argument("--name", default="soak", help="guest name prefix [%(default)s]")
    parser.add_argument("--parallel", type=atLeast(1), default=20,
                        help="members being set up at once [%(default)s]")
    parser.add_argument("--csv", help="also write the samples to this CSV file")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds setting up may take [%(default)s]")
    parser.set_defaults(run=soak)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parseArguments()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
