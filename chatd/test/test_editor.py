"""
Tests for L{chatd.client.editor}: the terminal client's line editor, driven
through insults' L{ServerProtocol} over a L{StringTransport}: keys go in as the
bytes a terminal sends, and the screen bytes written come out.
"""

import os
import stat
import time

from twisted.conch.insults.insults import ServerProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd.client.chat import Room
from chatd.client.console import Console
from chatd.client.editor import HISTORY_LINES, History, LineEditor, keepInHistory
from chatd.test.test_console import NOW, T0, FakeClient
from chatd.test.test_logs import capture

UP, DOWN, LEFT = b"\x1b[A", b"\x1b[B", b"\x1b[D"


class EditorTests(SynchronousTestCase):
    """
    Keys typed on a terminal, and the screen they produce.
    """

    def setUp(self):
        self.historyPath = os.path.join(self.mktemp(), "history")
        self.start()

    def start(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.console = Console(FakeClient, self.clock, interactive=True, localtime=time.gmtime)
        self.terminal = ServerProtocol(LineEditor, self.console, History(self.historyPath))
        self.transport = StringTransport()
        self.terminal.makeConnection(self.transport)
        editor = self.terminal.terminalProtocol
        assert isinstance(editor, LineEditor)
        self.editor = editor
        self.transport.clear()

    def keys(self, data):
        self.terminal.dataReceived(data)

    def line(self):
        return b"".join(self.editor.lineBuffer).decode("utf-8")

    def screen(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def test_incomingLineAboveHalfTypedLine(self):
        """
        A message arriving while "hel" is typed is printed on the input line,
        and the prompt and "hel" are drawn again below it.
        """
        self.keys(b"hel")
        self.assertEqual(self.screen(), b"hel")
        self.console.messageReceived("lobby", "bob", T0 * 1000, "hi there")
        self.assertEqual(self.screen(),
                         b"\r\x1b[2K" + NOW.encode() + b" #lobby <bob> hi there\r\n> hel")
        self.keys(b"lo\r")
        self.assertEqual(self.console.client.calls, [("send", "hello")])

    def test_cursorKeptWhenRedrawn(self):
        """
        With the cursor inside the line, a redraw puts it back where it was.
        """
        self.keys(b"hello" + LEFT + LEFT)
        self.screen()
        self.console.notice("x")
        self.assertTrue(self.screen().endswith(b"> hello\x1b[2D"))
        self.keys(b"X\r")
        self.assertEqual(self.console.client.calls, [("send", "helXlo")])

    def test_upRecallsHistory(self):
        """
        Up brings back the lines typed before, newest first; Down goes back.
        """
        self.keys(b"/join lobby\rone\r")
        self.keys(UP)
        self.assertEqual(self.line(), "one")
        self.keys(UP)
        self.assertEqual(self.line(), "/join lobby")
        self.keys(DOWN)
        self.assertEqual(self.line(), "one")

    def test_historyFile(self):
        """
        The history is kept in a file only its owner can read, bounded, and
        without lines that carry a password; the next run starts with it.
        """
        self.keys(b"/join lobby\r/login alice secret\rhello\r")
        self.assertEqual(stat.S_IMODE(os.stat(self.historyPath).st_mode), 0o600)
        with open(self.historyPath) as f:
            self.assertEqual(f.read(), "/join lobby\nhello\n")
        self.keys(UP + UP)
        self.assertEqual(self.line(), "/join lobby")
        self.start()
        self.keys(UP)
        self.assertEqual(self.line(), "hello")
        History(self.historyPath).save(["%d" % (n,) for n in range(HISTORY_LINES + 5)])
        lines = History(self.historyPath).load()
        self.assertEqual((len(lines), lines[0]), (HISTORY_LINES, "5"))

    def test_keepInHistory(self):
        """
        Lines with a password word are not kept; the same commands without one are.
        """
        self.assertFalse(keepInHistory("/login alice secret"))
        self.assertFalse(keepInHistory("/JOIN room roompassword"))
        self.assertTrue(keepInHistory("/login alice"))
        self.assertTrue(keepInHistory("hello there my friend"))

    def test_tabCompletesCommand(self):
        """
        Tab completes "/jo" to "/join "; with several matches, to their common
        start, and a second Tab lists them.
        """
        self.keys(b"/jo\t")
        self.assertEqual(self.line(), "/join ")
        self.keys(b"\x15/f\t")
        self.assertEqual(self.line(), "/fi")
        self.screen()
        self.keys(b"\t")
        self.assertIn(b"/file  /files  /fingerprint\r\n> /fi", self.screen())

    def test_tabCompletesNames(self):
        """
        After the command, Tab completes room and user names.
        """
        room = Room("lobby")
        room.members = {"alice": b"", "bobby": b""}
        self.console.client.rooms = {"lobby": room}
        self.keys(b"/pm bo\t")
        self.assertEqual(self.line(), "/pm bobby ")
        self.keys(b"\x15/switch #l\t")
        self.assertEqual(self.line(), "/switch #lobby ")

    def test_ctrlKeys(self):
        """
        Ctrl-W deletes a word, Ctrl-A and Ctrl-E go to the start and the end,
        Ctrl-K deletes to the end and Ctrl-U to the start.
        """
        self.keys(b"say hello world\x17")
        self.assertEqual(self.line(), "say hello ")
        self.keys(b"\x01")
        self.assertEqual(self.editor.lineBufferIndex, 0)
        self.keys(b"\x05")
        self.assertEqual(self.editor.lineBufferIndex, 10)
        self.keys(LEFT * 6 + b"\x0b")
        self.assertEqual(self.line(), "say ")
        self.keys(b"x" + LEFT + b"\x15")
        self.assertEqual((self.line(), self.editor.lineBufferIndex), ("x", 0))

    def test_utf8(self):
        """
        A character of several UTF-8 bytes is one character of the line.
        """
        self.keys("h\u00e9".encode("utf-8") + LEFT + b"x\r")
        self.assertEqual(self.console.client.calls, [("send", "hx\u00e9")])

    def test_passwordNeverShown(self):
        """
        /login without a password asks for it; nothing typed shows, the line is
        not kept in the history, and the half-typed line comes back after.
        """
        self.keys(b"/login alice\r")
        self.assertEqual(self.screen(),
                         b"/login alice\r\n> \r\x1b[2Kpassword of alice: ")
        self.keys(b"s3cret\x7fT\r")
        self.assertEqual(self.console.client.calls, [("login", "alice", "s3creT")])
        self.assertNotIn(b"s3cre", self.transport.value())
        self.keys(UP)
        self.assertEqual(self.line(), "/login alice")

    def test_ctrlDExits(self):
        """
        Ctrl-D on an empty line ends the client, as the end of piped input does.
        """
        self.keys(b"x\x04")
        self.assertIsNone(self.console.exitCode)
        self.keys(b"\x7f\x04")
        self.assertEqual(self.console.exitCode, 0)
        self.assertTrue(self.transport.disconnecting)

    def test_registerAsksPasswordTwice(self):
        """
        /register without a password asks for it twice without showing it; two
        different answers register nothing, the same twice registers with it.
        """
        self.keys(b"/register alice\rone\rtwo\r")
        self.assertEqual(self.console.client.calls, [])
        self.assertIn(b"error: the two passwords differ; nothing was registered",
                      self.transport.value())
        self.keys(b"/register alice\rpw\rpw\r")
        self.assertEqual(self.console.client.calls[0], ("register", "alice", "pw"))
        self.assertIn(b"the same password again: ", self.transport.value())
        self.assertNotIn(b"pw\r", self.transport.value())

    def test_registerWithoutPassword(self):
        """
        Enter at the password question registers a key-only account, asking once.
        """
        self.keys(b"/register alice\r\r")
        self.assertEqual(self.console.client.calls[0], ("register", "alice", ""))
        self.assertNotIn(b"again", self.transport.value())

    def test_otherKeysIgnored(self):
        """
        A key the editor has no use for (F1, Ctrl-B) changes nothing, and
        logs nothing that would land on the terminal.
        """
        logged = capture(self)
        self.keys(b"ab\x02\x1bOP")
        self.assertEqual(self.line(), "ab")
        self.assertEqual(logged, [])
