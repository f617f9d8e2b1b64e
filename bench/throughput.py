"""
The C{throughput} measurement: one sender and one receiver in one room, room
messages acknowledged per second one at a time and then pipelined, and the
rate at which the receiver gets them.
"""

import json
import time

from twisted.internet.defer import Deferred

from bench.benchclient import (
    BenchError,
    bounded,
    connect,
    heartbeats,
    newKey,
    sendPipelined,
    setUpMember,
)
from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op


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
