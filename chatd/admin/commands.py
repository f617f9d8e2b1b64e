# -*- test-case-name: chatd.test.test_admin -*-
"""
The subcommands of C{python -m chatd.admin}.

Each is an C{async} function of a L{Context} and its own parsed options, and
returns an L{Answer}: the text for a person and the value C{--json} prints.
Refusals raise L{AdminError}, whose message is printed as it is.
"""

import datetime
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Optional

from chatd.credentials import Credentials
from chatd.errors import ChatError, Conflict, NotFound
from chatd.names import fold, isGuestName, isUserName
from chatd.store import moderation, operations
from chatd.store.engines import SQLITE, engineForURL
from chatd.store.keycheck import checkStoredKeys
from chatd.store.seal import AtRestKeyError

DAY_MS = 24 * 60 * 60 * 1000


class AdminError(Exception):
    """
    A command cannot be done; the message says why, for the operator.
    """


@dataclass
class Context:
    """
    What every command works with.

    @ivar store: the opened L{chatd.store.sql.AdbapiStore}.
    @ivar keys: the data directory's L{chatd.store.seal.AtRestKeys}.
    @ivar settings: the L{chatd.config.Settings}.
    @ivar clock: an L{IReactorTime}.
    @ivar readPassword: called with a prompt, returns a password.
    """

    store: Any
    keys: Any
    settings: Any
    clock: Any
    readPassword: Callable[[str], str]

    def nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)


@dataclass(frozen=True)
class Answer:
    """
    @ivar text: what a person reads (the lines printed without C{--json}).
    @ivar value: what C{--json} prints.
    """

    text: str
    value: Any


def _iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
        timespec="seconds")


async def _run(context, operation, *args):
    """
    Run an operation of L{chatd.store.operations}, its refusal an
    L{AdminError}.
    """
    try:
        return await context.store.run(operation, *args)
    except ChatError as e:
        raise AdminError(e.message) from None


async def users(context, options):
    rows = await _run(context, operations.listAccounts)
    value = [{"name": name, "password": password, "banned": banned, "rooms": rooms,
              "created": _iso(created)}
             for name, password, banned, rooms, created in rows]
    lines = ["%-32s %-8s %-6s %5s  %s" % ("NAME", "PASSWORD", "BANNED", "ROOMS", "CREATED")]
    lines += ["%-32s %-8s %-6s %5d  %s" % (u["name"], "yes" if u["password"] else "no",
                                          "yes" if u["banned"] else "no", u["rooms"],
                                          u["created"]) for u in value]
    return Answer("\n".join(lines), value)


async def rooms(context, options):
    rows = await _run(context, operations.listRooms)
    value = [{"name": name, "password": password, "members": members, "messages": messages}
             for name, password, members, messages in rows]
    lines = ["%-32s %-8s %7s %8s" % ("NAME", "PASSWORD", "MEMBERS", "MESSAGES")]
    lines += ["%-32s %-8s %7d %8d" % (r["name"], "yes" if r["password"] else "no",
                                      r["members"], r["messages"]) for r in value]
    return Answer("\n".join(lines), value)


def _checkName(name):
    if not isUserName(name):
        raise AdminError("invalid name %r: 1-32 of A-Z a-z 0-9 _ . -" % (name,))
    if isGuestName(name):
        raise AdminError("names like %s are reserved for guests" % (name,))


async def _newPasswordHash(context, name):
    password = context.readPassword("New password for %s: " % (name,))
    if not 8 <= len(password.encode("utf-8")) <= 72:
        raise AdminError("passwords are 8 to 72 bytes")
    return await Credentials(context.settings.bcryptCost).hashPassword(password)


async def createUser(context, options):
    """
    An account that logs in with a password. It has no public key until its
    first login, where the clients publish theirs (SET_KEY), as they do after
    any password login on a new device.
    """
    name = options["name"]
    _checkName(name)
    if await context.store.getAccount(name) is not None:
        raise AdminError("name in use: %s" % (name,))
    passwordHash = await _newPasswordHash(context, name)
    try:
        await context.store.createAccount(name, passwordHash, b"")
    except Conflict:
        raise AdminError("name in use: %s" % (name,)) from None
    return Answer("created %s" % (name,), {"created": name})


async def resetPassword(context, options):
    name = options["name"]
    if await context.store.getAccount(name) is None:
        raise AdminError("no such account: %s" % (name,))
    passwordHash = await _newPasswordHash(context, name)
    await _run(context, operations.setPassword, fold(name), passwordHash)
    return Answer("new password set for %s" % (name,), {"passwordReset": name})


async def deleteUser(context, options):
    name = options["name"]
    await _run(context, operations.deleteAccount, fold(name))
    return Answer("deleted %s and its memberships" % (name,), {"deleted": name})


def _banCommand(banned, verb):
    async def command(context, options):
        name = options["name"]
        await _run(context, operations.setBanned, fold(name), banned)
        return Answer("%s %s" % (verb, name), {verb: name})
    command.__name__ = verb
    return command


ban = _banCommand(True, "banned")
unban = _banCommand(False, "unbanned")


async def owner(context, options):
    """
    Make an account an owner of a room, beside any owner it has: for a room a
    guest made (which has none), or one whose owners are gone. It lifts a ban
    of the account there. A running server sees it at once: it reads roles
    from the store for each moderation request.
    """
    room, name = options["room"], options["name"]
    try:
        await context.store.run(moderation.setRole, fold(room), fold(name), moderation.OWNER)
    except NotFound as e:
        raise AdminError("%s: %s" % (e.message, room if e.message == "no such room" else name)) \
            from None
    return Answer("%s now owns %s" % (name, room), {"owner": name, "room": room})


async def invite(context, options):
    token = operations.newInviteToken()
    expires = options["expires"]
    expiresMs = context.nowMs() + expires * DAY_MS if expires else None
    await context.store.createInvite(token, options["uses"], expiresMs)
    return Answer(token, {"token": token, "uses": options["uses"],
                          "expires": _iso(expiresMs)})


async def rotateKey(context, options):
    """
    Re-seal, batch by batch, every message not sealed with the newest key.
    Each batch commits alone, so an interrupted run, run again, goes on where
    it stopped.
    """
    resealed = skipped = 0
    for table, _ in operations.SEALED_TABLES:
        after = 0
        while True:
            done, damaged, last = await _run(context, operations.resealBatch, context.keys,
                                             after, operations.RESEAL_BATCH, table)
            resealed += done
            skipped += damaged
            if last is None:
                break
            after = last
    text = "re-sealed %d messages with key %s" % (resealed, context.keys.newestId)
    if skipped:
        text += "; %d did not open and were left as they are" % (skipped,)
    return Answer(text, {"resealed": resealed, "skipped": skipped,
                         "key": context.keys.newestId})


def sqlitePath(settings):
    """
    The database file of an SQLite C{--db}.

    @raise AdminError: for any other database.
    """
    engine, connectionArgs = engineForURL(settings.db)
    if engine is not SQLITE:
        raise AdminError("backup and restore are for SQLite; back %s up with its own "
                         "tools (pg_dump and pg_restore)" % (engine.name,))
    return connectionArgs[0]


def _copy(source, target):
    """
    Copy one SQLite database into another through SQLite's online backup API,
    which reads a consistent snapshot even while a server writes, and writes
    under the target's lock.
    """
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(target)
        try:
            dst.execute("PRAGMA busy_timeout=5000")
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def backup(settings, path):
    """
    Copy the live SQLite database to C{path}, a new file readable by its owner
    only. The at-rest key file is not in it: without that file the copy's
    history cannot be read, so keep a copy of the key apart.
    """
    database = sqlitePath(settings)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise AdminError("cannot create %s: %s" % (path, e.strerror)) from None
    _copy(database, path)
    return Answer("backed up %s to %s (keep a copy of the at-rest key file too)"
                  % (database, path), {"backup": path, "database": database})


def restore(settings, keys, path):
    """
    Replace the SQLite database with the backup at C{path}, once it is known
    to be a chatd database whose messages the key file opens. Stop the server
    first: it keeps rooms and accounts in memory. The store is then opened as
    usual, which upgrades an older schema.
    """
    database = sqlitePath(settings)
    try:
        check = sqlite3.connect("file:%s?mode=ro" % (path,), uri=True)
        try:
            [(version,)] = check.execute("SELECT version FROM schema_version").fetchall()
            if version >= 2:
                checkStoredKeys(check.cursor(), lambda txn, query, parameters=():
                                txn.execute(query, parameters), keys)
        finally:
            check.close()
    except sqlite3.Error as e:
        raise AdminError("%s is not a chatd database: %s" % (path, e)) from None
    except AtRestKeyError as e:
        raise AdminError("not restored: %s" % (e,)) from None
    _copy(path, database)
    return Answer("restored %s from %s" % (database, path),
                  {"restored": database, "backup": path})


# The commands that work through the opened store.
STORE_COMMANDS = {
    "users": users,
    "rooms": rooms,
    "create-user": createUser,
    "reset-password": resetPassword,
    "delete-user": deleteUser,
    "invite": invite,
    "owner": owner,
    "ban": ban,
    "unban": unban,
    "rotate-key": rotateKey,
}
