"""
Load measurements against a running chatd server, over the binary protocol.

The tool starts no server: it connects to the address given with C{--server},
so that the server runs with exactly the options being measured (see
C{bench/README.rst}) and its memory can be read from outside (C{--pid}).

Subcommands:

    throughput  room messages per second acknowledged by the server, one at a
                time and then pipelined, and the rate at which a second
                member receives them
    idle        server memory per idle connection

Frames are built and read with L{chatd.protocols.opcodes}, and envelopes sealed
with L{chatd.e2e.seal}, the same code the server and its clients run, so the
tool measures the real protocol rather than an imitation of it.

Run it from the repository root: C{.venv/bin/python -m bench.load --help}.
"""

import argparse
import json
import resource
import time
from collections import deque

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import task
from twisted.internet.defer import (
    Deferred, DeferredSemaphore, FirstError, TimeoutError, gatherResults)
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.protocols.basic import Int32StringReceiver

from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op

# Clients are expected to send something after 6 s of silence (PROTOCOL.md 2);
# the server warns at 20 s and disconnects at 30 s by default.
HEARTBEAT_INTERVAL = 6.0


class BenchError(Exception):
    """
    The measurement cannot go on (refused request, lost connection, timeout);
    the message says why, for the user rather than as a traceback.
    """


class BenchClient(Int32StringReceiver):
    """
    A bare binary-protocol client: requests whose responses come back in the
    order sent, and room messages recorded with their time of arrival.

    @ivar roomMessages: C{(perf_counter time, event payload)} for every
        ROOM_MSG event, kept undecoded so receiving costs the client little
        while the clock runs.
    @ivar lost: a L{Deferred} that fires when the connection is gone.
    """

    MAX_LENGTH = opcodes.MAX_FRAME_DEFAULT

    def __init__(self):
        self._waiting = deque()
        self._messageTarget = None
        self.roomMessages = []
        self.lost = Deferred()

    def call(self, op, frame):
        """
        Send a request frame that is already encoded, so that a timed loop
        does no encoding of its own.

        @return: a L{Deferred} firing with C{(status, values)} as
            L{opcodes.decodeResponse} gives them.
        """
        answered = Deferred()
        self._waiting.append((op, answered))
        self.transport.write(frame)
        return answered

    async def ok(self, op, *values):
        """
        Make a request that must succeed.

        @return: the decoded values of the ok response.
        @raise BenchError: when the server refuses it.
        """
        status, result = await self.call(op, opcodes.request(op, *values))
        if status != 0:
            raise BenchError(f"{op.name} refused with status 0x{status:02x}: {result[0]}")
        return result

    def heartbeat(self):
        """
        Tell the server this connection is alive; HEARTBEAT has no response.
        """
        self.transport.write(opcodes.request(Op.HEARTBEAT, "stayin alive..."))

    def whenRoomMessages(self, count):
        """
        @return: a L{Deferred} that fires once C{count} ROOM_MSG events have
            arrived in all.
        """
        reached = Deferred()
        if len(self.roomMessages) >= count:
            reached.callback(None)
        else:
            self._messageTarget = (count, reached)
        return reached

    def stringReceived(self, body):
        # Events other than ROOM_MSG (JOINED, LEFT, WARNING...) play no part
        # in any measurement and are dropped.
        op, payload = opcodes.parseBody(body)
        if op == Op.RESPONSE:
            requestOp, answered = self._waiting.popleft()
            answered.callback(opcodes.decodeResponse(requestOp, payload))
        elif op == Op.ROOM_MSG:
            self.roomMessages.append((time.perf_counter(), payload))
            if self._messageTarget and len(self.roomMessages) >= self._messageTarget[0]:
                reached = self._messageTarget[1]
                self._messageTarget = None
                reached.callback(None)

    def connectionLost(self, reason):
        # Whoever still waits would otherwise wait until its timeout.
        failure = BenchError(f"connection lost: {reason.getErrorMessage()}")
        waiting, self._waiting = self._waiting, deque()
        for _, answered in waiting:
            answered.errback(failure)
        if self._messageTarget:
            self._messageTarget[1].errback(failure)
            self._messageTarget = None
        self.lost.callback(None)


def connect(reactor, server):
    """
    Open one connection to C{server}, a C{(host, port)} pair.

    @return: a L{Deferred} firing with the connected L{BenchClient}.
    """
    host, port = server
    return connectProtocol(TCP4ClientEndpoint(reactor, host, port, timeout=10), BenchClient())


def newKey():
    """
    A fresh RSA-2048 key pair (the smallest the server accepts, so key work
    on the client side stays cheap) and its public key as SPKI DER.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, der


def heartbeats(reactor, clients):
    """
    Start sending HEARTBEAT on every client in C{clients} (which may still
    grow) every few seconds, so idle timers never close a connection that is
    waiting while the measurement runs.

    @return: the running L{task.LoopingCall}; stop it when done.
    """
    def beat():
        for client in clients:
            if client.connected:
                client.heartbeat()

    loop = task.LoopingCall(beat)
    loop.clock = reactor
    loop.start(HEARTBEAT_INTERVAL, now=False)
    return loop


def bounded(d, reactor, seconds, what):
    """
    Wait for C{d} at most C{seconds}, so that no step of a run can hang, and
    turn a timeout or the first failure of a L{gatherResults} into a
    L{BenchError} naming the step.
    """
    def explain(failure):
        if failure.check(FirstError):
            failure = failure.value.subFailure
        if failure.check(TimeoutError):
            raise BenchError(f"{what}: no result within {seconds:g} s")
        if failure.check(BenchError, ConnectError):
            raise BenchError(f"{what}: {failure.value}")
        return failure

    return d.addTimeout(seconds, reactor).addErrback(explain)


# -- throughput -------------------------------------------------------------

def sealFrames(count, sender, senderKey, recipients, room, size):
    """
    Seal C{count} envelopes and encode their ROOM_MSG frames, all before the
    clock starts: sealing is RSA work on the client, which is not what is
    being measured.

    Every envelope carries the same C{ts}, taken now: the server accepts
    timestamps within 5 minutes of its clock, which a run stays inside.

    @return: C{(frames, ids)}, the frames in sending order and the set of
        envelope ids, to check what the receiver got.
    """
    ts = int(time.time() * 1000)
    plaintext = b"x" * size
    frames, ids = [], set()
    for _ in range(count):
        envelope = e2e.seal(sender, senderKey, ("room", room), recipients, plaintext, ts=ts)
        ids.add(json.loads(envelope)["id"])
        frames.append(opcodes.request(Op.ROOM_MSG, room, envelope))
    return frames, ids


async def sendSequentially(sender, frames):
    """
    Send one message, wait for its acknowledgement, then send the next: the
    rate is one round trip plus the server's whole work per message.

    @return: the number of messages refused.
    """
    refused = 0
    for frame in frames:
        status, _ = await sender.call(Op.ROOM_MSG, frame)
        refused += status != 0
    return refused


async def sendPipelined(sender, frames, window):
    """
    Keep up to C{window} messages unacknowledged: each acknowledgement lets
    the next message go, so the network round trip is hidden.

    @return: the number of messages refused.
    """
    slots = DeferredSemaphore(window)
    results = await gatherResults(
        [slots.run(sender.call, Op.ROOM_MSG, frame) for frame in frames], consumeErrors=True)
    return sum(status != 0 for status, _ in results)


def checkDelivery(messages, ids):
    """
    Whether the receiver got exactly the envelopes that were sent, each once.

    @param messages: ROOM_MSG event payloads.
    """
    received = [json.loads(opcodes.decodeEvent(Op.ROOM_MSG, payload)[3])["id"]
                for payload in messages]
    return len(received) == len(ids) and set(received) == ids


async def runPhase(reactor, args, name, send, sender, receiver, identity, recipients):
    """
    Seal, send and time one batch of C{args.count} messages, then wait until
    the receiver has them all and print both rates.

    @param send: a coroutine function C{(sender, frames)} that sends the
        frames and returns how many were refused.
    """
    senderName, senderKey = identity
    sealStart = time.perf_counter()
    frames, ids = sealFrames(args.count, senderName, senderKey, recipients, args.room,
                             args.size)
    print(f"{name}: sealed {len(frames)} envelopes in "
          f"{time.perf_counter() - sealStart:.1f} s ({len(frames[0])} bytes a frame)")
    already = len(receiver.roomMessages)
    start = time.perf_counter()
    refused = await bounded(Deferred.fromCoroutine(send(sender, frames)), reactor,
                            args.timeout, f"{name}: sending")
    elapsed = time.perf_counter() - start
    if refused:
        raise BenchError(f"{name}: the server refused {refused} of {len(frames)} messages"
                         " (is --rate-limit high enough?)")
    await bounded(receiver.whenRoomMessages(already + len(frames)), reactor, args.timeout,
                  f"{name}: receiving")
    arrived = receiver.roomMessages[already:]
    lastArrival = arrived[-1][0] - start
    complete = checkDelivery([payload for _, payload in arrived], ids)
    print(f"{name}: sent {len(frames)} in {elapsed:.2f} s = "
          f"{len(frames) / elapsed:.0f} msg/s acknowledged")
    print(f"{name}: receiver got {len(arrived)}/{len(frames)}"
          f" ({'all, each once' if complete else 'NOT the envelopes sent'}),"
          f" last after {lastArrival:.2f} s = {len(arrived) / lastArrival:.0f} msg/s delivered")
    if not complete:
        raise BenchError(f"{name}: the receiver did not get exactly the messages sent")


async def setUpMember(client, name, der, room):
    """
    Greet, take C{name}, publish a key and join C{room}.

    @return: the room's members after joining, as C{(name, key)} pairs.
    """
    await client.ok(Op.HELLO)
    await client.ok(Op.NICK, name)
    await client.ok(Op.SET_KEY, der)
    (members,) = await client.ok(Op.JOIN, room, "")
    return members


async def throughput(reactor, args):
    """
    One sender and one receiver in one room: time sequential and pipelined
    sending, and delivery to the receiver.
    """
    senderName, receiverName = args.name + "-tx", args.name + "-rx"
    senderKey, senderDer = newKey()
    _, receiverDer = newKey()
    recipients = {senderName: senderDer, receiverName: receiverDer}
    clients = []
    loop = heartbeats(reactor, clients)
    try:
        for _ in range(2):
            clients.append(await bounded(connect(reactor, args.server), reactor, 15,
                                         "connecting"))
        sender, receiver = clients
        await bounded(Deferred.fromCoroutine(
            setUpMember(receiver, receiverName, receiverDer, args.room)), reactor, 30,
            "receiver setup")
        members = await bounded(Deferred.fromCoroutine(
            setUpMember(sender, senderName, senderDer, args.room)), reactor, 30,
            "sender setup")
        if dict(members) != recipients:
            # Envelopes are sealed for exactly these two; anyone else makes them stale.
            raise BenchError(f"room {args.room} has other members:"
                             f" {sorted(name for name, _ in members)}; use another --room")
        print(f"server {args.server[0]}:{args.server[1]}, room {args.room},"
              f" {args.count} messages of {args.size} bytes per run")
        identity = (senderName, senderKey)
        await runPhase(reactor, args, "sequential", sendSequentially, sender, receiver,
                       identity, recipients)
        await runPhase(reactor, args, f"pipelined window {args.window}",
                       lambda client, frames: sendPipelined(client, frames, args.window),
                       sender, receiver, identity, recipients)
    finally:
        loop.stop()
        for client in clients:
            client.transport.loseConnection()


# -- idle connections -------------------------------------------------------

def procLine(pid, filename, prefix):
    """
    The words after C{prefix} on its line of C{/proc/PID/FILENAME}: the
    kernel's own account of the server process, which needs nothing from it.
    """
    path = f"/proc/{pid}/{filename}"
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line[len(prefix):].split()
    except FileNotFoundError:
        raise BenchError(f"no process {pid}: is the server running?") from None
    raise BenchError(f"no {prefix!r} line in {path}")


def serverRSS(pid):
    """
    The server's resident memory in KiB.
    """
    return int(procLine(pid, "status", "VmRSS:")[0])


def serverOpenFileLimit(pid):
    """
    The server's soft limit on open files.
    """
    soft = procLine(pid, "limits", "Max open files")[0]
    return resource.RLIM_INFINITY if soft == "unlimited" else int(soft)


def raiseOpenFileLimit(needed):
    """
    Let this process hold C{needed} descriptors, raising its soft limit as far
    as the hard limit allows; a default soft limit of 1024 is too few for a
    thousand connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"need {needed} open files but the hard limit is {hard};"
                             " raise it (ulimit -Hn) first")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        print(f"raised this process's open-file limit from {soft} to {needed}")


async def openIdle(reactor, args, index, der, clients):
    """
    Open one connection, greet, and when rooms are asked for, publish a key
    and join room C{index} modulo their number.
    """
    client = await connect(reactor, args.server)
    clients.append(client)
    await client.ok(Op.HELLO)
    if args.rooms:
        await client.ok(Op.SET_KEY, der)
        await client.ok(Op.JOIN, f"{args.room}-{index % args.rooms}", "")


async def idle(reactor, args):
    """
    Measure the server's memory with C{args.connections} idle connections.
    """
    margin = 64
    raiseOpenFileLimit(args.connections + margin)
    serverLimit = serverOpenFileLimit(args.pid)
    if serverLimit != resource.RLIM_INFINITY and serverLimit < args.connections + margin:
        raise BenchError(f"the server may open only {serverLimit} files; start it with"
                         f" a higher ulimit -n")
    # One key for every guest: generating a thousand RSA keys would take
    # longer than the measurement, and the server keeps a copy per user anyway.
    der = newKey()[1] if args.rooms else None
    baseline = serverRSS(args.pid)
    print(f"server pid {args.pid}: baseline RSS {baseline} KiB")
    clients = []
    loop = heartbeats(reactor, clients)
    try:
        start = time.perf_counter()
        slots = DeferredSemaphore(args.parallel)
        opening = gatherResults([
            slots.run(lambda i=i: Deferred.fromCoroutine(
                openIdle(reactor, args, i, der, clients)))
            for i in range(args.connections)], consumeErrors=True)
        await bounded(opening, reactor, args.timeout, "opening connections")
        rooms = f", {args.rooms} rooms" if args.rooms else ", in no room"
        print(f"opened {len(clients)} connections{rooms} in"
              f" {time.perf_counter() - start:.1f} s; holding them {args.settle:g} s")
        await task.deferLater(reactor, args.settle, lambda: None)
        alive = sum(1 for client in clients if client.connected)
        connected = serverRSS(args.pid)
        perConnection = (connected - baseline) / args.connections
        print(f"with {alive}/{args.connections} connections alive: RSS {connected} KiB,"
              f" {connected - baseline:+d} KiB = {perConnection:.1f} KiB a connection")
        if alive != args.connections:
            raise BenchError(f"the server dropped {args.connections - alive} connections")
    finally:
        loop.stop()
        for client in clients:
            client.transport.loseConnection()
    await bounded(gatherResults([client.lost for client in clients], consumeErrors=True),
                  reactor, 30, "closing")
    await task.deferLater(reactor, 2, lambda: None)
    print(f"after closing them: RSS {serverRSS(args.pid)} KiB")


# -- command line -----------------------------------------------------------

def serverAddress(text):
    """
    Parse C{HOST:PORT} for argparse.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def atLeast(minimum):
    """
    An argparse type for a whole number no smaller than C{minimum}.
    """
    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def parseArguments(argv=None):
    """
    The command line: a subcommand and its options, with the function that
    runs it as C{run}.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", type=serverAddress, required=True,
                        help="HOST:PORT of a chatd binary listener on plain TCP")
    common.add_argument("--timeout", type=float, default=300,
                        help="seconds any one step may take [%(default)s]")

    tp = commands.add_parser("throughput", parents=[common],
                             help="room messages per second, sequential and pipelined")
    tp.add_argument("--count", type=atLeast(1), default=5000,
                    help="messages per run [%(default)s]")
    tp.add_argument("--window", type=atLeast(1), default=64,
                    help="requests outstanding when pipelining [%(default)s]")
    tp.add_argument("--size", type=atLeast(1), default=64,
                    help="plaintext bytes per message [%(default)s]")
    tp.add_argument("--room", default="bench", help="room to use [%(default)s]")
    tp.add_argument("--name", default="bench",
                    help="nickname prefix; NAME-tx sends, NAME-rx receives [%(default)s]")
    tp.set_defaults(run=throughput)

    idl = commands.add_parser("idle", parents=[common],
                              help="server memory per idle connection")
    idl.add_argument("--pid", type=int, required=True, help="the server's process id")
    idl.add_argument("--connections", type=atLeast(1), default=1000,
                     help="connections to hold [%(default)s]")
    idl.add_argument("--rooms", type=atLeast(0), default=10,
                     help="rooms to spread them over, 0 for none [%(default)s]")
    idl.add_argument("--room", default="idle",
                     help="room name prefix; rooms are ROOM-0, ROOM-1... [%(default)s]")
    idl.add_argument("--settle", type=float, default=35,
                     help="seconds to hold them before reading the RSS; longer than"
                          " the server's idle timeout shows heartbeats keep them"
                          " [%(default)s]")
    idl.add_argument("--parallel", type=atLeast(1), default=50,
                     help="connections being set up at once [%(default)s]")
    idl.set_defaults(run=idle)
    return parser.parse_args(argv)


async def main(reactor, args):
    """
    Run the chosen measurement; a L{BenchError} ends it with its message and
    exit status 1 instead of a traceback.
    """
    try:
        await args.run(reactor, args)
    except BenchError as e:
        print(f"error: {e}")
        raise SystemExit(1)


if __name__ == "__main__":
    arguments = parseArguments()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
