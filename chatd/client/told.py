# -*- test-case-name: chatd.test.test_console -*-
"""
What the terminal client is told (L{IClientUI}: messages, members, key
changes, file offers and progress), shown as readable lines.

A mixin of L{chatd.client.console.Console}, like L{chatd.client.commands}:
its own module because wording what happened is one idea and reading and
running the person's lines is another, and together they outgrew one module.
"""

from typing import Any

from chatd.client.files import formatSize
from chatd.client.lines import (
    PROGRESS_INTERVAL,
    SCRIPT_STEPS,
    clean,
    fingerprintRows,
    roomLabel,
    shortFingerprint,
)
from chatd.names import fold


class Told:
    """
    The L{IClientUI} events of L{chatd.client.console.Console}, which this is
    mixed into: they use its C{client}, C{clock}, C{show}, C{interactive},
    C{finish} and the state of its progress line.
    """

    # What the object this is mixed into provides (for type checkers).
    _progress: Any
    _progressDrawn: Any
    _progressStarts: Any
    _progressSteps: Any
    _rate: Any
    _redrawPrompt: Any
    client: Any
    clock: Any
    finish: Any
    interactive: Any
    show: Any


    def who(self, name):
        """
        A user's name as shown: marked when the user is a guest, whose name
        says nothing about who it is (anyone may take a free name).
        """
        return clean(name) + (" (guest)" if self.client.isGuest(name) else "")

    def messageReceived(self, room, sender, timestamp, text):
        self.show("%s <%s> %s" % (clean(roomLabel(room)), self.who(sender), clean(text)),
                  stamp=True, timestamp=timestamp)

    def directMessageReceived(self, sender, peer, timestamp, text):
        if fold(sender) == fold(peer):
            where = "*dm*"
        else:
            where = "*dm to %s*" % (clean(peer),)
        self.show("%s <%s> %s" % (where, self.who(sender), clean(text)),
                  stamp=True, timestamp=timestamp)

    def memberJoined(self, room, user, fingerprint):
        self.show("%s * %s joined (key %s)" % (clean(roomLabel(room)), self.who(user),
                                                shortFingerprint(fingerprint)), stamp=True)

    def memberLeft(self, room, user):
        self.show("%s * %s left" % (clean(roomLabel(room)), clean(user)), stamp=True)

    def renamed(self, old, new):
        self.show("* %s is now known as %s" % (clean(old), self.who(new)), stamp=True)

    def keyChanged(self, user, old, new):
        user = clean(user)
        lines = ["!!! WARNING: THE KEY OF %s HAS CHANGED !!!" % (user,),
                 "!!!   %-22s  %s" % ("pinned key (old)", "new key")]
        rows = zip(fingerprintRows(old), fingerprintRows(new))
        lines += ["!!!   %-22s  %s" % pair for pair in rows]
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
