"""
Load measurements against running chatd servers, over the binary protocol and
the WebSocket door.

The tool starts no server: it connects to the addresses given with C{--server}
or C{--nodes}, so that each server runs with exactly the options being measured
(see C{bench/README.rst}) and its memory and CPU time can be read from outside
(C{--pid}).

Subcommands:

    throughput  room messages per second acknowledged by the server, one at a
                time and then pipelined, and the rate at which a second
                member receives them
    idle        server memory per idle connection
    websocket   room messages per second delivered to many WebSocket clients
                in one room
    cluster     room messages per second delivered through one or more nodes
                of a cluster, over the binary protocol

Frames are built and read with L{chatd.protocols.opcodes} (binary) and
L{chatd.protocols.jsonwire} (WebSocket), and envelopes sealed with
L{chatd.e2e.seal}, the same code the server and its clients run, so the tool
measures the real protocol rather than an imitation of it.

Run it from the repository root: C{.venv/bin/python -m bench.load --help}.
"""

import argparse
import json
import multiprocessing
import os
import resource
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import ssl, task
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    FirstError,
    TimeoutError,
    gatherResults,
)
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.protocols.basic import Int32StringReceiver
from twisted.web.websocket import ConnectionRejected, WebSocketClientEndpoint

from chatd import e2e
from chatd.protocols import jsonwire, opcodes
from chatd.protocols.opcodes import Op

# Clients are expected to send something after 6 s of silence (docs/protocol.rst);
# the server warns at 20 s and disconnects at 30 s by default.
HEARTBEAT_INTERVAL = 6.0


class BenchError(Exception):
    """
    The measurement cannot go on (refused request, lost connection, timeout);
    the message says why, for the user rather than as a traceback.
    """


class RoomMessageLog:
    """
    Room messages recorded with their time of arrival, and a way to wait for
    a number of them: what every kind of bench client has in common.

    @ivar roomMessages: C{(perf_counter time, event)} for every room message
        event, the event kept undecoded (binary payload or JSON text) so that
        receiving costs the client little while the clock runs.
    """

    def __init__(self):
        self._messageTarget = None
        self.roomMessages = []

    def whenRoomMessages(self, count):
        """
        @return: a L{Deferred} that fires once C{count} room message events
            have arrived in all.
        """
        reached = Deferred()
        if len(self.roomMessages) >= count:
            reached.callback(None)
        else:
            self._messageTarget = (count, reached)
        return reached

    def roomMessageArrived(self, event):
        """
        Record one room message event as it arrives.
        """
        self.roomMessages.append((time.perf_counter(), event))
        if self._messageTarget and len(self.roomMessages) >= self._messageTarget[0]:
            reached = self._messageTarget[1]
            self._messageTarget = None
            reached.callback(None)

    def stopWaitingForMessages(self, failure):
        """
        Fail whoever waits in L{whenRoomMessages}: no more will come.
        """
        if self._messageTarget:
            self._messageTarget[1].errback(failure)
            self._messageTarget = None


class BenchClient(Int32StringReceiver, RoomMessageLog):
    """
    A bare binary-protocol client: requests whose responses come back in the
    order sent, and room messages recorded with their time of arrival.

    @ivar lost: a L{Deferred} that fires when the connection is gone.
    """

    MAX_LENGTH = opcodes.MAX_FRAME_DEFAULT

    def __init__(self):
        RoomMessageLog.__init__(self)
        self._waiting = deque()
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

    def close(self):
        self.transport.loseConnection()

    def stringReceived(self, body):
        # Events other than ROOM_MSG (JOINED, LEFT, WARNING...) play no part
        # in any measurement and are dropped.
        op, payload = opcodes.parseBody(body)
        if op == Op.RESPONSE:
            requestOp, answered = self._waiting.popleft()
            answered.callback(opcodes.decodeResponse(requestOp, payload))
        elif op == Op.ROOM_MSG:
            self.roomMessageArrived(payload)

    def connectionLost(self, reason):
        # Whoever still waits would otherwise wait until its timeout.
        failure = BenchError(f"connection lost: {reason.getErrorMessage()}")
        waiting, self._waiting = self._waiting, deque()
        for _, answered in waiting:
            answered.errback(failure)
            # After a failed run, nobody may be left to hear it; the run has
            # reported its own error, so this one is not reported again.
            answered.addErrback(lambda _: None)
        self.stopWaitingForMessages(failure)
        self.lost.callback(None)


def connect(reactor, server, tls=False):
    """
    Open one connection to C{server}, a C{(host, port)} pair, over TLS when
    C{tls} (the server's certificate is not checked: this measures memory).

    @return: a L{Deferred} firing with the connected L{BenchClient}.
    """
    host, port = server
    if tls:
        endpoint = SSL4ClientEndpoint(reactor, host, port, ssl.CertificateOptions(), timeout=10)
    else:
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
    return connectProtocol(endpoint, BenchClient())


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


async def greet(client, name, der):
    """
    Greet, take C{name} as a guest and publish a key.
    """
    await client.ok(Op.HELLO)
    await client.ok(Op.NICK, name)
    await client.ok(Op.SET_KEY, der)


async def setUpMember(client, name, der, room):
    """
    Greet, take C{name}, publish a key and join C{room}.

    @return: the room's members after joining, as C{(name, key)} pairs.
    """
    await greet(client, name, der)
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
    client = await connect(reactor, args.server, args.tls)
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


# -- keys and envelopes, made before the clock starts ------------------------

# Accounts made by the websocket measurement log in with this; only bcrypt
# sees it, at the cost given with the server's --bcrypt-cost.
PASSWORD = "bench-password"


def _keyPair(_):
    """
    One RSA-2048 key pair as DER, PKCS#8 private and SPKI public: plain bytes,
    so that it can come back from a worker process.
    """
    key, der = newKey()
    private = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, der


def _sealBatch(job):
    """
    Seal a batch of envelopes in a worker process; see L{sealAll}.
    """
    senderName, privateDer, room, recipients, size, ts, count = job
    key = serialization.load_der_private_key(privateDer, None)
    plaintext = b"x" * size
    return [e2e.seal(senderName, key, ("room", room), recipients, plaintext, ts=ts)
            for _ in range(count)]


def sealAll(pool, processes, count, sender, privateDer, room, recipients, size):
    """
    Seal C{count} envelopes from C{sender} to C{room}, each for every one of
    C{recipients}, in the worker processes of C{pool}.

    An envelope for a hundred readers takes a hundred RSA encryptions (about
    5 ms here), so sealing a few thousand in one process would take longer
    than the measurement; in small batches, the workers share them evenly.
    Every envelope carries the same C{ts}, taken now: the server accepts
    timestamps within 5 minutes of its clock, which a run stays inside.

    @return: C{(envelopes, ids)}, the envelopes in sending order and the set
        of their ids.
    """
    ts = int(time.time() * 1000)
    batch = max(1, min(50, -(-count // (4 * processes))))
    jobs = [(sender, privateDer, room, recipients, size, ts, min(batch, count - first))
            for first in range(0, count, batch)]
    envelopes = [envelope for sealed in pool.map(_sealBatch, jobs) for envelope in sealed]
    return envelopes, {json.loads(envelope)["id"] for envelope in envelopes}


def prepare(args, names, room):
    """
    Make an RSA-2048 key for each of C{names}, and seal C{args.messages}
    envelopes from the first of them to C{room}, for all of them: the client's
    RSA work, all done before any connection opens and so before the clock
    starts.

    The work runs in C{args.processes} worker processes, started with
    C{spawn}: a forked child would inherit a copy of this process's reactor.

    @return: C{(recipients, envelopes, ids)}: name to SPKI DER for every name,
        the envelopes in sending order, and the set of their ids.
    """
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
        pairs = list(pool.map(_keyPair, range(len(names))))
        keyed = time.perf_counter()
        recipients = {name: der for name, (_, der) in zip(names, pairs)}
        envelopes, ids = sealAll(pool, args.processes, args.messages, names[0], pairs[0][0],
                                 room, recipients, args.size)
    print(f"made {len(names)} RSA-2048 keys in {keyed - start:.1f} s; sealed"
          f" {len(envelopes)} envelopes for {len(names)} readers each in"
          f" {time.perf_counter() - keyed:.1f} s ({args.processes} processes,"
          f" {len(envelopes[0])} bytes an envelope)")
    return recipients, envelopes, ids


# -- CPU accounting -----------------------------------------------------------

def processTreeCPU(pid):
    """
    The CPU seconds (user and system) that process C{pid} and every process
    below it have used so far, from C{/proc}: a PostgreSQL server's work is
    done by the postmaster's children, one per connection.

    Children already reaped are counted in their parent's C{cutime} and
    C{cstime}, which are added too, so nothing that ends mid-run is lost.
    """
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # gone since the listing
        # The command name, in parentheses, may hold spaces; fields follow it.
        fields = text[text.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = sum(int(value) for value in fields[11:15])
    if pid not in used:
        raise BenchError(f"no process {pid}")
    total = 0
    for child, ticks in used.items():
        ancestor = child
        for _ in range(64):
            if ancestor == pid:
                total += ticks
                break
            ancestor = parents.get(ancestor, 0)
            if ancestor <= 1:
                break
    return total / os.sysconf("SC_CLK_TCK")


def processName(pid):
    """
    The command name of C{pid} (C{twistd}, C{redis-server}, C{postgres}), or
    C{"pid"} when it is gone.
    """
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "pid"


def cpuSnapshot(pids):
    """
    CPU seconds used so far by this process and by each of C{pids} (with
    their children), to tell afterwards which of them the run kept busy.
    """
    return [time.process_time()] + [processTreeCPU(pid) for pid in pids]


def cpuReport(before, after, pids, elapsed):
    """
    One line: the CPU seconds each process used over C{elapsed} wall seconds,
    and that as a share of one CPU. A share near 100 % names the bottleneck:
    the Python work of a server, and of this client, runs on one thread.
    """
    labels = ["this client"] + [f"{processName(pid)} {pid}" for pid in pids]
    parts = [f"{label} {end - begin:.1f} s ({(end - begin) / elapsed:.0%})"
             for label, begin, end in zip(labels, before, after)]
    return f"CPU over those {elapsed:.2f} s: " + ", ".join(parts)


# -- delivery to many receivers -------------------------------------------------

async def timeDelivery(reactor, args, send, receivers, ids, envelopeId):
    """
    Run C{send} and time it, then wait until every receiver has every message
    and print the rates, the CPU used and whether each receiver got exactly
    the envelopes sent, each once.

    @param send: a coroutine function of no arguments that sends every message
        and returns how many the server refused.
    @param receivers: clients with a L{RoomMessageLog}.
    @param envelopeId: gives the envelope id of one recorded event.
    @raise BenchError: when a message is refused, or a receiver did not get
        exactly the messages sent.
    """
    count = len(ids)
    already = [len(receiver.roomMessages) for receiver in receivers]
    cpuBefore = cpuSnapshot(args.pid)
    start = time.perf_counter()
    refused = await bounded(Deferred.fromCoroutine(send()), reactor, args.timeout, "sending")
    acknowledged = time.perf_counter() - start
    if refused:
        raise BenchError(f"the server refused {refused} of {count} messages"
                         " (is --rate-limit high enough?)")
    await bounded(gatherResults([receiver.whenRoomMessages(first + count)
                                 for receiver, first in zip(receivers, already)],
                                consumeErrors=True),
                  reactor, args.timeout, "receiving")
    received = time.perf_counter() - start
    cpuAfter = cpuSnapshot(args.pid)
    last = max(receiver.roomMessages[-1][0] for receiver in receivers) - start
    deliveries = count * len(receivers)
    print(f"sent {count} in {acknowledged:.2f} s = {count / acknowledged:.0f} msg/s acknowledged")
    print(f"{deliveries} deliveries to {len(receivers)} receivers, last after {last:.2f} s"
          f" = {deliveries / last:.0f} deliveries/s ({count / last:.0f} msg/s)")
    print(cpuReport(cpuBefore, cpuAfter, args.pid, received))
    # A late duplicate would arrive after the count was reached: give it time.
    await task.deferLater(reactor, 1, lambda: None)
    wrong = 0
    for receiver, first in zip(receivers, already):
        got = [envelopeId(event) for _, event in receiver.roomMessages[first:]]
        wrong += len(got) != count or set(got) != ids
    if wrong:
        raise BenchError(f"{wrong} of {len(receivers)} receivers did not get exactly"
                         " the messages sent, each once")
    print(f"every receiver got all {count} messages, each once")


async def poll(reactor, check, seconds, what):
    """
    Ask C{check} (a coroutine function) ten times a second until it says
    yes, for at most C{seconds}: what one node of a cluster did reaches the
    others a little later.
    """
    deadline = time.monotonic() + seconds
    while not await bounded(Deferred.fromCoroutine(check()), reactor, seconds, what):
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {seconds:g} s")
        await task.deferLater(reactor, 0.1, lambda: None)


async def closeAll(reactor, clients, attempts=()):
    """
    Close every client and wait (a little) until each connection is gone;
    never raises, so that it cannot hide the error that ended a run.

    A connection still open when the reactor stops is cut, and a request still
    waiting on it then fails with nobody left to hear it. So the clients that
    are still being set up (C{attempts}, L{Deferred}s) are first given time to
    fail on their closed connections or to finish, and whatever connected
    meanwhile is closed too.
    """
    def closeOpen():
        for client in clients:
            if client.connected:
                client.close()

    closeOpen()
    if attempts:
        await DeferredList(list(attempts), consumeErrors=True).addTimeout(30, reactor)
        closeOpen()
    gone = DeferredList([client.lost for client in clients], consumeErrors=True)
    await gone.addTimeout(10, reactor).addErrback(lambda _: None)


# -- websocket ----------------------------------------------------------------

# How the server starts every chat_message event (jsonwire.chatMessage): the
# receivers tell those apart without parsing them while the clock runs.
CHAT_MESSAGE_EVENT = '{"type":"chat_message",'


class WebSocketBenchClient(RoomMessageLog):
    """
    A bare client of the WebSocket door, a
    L{twisted.web.websocket.WebSocketProtocol}: requests matched to their
    responses by C{"id"}, room messages recorded undecoded with their time of
    arrival.

    @ivar connected: whether the connection is open, for L{heartbeats}.
    @ivar lost: a L{Deferred} that fires when the connection is gone.
    """

    def __init__(self):
        RoomMessageLog.__init__(self)
        self.wire = None
        self.connected = False
        self.lost = Deferred()
        self._waiting = {}
        self._requests = 0

    def negotiationStarted(self, transport):
        self.wire = transport

    def negotiationFinished(self):
        self.connected = True

    def textMessageReceived(self, text):
        if text.startswith(CHAT_MESSAGE_EVENT):
            self.roomMessageArrived(text)
            return
        # Other events (user_joined, warning...) carry no "id" and play no
        # part in any measurement.
        message = json.loads(text)
        answered = self._waiting.pop(message.get("id"), None)
        if answered is not None:
            answered.callback(message)

    def bytesMessageReceived(self, data):
        """
        The server sends text only.
        """

    def pongReceived(self, payload):
        """
        Pongs answer L{heartbeat}; nothing waits for them.
        """

    def connectionLost(self, reason):
        self.connected = False
        failure = BenchError(f"connection lost: {reason.getErrorMessage()}")
        waiting, self._waiting = self._waiting, {}
        for answered in waiting.values():
            answered.errback(failure)
            # After a failed run, nobody may be left to hear it; the run has
            # reported its own error, so this one is not reported again.
            answered.addErrback(lambda _: None)
        self.stopWaitingForMessages(failure)
        self.lost.callback(None)

    def send(self, requestId, text):
        """
        Send a request that is already encoded, carrying C{"id": requestId},
        so that a timed loop does no encoding of its own.

        @return: a L{Deferred} firing with the decoded response.
        """
        answered = Deferred()
        self._waiting[requestId] = answered
        self.wire.sendTextMessage(text)
        return answered

    async def ok(self, kind, expected, **fields):
        """
        Make a request that must be answered with a response of type
        C{expected}. Its id is a string, so that it never collides with the
        whole numbers of timed messages.

        @return: the response.
        @raise BenchError: when the server answers anything else.
        """
        self._requests += 1
        requestId = f"r{self._requests}"
        response = await self.send(requestId, json.dumps(
            {"type": kind, "id": requestId, **fields}))
        if response["type"] != expected:
            raise BenchError(f"{kind} answered {response['type']}"
                             f" {response.get('code', '')}: {response.get('message', '')}")
        return response

    def heartbeat(self):
        """
        A WebSocket ping: any bytes reset the server's idle clock, and Twisted
        answers it before chatd sees it.
        """
        self.wire.ping(b"")

    def close(self):
        """
        Send a close frame and hang up, once: a second close frame is a
        protocol error.
        """
        if self.connected:
            self.connected = False
            self.wire.loseConnection()


class WebSocketBenchFactory:
    """
    A L{twisted.web.websocket.WebSocketClientFactory} of L{WebSocketBenchClient}s.
    """

    def buildProtocol(self, url):
        return WebSocketBenchClient()


async def connectWebSocket(reactor, url):
    """
    Open one WebSocket connection to C{url}.

    @return: the connected L{WebSocketBenchClient}.
    """
    endpoint = WebSocketClientEndpoint.new(reactor, url, connectTimeout=10)
    try:
        return await endpoint.connect(WebSocketBenchFactory())
    except ConnectionRejected as e:
        raise BenchError(f"{url} refused the WebSocket upgrade ({e})") from None


async def openAccount(reactor, url, name, der, room, clients, over=lambda: False):
    """
    Connect, register C{name} with the public key C{der}, and join C{room}.

    @param clients: where the client is added as soon as it is connected, so
        that it gets heartbeats and is closed whatever happens next.
    @param over: says whether the run has ended (another account failed):
        then no connection is opened any more.
    @return: the client and the room's members after joining, as a dict of
        name to SPKI DER.
    """
    if over():
        raise BenchError("the run is over")
    client = await connectWebSocket(reactor, url)
    clients.append(client)
    await client.ok("register", "registered", userId=name,
                    publicKey=jsonwire.derToPem(der), password=PASSWORD)
    joined = await client.ok("join", "joined", roomId=room)
    return client, {member["userId"]: jsonwire.pemToDer(member["publicKey"])
                    for member in joined["members"]}


def chatMessageRequest(requestId, room, envelope):
    """
    A C{chat_message} request as text, the envelope spliced in as sealed.
    """
    return '{"type":"chat_message","id":%d,"roomId":%s,"envelope":%s}' % (
        requestId, json.dumps(room), envelope.decode("ascii"))


async def sendWebSocketPipelined(sender, texts, window):
    """
    Keep up to C{window} C{chat_message} requests unanswered; request C{i} of
    C{texts} carries the id C{i}.

    @return: 0, as every message was accepted.
    @raise BenchError: naming the first refusal, when there is one.
    """
    slots = DeferredSemaphore(window)
    responses = await gatherResults(
        [slots.run(sender.send, requestId, text) for requestId, text in enumerate(texts)],
        consumeErrors=True)
    refused = [response for response in responses if response["type"] != "sent"]
    if refused:
        raise BenchError(f"the server refused {len(refused)} of {len(texts)} messages; the"
                         f" first: {refused[0].get('code')}: {refused[0].get('message')}")
    return 0


def webSocketEnvelopeId(text):
    """
    The envelope id of a recorded C{chat_message} event.
    """
    return json.loads(text)["envelope"]["id"]


async def websocket(reactor, args):
    """
    C{args.clients} registered WebSocket clients in one room, and one more
    that sends C{args.messages} messages there: the rate at which the server
    delivers them to all the others.

    Accounts, room and names are new on every run (a random tag), so runs can
    follow each other on one server.
    """
    raiseOpenFileLimit(args.clients + 64)
    tag = uuid.uuid4().hex[:6]
    names = [f"{args.name}{tag}-tx"] + [f"{args.name}{tag}-{i}" for i in range(args.clients)]
    room = f"{args.room}-{tag}"
    recipients, envelopes, ids = prepare(args, names, room)
    texts = [chatMessageRequest(i, room, envelope) for i, envelope in enumerate(envelopes)]
    clients, attempts = [], []
    over = False
    loop = heartbeats(reactor, clients)
    try:
        start = time.perf_counter()
        slots = DeferredSemaphore(args.parallel)
        attempts.extend(
            slots.run(lambda name=name: Deferred.fromCoroutine(openAccount(
                reactor, args.server, name, recipients[name], room, clients,
                lambda: over)))
            for name in names[1:])
        opened = await bounded(gatherResults(attempts, consumeErrors=True), reactor,
                               args.timeout, "registering the receivers")
        receivers = [client for client, _ in opened]
        sender, members = await bounded(Deferred.fromCoroutine(openAccount(
            reactor, args.server, names[0], recipients[names[0]], room, clients)),
            reactor, 30, "registering the sender")
        if members != recipients:
            # Envelopes are sealed for exactly these members.
            raise BenchError(f"room {room} has {len(members)} members, not the"
                             f" {len(recipients)} the envelopes are sealed for")
        print(f"{args.server}: {len(clients)} accounts registered and in room {room} in"
              f" {time.perf_counter() - start:.1f} s; {len(texts)} messages, window"
              f" {args.window}, {len(texts[0])} bytes a request")
        await timeDelivery(reactor, args,
                           lambda: sendWebSocketPipelined(sender, texts, args.window),
                           receivers, ids, webSocketEnvelopeId)
    finally:
        loop.stop()
        over = True
        await closeAll(reactor, clients, attempts)


# -- cluster ------------------------------------------------------------------

def binaryEnvelopeId(payload):
    """
    The envelope id of a recorded ROOM_MSG event.
    """
    return json.loads(opcodes.decodeEvent(Op.ROOM_MSG, payload)[3])["id"]


async def cluster(reactor, args):
    """
    One sender on the first of C{args.nodes} and C{args.receivers} receivers
    spread over all of them, round robin, in one room: the rate at which the
    cluster delivers the sender's messages to all the receivers.

    With one node this measures the node alone; with more, every message the
    first node stores is published once in Redis and each node delivers it to
    its own receivers.
    """
    raiseOpenFileLimit(args.receivers + 64)
    tag = uuid.uuid4().hex[:6]
    names = [f"{args.name}{tag}tx"] + [f"{args.name}{tag}r{i}" for i in range(args.receivers)]
    room = f"{args.room}-{tag}"
    recipients, envelopes, ids = prepare(args, names, room)
    frames = [opcodes.request(Op.ROOM_MSG, room, envelope) for envelope in envelopes]
    clients = []
    loop = heartbeats(reactor, clients)
    try:
        start = time.perf_counter()
        sender = await bounded(connect(reactor, args.nodes[0]), reactor, 15, "connecting")
        clients.append(sender)
        await bounded(Deferred.fromCoroutine(setUpMember(
            sender, names[0], recipients[names[0]], room)), reactor, 30, "sender setup")
        receivers, nodesSeen = [], set()
        for index, name in enumerate(names[1:]):
            node = args.nodes[index % len(args.nodes)]
            client = await bounded(connect(reactor, node), reactor, 15, "connecting")
            clients.append(client)
            await bounded(Deferred.fromCoroutine(greet(client, name, recipients[name])),
                          reactor, 30, "receiver setup")
            if node not in nodesSeen:
                # The room is made on the first node; the others hear of it
                # through Redis, a little later.
                async def roomKnown(client=client):
                    (rooms,) = await client.ok(Op.LIST_ROOMS)
                    return room.lower() in {known.lower() for known in rooms}
                await poll(reactor, roomKnown, 15, f"room {room} to reach {node[0]}:{node[1]}")
                nodesSeen.add(node)
            await bounded(Deferred.fromCoroutine(client.ok(Op.JOIN, room, "")), reactor, 30,
                          "joining")
            receivers.append(client)

        async def everyoneKnown():
            # The sender's node refuses envelopes not sealed for exactly the
            # members it knows of.
            (members,) = await sender.ok(Op.GET_KEYS, opcodes.KIND_ROOM, room)
            return dict(members) == recipients
        await poll(reactor, everyoneKnown, 30, "every member to reach the sender's node")
        spread = ", ".join(f"{host}:{port}" for host, port in args.nodes)
        print(f"{len(args.nodes)} nodes ({spread}): {len(receivers)} receivers and the sender"
              f" in room {room} in {time.perf_counter() - start:.1f} s; {len(frames)}"
              f" messages, window {args.window}, {len(frames[0])} bytes a frame")
        await timeDelivery(reactor, args, lambda: sendPipelined(sender, frames, args.window),
                           receivers, ids, binaryEnvelopeId)
    finally:
        loop.stop()
        await closeAll(reactor, clients)


# -- command line -----------------------------------------------------------

def serverAddress(text):
    """
    Parse C{HOST:PORT} for argparse.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def webSocketURL(text):
    """
    Parse C{http://HOST:PORT} (or C{ws://}) for argparse into the URL of the
    WebSocket door, C{ws://HOST:PORT/ws}.
    """
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if scheme not in ("http", "ws") or not sep or not colon or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, not {text!r}")
    return f"ws://{host}:{port}/ws"


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

    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--timeout", type=float, default=300,
                        help="seconds any one step may take [%(default)s]")
    common = argparse.ArgumentParser(add_help=False, parents=[timing])
    common.add_argument("--server", type=serverAddress, required=True,
                        help="HOST:PORT of a chatd binary listener on plain TCP")

    # What the websocket and cluster measurements share.
    fanout = argparse.ArgumentParser(add_help=False, parents=[timing])
    fanout.add_argument("--window", type=atLeast(1), default=64,
                        help="messages outstanding, unacknowledged [%(default)s]")
    fanout.add_argument("--size", type=atLeast(1), default=64,
                        help="plaintext bytes per message [%(default)s]")
    fanout.add_argument("--processes", type=atLeast(1), default=os.cpu_count() or 1,
                        help="worker processes making keys and sealing envelopes"
                             " before the clock starts [%(default)s]")
    fanout.add_argument("--pid", type=int, action="append", default=[],
                        help="report the CPU time of this process and its children"
                             " (a server, redis-server, the postmaster) over the timed"
                             " run; repeatable")

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
    idl.add_argument("--tls", action="store_true",
                     help="connect with TLS (to an ssl: listener)")
    idl.add_argument("--parallel", type=atLeast(1), default=50,
                     help="connections being set up at once [%(default)s]")
    idl.set_defaults(run=idle)

    ws = commands.add_parser("websocket", parents=[fanout],
                             help="deliveries per second to many WebSocket clients in a room")
    ws.add_argument("--server", type=webSocketURL, required=True,
                    help="http://HOST:PORT of a chatd web listener (--web); the tool"
                         " connects to ws://HOST:PORT/ws")
    ws.add_argument("--clients", type=atLeast(1), default=100,
                    help="receiving clients, each a registered account; one more"
                         " sends [%(default)s]")
    ws.add_argument("--messages", type=atLeast(1), default=1000,
                    help="messages sent [%(default)s]")
    ws.add_argument("--room", default="wsbench",
                    help="room name prefix; the room is ROOM-TAG, TAG new each run"
                         " [%(default)s]")
    ws.add_argument("--name", default="ws",
                    help="account name prefix, at most 16 characters; accounts are"
                         " NAMETAG-tx and NAMETAG-0... [%(default)s]")
    ws.add_argument("--parallel", type=atLeast(1), default=20,
                    help="accounts being registered at once [%(default)s]")
    ws.set_defaults(run=websocket)

    cl = commands.add_parser("cluster", parents=[fanout],
                             help="deliveries per second through the nodes of a cluster")
    cl.add_argument("--nodes", type=serverAddress, nargs="+", required=True,
                    metavar="HOST:PORT",
                    help="a binary listener (plain TCP) of each node; the sender uses"
                         " the first")
    cl.add_argument("--receivers", type=atLeast(1), default=30,
                    help="receiving guests, spread round robin over the nodes"
                         " [%(default)s]")
    cl.add_argument("--messages", type=atLeast(1), default=2000,
                    help="messages sent [%(default)s]")
    cl.add_argument("--room", default="clbench",
                    help="room name prefix; the room is ROOM-TAG [%(default)s]")
    cl.add_argument("--name", default="cl",
                    help="guest name prefix, at most 20 characters [%(default)s]")
    cl.set_defaults(run=cluster)
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
