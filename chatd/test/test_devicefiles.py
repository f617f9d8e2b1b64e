"""
Tests for file offers between device sessions (L{chatd.core.files}): a
version 2 file envelope is checked like a version 2 message's (exact
recipients per device, signed by the sending device's key), and each
session's cut is by the entry it reads the envelope by
(L{chatd.e2e.Envelope.cutAs}); version 1 offers are as before.
"""

import json

from zope.interface import implementer

from chatd import e2e
from chatd.core.directory import ROOM, USER
from chatd.errors import Forbidden, StaleRecipients
from chatd.interfaces import IFileClient
from chatd.test.devicecase import DeviceCase, OnSQLite, deviceDer, deviceKey
from chatd.test.fakes import FakeDeviceClient, privateKey, publicDer

META = json.dumps({"name": "notes.txt", "size": 30, "sha256": "00" * 32, "chunk_size": 10,
                   "chunks": 3, "file_key": "A" * 43 + "="}).encode()


@implementer(IFileClient)
class DeviceFileClient(FakeDeviceClient):
    """
    A device session's client that also takes file offers, keeping them.
    """

    def __init__(self):
        FakeDeviceClient.__init__(self)
        self.offers = []

    def fileOffered(self, transfer):
        self.offers.append(transfer)

    def fileStarted(self, transferId, accepted, window):
        pass

    def fileChunk(self, transferId, index, data):
        pass

    def fileNext(self, transferId, limit):
        pass

    def fileDone(self, transferId):
        pass

    def fileCancelled(self, transferId, reason):
        pass


class DeviceFileTests(DeviceCase):
    """
    File offers from and to device sessions.
    """

    def setUp(self):
        DeviceCase.setUp(self)
        self.alice = self.register("alice")
        self.phone = self.addDevice(self.alice, "alice", "phone")
        self.bob = self.register("bob")
        self.carol = self.account("carol")
        for session in (self.alice, self.bob, self.carol):
            self.result(session.join, "#r", "")

    def deviceSession(self, address="10.0.0.1"):
        session = self.connect(address)
        session.hello(1)
        return session

    def connect(self, address="10.0.0.1", client=None):
        return DeviceCase.connect(self, address, client or DeviceFileClient())

    def sealFile(self, device, to, readers):
        key = privateKey("alice") if device == "first" else deviceKey("alice", device)
        return e2e.seal("alice", key, to, readers, META, domain=e2e.FILE,
                        ts=int(self.clock.seconds() * 1000), device=device,
                        head=tuple(self.lists["alice"].head))

    def roomReaders(self):
        return dict(self.readers("alice", "bob"), carol=publicDer("carol"))

    def assertOpens(self, session, entry, key, signer, domain=e2e.FILE):
        """
        The offer C{session} got, cut by its entry key, holds only C{entry},
        which C{key} opens.
        """
        [transfer] = session.client.offers
        cut = transfer.offer.envelope.cutAs(session.entryKey)
        self.assertEqual(set(json.loads(cut)["encrypted_keys"]), {entry})
        self.assertEqual(e2e.openEnvelope(cut, entry, key, signer, domain), META)

    def test_roomOffer(self):
        """
        A version 2 file envelope naming every device of every member is
        accepted from the device that signed it; each recipient's cut is
        its own entry.
        """
        blob = self.sealFile("phone", ("room", "#r"), self.roomReaders())
        self.result(self.phone.offer, ROOM, "#r", 30, 3, 10, blob)
        signer = deviceDer("alice", "phone")
        self.assertOpens(self.bob, "bob/first", privateKey("bob"), signer)
        self.assertOpens(self.carol, "carol", privateKey("carol"), signer)

    def test_directOffer(self):
        """
        A version 2 file envelope to a user names the devices of both.
        """
        blob = self.sealFile("first", ("user", "bob"), self.readers("alice", "bob"))
        self.result(self.alice.offer, USER, "bob", 30, 3, 10, blob)
        self.assertOpens(self.bob, "bob/first", privateKey("bob"), publicDer("alice"))

    def test_missingDevice(self):
        """
        A version 2 file envelope without the sender's other device is
        refused 0x09.
        """
        readers = self.roomReaders()
        del readers["alice/phone"]
        blob = self.sealFile("first", ("room", "#r"), readers)
        self.assertIsInstance(self.refusal(self.alice.offer, ROOM, "#r", 30, 3, 10, blob),
                              StaleRecipients)

    def test_otherDevice(self):
        """
        A version 2 file envelope naming another device than the session's
        is refused 0x05.
        """
        blob = self.sealFile("first", ("room", "#r"), self.roomReaders())
        self.assertIsInstance(self.refusal(self.phone.offer, ROOM, "#r", 30, 3, 10, blob),
                              Forbidden)

    def test_legacyOffer(self):
        """
        A legacy sender's version 1 file envelope, keyed by names, reaches
        every device of a member, cut to the bare name.
        """
        blob = e2e.seal("carol", privateKey("carol"), ("room", "#r"),
                        {name: publicDer(name) for name in ("alice", "bob", "carol")},
                        META, domain=e2e.FILE, ts=int(self.clock.seconds() * 1000))
        self.result(self.carol.offer, ROOM, "#r", 30, 3, 10, blob)
        for session in (self.alice, self.phone):
            self.assertOpens(session, "alice", privateKey("alice"), publicDer("carol"))


class SQLiteDeviceFileTests(OnSQLite, DeviceFileTests):
    """
    File offers between device sessions, on SQLite.
    """
