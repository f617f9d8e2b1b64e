# -*- test-case-name: chatd.test.test_console -*-
"""
The terminal side of the client: a C{LineReceiver} on standard input and
output that turns typed lines into L{chatd.client.chat.ChatClient} commands and
shows what the client is told (L{IClientUI}) as readable lines, worded by
L{chatd.client.told}.

Lines are handled one at a time, in order: a command runs to completion (its
result or error printed) before the next line is looked at, so a script reads
like a transcript and a typed line never overtakes the one before it.

Three ways to run:
    - interactive (standard input is a terminal): a prompt naming the active
      room, secrets asked for without echo; the transport is then a
      L{chatd.client.editor.LineEditor}, which edits the line, prints what is
      shown above it and hides secrets, and message lines typed while the
      client is not connected wait for the connection (L{Pending});
    - piped (standard input is not a terminal): lines from standard input, no
      prompt, nothing asked for (a missing password is an error), and the
      client ends at end of input;
    - script (C{--script FILE}): the same, with lines from the file.
Piped and script runs also take C{/wait SECONDS} and C{/expect TEXT [SECONDS]},
so that tests and bots can wait for what others say.

Everything shown that came from elsewhere (messages, names) has its control
characters replaced, so nobody can move the cursor, recolour the terminal or
fake a line by sending escape sequences or newlines.

File transfers run in the background: C{/file} returns once the server has
the offer, and how the transfer goes arrives later (L{IClientUI.fileProgress},
L{IClientUI.fileEnded}). On a terminal their progress is one line that updates
in place: the prompt line, with a bar in front of the prompt. In scripts and
piped runs, where nothing is redrawn, it is an occasional line instead (at a
quarter, half and three quarters), so a log stays short; scripts wait for the
end with C{/expect}.
"""

import time
from collections import OrderedDict, deque

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IHalfCloseableProtocol, ITransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.client.commands import Commands
from chatd.client.connection import ServerError
from chatd.client.editor import LineEditor
from chatd.client.errors import ClientError
from chatd.client.keystore import KeystoreError
from chatd.client.lines import (
    HELP,
    SCRIPT_HELP,
    STOP_TIMEOUT,
    UNREAD_LINES,
    Pending,
    UsageError,
    clean,
    isMessage,
    parseExpect,
    progressBar,
    rateAndTimeLeft,
    roomLabel,
    shortFingerprint,
    shortName,
)
from chatd.client.told import Told
from chatd.client.ui import IClientUI
from chatd.names import fold

# Kept importable from here, where the client and its tests have always found
# them.
__all__ = ["Console", "HELP", "SCRIPT_HELP", "Pending", "UsageError", "clean", "isMessage",
           "parseExpect", "progressBar", "rateAndTimeLeft", "roomLabel", "shortFingerprint"]

log = Logger()


@implementer(IClientUI, IHalfCloseableProtocol)
class Console(Told, Commands, LineReceiver):
    """
    The person's terminal (or a script) for one L{ChatClient}.

    @param makeClient: called with this console (the client's L{IClientUI}) to
        make the client it drives.
    @param clock: an L{IReactorTime}: event times, C{/wait}, C{/expect}.
    @param interactive: whether a person is typing on a terminal.
    @param script: the lines of a C{--script} file, or L{None} to read lines
        from standard input.
    @param startup: lines to run before anything else (C{/auth USER}).
    @param localtime: turns seconds since the epoch into a C{struct_time}.
    @param setEcho: turns the terminal's echo on (L{True}) or off.

    @ivar exitCode: L{None} while running; then the status to exit with.
    @ivar done: fires with C{exitCode} once the output is closed.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    transport: ITransport

    def __init__(self, makeClient, clock, interactive=False, script=None, startup=(),
                 localtime=time.localtime, setEcho=lambda on: None):
        self.clock = clock
        self.interactive = interactive
        self.scripted = script is not None
        self.localtime = localtime
        self.setEcho = setEcho
        self.exitCode = None
        self.done: Deferred = Deferred()
        self._queue = deque(startup)
        if script is not None:
            self._queue.extend(script)
        self._endOfInput = self.scripted
        self._busy = False
        self._pumping = False
        self._secret = None
        self._unread = deque(maxlen=UNREAD_LINES)
        self._expecting = None
        self._progress = OrderedDict()
        self._progressDrawn = None
        self._progressSteps = {}
        self._progressStarts = {}
        self._editor = None
        self._pending = 0
        self.client = makeClient(self)

    # -- output -----------------------------------------------------------

    def _time(self, timestamp=None):
        """
        C{HH:MM:SS} in local time, of a timestamp (ms: the one a message's
        sender signed) or of now.
        """
        seconds = self.clock.seconds() if timestamp is None else timestamp / 1000.0
        return time.strftime("%H:%M:%S", self.localtime(seconds))

    def prompt(self):
        """
        What the prompt shows: the room plain text goes to.
        """
        active = getattr(self.client, "active", None)
        prompt = "%s> " % (roomLabel(active),) if active else "> "
        if self._pending:
            prompt = "(%d pending) %s" % (self._pending, prompt)
        if not self._progress:
            return prompt
        number, (direction, name, done, total) = next(iter(self._progress.items()))
        more = " (+%d)" % (len(self._progress) - 1,) if len(self._progress) > 1 else ""
        arrow = "\u2191" if direction == "sending" else "\u2193"
        rate = self._rate(number, done, total)
        return "%s %s%s #%d %s%s %s" % (arrow, progressBar(done, total),
                                        " " + rate if rate else "", number,
                                        shortName(name), more, prompt)

    def _rate(self, number, done, total):
        started = self._progressStarts.get(number)
        if started is None:
            return ""
        return rateAndTimeLeft(done, total, started, self.clock.seconds())

    def show(self, text, stamp=False, timestamp=None):
        """
        Write C{text} as one line (more when it holds newlines: the others are
        indented, so that they cannot pass for lines of their own).

        @param stamp: start with the time, of C{timestamp} (ms) or now.
        """
        lines = text.split("\n")
        if stamp:
            lines[0] = "[%s] %s" % (self._time(timestamp), lines[0])
        lines[1:] = ["    " + line for line in lines[1:]]
        out = "\n".join(lines) + "\n"
        if self._editor is not None:
            if not self.done.called:
                self._editor.showAbove(out, self._secretPrompt or self.prompt())
        else:
            if self.interactive:
                # Clear the prompt, print, and draw the prompt again below.
                out = "\r\x1b[K" + out + (self._secretPrompt or self.prompt())
            if self.transport is not None and not self.done.called:
                self.transport.write(out.encode("utf-8", "replace"))
        if not self.interactive:
            for line in lines:
                self._saw(line)

    @property
    def _secretPrompt(self):
        return self._secret[1] if self._secret is not None else None

    def _saw(self, line):
        """
        Remember a shown line for C{/expect}, and end a wait it satisfies.
        """
        if self._expecting is not None:
            text, d = self._expecting
            if text in line:
                self._expecting = None
                d.callback(True)
                return
        self._unread.append(line)

    def _redrawPrompt(self):
        """
        Draw the prompt line again in place (it carries the progress bar),
        unless a secret is being typed on it.
        """
        if self._secret is None and self.transport is not None and not self.done.called:
            if self._editor is not None:
                self._editor.setPrompt(self.prompt())
                return
            self.transport.write(("\r\x1b[K" + self.prompt()).encode("utf-8", "replace"))

    def askSecret(self, prompt, optional=False):
        if not self.interactive:
            if optional:
                return succeed("")
            return fail(ClientError("cannot ask for the %s without a terminal (a key's "
                                    "passphrase can be given in CHATD_PASSPHRASE)"
                                    % (prompt.strip().rstrip(":"),)))
        if self._secret is not None:
            return fail(ClientError("already asking for a secret"))
        d: Deferred = Deferred()
        self._secret = (d, prompt)
        if self._editor is not None:
            # The editor shows nothing of what is typed, and starts the
            # next line itself.
            self._editor.askSecret(prompt)
            return d.addBoth(self._answered)
        self.setEcho(False)
        self.transport.write(b"\r\x1b[K" + prompt.encode("utf-8"))

        def answered(result):
            self.setEcho(True)
            self.transport.write(b"\n")
            return self._answered(result)
        return d.addBoth(answered)

    def _answered(self, result):
        self._secret = None
        return result

    # -- input ------------------------------------------------------------

    def connectionMade(self):
        if isinstance(self.transport, LineEditor):
            self._editor = self.transport
            self._editor.setPrompt(self.prompt())
        elif self.interactive:
            self.transport.write(self.prompt().encode("utf-8"))
        self._pump()

    def completions(self, before: str) -> list:
        """
        What the last word of C{before} (the line up to the cursor) may
        become: a command at the start of the line, else a room or a user.
        """
        word = before.split(" ")[-1]
        if word == before and word.startswith("/"):
            names = ["/" + name for name in self._commands
                     if not (self.interactive and name in ("wait", "expect"))]
        else:
            rooms = list(getattr(self.client, "rooms", {}).values())
            names = [room.name for room in rooms]
            names += [roomLabel(room.name) for room in rooms]
            names += [user for room in rooms for user in room.members]
        folded = fold(word)
        return [name for name in names if fold(name).startswith(folded)]

    def lineReceived(self, data):
        line = data.decode("utf-8", "replace")
        if line.endswith("\r"):
            line = line[:-1]
        if self._secret is not None:
            self._secret[0].callback(line)
            return
        if self.scripted or self.exitCode is not None:
            return
        if self.interactive and isMessage(line) and not self.client.connected:
            line = Pending(line)
            self._pending += 1
            self.show("\u2026 pending until connected: %s" % (clean(line),))
        self._queue.append(line)
        self._pump()

    def lineLengthExceeded(self, line):
        self.show("error: line too long (at most %d bytes)" % (self.MAX_LENGTH,))

    def readConnectionLost(self):
        """
        End of standard input: finish what was typed, then exit. A script's
        end is its own; standard input does not matter to it.
        """
        if self._secret is not None:
            self._secret[0].errback(ClientError("end of input"))
        if not self.scripted:
            self._endOfInput = True
            self._pump()

    def writeConnectionLost(self):
        """
        Standard output is gone (a closed pipe): nobody can see anything now.
        """
        self.finish(0)

    def connectionLost(self, reason=None):
        if self.exitCode is None:
            self.finish(0)
        if not self.done.called:
            self.done.callback(self.exitCode)

    def _pump(self):
        """
        Start the next queued line unless one is running; at the end of input,
        exit once the last command is done.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._busy and self.exitCode is None:
                if not self._queue:
                    if self._endOfInput:
                        self.finish(0)
                    break
                line = self._queue.popleft()
                self._busy = True
                d = Deferred.fromCoroutine(self._run(line))
                d.addErrback(lambda f: log.failure("running a command", f))
                d.addBoth(self._ran)
        finally:
            self._pumping = False

    def _ran(self, _):
        self._busy = False
        self._pump()

    async def _run(self, line):
        """
        Run one line, and show its result or why it failed.
        """
        if not line.strip():
            return
        if line.startswith("/"):
            name, _, rest = line[1:].partition(" ")
            handler = self._commands.get(name.lower())
            if handler is None:
                self.show("error: unknown command /%s; /help lists the commands" % (clean(name),))
                return
        else:
            handler, rest = Console._send, line
        try:
            if isinstance(line, Pending):
                await self._sendPending(line, handler, rest)
            else:
                await handler(self, rest)
        except UsageError as e:
            self.show("usage: %s" % (e,))
        except (ClientError, ServerError, KeystoreError) as e:
            self.show("error: %s" % (clean(str(e)),))
        except ConnectionClosed as e:
            self.show("error: the connection to the server was lost (%s)" % (e.__class__.__name__,))
        except Exception as e:
            log.failure("command {line!r}", Failure(), line=line)
            self.show("error: %s" % (clean(str(e) or e.__class__.__name__),))

    async def _sendPending(self, line, handler, rest):
        """
        Send a line typed while disconnected once connected again; say plainly
        if it could not be sent.
        """
        try:
            await self.client.whenConnected()
            await handler(self, rest)
        except (ClientError, ServerError, ConnectionClosed) as e:
            raise ClientError("not sent: %s (%s)" % (line, e)) from None
        finally:
            self._pending -= 1
            self._redrawPrompt()

    def finish(self, code):
        """
        Stop the client, close the output (once written) and exit with C{code}.
        """
        if self.exitCode is not None:
            return
        self.exitCode = code
        self._queue.clear()
        if self._expecting is not None:
            _, d = self._expecting
            self._expecting = None
            d.callback(False)
        if self._secret is not None:
            self._secret[0].errback(ClientError("exiting"))
        def hangUp(_):
            if self.transport:
                self.transport.loseConnection()
        Deferred.fromCoroutine(self._stopClient()).addBoth(hangUp)

    async def _stopClient(self):
        try:
            await self.client.stop().addTimeout(STOP_TIMEOUT, self.clock)
        except Exception:
            pass
