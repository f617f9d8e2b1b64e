# -*- test-case-name: chatd.test.test_editor -*-
"""
The line editor of the terminal client on a real terminal: twisted.conch's
L{HistoricRecvLine} (cursor keys, Home/End, Backspace/Delete, Up/Down through
the history) on an L{insults.ServerProtocol}, with what it lacks added as small
key handlers: Ctrl-A/E/K/U/W, Tab completion, UTF-8 input, a history file, a
secret mode that shows nothing typed, and lines printed above the prompt with
the half-typed line drawn again below them.

Escape sequences are parsed by insults, not here: this module only decides
what each key does.

The editor is the L{chatd.client.console.Console}'s transport: the console
gives it whole lines to show (L{LineEditor.showAbove}), the prompt
(L{LineEditor.setPrompt}) and secrets to ask for (L{LineEditor.askSecret}),
and is given each line typed, as piped input would give it.
"""

import codecs
import os

from twisted.conch.recvline import HistoricRecvLine
from twisted.logger import Logger

log = Logger()

# Lines kept in the history file; older ones are dropped.
HISTORY_LINES = 1000
HISTORY_FILE = "history"

# Commands whose later words are passwords: such lines are not kept.
_WITH_PASSWORD = {"/register": 2, "/login": 2, "/create": 2, "/join": 2}

CTRL_A, CTRL_D, CTRL_E, CTRL_H, CTRL_K, CTRL_L, CTRL_U, CTRL_W = (
    b"\x01", b"\x04", b"\x05", b"\x08", b"\x0b", b"\x0c", b"\x15", b"\x17")


def keepInHistory(line: str) -> bool:
    """
    Whether a typed line may be written to the history file: not when it
    carries a password (C{/login alice secret}).
    """
    words = line.split()
    if not words:
        return False
    most = _WITH_PASSWORD.get(words[0].lower())
    return most is None or len(words) <= most


def commonPrefix(words):
    """
    The longest start all of C{words} share.
    """
    return os.path.commonprefix(list(words))


class History:
    """
    The typed lines kept across runs in a file readable only by its owner,
    bounded to L{HISTORY_LINES}.

    @param path: the file, or L{None} to keep nothing.
    """

    def __init__(self, path, limit=HISTORY_LINES):
        self.path = path
        self.limit = limit

    def load(self):
        """
        The lines kept, oldest first (none when the file is missing or unreadable).
        """
        if self.path is None:
            return []
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        return [line for line in lines if line][-self.limit:]

    def save(self, lines):
        """
        Write the last L{limit} of C{lines}, mode 0600, replacing the file
        whole so that a crash leaves the old one or the new one.
        """
        if self.path is None:
            return
        temporary = self.path + ".new"
        try:
            os.makedirs(os.path.dirname(self.path) or ".", 0o700, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines[-self.limit:]))
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except OSError as e:
            log.warn("cannot save the history in {path}: {error}", path=self.path, error=e)


class LineEditor(HistoricRecvLine):
    """
    Line editing for one L{chatd.client.console.Console}.

    @param console: gets C{makeConnection(self)}, each typed line as
        C{lineReceived(bytes)}, C{readConnectionLost()} at Ctrl-D on an empty
        line and C{connectionLost(reason)}; it offers C{completions(before)}.
    @param history: a L{History}.
    """

    # RecvLine's prompt and continuation prompt, one and the same here (pn
    # stays 0).
    ps = (b"> ", b"> ")

    def __init__(self, console, history):
        self.console = console
        self.history = history
        self._secret = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    # -- the connection ---------------------------------------------------

    def connectionMade(self):
        HistoricRecvLine.connectionMade(self)
        self.historyLines = [line.encode("utf-8") for line in self.history.load()]
        self.historyPosition = len(self.historyLines)
        self.keyHandlers.update({
            CTRL_A: self.handle_HOME,
            CTRL_E: self.handle_END,
            CTRL_K: self.handle_KILL_END,
            CTRL_U: self.handle_KILL_START,
            CTRL_W: self.handle_KILL_WORD,
            CTRL_D: self.handle_EOF,
            CTRL_L: self.redraw,
            CTRL_H: self.handle_BACKSPACE,
        })
        self.console.makeConnection(self)

    def initializeScreen(self):
        """
        Draw the prompt where the cursor is (L{RecvLine} would clear the whole
        terminal, and what was on it before the client started would be lost).
        """
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def connectionLost(self, reason):
        self.console.connectionLost(reason)

    def terminalSize(self, width, height):
        self.width, self.height = width, height

    # -- what the console calls (it uses the editor as its transport) ------

    def write(self, data):
        """
        Bytes for the terminal as they are (the console shows lines with
        L{showAbove}; this is for anything else).
        """
        self.terminal.write(data)

    def loseConnection(self):
        self.terminal.loseConnection()

    def setPrompt(self, prompt: str):
        """
        Show C{prompt} in front of the line being typed.
        """
        shown = prompt.encode("utf-8", "replace")
        self.ps = (shown, shown)
        self.pn = 0
        self.redraw()

    def showAbove(self, text: str, prompt: str):
        """
        Print C{text} (whole lines) where the input line was, then the prompt
        and the half-typed line below it, with the cursor where it was.
        """
        shown = prompt.encode("utf-8", "replace")
        self.ps = (shown, shown)
        self.pn = 0
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        # insults writes each "\n" as "\r\n": the raw terminal needs both.
        self.terminal.write(text.encode("utf-8", "replace"))
        self._drawInput()

    def askSecret(self, prompt: str):
        """
        Ask for a secret: the next line typed is shown as nothing at all and
        kept out of the history; it goes to the console as any line does.
        """
        self._secret = True
        self._stash = (self.lineBuffer, self.lineBufferIndex)
        self.lineBuffer, self.lineBufferIndex = [], 0
        self.setPrompt(prompt)

    # -- drawing ----------------------------------------------------------

    def redraw(self):
        """
        Draw the prompt and the line again, in place.
        """
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        self._drawInput()

    def _drawInput(self):
        if self._secret:
            self.terminal.write(self.ps[self.pn])
            return
        self.drawInputLine()
        back = len(self.lineBuffer) - self.lineBufferIndex
        if back:
            self.terminal.cursorBackward(back)

    # -- keys -------------------------------------------------------------

    def keystrokeReceived(self, keyID, modifier):
        if self._secret:
            self._secretKey(keyID)
            return
        if (isinstance(keyID, bytes) and keyID not in self.keyHandlers
                and (keyID >= b"\x80" or keyID in self._printableChars)):
            # insults hands over one byte at a time: a character is whole
            # once its UTF-8 bytes are.
            text = self._decoder.decode(keyID)
            for character in text:
                if character.isprintable():
                    self.characterReceived(character.encode("utf-8"), False)
            return
        handler = self.keyHandlers.get(keyID)
        # Other keys (F1, Ctrl-B...) do nothing: RecvLine would log a warning
        # for each, and warnings go to the terminal.
        if handler is not None:
            handler()

    def _secretKey(self, keyID):
        if keyID in (b"\r", b"\n"):
            secret = b"".join(self.lineBuffer)
            self.lineBuffer, self.lineBufferIndex = self._stash
            self._secret = False
            self.terminal.write(b"\n")
            self.console.lineReceived(secret)
        elif keyID in (self.terminal.BACKSPACE, CTRL_H):
            if self.lineBuffer:
                self.lineBuffer.pop()
        elif keyID == CTRL_D:
            self.handle_EOF()
        elif isinstance(keyID, bytes) and keyID >= b" " and keyID != b"\x7f":
            self.lineBuffer.append(keyID)

    def lineReceived(self, line):
        text = line.decode("utf-8", "replace")
        if keepInHistory(text):
            self.history.save([entry.decode("utf-8", "replace")
                               for entry in self.historyLines])
        else:
            # Not even for Up in this run: a password stays off the screen.
            while self.historyLines and self.historyLines[-1] == line:
                self.historyLines.pop()
            self.historyPosition = len(self.historyLines)
        # The new line gets its prompt before the console, which may ask
        # for a secret on it, sees the line.
        self.terminal.write(self.ps[self.pn])
        self.console.lineReceived(line)

    def handle_TAB(self):
        """
        Complete the word before the cursor: a command, a room or a user
        (whatever the console offers), to the longest common start, with a
        space after a single match; several matches are listed above.
        """
        before = b"".join(self.lineBuffer[:self.lineBufferIndex]).decode("utf-8", "replace")
        candidates = sorted(set(self.console.completions(before)))
        if not candidates:
            return
        word = before.split(" ")[-1]
        common = commonPrefix(candidates)
        addition = common[len(word):]
        if len(candidates) == 1:
            addition += " "
        elif not addition:
            self.showAbove("  ".join(candidates) + "\n", self.ps[self.pn].decode("utf-8"))
            return
        for character in addition:
            self.characterReceived(character.encode("utf-8"), False)

    def handle_KILL_END(self):
        """Ctrl-K: delete from the cursor to the end of the line."""
        del self.lineBuffer[self.lineBufferIndex:]
        self.terminal.eraseToLineEnd()

    def handle_KILL_START(self):
        """Ctrl-U: delete from the start of the line to the cursor."""
        del self.lineBuffer[:self.lineBufferIndex]
        self.lineBufferIndex = 0
        self.redraw()

    def handle_KILL_WORD(self):
        """Ctrl-W: delete the word before the cursor (and the spaces after it)."""
        start = self.lineBufferIndex
        while start and self.lineBuffer[start - 1] == b" ":
            start -= 1
        while start and self.lineBuffer[start - 1] != b" ":
            start -= 1
        del self.lineBuffer[start:self.lineBufferIndex]
        self.lineBufferIndex = start
        self.redraw()

    def handle_EOF(self):
        """Ctrl-D on an empty line: the end of input, as in a shell."""
        if not self.lineBuffer or self._secret:
            self.terminal.write(b"\n")
            self.console.readConnectionLost()
