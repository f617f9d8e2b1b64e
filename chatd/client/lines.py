# -*- test-case-name: chatd.test.test_console -*-
"""
How the terminal client's lines look and how typed lines are read: the help
tables, the numbers of the display, text made safe for a terminal, progress
bars, and the small parsers the commands share. Pure functions, no terminal.
"""

import re

from chatd.client import devicecommands, moderation
from chatd.client.transfers import formatSize

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
    ("/create ROOM [PASSWORD] [history=N]", "create a room without joining it; newcomers "
                                            "get its last N messages (0 to 500, default 0)"),
    ("/join ROOM [PASSWORD]", "join a room (creating it if need be) and talk there"),
    ("/leave [ROOM]", "leave a room (the one you talk in by default)"),
    ("/switch ROOM", "talk in another of your rooms"),
    ("/rooms", "list the rooms"),
    ("/users [ROOM]", "list who is online, or in a room"),
    ("/send TEXT", "say TEXT in your room; so does any line not starting with /"),
    ("/pm USER TEXT", "send USER a direct message"),
    ("/history [ROOM|@USER] [N]", "show a room's last N messages (default 50), or "
                                  "those between you and USER"),
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
    *moderation.HELP,
    *devicecommands.HELP,
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


def fingerprintRows(fingerprint):
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


def shortName(name):
    name = clean(name)
    return name if len(name) <= PROGRESS_NAME else name[:PROGRESS_NAME - 1] + "\u2026"


def transferNumber(word, usage):
    """
    The number of C{ID} or C{#ID}.
    """
    digits = word[1:] if word.startswith("#") else word
    if not digits.isdigit():
        raise UsageError(usage)
    return int(digits)


def takeWords(rest, least, most, usage):
    words = rest.split()
    if not least <= len(words) <= most:
        raise UsageError(usage)
    return words + [None] * (most - len(words))


def splitFirst(rest, usage):
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
