# -*- test-case-name: chatd.test.test_atrest -*-
"""
Tests for the at-rest seal (L{chatd.store.seal}), the stores' use of it (a row
that does not open is one row lost, not a page) and the check at open that
the keys are the ones the stored messages were sealed with
(L{chatd.store.keycheck}), on SQLite, on PostgreSQL when C{CHATD_TEST_POSTGRES}
names one, and, where it applies, in memory.
"""

import base64
from dataclasses import replace
from typing import Awaitable, Callable, Tuple

from cryptography.fernet import Fernet, MultiFernet
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.model import HistoryRow
from chatd.names import fold
from chatd.store.keycheck import CANARIES
from chatd.store.memory import MemoryStore
from chatd.store.seal import (
    AtRestKeyError,
    AtRestKeys,
    DamageReport,
    SealError,
    generateKey,
    openRows,
)
from chatd.store.sql import loadMigrations
from chatd.test.test_store import (
    KEYS,
    PostgreSQLFixture,
    SQLFixture,
    SQLiteFixture,
    StoreFixture,
)

# Another fixed key, for a key file that is not the one the data was sealed with.
OTHER_LINE = base64.urlsafe_b64encode(bytes(range(32, 64)))
OTHER = AtRestKeys([OTHER_LINE])
KEY_LINE = base64.urlsafe_b64encode(bytes(range(32)))


def skipped(events):
    """
    The envelope ids of the "skipped" lines among logged C{events}.
    """
    return [event["envelopeId"] for event in events if "envelopeId" in event]


class AtRestKeysTests(SynchronousTestCase):
    """
    Tests for L{AtRestKeys}: sealing, opening, binding to a row, rotation and
    the Fernet bodies of the old format.
    """

    def test_roundTrip(self):
        """
        A sealed envelope opens for its row, and its body does not show it.
        """
        keyId, body = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        self.assertEqual(keyId, KEYS.newestId)
        self.assertNotIn(b"the envelope", body)
        self.assertEqual(KEYS.open(keyId, body, "#lobby", "Alice", "e1"), b"the envelope")

    def test_boundToRow(self):
        """
        A body opens for its own room, sender and envelope id only: moved to a
        row that differs in any of them, it does not open.
        """
        keyId, body = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        for row in [("#other", "Alice", "e1"), ("#lobby", "Bob", "e1"),
                    ("#lobby", "Alice", "e2"), ("#lobbyA", "lice", "e1")]:
            error = self.assertRaises(SealError, KEYS.open, keyId, body, *row)
            self.assertIn("moved", str(error))

    def test_damaged(self):
        """
        A body with one byte changed, or cut short, does not open.
        """
        keyId, body = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        flipped = body[:20] + bytes([body[20] ^ 1]) + body[21:]
        for damaged in [flipped, body[:-1], body[:10], b""]:
            self.assertRaises(SealError, KEYS.open, keyId, damaged, "#lobby", "Alice", "e1")

    def test_freshNonce(self):
        """
        Sealing one envelope twice gives two different bodies.
        """
        first = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        second = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        self.assertNotEqual(first, second)

    def test_rotation(self):
        """
        The first key seals; every key opens what it sealed.
        """
        rotated = AtRestKeys([OTHER_LINE, KEY_LINE])
        old = KEYS.seal(b"before", "#lobby", "Alice", "e1")
        self.assertEqual(rotated.open(*old, "#lobby", "Alice", "e1"), b"before")
        keyId, body = rotated.seal(b"after", "#lobby", "Alice", "e2")
        self.assertEqual(keyId, OTHER.newestId)
        self.assertEqual(OTHER.open(keyId, body, "#lobby", "Alice", "e2"), b"after")

    def test_idsFromKeys(self):
        """
        A key's id is derived from the key alone: eight hex digits, the same
        wherever the key stands in the file, different for another key.
        """
        self.assertRegex(KEYS.newestId, "^[0-9a-f]{8}$")
        self.assertNotEqual(KEYS.newestId, OTHER.newestId)
        both = {KEYS.newestId, OTHER.newestId}
        self.assertEqual(AtRestKeys([KEY_LINE, OTHER_LINE]).ids, both)
        self.assertEqual(AtRestKeys([OTHER_LINE, KEY_LINE]).ids, both)
        self.assertEqual(AtRestKeys([KEY_LINE]).newestId, KEYS.newestId)

    def test_sameKeyTwice(self):
        """
        A key written twice is one key.
        """
        self.assertEqual(AtRestKeys([KEY_LINE, KEY_LINE]).ids, KEYS.ids)

    def test_unknownKey(self):
        """
        A body whose key is not held does not open, and the error names the
        key and what should have held it.
        """
        sealed = KEYS.seal(b"the envelope", "#lobby", "Alice", "e1")
        other = AtRestKeys([OTHER_LINE], source="/etc/chatd/at-rest.key")
        error = self.assertRaises(SealError, other.open, *sealed, "#lobby", "Alice", "e1")
        self.assertIn(KEYS.newestId, str(error))
        self.assertIn("/etc/chatd/at-rest.key", str(error))

    def test_fernetBodies(self):
        """
        A body of the old format (a Fernet token, no key id) opens with any
        key held, and not without its key.
        """
        token = MultiFernet([Fernet(KEY_LINE)]).encrypt(b"old envelope")
        rotated = AtRestKeys([OTHER_LINE, KEY_LINE])
        self.assertEqual(rotated.open(None, token, "#lobby", "Alice", "e1"), b"old envelope")
        self.assertRaises(SealError, OTHER.open, None, token, "#lobby", "Alice", "e1")

    def test_notKeys(self):
        """
        No keys, or a line that is not a key, are refused.
        """
        self.assertRaises(ValueError, AtRestKeys, [])
        self.assertRaises(ValueError, AtRestKeys, [b"not a key"])
        self.assertRaises(ValueError, AtRestKeys, [base64.urlsafe_b64encode(b"short")])

    def test_newKey(self):
        """
        L{generateKey} makes a new key each time, as a key-file line.
        """
        first, second = generateKey(), generateKey()
        self.assertNotEqual(first, second)
        self.assertEqual(len(base64.urlsafe_b64decode(first)), 32)
        AtRestKeys([first])

    def test_refusal(self):
        """
        The error that stops a start names the key file, and says to put the
        original back; for a file made on this start, it says so.
        """
        keys = AtRestKeys([KEY_LINE], source="/srv/at-rest.key")
        error = keys.refusal("cannot open them")
        self.assertIsInstance(error, AtRestKeyError)
        self.assertTrue(str(error).startswith("/srv/at-rest.key cannot open them"))
        self.assertIn("put back", str(error))
        created = AtRestKeys([KEY_LINE], source="/srv/at-rest.key", created=True)
        self.assertEqual(
            str(created.refusal("cannot open them")),
            "/srv/at-rest.key was missing, so chatd wrote a new key there, but it"
            " cannot open them: put the original key file in its place")


class DamageReportTests(SynchronousTestCase):
    """
    Tests for L{openRows} and L{DamageReport}.
    """

    def rows(self, *envelopeIds, damaged=()):
        """
        Stored rows of C{#lobby} for C{envelopeIds}, those in C{damaged} with
        their body cut short.
        """
        rows = []
        for n, envelopeId in enumerate(envelopeIds):
            keyId, body = KEYS.seal(envelopeId.encode(), "#lobby", "Alice", envelopeId)
            if envelopeId in damaged:
                body = body[:-1]
            rows.append(("Alice", n, envelopeId, keyId, body))
        return rows

    def test_openRows(self):
        """
        The rows that open are kept in order; the others are set aside with
        what identifies them and why.
        """
        opened, damaged = openRows(KEYS, "#lobby", self.rows("e1", "e2", "e3", damaged={"e2"}))
        self.assertEqual(opened, [HistoryRow("Alice", 0, b"e1"), HistoryRow("Alice", 2, b"e3")])
        [(room, sender, envelopeId, reason)] = damaged
        self.assertEqual((room, sender, envelopeId), ("#lobby", "Alice", "e2"))
        self.assertIn("does not open", reason)

    def test_loggedOnce(self):
        """
        Each row that does not open is logged once, however often it is read.
        """
        report = DamageReport()
        rows = self.rows("e1", "e2", "e3", damaged={"e1", "e3"})
        with capturedLogs() as events:
            for _ in range(3):
                self.assertEqual(
                    report.keep(openRows(KEYS, "#lobby", rows)),
                    [HistoryRow("Alice", 1, b"e2")])
        self.assertEqual(skipped(events), ["e1", "e3"])

    def test_limit(self):
        """
        Past its limit, the report logs that it stops, then nothing more.
        """
        report = DamageReport(limit=2)
        rows = self.rows("e1", "e2", "e3", "e4", damaged={"e1", "e2", "e3", "e4"})
        with capturedLogs() as events:
            report.keep(openRows(KEYS, "#lobby", rows))
            report.keep(openRows(KEYS, "#lobby", rows))
        self.assertEqual(skipped(events), ["e1", "e2"])
        self.assertEqual(len(events), 3)
        self.assertIn("no more will be logged", events[2]["log_format"])


class StoredDamageTestsMixin(StoreFixture):
    """
    What every store does with a stored message that does not open: leaves it
    out of history and catch-up, and logs it once.

    A test case mixing this in, besides L{StoreFixture}'s needs, provides
    C{sealed(envelopeId)} and C{reseal(envelopeId, keyId, body)}, coroutines
    that read and replace one row's key id and body.
    """

    sealed: Callable[[str], Awaitable[Tuple[str, bytes]]]
    reseal: Callable[[str, str, bytes], Awaitable[None]]

    async def test_damagedRow(self):
        """
        A damaged row is left out of the history page and the catch-up that
        hold it, which return the rest, and logged once.
        """
        await self.room()
        for n in range(1, 4):
            await self.append(100 * n, f"e{n}")
        keyId, body = await self.sealed("e2")
        await self.reseal("e2", keyId, body[:-1] + bytes([body[-1] ^ 1]))
        with capturedLogs() as events:
            self.assertEqual(await self.history(), [b"envelope e1", b"envelope e3"])
            self.assertEqual(await self.history(), [b"envelope e1", b"envelope e3"])
            rows = await self.store.messagesAfter("#Lobby", 0, 10)
        self.assertEqual([row.envelope for row in rows], [b"envelope e1", b"envelope e3"])
        self.assertEqual(skipped(events), ["e2"])

    async def test_movedRow(self):
        """
        A body copied into a row of another room, another sender or another
        id does not open there: that row is left out, the original is kept.
        """
        await self.room()
        await self.room("#Other")
        await self.append(100, "e1")
        await self.append(200, "e2", sender="Bob")
        await self.append(300, "e3", room="#Other")
        await self.append(400, "e4")
        moved = await self.sealed("e1")
        for target in ["e2", "e3", "e4"]:
            await self.reseal(target, *moved)
        with capturedLogs() as events:
            self.assertEqual(await self.history(), [b"envelope e1"])
            self.assertEqual(await self.history(room="#Other"), [])
        self.assertEqual(sorted(skipped(events)), ["e2", "e3", "e4"])


class MemoryDamageTests(StoredDamageTestsMixin, TestCase):
    """
    Damaged rows in L{MemoryStore}, whose rows are its own to change here.
    """

    def createStore(self):
        return MemoryStore(self.keys)

    def _find(self, envelopeId):
        for messages in self.store._messages.values():
            for n, message in enumerate(messages):
                if message.envelopeId == envelopeId:
                    return messages, n

    async def sealed(self, envelopeId):
        messages, n = self._find(envelopeId)
        return messages[n].keyId, messages[n].body

    async def reseal(self, envelopeId, keyId, body):
        messages, n = self._find(envelopeId)
        messages[n] = replace(messages[n], keyId=keyId, body=body)


class SQLAtRestTestsMixin(StoredDamageTestsMixin, SQLFixture):
    """
    What the SQL store keeps of the seal, the database of the old format it
    upgrades, and the keys it refuses to open with.

    A test case mixing this in, besides L{SQLFixture}'s needs, provides
    C{newDatabase()}, which points C{createStore} at a new, empty database.
    """

    newDatabase: Callable[[], None]

    async def sealed(self, envelopeId):
        [(keyId, body)] = await self.pool.runQuery(
            self.engine.sql("SELECT key_id, body FROM messages WHERE envelope_id = ?"),
            (envelopeId,))
        return keyId, bytes(body)

    async def reseal(self, envelopeId, keyId, body):
        await self.pool.runOperation(
            self.engine.sql(
                "UPDATE messages SET key_id = ?, body = ? WHERE envelope_id = ?"),
            (keyId, body, envelopeId))

    def reopenWith(self, keys, migrations=None):
        """
        Close the store and open a new one with C{keys} on the same database.

        @return: the L{Deferred} of the new store's C{open}.
        """
        self.keys = keys
        return self.reopen(migrations)

    async def oldDatabase(self, *envelopeIds, damaged=()):
        """
        Leave the test's database for a new one, as chatd wrote it before
        schema version 2 (its tables, each body a Fernet token over the whole
        envelope), holding C{envelopeIds} from Alice to Bob in C{#Lobby}, those
        in C{damaged} with a body that is no token; and make the store that
        upgrades it, not yet opened.
        """
        await self.store.close()
        self.newDatabase()
        self.store = self.createStore()
        [(_, script)] = loadMigrations(self.engine.dialect)[:1]
        # What chatd sealed bodies with then: a MultiFernet of the key file.
        fernet = MultiFernet([Fernet(KEY_LINE)])
        sql = self.engine.sql

        def build(txn):
            for statement in self.engine.splitScript(script):
                txn.execute(statement)
            txn.execute(
                "CREATE TABLE schema_version ("
                " singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
                " version INTEGER NOT NULL)")
            txn.execute("INSERT INTO schema_version (singleton, version) VALUES (1, 1)")
            txn.execute(sql("INSERT INTO rooms (name_key, name, created_ms)"
                            " VALUES (?, ?, ?)"), ("#lobby", "#Lobby", 0))
            for n, envelopeId in enumerate(envelopeIds, 1):
                txn.execute(
                    sql("INSERT INTO messages"
                        " (room_key, sender, sender_key, ts, envelope_id, body)"
                        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id"),
                    ("#lobby", "Alice", "alice", 100 * n, envelopeId,
                     b"damaged" if envelopeId in damaged else
                     fernet.encrypt(b"envelope " + envelopeId.encode())))
                [(messageId,)] = txn.fetchall()
                txn.execute(
                    sql("INSERT INTO message_readers (message_id, reader_key)"
                        " VALUES (?, ?)"), (messageId, fold("Bob")))

        await self.pool.runInteraction(build)

    async def test_keyIdPerRow(self):
        """
        Each row keeps the id of the key that sealed it; after a new key is
        put first, new rows name it and the old ones still open.
        """
        await self.room()
        await self.append(100, "e1")
        self.assertEqual((await self.sealed("e1"))[0], KEYS.newestId)
        await self.reopenWith(AtRestKeys([OTHER_LINE, KEY_LINE]))
        await self.append(200, "e2")
        self.assertEqual((await self.sealed("e2"))[0], OTHER.newestId)
        self.assertEqual(await self.history(), [b"envelope e1", b"envelope e2"])

    async def test_refusesOtherKey(self):
        """
        Keys that do not hold the key the stored messages were sealed with
        are refused at open, naming the key file, the key and how many
        messages need it.
        """
        await self.room()
        await self.append(100, "e1")
        await self.append(200, "e2")
        error = await self.assertFailure(
            self.reopenWith(AtRestKeys([OTHER_LINE], source="/data/at-rest.key")),
            AtRestKeyError)
        self.assertEqual(
            str(error),
            f"/data/at-rest.key does not hold the at-rest key {KEYS.newestId} that 2"
            " stored messages are sealed with: put back the key file they were"
            " sealed with")

    async def test_refusesDroppedKey(self):
        """
        A key dropped from the file while messages sealed with it remain is
        refused, though the newer key is held.
        """
        await self.room()
        await self.append(100, "e1")
        await self.reopenWith(AtRestKeys([OTHER_LINE, KEY_LINE]))
        await self.append(200, "e2")
        await self.append(300, "e3")
        error = await self.assertFailure(self.reopenWith(OTHER), AtRestKeyError)
        self.assertIn(f"key {KEYS.newestId} that 1 stored messages", str(error))

    async def test_refusesNewKeyFile(self):
        """
        A key file made on this start, beside a database whose messages were
        sealed with another, is refused with a message that says so.
        """
        await self.room()
        await self.append(100, "e1")
        new = AtRestKeys([OTHER_LINE], source="/data/at-rest.key", created=True)
        error = await self.assertFailure(self.reopenWith(new), AtRestKeyError)
        self.assertIn("/data/at-rest.key was missing, so chatd wrote a new key", str(error))

    async def test_noMessagesAnyKey(self):
        """
        A database without messages opens with any key: accounts and rooms
        are not sealed.
        """
        await self.account("Alice")
        await self.room()
        await self.reopenWith(OTHER)
        await self.append(100, "e1")
        self.assertEqual(await self.history(), [b"envelope e1"])

    async def test_oldFormat(self):
        """
        A database of the old format is upgraded: its Fernet rows stay
        readable and keep no key id; new rows are sealed with AES-GCM beside
        them.
        """
        await self.oldDatabase("e1", "e2")
        await self.store.open()
        self.assertEqual(await self.query("SELECT version FROM schema_version"),
                         [(self.newest,)])
        self.assertEqual((await self.sealed("e1"))[0], None)
        await self.append(300, "e3")
        self.assertEqual((await self.sealed("e3"))[0], KEYS.newestId)
        self.assertEqual(await self.history(),
                         [b"envelope e1", b"envelope e2", b"envelope e3"])
        rows = await self.store.messagesAfter("#Lobby", 100, 10)
        self.assertEqual([row.envelope for row in rows], [b"envelope e2", b"envelope e3"])

    async def test_oldFormatOtherKey(self):
        """
        Keys that open none of the newest rows of the old format are refused:
        those rows name no key, so the canaries tell.
        """
        await self.oldDatabase("e1", "e2")
        self.keys = AtRestKeys([OTHER_LINE], source="/data/at-rest.key")
        self.store = self.createStore()
        error = await self.assertFailure(self.store.open(), AtRestKeyError)
        self.assertIn("/data/at-rest.key cannot open the stored messages of the old"
                      " (Fernet) format", str(error))

    async def test_oldFormatDamagedCanaries(self):
        """
        Damaged rows among the canaries do not stop the open while one of them
        opens; they are left out of history like any damaged row.
        """
        envelopeIds = [f"e{n}" for n in range(1, CANARIES + 2)]
        await self.oldDatabase(*envelopeIds, damaged=envelopeIds[2:])
        await self.store.open()
        with capturedLogs() as events:
            self.assertEqual(await self.history(), [b"envelope e1", b"envelope e2"])
        self.assertEqual(skipped(events), envelopeIds[2:])
        await self.reseal("e2", None, b"damaged")
        error = await self.assertFailure(self.reopen(), AtRestKeyError)
        self.assertIn("old (Fernet) format", str(error))


class SQLiteAtRestTests(SQLiteFixture, SQLAtRestTestsMixin, TestCase):
    """
    The seal on SQLite.
    """

    def newDatabase(self):
        self.path = self.mktemp()


class PostgreSQLAtRestTests(PostgreSQLFixture, SQLAtRestTestsMixin, TestCase):
    """
    The seal on PostgreSQL.
    """

    def newDatabase(self):
        self.connectionString = self.newSchema()
