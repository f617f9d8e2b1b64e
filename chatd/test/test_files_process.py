"""
End-to-end file transfer: the real C{twistd chatd} and three real
C{python -m chatd.client} processes driven by scripts. What only real
processes show: the file read from one disk, relayed through a real server
over loopback, and written to two other download folders, with threads doing
the disk and cipher work.
"""

import os

from chatd.test.processes import ScriptedClientTestCase, waitFor

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


class FileProcessTests(ScriptedClientTestCase):
    """
    Alice sends a file to a room of three.
    """

    timeout = 300

    def client(self, port, name, script):
        """
        A client that saves what it receives in C{name-downloads} in the work
        directory, where the test looks for it.
        """
        return ScriptedClientTestCase.client(
            self, port, name, script,
            "--downloads", os.path.join(self.workdir, name + "-downloads"))

    async def test_fileToARoom(self):
        """
        Alice offers a 5 MiB file of random bytes to #lobby; bob and carol
        accept it, and each ends up with exactly those bytes in their download
        folder; alice is told it was delivered to both, with progress lines on
        the way; every process exits 0 with nothing on standard error.
        """
        original = os.urandom(SIZE)
        source = os.path.join(self.workdir, "holiday photos.zip")
        with open(source, "wb") as f:
            f.write(original)
        server = await self.startServer()

        # One at a time into the room, so that alice sees bob join before
        # carol, as her script expects.
        alice = self.client(server.port, "alice", ALICE.format(path=source))
        await waitFor(lambda: b"joined #lobby" in alice.output, 60, "alice to join", alice)
        bob = self.client(server.port, "bob", RECIPIENT.format(name="bob"))
        await waitFor(lambda: b"joined #lobby" in bob.output, 60, "bob to join", bob)
        carol = self.client(server.port, "carol", RECIPIENT.format(name="carol"))
        children = {"alice": alice, "bob": bob, "carol": carol}
        await waitFor(lambda: all(child.ended.called for child in children.values()), 180,
                      "every client to end", alice)

        self.assertCleanExits(children)
        aliceSaw = alice.output.decode()
        self.assertIn('offered file #1 "holiday photos.zip" to #lobby (5.0 MiB in 80 chunks); '
                      'waiting for answers', aliceSaw)
        self.assertIn('file #1 "holiday photos.zip" to #lobby: 2 recipients accepted; '
                      'sending 5.0 MiB', aliceSaw)
        self.assertIn('sending #1 "holiday photos.zip": 50%', aliceSaw)
        self.assertIn('file #1 "holiday photos.zip" to #lobby delivered; 2 recipients '
                      'accepted it', aliceSaw)
        for name in ("bob", "carol"):
            folder = os.path.join(self.workdir, name + "-downloads")
            saw = children[name].output.decode()
            self.assertIn('file offer #1 from alice in #lobby: "holiday photos.zip" (5.0 MiB)',
                          saw)
            self.assertIn('saved file #1 "holiday photos.zip" from alice (5.0 MiB, SHA-256 '
                          'checked) as %s' % (os.path.join(folder, "holiday photos.zip"),), saw)
            self.assertEqual(os.listdir(folder), ["holiday photos.zip"])
            with open(os.path.join(folder, "holiday photos.zip"), "rb") as f:
                self.assertTrue(f.read() == original, "%s's copy differs" % (name,))

        await server.signal("TERM")
        self.assertNotIn(b"Traceback", server.output)
