"""
The C{websocket} measurement: many registered WebSocket clients in one room,
and one more that sends there; the rate at which the server delivers to all
the others. Requests and events are the WebSocket door's JSON, built and read
with L{chatd.protocols.jsonwire}.
"""

import json
import time
import uuid

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.web.websocket import ConnectionRejected, WebSocketClientEndpoint

from bench.benchclient import BenchError, RoomMessageLog, bounded, heartbeats
from bench.delivery import closeAll, timeDelivery
from bench.prepared import prepare
from bench.procstat import raiseOpenFileLimit
from chatd.protocols import jsonwire

# Accounts made by the websocket measurement log in with this; only bcrypt
# sees it, at the cost given with the server's --bcrypt-cost.
PASSWORD = "bench-password"


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
