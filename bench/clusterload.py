"""
The C{cluster} measurement: one sender on the first node of a cluster and
receivers spread over all of them, in one room, over the binary protocol; the
rate at which the cluster delivers to all the receivers.
"""

import json
import time
import uuid

from twisted.internet import task
from twisted.internet.defer import Deferred

from bench.benchclient import (
    BenchError,
    bounded,
    connect,
    greet,
    heartbeats,
    sendPipelined,
    setUpMember,
)
from bench.delivery import closeAll, timeDelivery
from bench.prepared import prepare
from bench.procstat import raiseOpenFileLimit
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op


def binaryEnvelopeId(payload):
    """
    The envelope id of a recorded ROOM_MSG event.
    """
    return json.loads(opcodes.decodeEvent(Op.ROOM_MSG, payload)[3])["id"]


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
