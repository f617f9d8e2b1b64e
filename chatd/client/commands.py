# -*- test-case-name: chatd.test.test_console -*-
"""
The terminal client's commands: one method per command, each parsing its
words, calling L{chatd.client.chat.ChatClient} and showing the result; and the
table that names them (C{/help} lists it).
"""

from typing import Any, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from chatd.client import devicecommands, moderation
from chatd.client.errors import ClientError
from chatd.client.files import Incoming, formatSize
from chatd.client.lines import (
    HELP,
    INVITE_PREFIX,
    SCRIPT_HELP,
    UsageError,
    clean,
    parseExpect,
    progressBar,
    roomLabel,
    splitFirst,
    takeWords,
    transferNumber,
)
from chatd.names import fold


class Commands:
    """
    The commands of L{chatd.client.console.Console}, which this is mixed into
    (a mixin so that splitting the module changed no behaviour): they use its
    C{client}, C{clock}, C{show}, C{askSecret}, C{interactive} and C{finish}.
    """

    # What the object this is mixed into provides (for type checkers).
    _unread: Any
    _expecting: Optional[Tuple[str, Deferred]]
    askSecret: Any
    client: Any
    clock: Any
    exitCode: Any
    finish: Any
    interactive: Any
    show: Any
    who: Any

    async def _register(self, rest):
        usage = "/register USER [PASSWORD] [invite:TOKEN]"
        words = takeWords(rest, 1, 3, usage)[:3]
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
        code = await self.client.register(user, password or "", invite)
        self.show("registered and logged in as %s; your key's fingerprint is %s"
                  % (self.client.user, self.client.fingerprint()))
        if code is not None:
            await devicecommands.showRecoveryCode(self, code)

    async def _login(self, rest):
        user, password = takeWords(rest, 1, 2, "/login USER [PASSWORD]")
        if password is None:
            if not self.interactive:
                raise ClientError("a password is needed: /login USER PASSWORD "
                                  "(nothing can be asked for without a terminal)")
            password = await self.askSecret("password of %s: " % (user,))
        if await self.client.login(user, password) is False:
            # A new device, waiting for approval (chatd.client.devices).
            self.show(self.client.approveLine())
        else:
            self.show("logged in as %s" % (self.client.user,))

    async def _auth(self, rest):
        (user,) = takeWords(rest, 1, 1, "/auth USER")
        await self.client.auth(user)
        self.show("logged in as %s with this device's key" % (self.client.user,))

    async def _nick(self, rest):
        (name,) = takeWords(rest, 1, 1, "/nick NAME")
        name = await self.client.nick(name)
        self.show("you are now known as %s" % (clean(name),))

    async def _create(self, rest):
        usage = "/create ROOM [PASSWORD] [history=N]"
        words = takeWords(rest, 1, 3, usage)
        history = 0
        if words[-1] is None and words[1] is not None and words[1].startswith("history="):
            words[1], words[2] = None, words[1]
        if words[2] is not None:
            if not words[2].startswith("history=") or not words[2][8:].isdigit():
                raise UsageError(usage)
            history = int(words[2][8:])
            if history > 500:
                raise UsageError("%s: N is at most 500" % (usage,))
        room, password = words[0], words[1]
        await self.client.create(room, password or "", *((history,) if history else ()))
        self.show("created %s (/join %s to talk there)" % (clean(roomLabel(room)), clean(room)))

    async def _join(self, rest):
        room, password = takeWords(rest, 1, 2, "/join ROOM [PASSWORD]")
        room = await self.client.join(room, password or "")
        members = sorted(room.members, key=fold)
        self.show("joined %s: %d member%s (%s)"
                  % (clean(roomLabel(room.name)), len(members), "" if len(members) == 1 else "s",
                     clean(", ".join(members))))

    async def _leave(self, rest):
        (room,) = takeWords(rest, 0, 1, "/leave [ROOM]")
        name = await self.client.leave(room)
        self.show("left %s" % (clean(roomLabel(name)),))

    async def _switch(self, rest):
        (room,) = takeWords(rest, 1, 1, "/switch ROOM")
        name = self.client.switch(room)
        self.show("now talking in %s" % (clean(roomLabel(name)),))

    async def _rooms(self, rest):
        takeWords(rest, 0, 0, "/rooms")
        names = await self.client.listRooms()
        self.show("rooms: %s" % (clean(", ".join(roomLabel(n) for n in names)) or "none",))

    async def _users(self, rest):
        (room,) = takeWords(rest, 0, 1, "/users [ROOM]")
        names = await self.client.listUsers(room or "")
        where = "in %s" % (roomLabel(room),) if room else "online"
        self.show("%s: %s" % (clean(where), ", ".join(map(self.who, names)) or "nobody"))

    async def _send(self, rest):
        if not rest.strip():
            raise UsageError("/send TEXT")
        timestamp, room = await self.client.send(rest)
        self.show("%s <%s> %s" % (clean(roomLabel(room)), clean(self.client.user), clean(rest)),
                  stamp=True, timestamp=timestamp)

    async def _pm(self, rest):
        user, text = splitFirst(rest, "/pm USER TEXT")
        timestamp, name = await self.client.pm(user, text)
        self.show("*dm to %s* <%s> %s" % (clean(name), clean(self.client.user), clean(text)),
                  stamp=True, timestamp=timestamp)

    async def _history(self, rest):
        usage = "/history [ROOM|@USER] [N]"
        words = takeWords(rest, 0, 2, usage)
        room, count = words
        if (count is None and room is not None and room.isdigit()
                and fold(room) not in self.client.rooms):
            room, count = None, room
        try:
            limit = int(count) if count is not None else 0
        except ValueError:
            raise UsageError("%s: N is a number" % (usage,)) from None
        if not 0 <= limit <= 500:
            raise UsageError("%s: N is at most 500" % (usage,))
        name, rows = await self.client.history(room, limit)
        label = clean(roomLabel(name) if not name.startswith("@") else "*dm %s*" % (name[1:],))
        for sender, timestamp, text, problem in rows:
            if text is None:
                self.show("%s <%s> (cannot be shown: %s)" % (label, clean(sender), clean(problem)),
                          stamp=True, timestamp=timestamp)
            else:
                self.show("%s <%s> %s" % (label, clean(sender), clean(text)),
                          stamp=True, timestamp=timestamp)
        self.show("history of %s: %d message%s" % (label, len(rows), "" if len(rows) == 1 else "s"))

    async def _keys(self, rest):
        kind, name = takeWords(rest, 2, 2, "/keys room|user NAME")
        if kind not in ("room", "user"):
            raise UsageError("/keys room|user NAME")
        rows = await self.client.keysOf(kind, name)
        label = roomLabel(name) if kind == "room" else name
        self.show("keys of %s (%d):" % (clean(label), len(rows)))
        for user, fingerprint, state in rows:
            self.show("  %-12s %s  [%s]" % (clean(user), fingerprint, state))

    async def _fingerprint(self, rest):
        (user,) = takeWords(rest, 0, 1, "/fingerprint [USER]")
        fingerprint = self.client.fingerprint(user)
        whose = user or self.client.user or "your key"
        self.show("fingerprint of %s: %s" % (clean(whose), fingerprint))

    async def _verify(self, rest):
        user, fingerprint = splitFirst(rest, "/verify USER FINGERPRINT")
        verified = await self.client.verify(user, fingerprint)
        self.show("%s's key is verified: %s" % (clean(user), verified))

    async def _trust(self, rest):
        user, lastFour = takeWords(rest, 2, 2, "/trust USER LAST4")
        fingerprint = await self.client.trust(user, lastFour)
        self.show("accepted %s's new key %s" % (clean(user), fingerprint))

    async def _reject(self, rest):
        (user,) = takeWords(rest, 1, 1, "/reject USER")
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
            number = transferNumber(words[0], usage)
            folder = words[1] if len(words) > 1 else None
        elif words:
            folder = rest.strip()
        incoming = await self.client.acceptFile(number, folder)
        self.show("accepted %s (%s); saving into %s"
                  % (clean(incoming.label()), formatSize(incoming.size), clean(incoming.folder)))

    async def _decline(self, rest):
        usage = "/decline [ID]"
        (word,) = takeWords(rest, 0, 1, usage)
        number = transferNumber(word, usage) if word is not None else None
        incoming = await self.client.declineFile(number)
        self.show("declined %s" % (clean(incoming.label()),))

    async def _cancel(self, rest):
        usage = "/cancel ID"
        (word,) = takeWords(rest, 1, 1, usage)
        transfer = await self.client.cancelFile(transferNumber(word, usage))
        self.show("cancelled %s" % (clean(transfer.label()),))

    async def _files(self, rest):
        takeWords(rest, 0, 0, "/files")
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
        (seconds,) = takeWords(rest, 1, 1, "/wait SECONDS")
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
        d: Deferred = Deferred()
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
        # Functions of the console and the words, as these are.
        **moderation.COMMANDS,
        **devicecommands.COMMANDS,
    }
