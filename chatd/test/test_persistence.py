"""
The core on a real SQLite file: what is acknowledged survives a restart, and
nothing readable reaches the disk.
"""

import glob

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from chatd import e2e
from chatd.config import Settings
from chatd.core.service import ChatService
from chatd.store import makeStore
from chatd.test.fakes import FakeChatClient, inlineCredentials, privateKey, publicDer, testKeys


class RestartTests(TestCase):
    """
    Two services, one after the other, on the same database file and key.
    """

    def setUp(self):
        self.path = self.mktemp() + ".sqlite"
        self.keys = testKeys()

    async def start(self):
        service = ChatService(makeStore("sqlite:" + self.path, self.keys, reactor),
                              Settings(bcryptCost=4), reactor, credentials=inlineCredentials())
        service.startService()
        await service.whenReady()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    async def account(self, service, name, register=True):
        client = FakeChatClient()
        session = service.connect(client, "127.0.0.1")
        self.addCleanup(session.closed)
        session.hello(1)
        if register:
            await session.register(name, "password-" + name, publicDer(name))
        else:
            await session.login(name, "password-" + name)
        return session, client

    async def test_historySurvivesRestart(self):
        """
        A message acknowledged before a restart is in HISTORY after it, the
        reader's membership is restored at login, and new timestamps stay above
        the old ones.
        """
        service = await self.start()
        alice, _ = await self.account(service, "alice")
        bob, _ = await self.account(service, "bob")
        await alice.join("#keep", "")
        members = dict(await bob.join("#keep", ""))
        blob = e2e.seal("alice", privateKey("alice"), ("room", "#keep"), members, b"remember me")
        first = await alice.roomMessage("#keep", blob)
        alice.closed(), bob.closed()
        await service.stopService()

        service = await self.start()
        bob, client = await self.account(service, "bob", register=False)
        self.assertEqual(client.take(), [("userJoined", ("#keep", "bob", publicDer("bob")))])
        [(sender, timestamp, envelope)] = await bob.history("#keep", 0, 0)
        self.assertEqual((sender, timestamp), ("alice", first))
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"remember me")
        again = e2e.seal("bob", privateKey("bob"), ("room", "#keep"), {"bob": publicDer("bob")},
                         b"later")
        self.assertGreater(await bob.roomMessage("#keep", again), first)

    async def test_nothingReadableOnDisk(self):
        """
        The database files hold neither the plaintext nor any part of the
        envelope that only its readers should see: only the at-rest ciphertext.
        """
        service = await self.start()
        alice, _ = await self.account(service, "alice")
        members = dict(await alice.join("#secret", ""))
        blob = e2e.seal("alice", privateKey("alice"), ("room", "#secret"), members,
                        b"plaintext-marker-7d1f")
        await alice.roomMessage("#secret", blob)
        envelope = e2e.Envelope.parse(blob)
        await service.stopService()
        disk = b"".join(open(name, "rb").read() for name in glob.glob(self.path + "*"))
        self.assertIn(b"#secret", disk)
        for secret in [b"plaintext-marker-7d1f", envelope.encryptedMessage.encode(),
                       envelope.signature.encode(), envelope.kc.encode(),
                       envelope.encryptedKeys["alice"].encode()]:
            self.assertNotIn(secret, disk)
