# -*- test-case-name: chatd.test.test_fanout -*-
"""
The other nodes of a cluster: who is alive, what each holds, and declaring a
node gone.

Every C{BEAT} seconds a node refreshes its heartbeat key (TTL C{TTL}) and
looks at the others' (L{chatd.fanout.scripts.BEAT_SCRIPT}); a node whose key
is gone is given to the core's C{nodeGone}. A node killed with SIGKILL
therefore leaves every other node's lists at most C{TTL + BEAT} seconds (13 by
default) after its last beat. A starting node subscribes first and then reads
the other nodes' user hashes, which are written before the events that change
them; hashes are read again every C{RECONCILE_EVERY} beats, so a node that
missed something converges.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Set, Tuple

from twisted.logger import Logger

from chatd.core.events import Joined, KeyChanged, Left, RoomCreated, UserOffline, UserOnline
from chatd.fanout.checks import InvalidEvent, checkEntry
from chatd.fanout.events import MalformedEvent, loadEntry
from chatd.fanout.rooms import CATCH_UP
from chatd.fanout.scripts import BEAT_SCRIPT
from chatd.interfaces import IDirectoryView
from chatd.names import fold

if TYPE_CHECKING:
    from chatd.core.service import ChatService
    from chatd.fanout.checks import Dropped
    from chatd.fanout.connections import Connections
    from chatd.fanout.events import Message
    from chatd.fanout.outbox import Outbox
    from chatd.fanout.presence import Presence
    from chatd.fanout.rooms import RoomEvents

log = Logger()

TTL = 10.0
BEAT = 3.0
RECONCILE_EVERY = 10


class Nodes:
    """
    This node's picture of the others.

    @param nodeId: this node's id.
    @param connections: the node's L{chatd.fanout.connections.Connections}.
    @param outbox: its L{chatd.fanout.outbox.Outbox}.
    @param view: the core's L{chatd.interfaces.IDirectoryView}.
    @param presence: this node's L{chatd.fanout.presence.Presence}.
    @param rooms: its L{chatd.fanout.rooms.RoomEvents}.
    @param core: what receives other nodes' events: C{remoteEvent(node,
        event)} and C{nodeGone(node)}.
    @param invalid: the L{chatd.fanout.checks.Dropped} that counts what is
        dropped.
    @param expired: called when this node's own heartbeat had expired.
    @param ttl: seconds a heartbeat outlives the last beat.
    """

    def __init__(self, nodeId: str, connections: "Connections", outbox: "Outbox",
                 view: IDirectoryView, presence: "Presence", rooms: "RoomEvents",
                 core: "ChatService", invalid: "Dropped", expired: Callable[[], None],
                 ttl: float) -> None:
        self.nodeId = nodeId
        self._connections = connections
        self._outbox = outbox
        self._view = view
        self._presence = presence
        self._rooms = rooms
        self._core = core
        self._invalid = invalid
        self._expired = expired
        self._ttl = ttl
        # The last sequence number heard per (node, incarnation), the nodes
        # known to be alive, and how many presence events each sent.
        self._heard: Dict[Tuple[str, str], int] = {}
        self.known: Set[str] = set()
        self._changes: Dict[str, int] = {}
        self._beats = 0

    def fresh(self, message: "Message") -> bool:
        """
        Whether the event C{message} (a L{chatd.fanout.events.Message}) was
        not heard yet; it counts as heard from now on.
        """
        source, sequence = message.source, message.sequence
        assert source is not None and sequence is not None  # an event's message has both
        if sequence <= self._heard.get(source, 0):
            return False
        self._heard[source] = sequence
        self.known.add(message.node)
        return True

    def changing(self, node: str) -> None:
        """
        Count a presence event (or C{sync}) from C{node}, so that a hash read
        meanwhile is known to be unsettled.
        """
        self._changes[node] = self._changes.get(node, 0) + 1

    def apply(self, node: str, entries: Dict[str, Dict[str, Any]], removals: bool) -> None:
        """
        Make this node's picture of C{node}'s users match C{entries} (folded name
        -> entry), as events from that node would have.

        @param removals: whether users and memberships missing from C{entries}
            are taken away (only when C{entries} is known to be current).
        """
        remoteEvent = self._core.remoteEvent
        self.known.add(node)
        for key, entry in list(entries.items()):
            try:
                checkEntry(entry)
            except InvalidEvent as e:
                self._invalid(node, "entry", str(e))
                del entries[key]
        for entry in entries.values():
            name = entry["user"]
            remoteEvent(node, UserOnline(name, entry["key"], entry["account"]))
            user = self._view.user(name)
            if user is not None and entry["key"] is not None and user.key != entry["key"]:
                remoteEvent(node, KeyChanged(name, entry["key"]))
            for roomName in entry["rooms"]:
                remoteEvent(node, Joined(roomName, name))
        if removals:
            for user in self._view.usersOn(node):
                current = entries.get(fold(user.name))
                if current is None:
                    remoteEvent(node, UserOffline(user.name))
                elif user.nodes == {node} and not user.local:
                    rooms = {fold(name) for name in current["rooms"]}
                    for room in user.rooms:
                        if fold(room) not in rooms:
                            remoteEvent(node, Left(room, user.name))
        for user in self._view.localUsers():
            if fold(user.name) in entries:
                self._presence.writeUser(user.name)
        self._rooms.checkAll()
        self._outbox.flush()

    async def reconcile(self, node: str, attempts: int = 3) -> None:
        """
        Read C{node}'s hash and apply it. Presence events from that node that
        arrive while the hash is read make it unclear which is newer, so the
        read is tried again, and removals are left out if it never settles.
        """
        settled = False
        for _ in range(attempts):
            before = self._changes.get(node, 0)
            fields = await self._connections.command("HGETALL", "chatd:node:%s:users" % (node,))
            if self._changes.get(node, 0) == before:
                settled = True
                break
        entries = parseHash(fields)
        if not self._connections.stopping:
            await self._ensureRooms(entries)
            self.apply(node, entries, removals=settled)

    async def _ensureRooms(self, entries):
        """
        Learn from the database the rooms named in C{entries} that this node
        has not heard of (created while it was away).
        """
        names = {fold(name) for entry in entries.values() for name in entry["rooms"]}
        if all(self._view.room(name) is not None for name in names):
            return
        for record in await self._view.storedRooms():
            if fold(record.name) in names:
                self._core.remoteEvent(CATCH_UP, RoomCreated(record.name, record.passwordHash))

    async def reconcileAll(self) -> None:
        """
        Beat, then read the hash of every other live node.
        """
        for node in await self.beat():
            if node != self.nodeId:
                await self.reconcile(node)

    async def beat(self) -> Set[str]:
        """
        Refresh this node's heartbeat and forget expired nodes in Redis.

        @return: the ids of the live nodes.
        """
        result = await self._connections.eval(
            BEAT_SCRIPT, ["chatd:nodes", self._presence.heartbeatKey, self._presence.usersKey],
            [self.nodeId, int(self._ttl * 1000), "chatd:node:", int(self._ttl * 3000)])
        existed, live = result[0], set(result[1:])
        if not existed:
            self._expired()
        return live

    async def sweep(self) -> None:
        """
        One beat: declare gone the nodes whose heartbeat expired (once this
        node has been connected long enough to know), and read the hashes of
        new nodes, and of all every C{RECONCILE_EVERY} beats.
        """
        self._beats += 1
        live = await self.beat()
        connectedAt = self._connections.connectedAt
        now = self._connections.clock.seconds()
        settled = connectedAt is not None and now - connectedAt >= self._ttl
        for node in list(self.known):
            if node not in live and settled:
                self.gone(node)
        again = self._beats % RECONCILE_EVERY == 0
        for node in live:
            if node != self.nodeId and (again or node not in self.known):
                await self.reconcile(node)

    def gone(self, node: str) -> None:
        """
        Node C{node} left or died: its users are gone, and so are the rooms
        they alone kept.
        """
        if node not in self.known:
            return
        self.known.discard(node)
        self._changes.pop(node, None)
        for source in [source for source in self._heard if source[0] == node]:
            del self._heard[source]
        log.info("node {node} left the cluster", node=node)
        self._core.nodeGone(node)
        self._rooms.checkAll()


def parseHash(fields: Any) -> Dict[str, Dict[str, Any]]:
    """
    A node's user hash as folded name to entry; an entry that is not
    well-formed is left out, so that it cannot hide the others.
    """
    items: Iterable[Tuple[Any, Any]]
    if isinstance(fields, dict):
        items = fields.items()
    else:
        items = zip(fields[::2], fields[1::2])
    entries: Dict[str, Dict[str, Any]] = {}
    for key, value in items:
        try:
            entries[key] = loadEntry(value)
        except MalformedEvent as e:
            log.warn("dropping a malformed user entry {key!r}: {error}", key=key, error=e)
    return entries
