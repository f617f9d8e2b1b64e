"""
The bare binary-protocol client every measurement drives, and the steps they
share: connecting, greeting and joining, sending pipelined, heartbeats, and
waiting for a step no longer than it may take.
"""

import time
from collections import deque

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import ssl, task
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    FirstError,
    TimeoutError,
    gatherResults,
)
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.protocols.basic import Int32StringReceiver

from chatd.protocols import opcodes
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
