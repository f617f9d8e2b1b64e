"""
Flood measurements against a running chatd server, over the binary protocol.

Subcommands:

    slow-readers  server memory while many members of a room never read what
                  the room sends them, and after they are gone
    guest-flood   how long a member's LOGIN takes while guests flood the server
                  with CREATE requests for password rooms

Like C{bench.load}, the tool starts no server (see C{bench/README.rst}).
Run it from the repository root: C{.venv/bin/python -m bench.floods --help}.
"""

import argparse
import itertools
import statistics
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList

from bench.benchclient import (
    BenchError,
    bounded,
    connect,
    heartbeats,
    newKey,
    sendPipelined,
    setUpMember,
)
from bench.command import atLeast, main, serverAddress
from bench.procstat import serverRSS
from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op


def pause(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


# -- slow readers -------------------------------------------------------------

async def slowReaders(reactor, args):
    """
    C{--readers} members join a room and stop reading; one more sends
    C{--messages} messages to the room. The server's RSS is read before, at
    its highest while sending, and after the readers are gone.
    """
    keys = [newKey() for _ in range(min(args.readers, 8))]
    readers, clients = [], []
    loop = heartbeats(reactor, clients)
    try:
        for index in range(args.readers):
            reader = await bounded(connect(reactor, args.server), reactor, 15, "connecting")
            clients.append(reader)
            await setUpMember(reader, f"{args.name}r{index}", keys[index % len(keys)][1],
                              args.room)
            readers.append(reader)
        sender = await bounded(connect(reactor, args.server), reactor, 15, "connecting")
        clients.append(sender)
        senderKey, senderDer = newKey()
        members = dict(await setUpMember(sender, f"{args.name}tx", senderDer, args.room))
        if len(members) != args.readers + 1:
            raise BenchError(f"room {args.room} has other members; use another --room")
        for reader in readers:
            # The kernel's buffers fill, then the server's send queue.
            reader.transport.pauseProducing()
        ts = int(time.time() * 1000)
        frames = [opcodes.request(Op.ROOM_MSG, args.room,
                                  e2e.seal(f"{args.name}tx", senderKey, ("room", args.room),
                                           members, b"x" * args.size, ts=ts))
                  for _ in range(args.messages)]
        await pause(reactor, 2)
        before = serverRSS(args.pid)
        print(f"{args.readers} readers that never read, {args.messages} messages of"
              f" {args.size} bytes ({len(frames[0])} bytes a frame); server RSS before:"
              f" {before / 1024:.1f} MiB")
        peak = [before]

        def sample():
            peak[0] = max(peak[0], serverRSS(args.pid))

        sampler = task.LoopingCall(sample)
        sampler.clock = reactor
        sampler.start(0.1)
        try:
            refused = await bounded(
                Deferred.fromCoroutine(sendPipelined(sender, frames, args.window)), reactor,
                args.timeout, "sending")
            await pause(reactor, args.settle)
        finally:
            sampler.stop()
        held = serverRSS(args.pid)
        for reader in readers:
            reader.transport.resumeProducing()
        await pause(reactor, args.settle)
        dropped = sum(1 for reader in readers if reader.lost.called)
        for reader in readers:
            reader.close()
        await pause(reactor, args.settle)
        after = serverRSS(args.pid)
        print(f"peak while sending: {peak[0] / 1024:.1f} MiB ({(peak[0] - before) / 1024:+.1f});"
              f" {args.settle:g} s after the last message: {held / 1024:.1f} MiB"
              f" ({(held - before) / 1024:+.1f})")
        print(f"messages refused: {refused}; readers the server dropped as too slow:"
              f" {dropped} of {args.readers}")
        print(f"after the readers are gone: {after / 1024:.1f} MiB"
              f" ({(after - before) / 1024:+.1f} MiB over before)")
    finally:
        loop.stop()
        for client in clients:
            client.close()


# -- guest flood --------------------------------------------------------------

async def timeLogins(reactor, args, count):
    """
    Log in as the member C{count} times, each on a new connection.

    @return: the seconds each LOGIN took, from request to response.
    """
    times = []
    for _ in range(count):
        client = await bounded(connect(reactor, args.server), reactor, 15, "connecting")
        # A slow LOGIN must not be cut short by the server's idle timeout.
        loop = heartbeats(reactor, [client])
        try:
            await client.ok(Op.HELLO)
            started = time.perf_counter()
            await bounded(Deferred.fromCoroutine(client.ok(Op.LOGIN, args.member,
                                                           args.password)),
                          reactor, args.timeout, "LOGIN")
            times.append(time.perf_counter() - started)
        finally:
            loop.stop()
            client.close()
    return times


def summary(times):
    return (f"median {statistics.median(times):.3f} s, max {max(times):.3f} s"
            f" over {len(times)} logins")


async def flood(client, prefix, stop, counts):
    """
    Ask for new password rooms, one after another, until C{stop} is set.
    """
    for number in itertools.count():
        if stop:
            return
        status, _ = await client.call(
            Op.CREATE, opcodes.request(Op.CREATE, f"{prefix}-{number}", "sesame-open"))
        counts[status] = counts.get(status, 0) + 1


async def guestFlood(reactor, args):
    """
    Time a member's LOGIN alone, then while C{--guests} guests ask for
    password rooms as fast as they are answered.
    """
    _, der = newKey()
    client = await bounded(connect(reactor, args.server), reactor, 15, "connecting")
    try:
        await client.ok(Op.HELLO)
        await bounded(Deferred.fromCoroutine(client.ok(Op.REGISTER, args.member,
                                                       args.password, der)),
                      reactor, args.timeout, "REGISTER")
    finally:
        client.close()
    quiet = await timeLogins(reactor, args, args.logins)
    print(f"LOGIN alone: {summary(quiet)}")
    guests, stop, counts = [], [], {}
    for _ in range(args.guests):
        guest = await bounded(connect(reactor, args.server), reactor, 15, "connecting")
        await guest.ok(Op.HELLO)
        guests.append(guest)
    loop = heartbeats(reactor, guests)
    floods = [Deferred.fromCoroutine(flood(guest, f"#{args.member}-{index}", stop, counts))
              for index, guest in enumerate(guests)]
    try:
        await pause(reactor, args.rampup)
        busy = await timeLogins(reactor, args, args.logins)
    finally:
        stop.append(True)
        loop.stop()
        await DeferredList(floods, consumeErrors=True)
        for guest in guests:
            guest.close()
    print(f"LOGIN while {args.guests} guests ask for password rooms: {summary(busy)}")
    print("their CREATE answers: " + ", ".join(
        f"{count} x 0x{status:02x}" for status, count in sorted(counts.items())))


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.floods",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", type=serverAddress, required=True,
                        help="HOST:PORT of a chatd binary listener on plain TCP")
    common.add_argument("--timeout", type=float, default=300,
                        help="seconds any one step may take [%(default)s]")

    slow = commands.add_parser("slow-readers", parents=[common],
                               help="server memory with members that never read")
    slow.add_argument("--pid", type=int, required=True, help="the server's process id")
    slow.add_argument("--readers", type=atLeast(1), default=40,
                      help="members that never read [%(default)s]")
    slow.add_argument("--messages", type=atLeast(1), default=400,
                      help="messages sent to the room [%(default)s]")
    slow.add_argument("--size", type=atLeast(1), default=16384,
                      help="plaintext bytes per message [%(default)s]")
    slow.add_argument("--window", type=atLeast(1), default=16,
                      help="messages outstanding, unacknowledged [%(default)s]")
    slow.add_argument("--settle", type=float, default=5,
                      help="seconds to wait before each reading [%(default)s]")
    slow.add_argument("--room", default="slow", help="room to use [%(default)s]")
    slow.add_argument("--name", default="slow", help="guest name prefix [%(default)s]")
    slow.set_defaults(run=slowReaders)

    guest = commands.add_parser("guest-flood", parents=[common],
                                help="LOGIN time while guests ask for password rooms")
    guest.add_argument("--guests", type=atLeast(1), default=20,
                       help="guests flooding [%(default)s]")
    guest.add_argument("--logins", type=atLeast(1), default=5,
                       help="logins timed, alone and under the flood [%(default)s]")
    guest.add_argument("--rampup", type=float, default=3,
                       help="seconds of flood before the first timed login [%(default)s]")
    guest.add_argument("--member", default="floodmember",
                       help="account to register and log in as [%(default)s]")
    guest.add_argument("--password", default="correct horse battery",
                       help="its password [%(default)s]")
    guest.set_defaults(run=guestFlood)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parseArguments()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
