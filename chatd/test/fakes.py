"""
Test doubles shared by chatd's tests: a recording chat client, inline credentials,
keys made once per test run, and a service wired to an in-memory store.
"""

from dataclasses import replace
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from zope.interface import implementer

from chatd.config import Settings
from chatd.credentials import Credentials
from chatd.interfaces import IChatClient
from chatd.service import ChatService


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


def testFernet():
    return MultiFernet([Fernet(Fernet.generate_key())])


def makeService(store=None, clock=None, **overrides):
    """
    A started L{ChatService} on an in-memory store and a L{Clock}.
    """
    from chatd.store.memory import MemoryStore
    clock = clock if clock is not None else Clock()
    clock.advance(1_700_000_000)
    settings = replace(Settings(bcryptCost=4), **overrides)
    service = ChatService(store if store is not None else MemoryStore(testFernet()),
                          settings, clock, credentials=inlineCredentials())
    service.startService()
    return service


@implementer(IChatClient)
class FakeChatClient:
    """
    Records every event as C{(methodName, args)} in C{self.events}.
    """

    def __init__(self):
        self.events = []
        self.disconnected = False

    def _record(name):
        def method(self, *args):
            self.events.append((name, args))
        method.__name__ = name
        return method

    roomMessage = _record("roomMessage")
    directMessage = _record("directMessage")
    userJoined = _record("userJoined")
    userLeft = _record("userLeft")
    userRenamed = _record("userRenamed")
    keyChanged = _record("keyChanged")
    warning = _record("warning")
    del _record

    def disconnect(self):
        self.disconnected = True

    def take(self):
        """
        The events recorded since the last call, and forget them.
        """
        events, self.events = self.events, []
        return events
