"""
The C{idle} measurement: the server's memory per idle connection, plain or
TLS, in rooms or in none, and what it keeps after they close.
"""

import resource
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

from bench.benchclient import BenchError, bounded, connect, heartbeats, newKey
from bench.procstat import raiseOpenFileLimit, serverOpenFileLimit, serverRSS
from chatd.protocols.opcodes import Op


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
