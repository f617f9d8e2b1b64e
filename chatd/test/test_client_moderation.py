"""
Tests for L{chatd.client.moderation}: the terminal client's moderation
commands, against a real core over its binary door in memory. What the client
shows of the moderation events is L{chatd.client.chat}'s (its own tests).
"""

from twisted.internet.defer import Deferred

from chatd.client import moderation
from chatd.client.connection import ServerError
from chatd.client.console import HELP, Console
from chatd.client.errors import ClientError
from chatd.protocols.opcodes import Op
from chatd.test.test_client import ClientTestCase


class Shown:
    """
    The part of a L{Console} the moderation commands use: the client, and
    what is shown.
    """

    def __init__(self, client):
        self.client = client
        self.lines = []

    def show(self, text):
        self.lines.append(text)


class ModerationCommandTests(ClientTestCase):
    """
    alice owns C{lobby}; bob is in it.
    """

    def setUp(self):
        ClientTestCase.setUp(self)
        self.alice, self.aliceUI = self.account("alice", "lobby")
        self.bob, self.bobUI = self.account("bob", "lobby")
        self.aliceUI.take()
        self.console = Shown(self.alice)

    def command(self, name, rest):
        """
        Run one of alice's moderation commands, and give what it showed.
        """
        d = Deferred.fromCoroutine(moderation.COMMANDS[name](self.console, rest))
        self.flush()
        self.successResultOf(d)
        lines, self.console.lines = self.console.lines, []
        return lines

    def info(self, room="lobby"):
        return self.do(self.alice.call(Op.ROOM_INFO, room))

    def test_wired(self):
        """
        The console runs the moderation commands and lists them in /help.
        """
        for name in moderation.COMMANDS:
            self.assertIs(Console._commands[name], moderation.COMMANDS[name])
        self.assertIn(("/kick NAME [ROOM] [REASON]", moderation.HELP[0][1]), HELP)

    def test_kick(self):
        """
        /kick takes bob out of the room alice talks in: bob's client forgets
        the room, and alice's sees him gone.
        """
        self.assertEqual(self.command("kick", "bob calm down"), ["kicked bob out of lobby"])
        self.assertNotIn("lobby", self.bob.rooms)
        self.assertNotIn("bob", self.alice.room("lobby").members)

    def test_banAndUnban(self):
        """
        /ban keeps bob out until /unban; ROOM may follow the name.
        """
        self.command("ban", "bob lobby spam")
        self.assertNotIn("lobby", self.bob.rooms)
        error = self.runFails(self.bob.join("lobby"), ServerError)
        self.assertEqual(error.status, 0x05)
        self.assertEqual(self.command("unban", "bob"), ["bob may come into lobby again"])
        self.do(self.bob.join("lobby"))

    def test_topic(self):
        """
        /topic sets the topic of the room alice talks in, or of the room it
        names first; the room's name alone removes it.
        """
        self.assertEqual(self.command("topic", "be nice to each other"),
                         ["topic of lobby set"])
        self.assertEqual(self.info()[0], "be nice to each other")
        self.command("topic", "lobby")
        self.assertEqual(self.info()[0], "")

    def test_rolesAndInfo(self):
        """
        /op and /deop give and take bob's role, and bob is told; /info lists
        the room's moderation, bans included for its owner.
        """
        self.command("op", "bob")
        self.assertEqual(self.info()[2], ["bob"])
        self.command("ban", "eve")
        self.assertEqual(self.command("info", ""),
                         ["lobby: no topic", "  owners: alice", "  operators: bob",
                          "  banned: eve"])
        self.command("deop", "bob lobby")
        self.assertEqual(self.info()[2], [])

    def test_passwordAndDestroy(self):
        """
        /password sets the room's password; /destroy deletes the room, and
        its members forget it.
        """
        self.assertEqual(self.command("password", "lobby sesame"), ["password of lobby set"])
        carol, _ = self.account("carol")
        self.assertEqual(self.runFails(carol.join("lobby"), ServerError).status, 0x05)
        self.assertEqual(self.command("destroy", "lobby"), ["destroyed lobby"])
        self.assertEqual((self.alice.rooms, self.bob.rooms), ({}, {}))

    def test_usage(self):
        """
        A command without its name, or naming no room while talking in
        none, is refused with its usage.
        """
        for name, rest in [("kick", ""), ("destroy", ""), ("password", "a b c")]:
            d = Deferred.fromCoroutine(moderation.COMMANDS[name](self.console, rest))
            self.assertIn("usage: /", str(self.failureResultOf(d, ClientError).value))
