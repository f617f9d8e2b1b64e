# -*- test-case-name: chatd.test.test_client_moderation -*-
"""
The terminal client's room moderation commands: C{/kick}, C{/ban}, C{/unban},
C{/op}, C{/deop}, C{/topic}, C{/password}, C{/destroy} and C{/info}
(docs/protocol.rst, Room moderation). The client shows the moderation events
itself (L{chatd.client.chat}).

Each command is a function of the console and the words after the command, as
the console's own are; the table and the help lines are merged into the
console's (L{chatd.client.commands}, L{chatd.client.lines}), which keeps this
apart from the modules it extends.
"""

from chatd.client.errors import ClientError
from chatd.names import fold
from chatd.protocols.opcodes import ROLE_CODES, Op

HELP = [
    ("/kick NAME [ROOM] [REASON]", "take NAME out of a room you moderate (default: "
                                   "the one you talk in); NAME may come back"),
    ("/ban NAME [ROOM] [REASON]", "keep NAME out of a room you moderate"),
    ("/unban NAME [ROOM]", "let NAME into the room again"),
    ("/op NAME [ROOM]", "make NAME an operator of a room you own"),
    ("/deop NAME [ROOM]", "take NAME's role in a room you own away"),
    ("/topic [ROOM] TEXT", "set the room's topic (an empty TEXT removes it)"),
    ("/password ROOM [NEW]", "set or remove the room's password"),
    ("/destroy ROOM", "delete a room you own, with its history"),
    ("/info [ROOM]", "show the room's topic, owners, operators (and bans, to them)"),
]


def _usage(usage):
    return ClientError("usage: %s" % (usage,))


def _room(console, words, usage):
    """
    The room a command names among its C{words} (popped), or the room the
    user talks in.
    """
    client = console.client
    if words and (words[0].startswith("#") or fold(words[0]) in client.rooms):
        return words.pop(0)
    if client.active is None:
        raise ClientError("you talk in no room: name one (%s)" % (usage,))
    return client.active


def _nameAndRoom(console, rest, usage, reason=False):
    words = rest.split()
    if not words:
        raise _usage(usage)
    name = words.pop(0)
    room = _room(console, words, usage)
    if words and not reason:
        raise _usage(usage)
    return name, room, " ".join(words)


def _dropMember(client, room, name):
    """
    Take a kicked or banned member out of our picture of the room: the
    session that asked gets the answer, not the event.
    """
    target = client.rooms.get(fold(room))
    if target is not None:
        for member in [m for m in target.members if fold(m) == fold(name)]:
            del target.members[member]


async def kick(console, rest):
    name, room, reason = _nameAndRoom(console, rest, "/kick NAME [ROOM] [REASON]", True)
    await console.client.call(Op.KICK, room, name, reason)
    _dropMember(console.client, room, name)
    console.show("kicked %s out of %s" % (name, room))


async def ban(console, rest):
    name, room, reason = _nameAndRoom(console, rest, "/ban NAME [ROOM] [REASON]", True)
    await console.client.call(Op.BAN, room, name, reason)
    _dropMember(console.client, room, name)
    console.show("banned %s from %s" % (name, room))


async def unban(console, rest):
    name, room, _ = _nameAndRoom(console, rest, "/unban NAME [ROOM]")
    await console.client.call(Op.UNBAN, room, name)
    console.show("%s may come into %s again" % (name, room))


async def op(console, rest):
    name, room, _ = _nameAndRoom(console, rest, "/op NAME [ROOM]")
    await console.client.call(Op.SET_ROLE, room, name, ROLE_CODES["operator"])
    console.show("%s is now an operator of %s" % (name, room))


async def deop(console, rest):
    name, room, _ = _nameAndRoom(console, rest, "/deop NAME [ROOM]")
    await console.client.call(Op.SET_ROLE, room, name, ROLE_CODES[None])
    console.show("%s has no role in %s any more" % (name, room))


async def topic(console, rest):
    words = rest.strip().split(" ")
    room = _room(console, words, "/topic [ROOM] TEXT")
    text = " ".join(words).strip()
    await console.client.call(Op.SET_TOPIC, room, text)
    console.show("topic of %s %s" % (room, "set" if text else "removed"))


async def password(console, rest):
    words = rest.split()
    if not 1 <= len(words) <= 2:
        raise _usage("/password ROOM [NEW]")
    await console.client.call(Op.SET_PASSWORD, words[0], words[1] if len(words) == 2 else "")
    console.show("password of %s %s" % (words[0], "set" if len(words) == 2 else "removed"))


async def destroy(console, rest):
    words = rest.split()
    if len(words) != 1:
        raise _usage("/destroy ROOM")
    await console.client.call(Op.DESTROY, words[0])
    # The server tells the other members; this session has only the answer.
    console.client._forget(words[0])
    console.show("destroyed %s" % (words[0],))


async def info(console, rest):
    words = rest.split()
    room = _room(console, words, "/info [ROOM]")
    if words:
        raise _usage("/info [ROOM]")
    text, owners, operators, banned = await console.client.call(Op.ROOM_INFO, room)
    lines = ["%s: %s" % (room, ("topic: " + text) if text else "no topic"),
             "  owners: %s" % (", ".join(owners) or "none"),
             "  operators: %s" % (", ".join(operators) or "none")]
    if banned:
        lines.append("  banned: %s" % (", ".join(banned),))
    for line in lines:
        console.show(line)


COMMANDS = {"kick": kick, "ban": ban, "unban": unban, "op": op, "deop": deop, "topic": topic,
            "password": password, "destroy": destroy, "info": info}
