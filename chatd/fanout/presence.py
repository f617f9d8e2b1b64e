# -*- test-case-name: chatd.test.test_fanout -*-
"""
What a node tells the cluster about its own users: its user hash, and its
whole state when others may have given it up.

C{chatd:node:<id>:users} holds one entry per local user (name, key, account,
rooms), written before the events that change it are published, so that a node
that reads it after subscribing misses nothing. After a reconnect, or when its
heartbeat had expired, a node rewrites the hash whole and publishes a C{sync}
of every entry, so that nodes that gave it up take its users back.
"""

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from twisted.internet.interfaces import IDelayedCall

from chatd.fanout.events import dumps, encodeValue
from chatd.interfaces import IDirectoryView
from chatd.model import UserView
from chatd.names import fold

if TYPE_CHECKING:
    from chatd.fanout.connections import Connections
    from chatd.fanout.outbox import Outbox
    from chatd.fanout.rooms import RoomEvents


def entryOf(user: UserView) -> Dict[str, Any]:
    """
    The hash entry of a L{chatd.model.UserView}.
    """
    return {"user": user.name, "key": user.key, "account": user.account,
            "rooms": list(user.rooms)}


class Presence:
    """
    This node's users as the cluster sees them.

    @param connections: the node's L{chatd.fanout.connections.Connections}.
    @param outbox: its L{chatd.fanout.outbox.Outbox}, for hash writes in
        order with the events.
    @param view: the core's L{chatd.interfaces.IDirectoryView}.
    @param rooms: the node's L{chatd.fanout.rooms.RoomEvents}, kept subscribed
        to the rooms its users are in.
    @param source: the C{"n"} and C{"i"} fields of what this node publishes.
    @param ttl: seconds the heartbeat outlives the last beat.
    """

    def __init__(self, connections: "Connections", outbox: "Outbox", view: IDirectoryView,
                 rooms: "RoomEvents", source: Dict[str, str], ttl: float) -> None:
        self._connections = connections
        self._outbox = outbox
        self._view = view
        self._rooms = rooms
        self._source = source
        self._ttl = ttl
        self.heartbeatKey = "chatd:node:" + source["n"]
        self.usersKey = self.heartbeatKey + ":users"
        self._unsettled: Tuple[Set[str], Set[str]] = (set(), set())
        self._settling: Optional[IDelayedCall] = None

    def writeAll(self) -> None:
        """
        Rewrite this node's hash and heartbeat, directly, ahead of anything
        queued (which the rewrite supersedes).
        """
        connections = self._connections
        if connections.commands is None:
            return
        entries = [(fold(user.name), dumps(entryOf(user))) for user in self._view.localUsers()]
        writes: List[Tuple[Any, ...]] = [("DEL", self.usersKey)]
        if entries:
            writes.append(("HSET", self.usersKey, *[part for pair in entries for part in pair]))
        writes += [("SET", self.heartbeatKey, self._source["n"], "PX", int(self._ttl * 1000)),
                   ("SADD", "chatd:nodes", self._source["n"])]
        for args in writes:
            connections.write(*args)

    def publishSync(self) -> None:
        """
        Publish this node's whole state, directly.
        """
        connections = self._connections
        if connections.commands is None:
            return
        entries = {fold(user.name): encodeValue(entryOf(user))
                   for user in self._view.localUsers()}
        sync = json.dumps(dict(self._source, c="sync", u=entries), separators=(",", ":"))
        connections.write("PUBLISH", connections.cluster, sync)

    def announce(self) -> None:
        """
        Write this node's presence afresh and publish its whole state, so that a
        node that gave it up (its heartbeat expired, Redis lost its data) takes
        its users back.
        """
        self.writeAll()
        self.publishSync()

    def writeUser(self, name: str, event: Optional[Dict[str, Any]] = None) -> None:
        """
        Queue the hash write that makes this node's entry for C{name} current.

        @param event: the event being published about C{name}, when the core
            may publish it before applying it (a leave is published before the
            room it empties can go): the entry is written as it will be.
        """
        user = self._view.user(name)
        if user is None or not user.local:
            self._outbox.enqueue(("HDEL", self.usersKey, fold(name)))
            return
        entry = entryOf(user)
        if event is not None and event["t"] in ("joined", "left"):
            rooms = {fold(room): room for room in entry["rooms"]}
            rooms.pop(fold(event["room"]), None)
            if event["t"] == "joined":
                rooms[fold(event["room"])] = event["room"]
            entry["rooms"] = sorted(rooms.values())
        self._outbox.enqueue(("HSET", self.usersKey, fold(name), dumps(entry)))

    def changed(self, event: Dict[str, Any], local: bool) -> None:
        """
        A presence event was published here or applied from another node: keep
        this node's hash and its room subscriptions in step with its local
        users, now as the event says, and once more when the core has finished
        applying it.
        """
        names = [event[field] for field in ("user", "old", "new") if field in event]
        if event["t"] == "destroyed":
            # Its members are out of it, here too: which of them were local
            # is not known once it is applied, so every entry is rewritten.
            names = [user.name for user in self._view.localUsers()]
        rooms = set()
        if "room" in event:
            rooms.add(fold(event["room"]))
        for name in dict.fromkeys(names):
            user = self._view.user(name)
            if user is not None:
                rooms.update(fold(room) for room in user.rooms)
            if local or (user is not None and user.local):
                self.writeUser(name, event)
        for key in rooms:
            self._rooms.check(key, local, event)
        self._settleLater(names, rooms)

    def _settleLater(self, names, rooms):
        self._unsettled[0].update(names)
        self._unsettled[1].update(rooms)
        if self._settling is None:
            self._settling = self._connections.clock.callLater(0, self._settle)

    def _settle(self):
        self._settling = None
        (names, rooms), self._unsettled = self._unsettled, (set(), set())
        if self._connections.stopping:
            return
        for name in names:
            user = self._view.user(name)
            if user is not None and user.local:
                self.writeUser(name)
        for key in rooms:
            self._rooms.check(key)
        self._outbox.flush()
