"""
Timing delivery to many receivers, and closing them all afterwards: what the
C{websocket} and C{cluster} measurements share once their clients are in the
room.
"""

import time

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList, gatherResults

from bench.benchclient import BenchError, bounded
from bench.procstat import cpuReport, cpuSnapshot


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
