"""
End-to-end file transfer: the real C{twistd chatd} and three real
C{python -m chatd.client} processes driven by scripts. What only real
processes show: the file read from one disk, relayed through a real server
over loopback, and written to two other download folders, with threads doing
the disk and cipher work.
"""

import os

from twisted.trial.unittest import TestCase

import chatd
from chatd.test import test_client_process
from chatd.test.test_process import freePort

SIZE = 5 * 1024 * 1024

ALICE = """\
/register alice
/join lobby
/expect "bob joined" 60
/expect "carol joined" 60
/file #lobby {path}
/expect "delivered" 120
"""

RECIPIENT = """\
/register {name}
/join lobby
/expect "file offer #1 from alice in #lobby" 60
/accept 1
/expect "saved file #1" 120
"""


class FileProcessTests(TestCase):
    """
    Alice sends a file to a room of three.
    """

    timeout = 300

    spawn = test_client_process.ClientProcessTests.spawn
    listening = test_client_process.ClientProcessTests.listening
    until = test_client_process.ClientProcessTests.until
    stop = test_client_process.ClientProcessTests.stop

    def client(self, workdir, port, name, script):
        path = os.path.join(workdir, name + ".script")
        with open(path, "w") as f:
            f.write(script)
        child = self.spawn(workdir, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                           "--port", str(port), "--home", os.path.join(workdir, name),
                           "--downloads", os.path.join(workdir, name + "-downloads"),
                           "--script", path)
        child.process.closeStdin()
        return child

    async def test_fileToARoom(self):
        """
        Alice offers a 5 MiB file of random bytes to #lobby; bob and carol
        accept it, and each ends up with exactly those bytes in their download
        folder; alice is told it was delivered to both, with progress lines on
        the way; every process exits 0 with nothing on standard error.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        original = os.urandom(SIZE)
        source = os.path.join(workdir, "holiday photos.zip")
        with open(source, "wb") as f:
            f.write(original)
        port = freePort()
        self.env = dict(os.environ, PYTHONPATH=os.path.dirname(
            os.path.dirname(os.path.abspath(chatd.__file__))))
        self.env.pop("CHATD_PASSPHRASE", None)
        server = self.spawn(
            workdir, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile=-", "chatd", "--data-dir", os.path.join(workdir, "data"),
            "--binary", "tcp:%d:interface=127.0.0.1" % (port,), "--text", "none", "--web", "none",
            "--bcrypt-cost", "4")
        await self.listening(port, server)

        # One at a time into the room, so that alice sees bob join before
        # carol, as her script expects.
        alice = self.client(workdir, port, "alice", ALICE.format(path=source))
        await self.until(lambda: b"joined #lobby" in alice.output, alice, 60)
        bob = self.client(workdir, port, "bob", RECIPIENT.format(name="bob"))
        await self.until(lambda: b"joined #lobby" in bob.output, bob, 60)
        carol = self.client(workdir, port, "carol", RECIPIENT.format(name="carol"))
        children = {"alice": alice, "bob": bob, "carol": carol}
        await self.until(lambda: all(child.ended.called for child in children.values()),
                         alice, 180)

        for name, child in children.items():
            with open(os.path.join(workdir, name + ".out"), "wb") as f:
                f.write(child.output)
            self.assertEqual((child.status, child.errors), (0, b""),
                             "%s:\n%s" % (name, child.output.decode()))
        aliceSaw = alice.output.decode()
        self.assertIn('offered file #1 "holiday photos.zip" to #lobby (5.0 MiB in 80 chunks); '
                      'waiting for answers', aliceSaw)
        self.assertIn('file #1 "holiday photos.zip" to #lobby: 2 recipients accepted; '
                      'sending 5.0 MiB', aliceSaw)
        self.assertIn('sending #1 "holiday photos.zip": 50%', aliceSaw)
        self.assertIn('file #1 "holiday photos.zip" to #lobby delivered; 2 recipients '
                      'accepted it', aliceSaw)
        for name in ("bob", "carol"):
            folder = os.path.join(workdir, name + "-downloads")
            saw = children[name].output.decode()
            self.assertIn('file offer #1 from alice in #lobby: "holiday photos.zip" (5.0 MiB)',
                          saw)
            self.assertIn('saved file #1 "holiday photos.zip" from alice (5.0 MiB, SHA-256 '
                          'checked) as %s' % (os.path.join(folder, "holiday photos.zip"),), saw)
            self.assertEqual(os.listdir(folder), ["holiday photos.zip"])
            with open(os.path.join(folder, "holiday photos.zip"), "rb") as f:
                self.assertTrue(f.read() == original, "%s's copy differs" % (name,))

        await self.stop(server)
        self.assertNotIn(b"Traceback", server.output)
