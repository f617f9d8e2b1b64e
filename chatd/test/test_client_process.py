"""
End-to-end: the real C{twistd chatd} and two real C{python -m chatd.client}
processes driven by scripts, for what only real processes show: the command
line, standard input and output, key files on disk, and the whole path from
one person's typing to the other's screen.
"""

import os

from chatd.test.processes import ScriptedClientTestCase, waitFor

ALICE = """\
/register alice
/join lobby
/expect "bob joined" 30
hello bob, this is alice
/expect "<bob> hi alice" 30
/pm bob a secret for bob
/expect "*dm* <bob> got it" 30
/history
"""

BOB = """\
/register bob
/join lobby
/expect "<alice> hello bob" 30
hi alice
/expect "*dm* <alice> a secret for bob" 30
/pm alice got it
/users lobby
"""


class ClientProcessTests(ScriptedClientTestCase):
    """
    Two scripted clients talk through a real server.
    """

    timeout = 120

    async def test_twoClientsTalk(self):
        """
        Alice and bob register, meet in a room, exchange room messages and
        direct messages, each waiting (C{/expect}) for the other's words; both
        exit 0 having printed the conversation, decrypted, with times, rooms
        and senders.
        """
        server = await self.startServer()

        alice = self.client(server.port, "alice", ALICE)
        await waitFor(lambda: b"joined #lobby" in alice.output, 60, "alice to join", alice)
        bob = self.client(server.port, "bob", BOB)
        await waitFor(lambda: alice.ended.called and bob.ended.called, 90,
                      "both clients to end", alice)

        self.assertCleanExits({"alice": alice, "bob": bob})
        aliceSaw, bobSaw = alice.output.decode(), bob.output.decode()
        for line in ["registered and logged in as alice",
                     "joined #lobby: 1 member (alice)",
                     "-- first contact with bob: key",
                     "#lobby * bob joined (key",
                     "#lobby <alice> hello bob, this is alice",
                     "#lobby <bob> hi alice",
                     "*dm to bob* <alice> a secret for bob",
                     "*dm* <bob> got it",
                     "history of #lobby: 2 messages"]:
            self.assertIn(line, aliceSaw)
        for line in ["registered and logged in as bob",
                     "joined #lobby: 2 members (alice, bob)",
                     "#lobby <alice> hello bob, this is alice",
                     "*dm* <alice> a secret for bob",
                     "*dm to alice* <bob> got it"]:
            self.assertIn(line, bobSaw)
        self.assertRegex(aliceSaw, r"\[\d\d:\d\d:\d\d\] #lobby <bob> hi alice\n")
        self.assertTrue(os.path.exists(os.path.join(self.workdir, "alice", "keys", "alice.pem")))

        await server.signal("TERM")
        self.assertNotIn(b"Traceback", server.output)
