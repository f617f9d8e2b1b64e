"""
A core test case with accounts on several devices (protocol version 3), for
the tests of L{chatd.core.devices}, L{chatd.core.waiting} and
L{chatd.core.sharing}.
"""

from chatd import devicelist, e2e
from chatd.test.fakes import FakeDeviceClient, privateKey, publicDer
from chatd.test.mixin import TestCaseMixin
from chatd.test.test_service import CoreTestCase

PASSWORD = "correct horse"


def deviceKey(user, device):
    """
    The private key of C{user}'s device C{device}; the first device's is
    the account's identity key, C{privateKey(user)}.
    """
    return privateKey(user if device is None else "%s/%s" % (user, device))


def deviceDer(user, device):
    return publicDer(user if device is None else "%s/%s" % (user, device))


class DeviceCase(CoreTestCase):
    """
    Helpers to register accounts with devices, add and log in devices, and
    seal version 2 envelopes.

    @ivar lists: user -> its current L{devicelist.DeviceList}.
    @ivar keys: (user, device) -> SPKI DER, for the devices listed.
    """

    def setUp(self):
        CoreTestCase.setUp(self)
        self.lists = {}
        self.keys = {}

    def deviceSession(self, address="10.0.0.1"):
        session = self.service.connect(FakeDeviceClient(), address)
        self.sessions.append(session)
        session.hello(1)
        return session

    def register(self, user, device="first"):
        """
        Register C{user} from its identity device C{device} (key
        C{publicDer(user)}).
        """
        session = self.deviceSession()
        first = devicelist.DeviceList.first(user, device, publicDer(user))
        self.result(session.registerDevice, user, PASSWORD, publicDer(user), device,
                    first.text(), first.sign(privateKey(user)), b"recovery")
        self.lists[user] = first
        self.keys[(user, device)] = publicDer(user)
        session.client.take()
        return session

    def publish(self, identity, user, add=(), remove=()):
        """
        Publish the next list of C{user} from its identity session.
        """
        new = self.lists[user].following(
            {device: deviceDer(user, device) for device in add}, remove)
        keys = dict(self.keys)
        for device in add:
            keys[(user, device)] = deviceDer(user, device)
        for device in remove:
            keys.pop((user, device), None)
        devices = [(device, keys[(user, device)]) for device, _ in new.entries]
        self.result(identity.publishDevices, new.text(), new.sign(privateKey(user)), devices)
        self.lists[user] = new
        self.keys = keys
        return new

    def pendingLogin(self, user, device):
        """
        A session of a new device C{device} of C{user}, pending.
        """
        session = self.deviceSession()
        self.assertEqual(self.result(session.loginDevice, user, PASSWORD, device,
                                     deviceDer(user, device)), 1)
        return session

    def addDevice(self, identity, user, device):
        """
        A new device of C{user}, logged in, approved by a published list.
        """
        session = self.pendingLogin(user, device)
        self.publish(identity, user, add=[device])
        session.client.take()
        return session

    def loginDevice(self, user, device):
        session = self.deviceSession()
        key = publicDer(user) if self.keys.get((user, device)) == publicDer(user) \
            else deviceDer(user, device)
        self.assertEqual(self.result(session.loginDevice, user, PASSWORD, device, key), 0)
        return session

    def readers(self, *users):
        """
        Entry key -> SPKI DER of every listed device of C{users}.
        """
        return {e2e.entryKey(user, device): der for (user, device), der in self.keys.items()
                if user in users}

    def sealFrom(self, user, device, to, readers, text="hi", hist=0):
        """
        A version 2 envelope from C{user}'s device C{device}.
        """
        key = privateKey(user) if self.keys[(user, device)] == publicDer(user) \
            else deviceKey(user, device)
        return e2e.seal(user, key, to, readers, text.encode("utf-8"),
                        ts=int(self.clock.seconds() * 1000), device=device,
                        head=tuple(self.lists[user].head), hist=hist)

    def events(self, session, kind):
        return [args for name, args in session.client.take() if name == kind]


class OnSQLite(TestCaseMixin):
    """
    Mixed in before a L{DeviceCase}: its core runs on an SQLite store whose
    pool works without threads, so that the tests run alike on the SQL
    store's queries.
    """

    def buildService(self):
        from functools import partial

        from chatd.store.engines import SQLITE
        from chatd.store.sql import AdbapiStore
        from chatd.test.fakes import makeService, testKeys
        from chatd.test.test_store import (
            _HeldThreadPool,
            _ThreadlessConnectionPool,
            _ThreadlessReactor,
        )
        path = self.mktemp()
        reactor = _ThreadlessReactor()
        pool = SQLITE.connectionPool(
            (path,), reactor,
            poolFactory=partial(_ThreadlessConnectionPool, threadpool=_HeldThreadPool()))
        self.addCleanup(pool.close)
        store = AdbapiStore(SQLITE, (path,), testKeys(), pool=pool, reactor=reactor)
        return makeService(store=store)
