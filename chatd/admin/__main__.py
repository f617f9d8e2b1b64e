# -*- test-case-name: chatd.test.test_admin -*-
"""
C{python -m chatd.admin} (C{chatd-admin}): manage a chatd server's accounts,
invites, bans, keys and backups from a shell.

    chatd-admin [--config FILE] [--data-dir DIR] [--db URL] [--key-file PATH]
                [--json] COMMAND [ARGS]

Run it as the user the server runs as, on the server's data directory: it
opens the same files, with the same settings. Passwords are asked for without
echo on a terminal, or read from the first line of standard input otherwise.
"""

import getpass
import json
import sys

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python import usage

import chatd
from chatd import datadir
from chatd.admin import commands
from chatd.config import ConfigError, parseDatabase, parseText, readConfigFile, settingsFrom
from chatd.startup import StartupError
from chatd.store import makeStore


class _Named(usage.Options):
    """
    A subcommand of one account name.
    """

    # usage.Options passes the positional arguments to parseArgs, which its
    # stub declares without any: hence the ignore, here and below.
    def parseArgs(self, name):  # type: ignore[override]
        self["name"] = name


def _uses(value):
    uses = int(value)
    if uses < 1:
        raise ValueError("an invite is good for at least one registration")
    return uses


def _days(value):
    days = int(value)
    if days < 1:
        raise ValueError("an invite expires after at least one day")
    return days


class _RoomAndName(usage.Options):
    """
    A subcommand of a room and an account name.
    """

    def parseArgs(self, room, name):  # type: ignore[override]
        self["room"] = room
        self["name"] = name


class _Invite(usage.Options):
    optParameters = [
        ["uses", None, 1, "How many registrations the token admits.", _uses],
        ["expires", None, None, "Days until the token expires [default: never].", _days],
    ]


class _File(usage.Options):
    def parseArgs(self, path):  # type: ignore[override]
        self["path"] = path


class _Nothing(usage.Options):
    pass


class Options(usage.Options):
    """
    The command line of C{python -m chatd.admin}.
    """

    synopsis = "Usage: chatd-admin [options] COMMAND [ARGS]"
    longdesc = ("Manage a chatd server's accounts, invites, bans, room owners, at-rest "
                "keys and backups. Reads the server's settings: give it the same --config, "
                "--data-dir or --db as the server, and run it as the server's user. "
                "Safe while the server runs (restore excepted: stop the server first).")

    optParameters = [
        ["config", None, None, "Read settings from this INI file, as the server does."],
        ["data-dir", None, None, "The server's data directory.", parseText],
        ["db", None, None, "The server's database URL.", parseDatabase],
        ["key-file", None, None, "The server's at-rest key file.", parseText],
    ]
    optFlags = [["json", None, "Print JSON, for scripts."]]

    subCommands = [
        ["users", None, _Nothing, "List the accounts."],
        ["rooms", None, _Nothing, "List the rooms."],
        ["create-user", None, _Named, "NAME: make an account with a password."],
        ["reset-password", None, _Named, "NAME: set a new password."],
        ["delete-user", None, _Named, "NAME: delete an account and its memberships."],
        ["invite", None, _Invite, "Make an invite token, printed alone on its line."],
        ["ban", None, _Named, "NAME: refuse the account's logins on every door."],
        ["unban", None, _Named, "NAME: lift a ban."],
        ["owner", None, _RoomAndName, "ROOM NAME: make the account an owner of the room."],
        ["rotate-key", None, _Nothing, "Re-seal every stored message with the newest "
                                        "at-rest key (resumable)."],
        ["backup", None, _File, "FILE: copy the live SQLite database to a new file."],
        ["restore", None, _File, "FILE: replace the SQLite database with a backup."],
    ]

    def opt_version(self):
        """Print chatd's version and exit."""
        chatd.printVersion()

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("name a command (see --help)")
        values = readConfigFile(self["config"]) if self["config"] else {}
        for key in ("data-dir", "db", "key-file"):
            if self[key] is not None:
                values[key] = self[key]
        # The admin command listens on nothing: the server's listeners are
        # not checked here.
        for door in ("binary", "text", "web"):
            values[door] = ("none",)
        self["settings"] = settingsFrom(values)
        if self["settings"].db == "memory:":
            raise usage.UsageError("a memory: database lives inside its server only")


def readPassword(prompt, stdin=None, getpass=getpass.getpass):
    """
    A password: asked for twice without echo on a terminal, else the first
    line of standard input.
    """
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass(prompt)
    if getpass("Again: ") != first:
        raise commands.AdminError("the passwords differ")
    return first


async def run(reactor, options, readPassword=readPassword):
    """
    Do the command C{options} name.

    @return: the L{commands.Answer}.
    @raise commands.AdminError: when it cannot be done.
    @raise StartupError: when the data directory or the database cannot be used.
    """
    settings = options["settings"]
    name, sub = options.subCommand, options.subOptions
    dataDir = datadir.prepare(settings.dataDir, keyFile=settings.keyFile or None)
    if name == "backup":
        return commands.backup(settings, sub["path"])
    if name == "restore":
        answer = commands.restore(settings, dataDir.keys, sub["path"])
        # Opening upgrades the restored schema and checks it, as a start would.
        store = makeStore(settings.db, dataDir.keys, reactor)
        await store.open()
        await store.close()
        return answer
    store = makeStore(settings.db, dataDir.keys, reactor)
    await store.open()
    try:
        context = commands.Context(store, dataDir.keys, settings, reactor, readPassword)
        return await commands.STORE_COMMANDS[name](context, sub)
    finally:
        await store.close()


def _fail(message, code=1):
    sys.stderr.write("chatd-admin: %s\n" % (message,))
    raise SystemExit(code)


def main(reactor, *argv):
    options = Options()
    try:
        options.parseOptions(argv)
    except (usage.UsageError, ConfigError) as e:
        _fail("%s (see --help)" % (e,), 2)

    def show(answer):
        if options["json"]:
            print(json.dumps(answer.value, indent=1, sort_keys=True))
        else:
            print(answer.text)

    def failed(failure):
        if failure.check(commands.AdminError):
            _fail(str(failure.value))
        if failure.check(StartupError):
            _fail(str(failure.value))
        return failure

    return Deferred.fromCoroutine(run(reactor, options)).addCallbacks(show, failed)


def script():
    """
    The C{chatd-admin} console script.
    """
    task.react(main, sys.argv[1:])


if __name__ == "__main__":
    script()
