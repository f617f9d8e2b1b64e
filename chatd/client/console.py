# -*- test-case-name: chatd.test.test_console -*-
"""
The terminal side of the client: a C{LineReceiver} on standard input and
output that turns typed lines into L{chatd.client.chat.ChatClient} commands and
shows what the client is told (L{IClientUI}) as readable lines.

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

import re
import time
from collections import OrderedDict, deque

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.client.chat import ClientError
from chatd.client.connection import ServerError
from chatd.client.editor import LineEditor
from chatd.client.files import Incoming, formatSize
from chatd.client.keystore import KeystoreError
from chatd.interfaces import IClientUI
from chatd.names import fold

log = Logger()

EXPECT_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Shown lines kept for /expect; a bot that never expects must not grow forever.
UNREAD_LINES = 10000
# A terminal's progress line is drawn again at most this often (seconds).
PROGRESS_INTERVAL = 0.2
# Progress lines per transfer in scripts: at 1/4, 2/4 and 3/4; the end has a
# line of its own.
SCRIPT_STEPS = 4
PROGRESS_WIDTH = 10
# A transfer's rate is shown once it has been measured over this long (s):
# sooner, one burst of chunks would promise far too much.
RATE_AFTER = 1.0
PROGRESS_NAME = 24

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Marks the invite token among /register's words.
INVITE_PREFIX = "invite:"

HELP = [
    ("/register USER [PASSWORD] [invite:TOKEN]",
     "create an account with this device's key (no password: log in with the "
     "key only; invite:TOKEN on a server that needs an invite)"),
    ("/login USER [PASSWORD]", "log in with a password (asked for when left out)"),
    ("/auth USER", "log in by signing with this device's key"),
    ("/nick NAME", "take another name (guests only)"),
    ("/create ROOM [PASSWORD]", "create a room without joining it"),
    ("/join ROOM [PASSWORD]", "join a room (creating it if need be) and talk there"),
    ("/leave [ROOM]", "leave a room (the one you talk in by default)"),
    ("/switch ROOM", "talk in another of your rooms"),
    ("/rooms", "list the rooms"),
    ("/users [ROOM]", "list who is online, or in a room"),
    ("/send TEXT", "say TEXT in your room; so does any line not starting with /"),
    ("/pm USER TEXT", "send USER a direct message"),
    ("/history [ROOM] [N]", "show a room's last N messages (default 50)"),
    ("/keys room|user NAME", "show the keys of a room's members or of a user"),
    ("/fingerprint [USER]", "show your key's fingerprint, or USER's"),
    ("/verify USER FINGERPRINT", "mark USER's key verified, after comparing its "
                                 "fingerprint with USER in person or by phone"),
    ("/trust USER LAST4", "accept USER's new key after comparing its fingerprint with "
                          "USER: type its last 4 characters"),
    ("/reject USER", "refuse USER's new key: what USER sent meanwhile is dropped"),
    ("/file [room|user] NAME PATH", "offer the file at PATH to a room or a user; without "
                                    "room|user, a NAME starting with # is a room (#x also "
                                    "finds a room named x) and any other NAME a user"),
    ("/accept [ID] [DIR]", "take file offer ID (default: the newest) into DIR "
                           "(default: the download folder, ~/Downloads/chatd or --downloads)"),
    ("/decline [ID]", "refuse file offer ID (default: the newest)"),
    ("/cancel ID", "stop file transfer ID: one you send for everyone, one you "
                   "receive for you"),
    ("/files", "list file offers and transfers"),
    ("/help", "show this list"),
    ("/exit", "leave"),
]

SCRIPT_HELP = [
    ("/wait SECONDS", "pause the script"),
    ("/expect TEXT [SECONDS]", "wait until a line containing TEXT is shown "
                               "(quote TEXT that ends in a number); fail the "
                               "script after SECONDS (default 10)"),
]


class Pending(str):
    """
    A message line typed on a terminal while the client was not connected: it
    waits for the connection, and its outcome is shown either way.
    """


def isMessage(line: str) -> bool:
    """
    Whether a typed line sends a message (plain text, C{/send}, C{/pm}, C{/msg}).
    """
    if not line.startswith("/"):
        return bool(line.strip())
    return line[1:].partition(" ")[0].lower() in ("send", "pm", "msg")


class UsageError(Exception):
    """
    A command line that does not fit its command; the message shows the usage.
    """


def roomLabel(name):
    """
    How a room is shown: with its C{#}, whether or not its name has one.
    """
    return name if name.startswith("#") else "#" + name


def shortFingerprint(fingerprint):
    """
    The first four groups of a fingerprint: enough to notice a change in a join
    line; the whole one is for comparing (C{/fingerprint}, C{/keys}).
    """
    return " ".join(fingerprint.split()[:4])


def _rows(fingerprint):
    """
    A fingerprint as four rows of four groups, to be set beside another.
    """
    groups = fingerprint.split()
    return [" ".join(groups[i:i + 4]) for i in range(0, len(groups), 4)]


def clean(text):
    """
    C{text} made safe to write to a terminal: control characters (escape
    sequences, carriage returns, bidirectional overrides) become U+FFFD.
    Newlines are left for L{Console.show} to turn into indented lines.
    """
    return _CONTROL.sub("\ufffd", text)


def progressBar(done, total):
    """
    C{[####......]  40%}: how far a transfer is.
    """
    fraction = done / total if total else 1.0
    filled = int(fraction * PROGRESS_WIDTH)
    return "[%s%s] %3d%%" % ("#" * filled, "." * (PROGRESS_WIDTH - filled), int(fraction * 100))


def rateAndTimeLeft(done, total, started, now):
    """
    C{1.2 MiB/s, 0:42 left}: the mean rate since C{started} (C{(seconds,
    bytes done then)}) and the time the rest takes at that rate; empty until
    the rate has been measured for L{RATE_AFTER} seconds, or while nothing moved.
    """
    since, doneThen = started
    elapsed = now - since
    if elapsed < RATE_AFTER or done <= doneThen:
        return ""
    rate = (done - doneThen) / elapsed
    left = int((total - done) / rate + 0.5)
    hours, rest = divmod(left, 3600)
    clock = ("%d:%02d:%02d" % (hours, rest // 60, rest % 60) if hours
             else "%d:%02d" % (rest // 60, rest % 60))
    return "%s/s, %s left" % (formatSize(int(rate)), clock)


def _shortName(name):
    name = clean(name)
    return name if len(name) <= PROGRESS_NAME else name[:PROGRESS_NAME - 1] + "\u2026"


def _transferNumber(word, usage):
    """
    The number of C{ID} or C{#ID}.
    """
    digits = word[1:] if word.startswith("#") else word
    if not digits.isdigit():
        raise UsageError(usage)
    return int(digits)


def _words(rest, least, most, usage):
    words = rest.split()
    if not least <= len(words) <= most:
        raise UsageError(usage)
    return words + [None] * (most - len(words))


def _splitFirst(rest, usage):
    """
    The first word of C{rest} and everything after it, spacing kept.
    """
    rest = rest.lstrip()
    first, _, text = rest.partition(" ")
    if not first or not text.strip():
        raise UsageError(usage)
    return first, text


def parseExpect(rest):
    """
    The text and timeout of C{/expect TEXT [SECONDS]}: a last word that is a
    number is the timeout, unless TEXT is quoted.

    @raise UsageError: when there is no text.
    """
    rest = rest.strip()
    usage = "/expect TEXT [SECONDS]"
    if rest[:1] in ('"', "'"):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise UsageError(usage + ": unterminated quote")
        text, after = rest[1:end], rest[end + 1:].strip()
        if not after:
            return text, EXPECT_TIMEOUT
        try:
            return text, float(after)
        except ValueError:
            raise UsageError(usage) from None
    head, _, last = rest.rpartition(" ")
    if head.strip():
        try:
            return head.strip(), float(last)
        except ValueError:
            pass
    if not rest:
        raise UsageError(usage)
    return rest, EXPECT_TIMEOUT


@implementer(IClientUI, IHalfCloseableProtocol)
class Console(LineReceiver):
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

    def __init__(self, makeClient, clock, interactive=False, script=None, startup=(),
                 localtime=time.localtime, setEcho=lambda on: None):
        self.clock = clock
        self.interactive = interactive
        self.scripted = script is not None
        self.localtime = localtime
        self.setEcho = setEcho
        self.exitCode = None
        self.done = Deferred()
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
                                        _shortName(name), more, prompt)

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

    # -- IClientUI --------------------------------------------------------

    def messageReceived(self, room, sender, timestamp, text):
        self.show("%s <%s> %s" % (clean(roomLabel(room)), clean(sender), clean(text)),
                  stamp=True, timestamp=timestamp)

    def directMessageReceived(self, sender, peer, timestamp, text):
        if fold(sender) == fold(peer):
            where = "*dm*"
        else:
            where = "*dm to %s*" % (clean(peer),)
        self.show("%s <%s> %s" % (where, clean(sender), clean(text)),
                  stamp=True, timestamp=timestamp)

    def memberJoined(self, room, user, fingerprint):
        self.show("%s * %s joined (key %s)" % (clean(roomLabel(room)), clean(user),
                                                shortFingerprint(fingerprint)), stamp=True)

    def memberLeft(self, room, user):
        self.show("%s * %s left" % (clean(roomLabel(room)), clean(user)), stamp=True)

    def renamed(self, old, new):
        self.show("* %s is now known as %s" % (clean(old), clean(new)), stamp=True)

    def keyChanged(self, user, old, new):
        user = clean(user)
        lines = ["!!! WARNING: THE KEY OF %s HAS CHANGED !!!" % (user,),
                 "!!!   %-22s  %s" % ("pinned key (old)", "new key")]
        lines += ["!!!   %-22s  %s" % pair for pair in zip(_rows(old), _rows(new))]
        lines += [
            "!!! Either %s has a new device or reinstalled, or someone (perhaps the server)"
            % (user,),
            "!!! is trying to read what you send to %s. Nothing is sent to %s, and what %s"
            % (user, user, user),
            "!!! sends is held, until you decide. Ask %s, by phone or in person, to read out"
            % (user,),
            "!!! their fingerprint (/fingerprint) and compare it with the new key, group by",
            "!!! group. If they match, accept it by typing its last 4 characters:",
            "!!!   /trust %s LAST4      (or the whole of it:  /verify %s FINGERPRINT)"
            % (user, user),
            "!!! If they do not match:  /reject %s" % (user,),
        ]
        for line in lines:
            self.show(line, stamp=True)

    def ownKeyChanged(self, user, ours, claimed):
        user = clean(user)
        for line in [
            "!!! WARNING: THE SERVER GIVES ANOTHER KEY FOR YOU (%s) !!!" % (user,),
            "!!!   this device's key: %s" % (ours,),
            "!!!   the server's key:  %s" % (claimed,),
            "!!! Either the server is lying, or someone with your password (perhaps you, on",
            "!!! another device) changed your key: whoever holds it may read what is sent to %s."
            % (user,),
            "!!! Nothing more is sent from this session. If it was not you, do not trust this",
            "!!! server; to take the account back, start again and /login %s PASSWORD." % (user,),
        ]:
            self.show(line, stamp=True)

    def notice(self, text):
        self.show("-- %s" % (clean(text),), stamp=True)

    def dropped(self, text):
        self.show("!! %s" % (clean(text),), stamp=True)

    def held(self, text):
        self.show("-- %s" % (clean(text),), stamp=True)

    def fatal(self, text):
        for line in clean(text).split("\n"):
            self.show("!!! %s" % (line,), stamp=True)
        self.finish(1)

    def fileOffered(self, number, sender, room, name, size):
        where = " in %s" % (roomLabel(room),) if room is not None else ""
        self.show('file offer #%d from %s%s: "%s" (%s) \u2014 /accept %d [DIR] or /decline %d'
                  % (number, clean(sender), clean(where), clean(name), formatSize(size),
                     number, number), stamp=True)

    def fileProgress(self, number, direction, name, done, total):
        self._progressStarts.setdefault(number, (self.clock.seconds(), done))
        if self.interactive:
            self._progress[number] = (direction, name, done, total)
            now = self.clock.seconds()
            if (self._progressDrawn is None or now - self._progressDrawn >= PROGRESS_INTERVAL
                    or done >= total):
                self._progressDrawn = now
                self._redrawPrompt()
            return
        step = done * SCRIPT_STEPS // total if total else SCRIPT_STEPS
        if 0 < step < SCRIPT_STEPS and step > self._progressSteps.get(number, 0):
            self._progressSteps[number] = step
            rate = self._rate(number, done, total)
            self.show('%s #%d "%s": %d%% (%s of %s%s)'
                      % (direction, number, clean(name), done * 100 // total, formatSize(done),
                         formatSize(total), ", " + rate if rate else ""), stamp=True)

    def fileEnded(self, number, text, failed):
        self._progress.pop(number, None)
        self._progressSteps.pop(number, None)
        self._progressStarts.pop(number, None)
        self.show(("!! " if failed else "") + clean(text), stamp=True)

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
        d = Deferred()
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
        d = Deferred.fromCoroutine(self._stopClient())
        d.addBoth(lambda _: self.transport.loseConnection() if self.transport else None)

    async def _stopClient(self):
        try:
            await self.client.stop().addTimeout(STOP_TIMEOUT, self.clock)
        except Exception:
            pass

    # -- commands ---------------------------------------------------------

    async def _register(self, rest):
        usage = "/register USER [PASSWORD] [invite:TOKEN]"
        words = _words(rest, 1, 3, usage)[:3]
        invites = [w for w in words[1:] if w and w.startswith(INVITE_PREFIX)]
        others = [w for w in words[1:] if w and not w.startswith(INVITE_PREFIX)]
        if len(invites) > 1 or len(others) > 1:
            raise UsageError(usage)
        invite = invites[0][len(INVITE_PREFIX):] if invites else None
        user, password = words[0], (others[0] if others else None)
        if password is None and self.interactive:
            password = await self.askSecret("password for %s (Enter for none: log in with "
                                            "this device's key only): " % (user,))
            if password and password != await self.askSecret("the same password again: "):
                raise ClientError("the two passwords differ; nothing was registered")
        await self.client.register(user, password or "", invite)
        self.show("registered and logged in as %s; your key's fingerprint is %s"
                  % (self.client.user, self.client.fingerprint()))

    async def _login(self, rest):
        user, password = _words(rest, 1, 2, "/login USER [PASSWORD]")
        if password is None:
            if not self.interactive:
                raise ClientError("a password is needed: /login USER PASSWORD "
                                  "(nothing can be asked for without a terminal)")
            password = await self.askSecret("password of %s: " % (user,))
        await self.client.login(user, password)
        self.show("logged in as %s" % (self.client.user,))

    async def _auth(self, rest):
        (user,) = _words(rest, 1, 1, "/auth USER")
        await self.client.auth(user)
        self.show("logged in as %s with this device's key" % (self.client.user,))

    async def _nick(self, rest):
        (name,) = _words(rest, 1, 1, "/nick NAME")
        name = await self.client.nick(name)
        self.show("you are now known as %s" % (clean(name),))

    async def _create(self, rest):
        room, password = _words(rest, 1, 2, "/create ROOM [PASSWORD]")
        await self.client.create(room, password or "")
        self.show("created %s (/join %s to talk there)" % (clean(roomLabel(room)), clean(room)))

    async def _join(self, rest):
        room, password = _words(rest, 1, 2, "/join ROOM [PASSWORD]")
        room = await self.client.join(room, password or "")
        members = sorted(room.members, key=fold)
        self.show("joined %s: %d member%s (%s)"
                  % (clean(roomLabel(room.name)), len(members), "" if len(members) == 1 else "s",
                     clean(", ".join(members))))

    async def _leave(self, rest):
        (room,) = _words(rest, 0, 1, "/leave [ROOM]")
        name = await self.client.leave(room)
        self.show("left %s" % (clean(roomLabel(name)),))

    async def _switch(self, rest):
        (room,) = _words(rest, 1, 1, "/switch ROOM")
        name = self.client.switch(room)
        self.show("now talking in %s" % (clean(roomLabel(name)),))

    async def _rooms(self, rest):
        _words(rest, 0, 0, "/rooms")
        names = await self.client.listRooms()
        self.show("rooms: %s" % (clean(", ".join(roomLabel(n) for n in names)) or "none",))

    async def _users(self, rest):
        (room,) = _words(rest, 0, 1, "/users [ROOM]")
        names = await self.client.listUsers(room or "")
        where = "in %s" % (roomLabel(room),) if room else "online"
        self.show("%s: %s" % (clean(where), clean(", ".join(names)) or "nobody"))

    async def _send(self, rest):
        if not rest.strip():
            raise UsageError("/send TEXT")
        timestamp, room = await self.client.send(rest)
        self.show("%s <%s> %s" % (clean(roomLabel(room)), clean(self.client.user), clean(rest)),
                  stamp=True, timestamp=timestamp)

    async def _pm(self, rest):
        user, text = _splitFirst(rest, "/pm USER TEXT")
        timestamp, name = await self.client.pm(user, text)
        self.show("*dm to %s* <%s> %s" % (clean(name), clean(self.client.user), clean(text)),
                  stamp=True, timestamp=timestamp)

    async def _history(self, rest):
        words = _words(rest, 0, 2, "/history [ROOM] [N]")
        room, count = words
        if (count is None and room is not None and room.isdigit()
                and fold(room) not in self.client.rooms):
            room, count = None, room
        try:
            limit = int(count) if count is not None else 0
        except ValueError:
            raise UsageError("/history [ROOM] [N]: N is a number") from None
        if not 0 <= limit <= 500:
            raise UsageError("/history [ROOM] [N]: N is at most 500")
        name, rows = await self.client.history(room, limit)
        label = clean(roomLabel(name))
        for sender, timestamp, text, problem in rows:
            if text is None:
                self.show("%s <%s> (cannot be shown: %s)" % (label, clean(sender), clean(problem)),
                          stamp=True, timestamp=timestamp)
            else:
                self.show("%s <%s> %s" % (label, clean(sender), clean(text)),
                          stamp=True, timestamp=timestamp)
        self.show("history of %s: %d message%s" % (label, len(rows), "" if len(rows) == 1 else "s"))

    async def _keys(self, rest):
        kind, name = _words(rest, 2, 2, "/keys room|user NAME")
        if kind not in ("room", "user"):
            raise UsageError("/keys room|user NAME")
        rows = await self.client.keysOf(kind, name)
        label = roomLabel(name) if kind == "room" else name
        self.show("keys of %s (%d):" % (clean(label), len(rows)))
        for user, fingerprint, state in rows:
            self.show("  %-12s %s  [%s]" % (clean(user), fingerprint, state))

    async def _fingerprint(self, rest):
        (user,) = _words(rest, 0, 1, "/fingerprint [USER]")
        fingerprint = self.client.fingerprint(user)
        whose = user or self.client.user or "your key"
        self.show("fingerprint of %s: %s" % (clean(whose), fingerprint))

    async def _verify(self, rest):
        user, fingerprint = _splitFirst(rest, "/verify USER FINGERPRINT")
        verified = await self.client.verify(user, fingerprint)
        self.show("%s's key is verified: %s" % (clean(user), verified))

    async def _trust(self, rest):
        user, lastFour = _words(rest, 2, 2, "/trust USER LAST4")
        fingerprint = await self.client.trust(user, lastFour)
        self.show("accepted %s's new key %s" % (clean(user), fingerprint))

    async def _reject(self, rest):
        (user,) = _words(rest, 1, 1, "/reject USER")
        fingerprint = self.client.reject(user)
        self.show("rejected %s's new key %s: nothing is sent to %s, and what %s sends is "
                  "dropped, until the key changes again" % ((clean(user), fingerprint)
                                                            + (clean(user),) * 2))

    async def _file(self, rest):
        usage = "/file [room|user] NAME PATH"
        parts = rest.strip().split(None, 2)
        if len(parts) == 3 and parts[0].lower() in ("room", "user"):
            kind, name, path = parts[0].lower(), parts[1], parts[2]
        else:
            parts = rest.strip().split(None, 1)
            if len(parts) != 2:
                raise UsageError(usage)
            name, path = parts
            kind = "room" if name.startswith("#") else "user"
        out = await self.client.sendFile(kind, name, path)
        self.show("offered %s (%s in %d chunk%s); waiting for answers"
                  % (clean(out.label()), formatSize(out.size), out.chunks,
                     "" if out.chunks == 1 else "s"))

    async def _accept(self, rest):
        usage = "/accept [ID] [DIR]"
        words = rest.strip().split(None, 1)
        number = folder = None
        if words and words[0].lstrip("#").isdigit():
            number = _transferNumber(words[0], usage)
            folder = words[1] if len(words) > 1 else None
        elif words:
            folder = rest.strip()
        incoming = await self.client.acceptFile(number, folder)
        self.show("accepted %s (%s); saving into %s"
                  % (clean(incoming.label()), formatSize(incoming.size), clean(incoming.folder)))

    async def _decline(self, rest):
        usage = "/decline [ID]"
        (word,) = _words(rest, 0, 1, usage)
        number = _transferNumber(word, usage) if word is not None else None
        incoming = await self.client.declineFile(number)
        self.show("declined %s" % (clean(incoming.label()),))

    async def _cancel(self, rest):
        usage = "/cancel ID"
        (word,) = _words(rest, 1, 1, usage)
        transfer = await self.client.cancelFile(_transferNumber(word, usage))
        self.show("cancelled %s" % (clean(transfer.label()),))

    async def _files(self, rest):
        _words(rest, 0, 0, "/files")
        transfers = self.client.fileTransfers()
        if not transfers:
            self.show("no file offers or transfers")
            return
        for transfer in transfers:
            if isinstance(transfer, Incoming) and transfer.state == Incoming.OFFERED:
                where = " in %s" % (roomLabel(transfer.room),) if transfer.room else ""
                self.show('  #%d offer from %s%s: "%s" (%s) \u2014 /accept %d or /decline %d'
                          % (transfer.number, clean(transfer.sender), clean(where),
                             clean(transfer.name), formatSize(transfer.size), transfer.number,
                             transfer.number))
            elif getattr(transfer, "accepted", 0) is None:
                self.show("  %s (%s): waiting for answers"
                          % (clean(transfer.label()), formatSize(transfer.size)))
            else:
                self.show("  %s: %s %s of %s"
                          % (clean(transfer.label()), transfer.direction,
                             progressBar(transfer.done, transfer.size), formatSize(transfer.size)))

    async def _help(self, rest):
        entries = HELP + ([] if self.interactive else SCRIPT_HELP)
        width = max(len(usage) for usage, _ in entries)
        self.show("commands:")
        for usage, what in entries:
            self.show("  %-*s  %s" % (width, usage, what))

    async def _exit(self, rest):
        self.finish(0)

    async def _wait(self, rest):
        self._scriptOnly("/wait")
        (seconds,) = _words(rest, 1, 1, "/wait SECONDS")
        try:
            seconds = float(seconds)
        except ValueError:
            raise UsageError("/wait SECONDS") from None
        await deferLater(self.clock, seconds)

    async def _expect(self, rest):
        self._scriptOnly("/expect")
        text, timeout = parseExpect(rest)
        while self._unread:
            if text in self._unread.popleft():
                return
        d = Deferred()
        self._expecting = (text, d)

        def expire():
            if self._expecting is not None and self._expecting[1] is d:
                self._expecting = None
                d.callback(False)
        timer = self.clock.callLater(timeout, expire)
        found = await d
        if timer.active():
            timer.cancel()
        if not found and self.exitCode is None:
            self.show("expect failed: nothing containing %r was shown within %g s"
                      % (text, timeout))
            self.finish(1)

    def _scriptOnly(self, command):
        if self.interactive:
            raise ClientError("%s is for scripts and piped input" % (command,))

    _commands = {
        "register": _register,
        "login": _login,
        "auth": _auth,
        "nick": _nick,
        "create": _create,
        "join": _join,
        "leave": _leave,
        "switch": _switch,
        "rooms": _rooms,
        "users": _users,
        "send": _send,
        "pm": _pm,
        "msg": _pm,
        "history": _history,
        "keys": _keys,
        "fingerprint": _fingerprint,
        "verify": _verify,
        "trust": _trust,
        "reject": _reject,
        "file": _file,
        "accept": _accept,
        "decline": _decline,
        "cancel": _cancel,
        "files": _files,
        "help": _help,
        "exit": _exit,
        "quit": _exit,
        "wait": _wait,
        "expect": _expect,
    }
