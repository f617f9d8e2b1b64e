# -*- test-case-name: chatd.test.test_admin -*-
"""
Tests for C{python -m chatd.admin} (L{chatd.admin}) against real data
directories: each subcommand, through the server's own store.
"""

import io
import os
import sqlite3
import stat
import sys

import bcrypt
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd import datadir
from chatd.admin import __main__ as admin
from chatd.admin.commands import AdminError
from chatd.store import makeStore, operations
from chatd.store.seal import generateKey

PASSWORD = "a good password"


class AdminTestCase(TestCase):
    """
    A fresh data directory, and ways to run commands on it and look inside.
    """

    def setUp(self):
        self.dataDir = os.path.join(self.mktemp(), "data")
        self.passwords = []
        # The server's config file, read by the admin command too: cheap hashes.
        self.config = self.mktemp()
        with open(self.config, "w") as f:
            f.write("[chatd]\nbcrypt-cost = 4\n")

    def options(self, *args):
        options = admin.Options()
        options.parseOptions(["--config", self.config, "--data-dir", self.dataDir, *args])
        return options

    def admin(self, *args):
        """
        Run one command; passwords come from C{self.passwords}.

        @return: a L{Deferred} of its L{chatd.admin.commands.Answer}.
        """
        return Deferred.fromCoroutine(admin.run(
            reactor, self.options(*args), readPassword=lambda prompt: self.passwords.pop(0)))

    def withStore(self, use):
        return Deferred.fromCoroutine(self._withStore(use))

    async def _withStore(self, use):
        """
        Open the data directory's store as the server would, and call C{use}
        with it.
        """
        prepared = datadir.prepare(self.dataDir)
        store = makeStore("sqlite:" + os.path.join(self.dataDir, "chatd.sqlite"),
                          prepared.keys, reactor)
        await store.open()
        try:
            return await use(store)
        finally:
            await store.close()


class AccountCommandTests(AdminTestCase):
    """
    users, create-user, reset-password, delete-user, ban and unban.
    """

    async def test_createUser(self):
        """
        create-user makes an account with the password read, no key yet; users
        lists it, as text and as JSON.
        """
        self.passwords.append(PASSWORD)
        answer = await self.admin("create-user", "Alice")
        self.assertEqual(answer.text, "created Alice")
        account = await self.withStore(lambda store: store.getAccount("alice"))
        self.assertEqual(account.name, "Alice")
        self.assertTrue(bcrypt.checkpw(PASSWORD.encode(), account.passwordHash))
        self.assertEqual(account.publicKey, b"")
        listed = await self.admin("users")
        self.assertEqual(listed.text.splitlines()[1].split()[:4], ["Alice", "yes", "no", "0"])
        [user] = listed.value
        self.assertEqual((user["name"], user["password"], user["banned"], user["rooms"]),
                         ("Alice", True, False, 0))

    async def test_createUserRefusals(self):
        """
        A taken name, an invalid one, a guest's and a short password are
        refused, each with a sentence.
        """
        self.passwords.append(PASSWORD)
        await self.admin("create-user", "alice")
        for name, message in [("ALICE", "name in use: ALICE"),
                              ("no spaces", "invalid name 'no spaces': 1-32 of A-Z a-z"
                                            " 0-9 _ . -"),
                              ("rand123", "names like rand123 are reserved for guests")]:
            error = await self.assertFailure(self.admin("create-user", name), AdminError)
            self.assertEqual(str(error), message)
        self.passwords.append("short")
        error = await self.assertFailure(self.admin("create-user", "bob"), AdminError)
        self.assertEqual(str(error), "passwords are 8 to 72 bytes")

    async def test_resetPassword(self):
        """
        reset-password replaces the hash; an unknown name is refused.
        """
        self.passwords += [PASSWORD, "another password"]
        await self.admin("create-user", "alice")
        await self.admin("reset-password", "ALICE")
        account = await self.withStore(lambda store: store.getAccount("alice"))
        self.assertTrue(bcrypt.checkpw(b"another password", account.passwordHash))
        error = await self.assertFailure(self.admin("reset-password", "bob"), AdminError)
        self.assertEqual(str(error), "no such account: bob")

    async def test_deleteUser(self):
        """
        delete-user removes the account and its memberships, not the room.
        """
        async def member(store):
            await store.createAccount("alice", None, b"k")
            await store.createRoom("#r", None)
            await store.addMember("#r", "alice")
        await self.withStore(member)
        self.assertEqual((await self.admin("rooms")).value,
                         [{"name": "#r", "password": False, "members": 1, "messages": 0}])
        await self.admin("delete-user", "alice")
        self.assertIsNone(await self.withStore(lambda store: store.getAccount("alice")))
        self.assertEqual((await self.admin("rooms")).value[0]["members"], 0)
        error = await self.assertFailure(self.admin("delete-user", "alice"), AdminError)
        self.assertEqual(str(error), "no such account")

    async def test_banAndUnban(self):
        """
        ban sets the account's flag, unban clears it; users shows it.
        """
        self.passwords.append(PASSWORD)
        await self.admin("create-user", "alice")
        await self.admin("ban", "alice")
        self.assertTrue((await self.withStore(lambda s: s.getAccount("alice"))).banned)
        self.assertTrue((await self.admin("users")).value[0]["banned"])
        await self.admin("unban", "alice")
        self.assertFalse((await self.withStore(lambda s: s.getAccount("alice"))).banned)
        await self.assertFailure(self.admin("ban", "nobody"), AdminError)


class OwnerCommandTests(AdminTestCase):
    """
    owner ROOM NAME gives a room an owner.
    """

    async def test_owner(self):
        """
        owner makes the account an owner of the room, beside the one it has,
        and lifts a ban of it there.
        """
        self.passwords += [PASSWORD, PASSWORD]
        await self.admin("create-user", "alice")
        await self.admin("create-user", "Bob")

        async def room(store):
            await store.createRoom("#Lobby", None, owner="alice")
            await store.addBan("#Lobby", "bob", "alice", "")
        await self.withStore(room)
        answer = await self.admin("owner", "#lobby", "bob")
        self.assertEqual(answer.text, "bob now owns #lobby")
        info = await self.withStore(lambda store: store.moderation("#Lobby"))
        self.assertEqual((info.owners, info.bans), (("alice", "Bob"), ()))

    async def test_ownerRefusals(self):
        """
        An unknown room or account is refused, naming it.
        """
        self.passwords.append(PASSWORD)
        await self.admin("create-user", "alice")
        await self.withStore(lambda store: store.createRoom("#Lobby", None))
        error = await self.assertFailure(self.admin("owner", "#nope", "alice"), AdminError)
        self.assertEqual(str(error), "no such room: #nope")
        error = await self.assertFailure(self.admin("owner", "#Lobby", "nobody"), AdminError)
        self.assertEqual(str(error), "no such account: nobody")


class InviteCommandTests(AdminTestCase):
    """
    invite makes tokens the store admits registrations with.
    """

    async def test_singleUse(self):
        """
        The token is printed alone; it admits one account.
        """
        answer = await self.admin("invite")
        token = answer.text
        self.assertEqual(token.split(), [token])
        self.assertEqual(answer.value, {"token": token, "uses": 1, "expires": None})

        async def register(store):
            await store.createAccount("alice", None, b"k", invite=token)
            return await store.createAccount("bob", None, b"k", invite=token)
        await self.assertFailure(self.withStore(register), Exception)

    async def test_usesAndExpiry(self):
        """
        --uses and --expires are kept, and shown in the JSON.
        """
        answer = await self.admin("invite", "--uses", "3", "--expires", "7")
        self.assertEqual(answer.value["uses"], 3)
        self.assertTrue(answer.value["expires"].startswith("20"))

    def test_badUses(self):
        """
        --uses 0 is refused while parsing.
        """
        from twisted.python.usage import UsageError
        self.assertRaises(UsageError, self.options, "invite", "--uses", "0")


class RotateKeyTests(AdminTestCase):
    """
    rotate-key re-seals every message with the newest key, resumably.
    """

    async def test_rotate(self):
        """
        After a new key goes on top of the key file, rotate-key re-seals every
        row with it (an interrupted run included), and the old key can go.
        """
        async def history(store):
            await store.createRoom("#r", None)
            for n in range(5):
                await store.appendMessage("#r", "alice", 1000 + n, "e%d" % n,
                                          b'{"n": %d}' % n, ["alice"])
            await store.appendDirect("alice", "bob", 2000, "d1", b"dm", ["bob"])
        await self.withStore(history)
        keyFile = os.path.join(self.dataDir, datadir.KEY_FILE)
        with open(keyFile, "rb") as f:
            oldKey = f.read().strip()
        newKey = generateKey()
        with open(keyFile, "wb") as out:
            out.write(newKey + b"\n" + oldKey + b"\n")
        keys = datadir.prepare(self.dataDir).keys
        # An interrupted run: one batch of one row.
        done = await self.withStore(lambda s: s.run(operations.resealBatch, keys, 0, 1))
        self.assertEqual(done[:2], (1, 0))
        answer = await self.admin("rotate-key")
        self.assertEqual(answer.value, {"resealed": 5, "skipped": 0, "key": keys.newestId})
        with open(keyFile, "wb") as out:
            out.write(newKey + b"\n")
        rows = await self.withStore(lambda s: s.history("#r", "alice", 10, 0))
        self.assertEqual([row.envelope for row in rows],
                         [b'{"n": %d}' % n for n in range(5)])
        rows = await self.withStore(lambda s: s.directHistory("alice", "bob", "bob", 10, 0))
        self.assertEqual([row.envelope for row in rows], [b"dm"])


class BackupTests(AdminTestCase):
    """
    backup copies the live database; restore puts a copy back.
    """

    async def test_backupAndRestore(self):
        """
        A backup is a private file holding what was there; restoring it undoes
        what came after.
        """
        self.passwords += [PASSWORD, PASSWORD]
        await self.admin("create-user", "alice")
        copy = os.path.join(self.mktemp() + "-backup.sqlite")
        await self.admin("backup", copy)
        self.assertEqual(stat.S_IMODE(os.stat(copy).st_mode), 0o600)
        await self.admin("create-user", "bob")
        error = await self.assertFailure(self.admin("backup", copy), AdminError)
        self.assertIn("cannot create", str(error))
        await self.admin("restore", copy)
        names = [u["name"] for u in (await self.admin("users")).value]
        self.assertEqual(names, ["alice"])

    async def test_backupWhileTheServerWrites(self):
        """
        A backup taken while the server's store commits messages fails
        neither: the copy and the commits wait for each other's locks, every
        message is stored, and the copy is a whole database holding those
        committed before it.
        """
        self.passwords.append(PASSWORD)
        await self.admin("create-user", "alice")
        copy = self.mktemp() + "-backup.sqlite"

        async def writeAround(store):
            await store.createRoom("#r", None)
            def append(n):
                return store.appendMessage("#r", "alice", n, "e%d" % (n,), b"%d" % (n,),
                                           ["alice"])
            appended = [append(n) for n in range(1, 21)]
            # The reactor's turn ends: the store's thread is committing them
            # while the copy is taken.
            await deferLater(reactor, 0)
            await self.admin("backup", copy)
            appended += [append(n) for n in range(21, 41)]
            await gatherResults(appended)
            return [row.envelope for row in await store.history("#r", "alice", 100, 0)]

        stored = await self.withStore(writeAround)
        self.assertEqual(sorted(stored), sorted(b"%d" % (n,) for n in range(1, 41)))
        check = sqlite3.connect(copy)
        self.addCleanup(check.close)
        self.assertEqual(check.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        self.assertLessEqual(check.execute("SELECT COUNT(*) FROM messages").fetchone()[0], 20)

    async def test_restoreRefusesOthers(self):
        """
        restore refuses a file that is not a chatd database, and a backup the
        key file cannot open, and leaves the database as it was.
        """
        self.passwords.append(PASSWORD)
        await self.admin("create-user", "alice")
        other = self.mktemp()
        sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
        error = await self.assertFailure(self.admin("restore", other), AdminError)
        self.assertIn("is not a chatd database", str(error))

        async def history(store):
            await store.createRoom("#r", None)
            await store.appendMessage("#r", "alice", 1, "e", b"{}", ["alice"])
        await self.withStore(history)
        copy = self.mktemp()
        await self.admin("backup", copy)
        with open(os.path.join(self.dataDir, datadir.KEY_FILE), "wb") as f:
            f.write(generateKey() + b"\n")
        error = await self.assertFailure(self.admin("restore", copy), AdminError)
        self.assertTrue(str(error).startswith("not restored: "), str(error))

    async def test_postgresql(self):
        """
        backup is for SQLite only, and says what to use instead.
        """
        self.options("--db", "postgresql://u:p@127.0.0.1:1/x", "backup", "f")
        error = await self.assertFailure(
            self.admin("--db", "postgresql://u:p@127.0.0.1:1/x", "backup", "f"), AdminError)
        self.assertIn("pg_dump", str(error))


class CommandLineTests(SynchronousTestCase):
    """
    The command line: settings, passwords, output.
    """

    def test_noCommand(self):
        """
        Without a command, the usage says to name one.
        """
        from twisted.python.usage import UsageError
        self.assertRaises(UsageError, admin.Options().parseOptions, [])

    def test_memory(self):
        """
        A memory: database is refused: it lives inside the server.
        """
        from twisted.python.usage import UsageError
        self.assertRaises(UsageError, admin.Options().parseOptions,
                          ["--db", "memory:", "users"])

    def test_passwordFromPipe(self):
        """
        Off a terminal, the password is the first line of standard input.
        """
        self.assertEqual(admin.readPassword("p: ", io.StringIO("secret pass\nmore\n")),
                         "secret pass")

    def test_passwordPrompted(self):
        """
        On a terminal, it is asked for twice through getpass; two different
        answers are refused.
        """
        class TTY(io.StringIO):
            def isatty(self):
                return True
        answers = ["one password", "one password"]
        self.assertEqual(admin.readPassword("p: ", TTY(), lambda p: answers.pop(0)),
                         "one password")
        answers = ["one password", "another"]
        self.assertRaises(AdminError, admin.readPassword, "p: ", TTY(),
                          lambda p: answers.pop(0))

    def test_version(self):
        """
        --version prints chatd's version.
        """
        import chatd
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertRaises(SystemExit, admin.Options().parseOptions, ["--version"])
        self.assertEqual(out.getvalue(), "chatd %s\n" % (chatd.__version__,))
