"""
Tests for L{chatd.client.console}: the terminal side of the client, over a
L{StringTransport} standing in for standard input and output, driving a fake
client that records every call.
"""

import time

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from chatd.client.chat import ClientError, Room
from chatd.client.connection import ServerError
from chatd.client.console import (
    HELP,
    SCRIPT_HELP,
    Console,
    parseExpect,
    progressBar,
    rateAndTimeLeft,
)
from chatd.client.files import Incoming, Outgoing
from chatd.client.ui import IClientUI
from chatd.names import fold

# 2023-11-14 22:13:20 UTC; the console is given gmtime, so times read alike
# everywhere.
T0 = 1_700_000_000
NOW = "[22:13:20]"
FP_ALICE = " ".join(["a11c"] * 16)
FP_BOB = " ".join(["b0b0"] * 16)
FP_NEW = " ".join(["ffff"] * 16)


class FakeClient:
    """
    Stands in for L{chatd.client.chat.ChatClient}: records C{(method, args)}
    in C{calls} and answers from C{answers} (a value, a L{Deferred} to wait
    on, or an exception to raise), else with a plausible default.
    """

    def __init__(self, ui):
        self.ui = ui
        self.calls = []
        self.answers = {}
        self.user = "alice"
        self.active = None
        self.rooms = {}
        self.guests = set()
        self.stopped = False
        self.connected = True
        self.connection: Deferred = Deferred()

    def whenConnected(self):
        return succeed(None) if self.connected else self.connection

    def _answer(self, name, *args, default=None, synchronous=False):
        """
        Record a call; answer as the real method would: directly for the
        synchronous ones, else with a L{Deferred}.
        """
        self.calls.append((name,) + args)
        answer = self.answers.pop(name, default)
        if synchronous:
            if isinstance(answer, Exception):
                raise answer
            return answer
        if isinstance(answer, Exception):
            return fail(answer)
        return answer if isinstance(answer, Deferred) else succeed(answer)

    def register(self, user, password, invite=None):
        if invite is None:
            return self._answer("register", user, password)
        return self._answer("register", user, password, invite)

    def login(self, user, password):
        return self._answer("login", user, password)

    def auth(self, user):
        return self._answer("auth", user)

    def nick(self, name):
        return self._answer("nick", name, default=name)

    def create(self, room, password):
        return self._answer("create", room, password)

    def join(self, name, password):
        room = Room(name)
        room.members = {"alice": b"", "bob": b""}
        result = self._answer("join", name, password, default=room)
        self.active = name
        return result

    def leave(self, name):
        return self._answer("leave", name, default=name or self.active)

    def switch(self, name):
        self.active = name
        return self._answer("switch", name, default=name, synchronous=True)

    def listRooms(self):
        return self._answer("listRooms", default=["#b", "a"])

    def listUsers(self, room):
        return self._answer("listUsers", room, default=["alice", "bob"])

    def send(self, text):
        return self._answer("send", text, default=(T0 * 1000, self.active or "lobby"))

    def pm(self, user, text):
        return self._answer("pm", user, text, default=(T0 * 1000, user.lower()))

    def history(self, room, limit):
        return self._answer("history", room, limit, default=("lobby", []))

    def keysOf(self, kind, name):
        return self._answer("keysOf", kind, name, default=[])

    def fingerprint(self, user=None):
        return self._answer("fingerprint", user, default=FP_ALICE, synchronous=True)

    def verify(self, user, fingerprint):
        return self._answer("verify", user, fingerprint, default=FP_BOB)

    def isGuest(self, name):
        return fold(name) in self.guests

    def trust(self, user, lastFour):
        return self._answer("trust", user, lastFour, default=FP_NEW)

    def reject(self, user):
        return self._answer("reject", user, default=FP_NEW, synchronous=True)

    def sendFile(self, kind, name, path):
        out = Outgoing(1, path, (kind, name.lstrip("#")), 1000)
        out.size, out.chunks = 5 << 20, 5243
        return self._answer("sendFile", kind, name, path, default=out)

    def acceptFile(self, number=None, folder=None):
        incoming = offer(number or 2)
        incoming.folder = folder or "/home/alice/Downloads/chatd"
        return self._answer("acceptFile", number, folder, default=incoming)

    def declineFile(self, number=None):
        return self._answer("declineFile", number, default=offer(number or 2))

    def cancelFile(self, number):
        return self._answer("cancelFile", number, default=offer(number))

    def fileTransfers(self):
        return self._answer("fileTransfers", default=[], synchronous=True)

    def stop(self):
        self.stopped = True
        return succeed(None)


def offer(number, name="report.pdf"):
    """
    An offer from bob in #lobby of 1.5 MiB, as the client would hold it.
    """
    return Incoming(number, None, 77, "bob", "lobby", name, 3 << 19, 2, 1 << 20, "0" * 64,
                    bytes(32), "id")


class ConsoleTestCase(SynchronousTestCase):
    """
    A console on a fake transport and a clock at L{T0}.
    """

    def console(self, interactive=False, script=None, startup=()):
        self.clock = Clock()
        self.clock.advance(T0)
        self.echo: list = []
        console = Console(FakeClient, self.clock, interactive=interactive, script=script,
                          startup=startup, localtime=time.gmtime, setEcho=self.echo.append)
        self.transport = StringTransport()
        console.makeConnection(self.transport)
        return console

    def type(self, console, *lines):
        for line in lines:
            console.dataReceived(line.encode("utf-8") + b"\n")

    def output(self):
        """
        The lines written since the last call.
        """
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data.splitlines()


class CommandTests(ConsoleTestCase):
    """
    Lines become client calls, and their results readable lines.
    """

    def test_interface(self):
        """
        The console provides L{IClientUI}.
        """
        verifyObject(IClientUI, self.console())

    def test_plainTextSends(self):
        """
        A line not starting with C{/} is sent to the active room and shown with
        the server's time, the room and the sender.
        """
        console = self.console()
        self.type(console, "hello  there", "/send /not a command")
        self.assertEqual(console.client.calls,
                         [("send", "hello  there"), ("send", "/not a command")])
        self.assertEqual(self.output(), ["%s #lobby <alice> hello  there" % (NOW,),
                                         "%s #lobby <alice> /not a command" % (NOW,)])

    def test_registerWithInvite(self):
        """
        /register takes the invite token as a word starting with C{invite:},
        with or without a password, and refuses two of either.
        """
        console = self.console()
        self.type(console, "/register alice invite:TOK", "/register bob pw-12345 invite:T2",
                  "/register carol invite:A invite:B")
        registered = [call for call in console.client.calls if call[0] == "register"]
        self.assertEqual(registered, [("register", "alice", "", "TOK"),
                                      ("register", "bob", "pw-12345", "T2")])

    def test_commands(self):
        """
        Every command calls the client with its arguments and shows one line.
        """
        console = self.console()
        console.client.answers["history"] = ("lobby", [("bob", T0 * 1000 - 60000, "earlier", None),
                                                       ("eve", T0 * 1000, None, "bad signature")])
        console.client.answers["keysOf"] = [("alice", FP_ALICE, "self"), ("bob", FP_BOB, "tofu")]
        self.type(console, "/register alice")
        console.client.answers["fingerprint"] = FP_BOB
        self.type(console,
                  "/login alice s3cret!!",
                  "/auth alice",
                  "/nick ally",
                  "/create quiet pw",
                  "/join lobby",
                  "/switch lobby",
                  "/rooms",
                  "/users",
                  "/users lobby",
                  "/pm Bob psst  there",
                  "/history lobby 20",
                  "/keys room lobby",
                  "/fingerprint bob",
                  "/verify bob %s" % (FP_BOB,),
                  "/trust bob FfFf",
                  "/reject bob",
                  "/leave")
        self.assertEqual(console.client.calls, [
            ("register", "alice", ""),
            ("fingerprint", None),
            ("login", "alice", "s3cret!!"),
            ("auth", "alice"),
            ("nick", "ally"),
            ("create", "quiet", "pw"),
            ("join", "lobby", ""),
            ("switch", "lobby"),
            ("listRooms",),
            ("listUsers", ""),
            ("listUsers", "lobby"),
            ("pm", "Bob", "psst  there"),
            ("history", "lobby", 20),
            ("keysOf", "room", "lobby"),
            ("fingerprint", "bob"),
            ("verify", "bob", FP_BOB),
            ("trust", "bob", "FfFf"),
            ("reject", "bob"),
            ("leave", None),
        ])
        self.assertEqual(self.output(), [
            "registered and logged in as alice; your key's fingerprint is %s" % (FP_ALICE,),
            "logged in as alice",
            "logged in as alice with this device's key",
            "you are now known as ally",
            "created #quiet (/join quiet to talk there)",
            "joined #lobby: 2 members (alice, bob)",
            "now talking in #lobby",
            "rooms: #b, #a",
            "online: alice, bob",
            "in #lobby: alice, bob",
            "%s *dm to bob* <alice> psst  there" % (NOW,),
            "[22:12:20] #lobby <bob> earlier",
            "%s #lobby <eve> (cannot be shown: bad signature)" % (NOW,),
            "history of #lobby: 2 messages",
            "keys of #lobby (2):",
            "  alice        %s  [self]" % (FP_ALICE,),
            "  bob          %s  [tofu]" % (FP_BOB,),
            "fingerprint of bob: %s" % (FP_BOB,),
            "bob's key is verified: %s" % (FP_BOB,),
            "accepted bob's new key %s" % (FP_NEW,),
            "rejected bob's new key %s: nothing is sent to bob, and what bob sends is dropped, "
            "until the key changes again" % (FP_NEW,),
            "left #lobby",
        ])

    def test_historyArguments(self):
        """
        C{/history N} takes a number as a count, unless we are in a room of
        that name.
        """
        console = self.console()
        console.client.rooms = {"123": object()}
        self.type(console, "/history", "/history 5", "/history 123", "/history lobby")
        self.assertEqual([call[1:] for call in console.client.calls],
                         [(None, 0), (None, 5), ("123", 0), ("lobby", 0)])

    def test_usage(self):
        """
        A command with the wrong arguments shows its usage and calls nothing.
        """
        console = self.console()
        self.type(console, "/join", "/pm bob", "/keys group x", "/history a 1 2",
                  "/wait soon", "/verify bob", "/history a many", "/send   ")
        self.assertEqual(console.client.calls, [])
        self.assertEqual(self.output(), [
            "usage: /join ROOM [PASSWORD]",
            "usage: /pm USER TEXT",
            "usage: /keys room|user NAME",
            "usage: /history [ROOM|@USER] [N]",
            "usage: /wait SECONDS",
            "usage: /verify USER FINGERPRINT",
            "usage: /history [ROOM|@USER] [N]: N is a number",
            "usage: /send TEXT",
        ])

    def test_unknownCommandAndBlankLines(self):
        """
        An unknown command says so and points to /help; blank lines do nothing.
        """
        console = self.console()
        self.type(console, "", "   ", "/frobnicate now")
        self.assertEqual(self.output(),
                         ["error: unknown command /frobnicate; /help lists the commands"])

    def test_errorsThenGoOn(self):
        """
        A refused command shows the reason on one line, and the next line runs.
        """
        console = self.console()
        console.client.answers["join"] = ServerError(7, "already in lobby")
        console.client.answers["send"] = ClientError("no active room: /join or /switch to one")
        self.type(console, "/join lobby", "hi", "/rooms")
        self.assertEqual(self.output(), ["error: already in lobby",
                                         "error: no active room: /join or /switch to one",
                                         "rooms: #b, #a"])

    def test_linesWaitTheirTurn(self):
        """
        A line is not looked at until the command before it has finished.
        """
        console = self.console()
        joining: Deferred = Deferred()
        console.client.answers["join"] = joining
        self.type(console, "/join lobby", "first words", "/rooms")
        self.assertEqual(console.client.calls, [("join", "lobby", "")])
        room = Room("lobby")
        room.members = {"alice": b""}
        joining.callback(room)
        self.assertEqual(console.client.calls, [("join", "lobby", ""), ("send", "first words"),
                                                ("listRooms",)])
        self.assertEqual(self.output(), ["joined #lobby: 1 member (alice)",
                                         "%s #lobby <alice> first words" % (NOW,),
                                         "rooms: #b, #a"])

    def test_help(self):
        """
        /help lists every command, the script commands only where scripts run.
        """
        console = self.console()
        self.type(console, "/help")
        lines = self.output()
        self.assertEqual(lines[0], "commands:")
        self.assertEqual([line.split()[0] for line in lines[1:]],
                         [usage.split()[0] for usage, _ in HELP + SCRIPT_HELP])
        console = self.console(interactive=True)
        self.type(console, "/help")
        self.assertNotIn("/expect", self.transport.value().decode())

    def test_exit(self):
        """
        /exit stops the client, closes the output and exits 0; later lines are
        not run.
        """
        console = self.console()
        self.type(console, "/exit", "/rooms")
        self.assertEqual(console.client.calls, [])
        self.assertTrue(console.client.stopped)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(console.exitCode, 0)
        console.connectionLost(None)
        self.assertEqual(self.successResultOf(console.done), 0)


class EventTests(ConsoleTestCase):
    """
    What the client is told, as lines with time, room and sender.
    """

    def test_eventLines(self):
        """
        Messages, direct messages (ours from another session too), joins,
        leaves, renames, notices and drops each make one stamped line.
        """
        console = self.console()
        console.messageReceived("general", "bob", T0 * 1000 + 7000, "hi")
        console.messageReceived("#dev", "bob", T0 * 1000, "yo")
        console.directMessageReceived("bob", "bob", T0 * 1000 + 9000, "psst")
        console.directMessageReceived("alice", "bob", T0 * 1000, "copy")
        console.memberJoined("general", "carol", FP_BOB)
        console.memberLeft("general", "carol")
        console.renamed("rand3", "dave")
        console.notice("first contact with bob")
        console.dropped("dropped a message from eve in room lobby: replayed")
        self.assertEqual(self.output(), [
            "[22:13:27] #general <bob> hi",
            "%s #dev <bob> yo" % (NOW,),
            "[22:13:29] *dm* <bob> psst",
            "%s *dm to bob* <alice> copy" % (NOW,),
            "%s #general * carol joined (key b0b0 b0b0 b0b0 b0b0)" % (NOW,),
            "%s #general * carol left" % (NOW,),
            "%s * rand3 is now known as dave" % (NOW,),
            "%s -- first contact with bob" % (NOW,),
            "%s !! dropped a message from eve in room lobby: replayed" % (NOW,),
        ])

    def test_keyChangedIsLoud(self):
        """
        A key change is several marked lines with both whole fingerprints side
        by side, four groups a row, and the commands that end it: accepting
        asks for the new fingerprint's last 4 characters, which the warning
        does not spell out on its own.
        """
        console = self.console()
        old = " ".join("%04x" % (i,) for i in range(16))
        new = " ".join("%04x" % (0xff00 + i,) for i in range(16))
        console.keyChanged("bob", old, new)
        lines = self.output()
        for line in lines:
            self.assertTrue(line.startswith(NOW + " !!! "), line)
        self.assertEqual(lines[:6], [NOW + " !!! " + line for line in [
            "WARNING: THE KEY OF bob HAS CHANGED !!!",
            "  pinned key (old)        new key",
            "  0000 0001 0002 0003     ff00 ff01 ff02 ff03",
            "  0004 0005 0006 0007     ff04 ff05 ff06 ff07",
            "  0008 0009 000a 000b     ff08 ff09 ff0a ff0b",
            "  000c 000d 000e 000f     ff0c ff0d ff0e ff0f",
        ]])
        text = "\n".join(lines)
        self.assertIn("compare it with the new key", text)
        self.assertIn("/trust bob LAST4", text)
        self.assertIn("/verify bob FINGERPRINT", text)
        self.assertIn("/reject bob", text)
        self.assertNotIn("/trust bob ff0f", text)

    def test_heldShown(self):
        """
        A held message is a notice line: nothing was dropped.
        """
        console = self.console()
        console.held("held a message from bob in room lobby until you accept or reject "
                     "bob's new key")
        self.assertEqual(self.output(), [
            "%s -- held a message from bob in room lobby until you accept or reject bob's new "
            "key" % (NOW,)])

    def test_hostileTextCleaned(self):
        """
        Control characters from others cannot reach the terminal, and a newline
        cannot start a line that looks like another message.
        """
        console = self.console()
        console.messageReceived("general", "bob", T0 * 1000,
                                "clear\x1b[2J\rme\nfake [22:13:20] #general <carol> hi\u202e")
        self.assertEqual(self.output(), [
            "%s #general <bob> clear\ufffd[2J\ufffdme" % (NOW,),
            "    fake [22:13:20] #general <carol> hi\ufffd",
        ])

    def test_fatal(self):
        """
        A fatal error is shown as marked lines and the client exits 1.
        """
        console = self.console()
        console.fatal("THE CERTIFICATE CHANGED\npinned: aa\npresented: bb")
        self.assertEqual(self.output(), ["%s !!! THE CERTIFICATE CHANGED" % (NOW,),
                                         "%s !!! pinned: aa" % (NOW,),
                                         "%s !!! presented: bb" % (NOW,)])
        self.assertEqual(console.exitCode, 1)
        self.assertTrue(console.client.stopped)
        self.assertTrue(self.transport.disconnecting)


class TerminalTests(ConsoleTestCase):
    """
    The prompt, and secrets typed without echo.
    """

    def test_promptShowsActiveRoom(self):
        """
        On a terminal the prompt names the active room and is drawn again
        after every line; piped, there is no prompt.
        """
        console = self.console(interactive=True)
        self.assertEqual(self.transport.value(), b"> ")
        self.transport.clear()
        self.type(console, "/join lobby")
        self.assertEqual(self.transport.value(),
                         b"\r\x1b[Kjoined #lobby: 2 members (alice, bob)\n#lobby> ")
        console = self.console()
        self.type(console, "/join lobby")
        self.assertEqual(self.transport.value(), b"joined #lobby: 2 members (alice, bob)\n")

    def test_passwordAskedWithoutEcho(self):
        """
        /login without a password asks for it with echo off; the next line is
        the password, never run as a command nor shown.
        """
        console = self.console(interactive=True)
        self.transport.clear()
        self.type(console, "/login alice")
        self.assertEqual(self.transport.value(), b"\r\x1b[Kpassword of alice: ")
        self.assertEqual(self.echo, [False])
        self.type(console, "/exit secret")
        self.assertEqual(self.echo, [False, True])
        self.assertEqual(console.client.calls, [("login", "alice", "/exit secret")])
        self.assertNotIn(b"secret", self.transport.value())
        self.assertIsNone(console.exitCode)

    def test_noPasswordInScripts(self):
        """
        Piped or scripted, a missing password is an error, not a prompt.
        """
        console = self.console()
        self.type(console, "/login alice")
        self.assertEqual(console.client.calls, [])
        self.assertEqual(self.output(), ["error: a password is needed: /login USER PASSWORD "
                                         "(nothing can be asked for without a terminal)"])

    def test_askSecret(self):
        """
        Without a terminal an optional secret is empty and a required one fails.
        """
        console = self.console()
        self.assertEqual(self.successResultOf(console.askSecret("passphrase: ", optional=True)), "")
        self.failureResultOf(console.askSecret("passphrase: "), ClientError)

    def test_scriptCommandsNeedAScript(self):
        """
        /wait and /expect are refused at the terminal.
        """
        console = self.console(interactive=True)
        self.transport.clear()
        self.type(console, "/wait 1")
        self.assertIn(b"error: /wait is for scripts and piped input", self.transport.value())


class ScriptTests(ConsoleTestCase):
    """
    Scripts and piped input: /wait, /expect, and exiting at the end.
    """

    def test_scriptRunsThenExits(self):
        """
        A script's lines run after the startup lines, and the client exits 0
        once the last command has finished; standard input is ignored.
        """
        listing: Deferred = Deferred()
        console = Console(FakeClient, Clock(), script=["/rooms", "/users"],
                          startup=["/auth alice"], localtime=time.gmtime)
        console.client.answers["listUsers"] = listing
        transport = StringTransport()
        console.makeConnection(transport)
        console.dataReceived(b"/nick typed\n")
        self.assertEqual(console.client.calls,
                         [("auth", "alice"), ("listRooms",), ("listUsers", "")])
        self.assertIsNone(console.exitCode)
        listing.callback(["alice"])
        self.assertEqual(console.exitCode, 0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(console.client.stopped)

    def test_endOfPipedInput(self):
        """
        Piped input runs to its end; the client then exits 0.
        """
        console = self.console()
        self.type(console, "/rooms")
        console.readConnectionLost()
        self.assertEqual(console.exitCode, 0)

    def test_wait(self):
        """
        /wait holds the next line for that many seconds.
        """
        console = self.console()
        self.type(console, "/wait 2.5", "/rooms")
        self.clock.advance(2)
        self.assertEqual(console.client.calls, [])
        self.clock.advance(0.5)
        self.assertEqual(console.client.calls, [("listRooms",)])

    def test_expectSeenEarlier(self):
        """
        /expect is satisfied by a line shown since the last /expect, even one
        shown before the /expect line was read; each line satisfies one.
        """
        console = self.console()
        console.messageReceived("lobby", "bob", T0 * 1000, "hello alice")
        self.type(console, "/expect <bob> hello", "/rooms", "/expect <bob> hello 1", "/users")
        self.assertEqual(console.client.calls, [("listRooms",)])
        self.clock.advance(1)
        self.assertEqual(console.exitCode, 1)
        self.assertEqual(console.client.calls, [("listRooms",)])

    def test_expectWaits(self):
        """
        /expect waits for a line containing the text, then the script goes on.
        """
        console = self.console()
        self.type(console, "/expect <bob> see you 5", "/rooms")
        self.clock.advance(4)
        console.messageReceived("lobby", "bob", T0 * 1000, "not yet")
        self.assertEqual(console.client.calls, [])
        console.messageReceived("lobby", "bob", T0 * 1000, "see you later")
        self.assertEqual(console.client.calls, [("listRooms",)])
        self.clock.advance(10)
        self.assertIsNone(console.exitCode)

    def test_expectTimesOut(self):
        """
        An /expect that is not met in time fails the script: a message, exit
        status 1, and nothing after it runs.
        """
        console = self.console()
        self.type(console, "/expect never", "/rooms")
        self.clock.advance(9.9)
        self.assertIsNone(console.exitCode)
        self.clock.advance(0.1)
        self.assertEqual(self.output(),
                         ["expect failed: nothing containing 'never' was shown within 10 s"])
        self.assertEqual(console.exitCode, 1)
        self.assertEqual(console.client.calls, [])
        self.assertTrue(self.transport.disconnecting)

    def test_parseExpect(self):
        """
        The last word of /expect is a timeout when it is a number, unless the
        text is quoted.
        """
        self.assertEqual(parseExpect("hello"), ("hello", 10.0))
        self.assertEqual(parseExpect("<bob> hi there 3"), ("<bob> hi there", 3.0))
        self.assertEqual(parseExpect('"the answer is 42"'), ("the answer is 42", 10.0))
        self.assertEqual(parseExpect("'the answer is 42' 2.5"), ("the answer is 42", 2.5))
        self.assertEqual(parseExpect("42"), ("42", 10.0))


class FileTests(ConsoleTestCase):
    """
    The file commands, and how transfers are shown.
    """

    def test_fileCommands(self):
        """
        /file picks a room or a user by its first word, or by a leading C{#};
        /accept, /decline and /cancel take an optional (or, for /cancel, a
        required) number, /accept a folder that may hold spaces.
        """
        console = self.console()
        self.type(console,
                  "/file #lobby ~/report.pdf",
                  "/file bob my notes.txt",
                  "/file room lobby /tmp/a b.txt",
                  "/file user carol x",
                  "/file room x",
                  "/accept",
                  "/accept 3",
                  "/accept #4 /tmp/my downloads",
                  "/accept /tmp/elsewhere",
                  "/decline",
                  "/decline #2",
                  "/cancel 2")
        self.assertEqual(console.client.calls, [
            ("sendFile", "room", "#lobby", "~/report.pdf"),
            ("sendFile", "user", "bob", "my notes.txt"),
            ("sendFile", "room", "lobby", "/tmp/a b.txt"),
            ("sendFile", "user", "carol", "x"),
            ("sendFile", "user", "room", "x"),
            ("acceptFile", None, None),
            ("acceptFile", 3, None),
            ("acceptFile", 4, "/tmp/my downloads"),
            ("acceptFile", None, "/tmp/elsewhere"),
            ("declineFile", None),
            ("declineFile", 2),
            ("cancelFile", 2),
        ])
        lines = self.output()
        self.assertEqual(lines[0], 'offered file #1 "report.pdf" to #lobby (5.0 MiB in 5243 '
                                   'chunks); waiting for answers')
        self.assertEqual(lines[1], 'offered file #1 "my notes.txt" to bob (5.0 MiB in 5243 '
                                   'chunks); waiting for answers')
        self.assertEqual(lines[5:], [
            'accepted file #2 "report.pdf" from bob (1.5 MiB); saving into '
            '/home/alice/Downloads/chatd',
            'accepted file #3 "report.pdf" from bob (1.5 MiB); saving into '
            '/home/alice/Downloads/chatd',
            'accepted file #4 "report.pdf" from bob (1.5 MiB); saving into /tmp/my downloads',
            'accepted file #2 "report.pdf" from bob (1.5 MiB); saving into /tmp/elsewhere',
            'declined file #2 "report.pdf" from bob',
            'declined file #2 "report.pdf" from bob',
            'cancelled file #2 "report.pdf" from bob',
        ])

    def test_fileUsage(self):
        """
        File commands with the wrong arguments show their usage.
        """
        console = self.console()
        self.type(console, "/file", "/file bob", "/file   ", "/cancel", "/cancel x",
                  "/decline 1 2", "/decline x", "/files now")
        self.assertEqual(console.client.calls, [])
        self.assertEqual(self.output(), [
            "usage: /file [room|user] NAME PATH",
            "usage: /file [room|user] NAME PATH",
            "usage: /file [room|user] NAME PATH",
            "usage: /cancel ID",
            "usage: /cancel ID",
            "usage: /decline [ID]",
            "usage: /decline [ID]",
            "usage: /files",
        ])

    def test_fileErrors(self):
        """
        A refused file command shows why, on one line.
        """
        console = self.console()
        console.client.answers["sendFile"] = ClientError("cannot read /x: No such file")
        console.client.answers["acceptFile"] = ClientError("no file offer is waiting")
        self.type(console, "/file bob /x", "/accept")
        self.assertEqual(self.output(), ["error: cannot read /x: No such file",
                                         "error: no file offer is waiting"])

    def test_offerAndEndLines(self):
        """
        An offer is announced with its number, sender, room, cleaned name and
        size and how to answer it; the end of a transfer is one line, marked
        when it failed.
        """
        console = self.console()
        console.fileOffered(3, "bob", "lobby", "evil\u202etxt.exe", 1258291)
        console.fileOffered(4, "carol", None, "a.txt", 12)
        console.fileEnded(3, 'saved file #3 "x" from bob (1.2 MiB, SHA-256 checked) as /d/x',
                          False)
        console.fileEnded(4, 'file #4 "a.txt" from carol failed: chunk 0 does not decrypt; '
                             'nothing was kept', True)
        self.assertEqual(self.output(), [
            '%s file offer #3 from bob in #lobby: "evil\ufffdtxt.exe" (1.2 MiB) \u2014 '
            '/accept 3 [DIR] or /decline 3' % (NOW,),
            '%s file offer #4 from carol: "a.txt" (12 B) \u2014 /accept 4 [DIR] or /decline 4'
            % (NOW,),
            '%s saved file #3 "x" from bob (1.2 MiB, SHA-256 checked) as /d/x' % (NOW,),
            '%s !! file #4 "a.txt" from carol failed: chunk 0 does not decrypt; nothing was kept'
            % (NOW,),
        ])

    def test_scriptProgress(self):
        """
        In scripts, progress is a line at each quarter, however many chunks;
        the end has its own line.
        """
        console = self.console()
        total = 4000
        for done in range(100, total + 1, 100):
            console.fileProgress(1, "sending", "big.iso", done, total)
        console.fileEnded(1, 'file #1 "big.iso" to #lobby delivered; 2 recipients accepted it',
                          False)
        self.assertEqual(self.output(), [
            '%s sending #1 "big.iso": 25%% (1000 B of 3.9 KiB)' % (NOW,),
            '%s sending #1 "big.iso": 50%% (2.0 KiB of 3.9 KiB)' % (NOW,),
            '%s sending #1 "big.iso": 75%% (2.9 KiB of 3.9 KiB)' % (NOW,),
            '%s file #1 "big.iso" to #lobby delivered; 2 recipients accepted it' % (NOW,),
        ])

    def test_terminalProgress(self):
        """
        On a terminal, progress is a bar in front of the prompt, drawn again
        in place at most five times a second (and at the end); the end line
        takes the bar away.
        """
        console = self.console(interactive=True)
        self.transport.clear()
        console.fileProgress(1, "sending", "big.iso", 1000, 4000)
        self.assertEqual(self.transport.value().decode(),
                         "\r\x1b[K\u2191 [##........]  25% #1 big.iso > ")
        self.transport.clear()
        console.fileProgress(1, "sending", "big.iso", 2000, 4000)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(0.2)
        console.fileProgress(1, "sending", "big.iso", 3000, 4000)
        self.assertEqual(self.transport.value().decode(),
                         "\r\x1b[K\u2191 [#######...]  75% #1 big.iso > ")
        self.transport.clear()
        console.fileProgress(2, "receiving", "a-rather-long-file-name-indeed.tar.gz", 5, 10)
        self.assertEqual(self.transport.value(), b"")
        console.fileProgress(1, "sending", "big.iso", 4000, 4000)
        self.assertEqual(self.transport.value().decode(),
                         "\r\x1b[K\u2191 [##########] 100% #1 big.iso (+1) > ")
        self.transport.clear()
        console.fileEnded(1, "done", False)
        self.assertEqual(self.transport.value().decode(),
                         "\r\x1b[K[22:13:20] done\n\u2193 [#####.....]  50% #2 "
                         "a-rather-long-file-name\u2026 > ")

    def test_progressBar(self):
        self.assertEqual(progressBar(0, 10), "[..........]   0%")
        self.assertEqual(progressBar(10, 10), "[##########] 100%")
        self.assertEqual(progressBar(0, 0), "[##########] 100%")

    def test_filesList(self):
        """
        /files lists offers waiting for an answer and transfers under way.
        """
        console = self.console()
        self.type(console, "/files")
        waiting = Outgoing(1, "/tmp/big.iso", ("room", "lobby"), 1000)
        waiting.size = 4000
        sending = Outgoing(2, "/tmp/small.txt", ("user", "carol"), 1000)
        sending.size, sending.accepted, sending.done = 4000, 1, 1000
        receiving = offer(4, "in.bin")
        receiving.state, receiving.done = Incoming.RECEIVING, 3 << 18
        console.client.answers["fileTransfers"] = [waiting, sending, offer(3), receiving]
        self.type(console, "/files")
        self.assertEqual(self.output(), [
            "no file offers or transfers",
            '  file #1 "big.iso" to #lobby (3.9 KiB): waiting for answers',
            '  file #2 "small.txt" to carol: sending [##........]  25% of 3.9 KiB',
            '  #3 offer from bob in #lobby: "report.pdf" (1.5 MiB) \u2014 /accept 3 or /decline 3',
            '  file #4 "in.bin" from bob: receiving [#####.....]  50% of 1.5 MiB',
        ])


class RateTests(ConsoleTestCase):
    """
    Transfers show their rate and the time left, measured on the clock.
    """

    def test_terminalRateAndTimeLeft(self):
        """
        After a second of measuring, the bar is followed by the mean rate and
        the time the rest takes at it.
        """
        console = self.console(interactive=True)
        console.fileProgress(1, "sending", "big.iso", 0, 10 << 20)
        self.clock.advance(2)
        self.transport.clear()
        console.fileProgress(1, "sending", "big.iso", 2 << 20, 10 << 20)
        self.assertEqual(self.transport.value().decode(),
                         "\r\x1b[K\u2191 [##........]  20% 1.0 MiB/s, 0:08 left #1 big.iso > ")

    def test_scriptRateAndTimeLeft(self):
        """
        In scripts the quarter lines carry the rate and the time left too.
        """
        console = self.console()
        console.fileProgress(1, "receiving", "big.iso", 0, 4 << 20)
        self.clock.advance(4000)
        console.fileProgress(1, "receiving", "big.iso", 1 << 20, 4 << 20)
        self.assertEqual(self.output(), [
            '%s receiving #1 "big.iso": 25%% (1.0 MiB of 4.0 MiB, 262 B/s, 3:20:00 left)'
            % ("[23:20:00]",)])

    def test_rateAndTimeLeft(self):
        """
        Nothing is promised before a second of measuring, or while nothing moved.
        """
        self.assertEqual(rateAndTimeLeft(100, 1000, (10.0, 0), 10.5), "")
        self.assertEqual(rateAndTimeLeft(0, 1000, (10.0, 0), 20.0), "")
        self.assertEqual(rateAndTimeLeft(500, 1000, (10.0, 0), 20.0), "50 B/s, 0:10 left")
