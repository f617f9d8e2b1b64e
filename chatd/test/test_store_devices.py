"""
Tests for the stores' devices and messages that wait (schema 6):
L{chatd.store.devices}, L{chatd.store.waiting}, L{chatd.store.memorydevices}
and L{chatd.store.entries}, alike in memory, on SQLite and on PostgreSQL.
"""

import json

from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.devicelist import HeadConflict
from chatd.errors import Conflict
from chatd.model import NO_DEVICES, DeviceList, PendingDevice
from chatd.store.entries import mergeShares, pairKey, readerKey
from chatd.store.memory import MemoryStore
from chatd.test.test_store import PostgreSQLFixture, SQLiteFixture, StoreFixture

LIST1 = DeviceList(b"list one", b"sig1", (("laptop", b"K1"),), 1, "h1")
LIST2 = DeviceList(b"list two", b"sig2", (("laptop", b"K1"), ("phone", b"K2")), 2, "h2")


def envelope(*entries):
    """
    An envelope's JSON with key entries for C{entries}.
    """
    return json.dumps({"id": "x", "encrypted_keys": {e: "key-" + e for e in entries},
                       "key_ids": {e: "id" for e in entries}}).encode("ascii")


class EntriesTests(SynchronousTestCase):
    """
    What every store does alike with entry keys.
    """

    def test_readerKey(self):
        """
        The user part of an entry key is folded, the device part kept.
        """
        self.assertEqual(readerKey("Alice/Laptop"), "alice/Laptop")
        self.assertEqual(readerKey("Bob"), "bob")

    def test_pairKey(self):
        """
        A conversation's key does not depend on who wrote first.
        """
        self.assertEqual(pairKey("Bob", "alice"), pairKey("ALICE", "bob"))

    def test_mergeShares(self):
        """
        Shared entries join the key maps; an entry already there stays.
        """
        merged = json.loads(mergeShares(envelope("a"), [("b/x", "kb", "ib"),
                                                          ("a", "other", "other")]))
        self.assertEqual(merged["encrypted_keys"], {"a": "key-a", "b/x": "kb"})
        self.assertEqual(merged["key_ids"], {"a": "id", "b/x": "ib"})
        self.assertEqual(mergeShares(b"as is", []), b"as is")


class DeviceStoreTestsMixin(StoreFixture):
    """
    Devices and waiting messages, on every store.
    """

    async def test_noList(self):
        """
        An account registered without a list has none.
        """
        await self.account("alice")
        self.assertEqual(await self.store.getDevices("Alice"), NO_DEVICES)

    async def test_registeredWithList(self):
        """
        A device's registration stores the list and the recovery blob with
        the account.
        """
        await self.store.createAccount("Alice", None, b"K1", None, LIST1, b"blob")
        self.assertEqual(await self.store.getDevices("alice"), LIST1)
        self.assertEqual(await self.store.getRecovery("alice"), b"blob")

    async def test_publish(self):
        """
        The next list is stored when it builds on the head; the key hashes
        it removes are kept; a pending request of a device it names goes.
        """
        await self.store.createAccount("Alice", None, b"K1", None, LIST1, b"")
        await self.store.addPending("alice", PendingDevice("phone", b"K2", b"t" * 32, 2**40))
        await self.store.publishDevices("alice", LIST2, (1, "h1"), ["gone"])
        self.assertEqual(await self.store.getDevices("alice"), LIST2)
        self.assertEqual(await self.store.removedDevices("alice"), frozenset({"gone"}))
        self.assertEqual(await self.store.pendingDevices("alice"), [])

    async def test_publishOnOtherHead(self):
        """
        A list built on another head is refused with the current head.
        """
        await self.store.createAccount("Alice", None, b"K1", None, LIST1, b"")
        e = await self.assertFailure(
            self.store.publishDevices("alice", LIST2, (0, ""), []), HeadConflict)
        self.assertEqual(e.head, (1, "h1"))
        self.assertEqual(await self.store.getDevices("alice"), LIST1)

    async def test_resetIdentity(self):
        """
        A reset replaces the key, the list and the recovery blob, and forgets
        the removed keys and pending devices.
        """
        await self.store.createAccount("Alice", None, b"K1", None, LIST1, b"old")
        await self.store.publishDevices("alice", LIST2, (1, "h1"), ["gone"])
        await self.store.addPending("alice", PendingDevice("tab", b"K3", b"t" * 32, 2**40))
        fresh = DeviceList(b"new", b"sig", (("tab", b"K3"),), 1, "n1")
        await self.store.resetIdentity("alice", b"K3", fresh, b"new blob")
        self.assertEqual((await self.store.getAccount("alice")).publicKey, b"K3")
        self.assertEqual(await self.store.getDevices("alice"), fresh)
        self.assertEqual(await self.store.removedDevices("alice"), frozenset())
        self.assertEqual(await self.store.pendingDevices("alice"), [])
        self.assertEqual(await self.store.getRecovery("alice"), b"new blob")

    async def test_pendingExpire(self):
        """
        Pending requests are read until they expire; a new request of one
        device replaces its old one.
        """
        await self.account("alice")
        now = int(self.store._clock.seconds() * 1000)
        await self.store.addPending("alice", PendingDevice("a", b"K", b"1" * 32, now + 1000))
        await self.store.addPending("alice", PendingDevice("a", b"K", b"2" * 32, now + 2000))
        await self.store.addPending("alice", PendingDevice("b", b"K", b"3" * 32, now - 1))
        self.assertEqual(await self.store.pendingDevices("alice"),
                         [PendingDevice("a", b"K", b"2" * 32, now + 2000)])

    async def test_recovery(self):
        """
        The recovery blob is replaced, or removed by an empty one.
        """
        await self.account("alice")
        self.assertEqual(await self.store.getRecovery("alice"), b"")
        await self.store.setRecovery("alice", b"blob")
        self.assertEqual(await self.store.getRecovery("Alice"), b"blob")
        await self.store.setRecovery("alice", b"")
        self.assertEqual(await self.store.getRecovery("alice"), b"")

    async def test_historySetting(self):
        """
        A room's history setting is stored with it.
        """
        await self.store.createRoom("#h", None, None, 40)
        await self.room()
        self.assertEqual({r.name: r.history for r in await self.store.loadRooms()},
                         {"#h": 40, "#Lobby": 0})

    async def test_sequence(self):
        """
        Room and direct messages take one increasing sequence.
        """
        await self.room()
        first = await self.append(100, "e1")
        second = await self.store.appendDirect("Alice", "Bob", 150, "d1", b"dm", ["Alice"])
        third = await self.append(200, "e2")
        self.assertEqual((first, second, third), (100, 150, 200))
        self.assertEqual([first.sequence + 1, first.sequence + 2],
                         [second.sequence, third.sequence])
        self.assertEqual(await self.store.currentSequence(), third.sequence)

    async def test_directReplay(self):
        """
        A direct message's envelope id is stored once per sender.
        """
        await self.store.appendDirect("Alice", "Bob", 1, "d1", b"dm", ["Alice"])
        await self.assertFailure(
            self.store.appendDirect("alice", "Carol", 2, "d1", b"dm", ["Alice"]), Conflict)

    async def test_directHistory(self):
        """
        A conversation's history is read by entry key, newest C{limit},
        oldest first, in either direction.
        """
        for n, (sender, peer) in enumerate([("Alice", "Bob"), ("Bob", "Alice"),
                                            ("Alice", "Carol"), ("Alice", "Bob")]):
            await self.store.appendDirect(sender, peer, 100 + n, "d%d" % n,
                                          b"dm%d" % n, ["Alice/laptop", "Bob"])
        rows = await self.store.directHistory("bob", "alice", "alice/laptop", 10, 0)
        self.assertEqual([(r.sender, r.envelope) for r in rows],
                         [("Alice", b"dm0"), ("Bob", b"dm1"), ("Alice", b"dm3")])
        rows = await self.store.directHistory("alice", "bob", "Bob", 1, 103)
        self.assertEqual([r.envelope for r in rows], [b"dm1"])
        self.assertEqual(await self.store.directHistory("alice", "bob", "alice/phone", 10, 0),
                         [])

    async def test_roomHistoryByDevice(self):
        """
        Room history is read by entry key: a device reads what has its entry.
        """
        await self.room()
        await self.append(100, "e1", readers=("Alice/laptop", "Bob"))
        await self.append(200, "e2", readers=("Alice/phone", "Bob"))
        self.assertEqual(await self.history("alice/laptop"), [b"envelope e1"])
        self.assertEqual(await self.history("Alice/phone"), [b"envelope e2"])
        self.assertEqual(await self.history("alice/Phone"), [])

    async def test_catchUp(self):
        """
        Catch-up reads, in sequence order, the messages above a mark of the
        rooms the account is remembered in and of its conversations, that
        have the device's entry.
        """
        await self.account("Alice")
        await self.room()
        await self.store.createRoom("#other", None)
        await self.store.addMember("#Lobby", "alice")
        start = await self.append(100, "e0", readers=("Alice/laptop",))
        await self.append(200, "e1", readers=("Alice/laptop", "Bob"))
        await self.append(210, "e2", room="#other", readers=("Alice/laptop",))
        await self.store.appendDirect("Bob", "Alice", 220, "d1", b"dm", ["Alice/laptop", "Bob"])
        await self.append(230, "e3", readers=("Alice/phone",))
        await self.store.appendDirect("Alice", "Bob", 240, "d2", b"sent",
                                      ["Alice/laptop", "Bob"])
        found = await self.store.catchUp("alice", "Alice/laptop", start.sequence, 100)
        self.assertEqual([(m.room, m.peer, m.sender, m.envelope) for m in found],
                         [("#Lobby", None, "Alice", b"envelope e1"),
                          (None, "Bob", "Bob", b"dm"),
                          (None, "Bob", "Alice", b"sent")])
        self.assertEqual(sorted(m.sequence for m in found), [m.sequence for m in found])
        limited = await self.store.catchUp("alice", "Alice/laptop", start.sequence, 1)
        self.assertEqual([m.envelope for m in limited], [b"envelope e1"])

    async def test_shares(self):
        """
        Shared entries are added to a message among the room's latest (the
        first share of an entry wins), and history then reads the message
        for the newcomer's device with the entry merged in.
        """
        await self.room()
        await self.append(100, "e1", readers=("Alice",), envelope=envelope("Alice"))
        await self.append(200, "e2", readers=("Alice",), envelope=envelope("Alice"))
        latest = await self.store.latestMessages("#lobby", 1)
        self.assertEqual(list(latest), ["e2"])
        messageId, sender, body = latest["e2"]
        self.assertEqual((sender, body), ("Alice", envelope("Alice")))
        self.assertEqual(await self.store.addShares(
            [(messageId, "Carol/pc", "first", "i1")]), 1)
        self.assertEqual(await self.store.addShares(
            [(messageId, "Carol/pc", "second", "i2")]), 0)
        [row] = await self.store.history("#lobby", "carol/pc", 10, 0)
        self.assertEqual(json.loads(row.envelope)["encrypted_keys"],
                         {"Alice": "key-Alice", "Carol/pc": "first"})
        self.assertEqual(json.loads((await self.store.latestMessages("#lobby", 5))["e2"][2])
                         ["key_ids"]["Carol/pc"], "i1")

    async def test_marks(self):
        """
        A device's mark is raised, never lowered.
        """
        await self.account("alice")
        self.assertIsNone(await self.store.getMark("alice", "laptop"))
        await self.store.setMarks([("Alice", "laptop", 5)])
        await self.store.setMarks([("alice", "laptop", 3), ("alice", "phone", 1)])
        self.assertEqual(await self.store.getMark("ALICE", "laptop"), 5)
        self.assertEqual(await self.store.getMark("alice", "phone"), 1)

    async def test_membersOf(self):
        """
        The accounts remembered in a room, by name as registered.
        """
        await self.account("Bob")
        await self.account("alice")
        await self.room()
        for name in ("bob", "ALICE"):
            await self.store.addMember("#lobby", name)
        self.assertEqual(await self.store.membersOf("#Lobby"), ["alice", "Bob"])

    async def test_retentionTakesDirects(self):
        """
        Retention deletes old direct messages too.
        """
        await self.store.appendDirect("Alice", "Bob", 100, "d1", b"old", ["Bob"])
        await self.store.appendDirect("Alice", "Bob", 300, "d2", b"new", ["Bob"])
        self.assertEqual(await self.store.deleteHistoryBefore(200), 1)
        rows = await self.store.directHistory("alice", "bob", "bob", 10, 0)
        self.assertEqual([r.envelope for r in rows], [b"new"])


class MemoryDeviceStoreTests(DeviceStoreTestsMixin, TestCase):
    """
    Devices in memory.
    """

    def createStore(self):
        return MemoryStore(self.keys)


class SQLiteDeviceStoreTests(SQLiteFixture, DeviceStoreTestsMixin, TestCase):
    """
    Devices on SQLite.
    """


class PostgreSQLDeviceStoreTests(PostgreSQLFixture, DeviceStoreTestsMixin, TestCase):
    """
    Devices on PostgreSQL.
    """
