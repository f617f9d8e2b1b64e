"""
Test doubles shared by chatd's tests: a recording chat client, inline credentials,
keys made once per test run, and a service wired to an in-memory store.
"""

from dataclasses import replace
from functools import lru_cache
from typing import Callable, List, Tuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from chatd.config import Settings
from chatd.core.events import Event, Joined, UserOnline, fromWire
from chatd.core.service import ChatService
from chatd.credentials import Credentials
from chatd.fanout.local import LocalFanout
from chatd.interfaces import IChatClient, IDeviceClient, IFanout
from chatd.store.seal import AtRestKeys, generateKey


def inlineCredentials():
    """
    Credentials at bcrypt's lowest cost, run on the calling thread so tests stay
    synchronous.
    """
    return Credentials(cost=4, runInThread=maybeDeferred)


def privateKey(name, bits=2048):
    """
    An RSA key for C{name}, made once per test run (key generation is slow).
    """
    return _generate(name, bits)


@lru_cache(maxsize=None)
def _generate(name, bits):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def publicDer(name, bits=2048):
    """
    The SubjectPublicKeyInfo DER of L{privateKey}C{(name)}.
    """
    return privateKey(name, bits).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def testKeys():
    """
    Fresh at-rest keys for a store under test.
    """
    return AtRestKeys([generateKey()])


def makeService(store=None, clock=None, fanout=None, credentials=None, metrics=None,
                **overrides):
    """
    A started L{ChatService} on an in-memory store and a L{Clock}, with
    L{inlineCredentials} unless C{credentials} are given.
    """
    from chatd.store.memory import MemoryStore
    if clock is None:
        clock = Clock()
        clock.advance(1_700_000_000)
    settings = replace(Settings(bcryptCost=4), **overrides)
    service = ChatService(store if store is not None else MemoryStore(testKeys(), clock),
                          settings, clock, credentials=credentials or inlineCredentials(),
                          fanout=fanout, metrics=metrics)
    service.startService()
    return service


def _recorder(name: str) -> Callable[..., None]:
    """
    A method of L{FakeChatClient} that records its call as C{(name, args)}.
    """
    def method(self: "FakeChatClient", *args: object) -> None:
        self.events.append((name, args))
    method.__name__ = name
    return method


@implementer(IChatClient)
class FakeChatClient:
    """
    Records every event as C{(methodName, args)} in C{self.events}.
    """

    def __init__(self) -> None:
        self.events: List[Tuple[str, Tuple[object, ...]]] = []
        self.disconnected = False

    roomMessage = _recorder("roomMessage")
    directMessage = _recorder("directMessage")
    userJoined = _recorder("userJoined")
    userLeft = _recorder("userLeft")
    userRenamed = _recorder("userRenamed")
    keyChanged = _recorder("keyChanged")
    kicked = _recorder("kicked")
    topicChanged = _recorder("topicChanged")
    roleChanged = _recorder("roleChanged")
    roomDestroyed = _recorder("roomDestroyed")
    warning = _recorder("warning")

    def disconnect(self):
        self.disconnected = True

    def goAway(self, code, message):
        self.events.append(("goAway", (code, message)))

    def take(self):
        """
        The events recorded since the last call, and forget them.
        """
        events, self.events = self.events, []
        return events


@implementer(IDeviceClient)
class FakeDeviceClient(FakeChatClient):
    """
    A L{FakeChatClient} that also takes the events of protocol version 3
    (devices), recorded alike.
    """

    devicesChanged = _recorder("devicesChanged")
    devicePending = _recorder("devicePending")
    approval = _recorder("approval")
    shareWanted = _recorder("shareWanted")
    caughtUp = _recorder("caughtUp")


@implementer(IFanout)
class FakeFanout:
    """
    One node's fan-out on a L{FakeHub}: events reach the other nodes at once.
    """

    def __init__(self, hub, nodeId):
        self.hub = hub
        self.nodeId = nodeId
        self.service = None

    def start(self, service):
        self.service = service
        for other in self.hub.nodes.values():
            for event in snapshot(other.service):
                service.remoteEvent(other.nodeId, event)
        self.hub.nodes[self.nodeId] = self
        return succeed(None)

    def stop(self):
        self.hub.nodes.pop(self.nodeId, None)
        for other in self.hub.nodes.values():
            other.service.nodeGone(self.nodeId)
        return succeed(None)

    def publish(self, event):
        self.hub.published.append((self.nodeId, event))
        for other in list(self.hub.nodes.values()):
            if other is not self:
                other.service.remoteEvent(self.nodeId, fromWire(event.toWire()))

    def guestNumber(self):
        number, self.hub.guests = self.hub.guests, self.hub.guests + 1
        return number

    def window(self, name, count, seconds):
        if name not in self.hub.windows:
            self.hub.windows[name] = LocalFanout(self.hub.clock).window(name, count, seconds)
        return self.hub.windows[name]

    def timestamp(self, room, now, last):
        key = room.lower()
        self.hub.timestamps[key] = max(now, last + 1, self.hub.timestamps.get(key, 0) + 1)
        return succeed(self.hub.timestamps[key])


class FakeHub:
    """
    An in-memory cluster for tests: shared counters and limits, and events
    delivered synchronously to every other node.
    """

    def __init__(self, clock):
        self.clock = clock
        self.nodes = {}
        self.published = []
        self.guests = 0
        self.windows = {}
        self.timestamps = {}

    def fanout(self, nodeId):
        return FakeFanout(self, nodeId)


def snapshot(service):
    """
    The events that tell a joining node what C{service}'s node holds: its users
    with sessions there, and their rooms.
    """
    events: List[Event] = []
    users = service.directory.users.values()
    for user in users:
        if user.sessions:
            events.append(UserOnline(user.name, user.key, user.account))
    for user in users:
        if user.sessions:
            for room in user.rooms.values():
                events.append(Joined(room.name, user.name))
    return events
