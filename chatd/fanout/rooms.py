# -*- test-case-name: chatd.test.test_fanout -*-
"""
Room messages between the nodes of a cluster: one channel per room, listened
to while the room has local members, and the catch-up from the database for
what a node could not hear.

Room messages have a channel per room, as Synapse does per stream, because they
are nearly all of the traffic and a node with nobody in a room has no use for
them. A node subscribes to a room's channel before it tells the cluster that a
first local user joined (publishing waits for the subscription), so nobody can
send it a message it would not hear; for a join learnt from another node, the
messages sent before the subscription was confirmed are caught up from the
database.

A node remembers which messages it delivered lately, by sender and envelope id
(L{chatd.fanout.delivered}): the fan-out sees every delivery here, local ones
as they are published, so a message that comes both live and in a catch-up
is delivered once.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.fanout.connections import failedWrite
from chatd.fanout.delivered import Delivered, envelopeKey
from chatd.interfaces import IDirectoryView
from chatd.names import fold

if TYPE_CHECKING:
    from chatd.fanout.connections import Connections
    from chatd.fanout.outbox import Outbox

log = Logger()

CATCH_UP_MARGIN = 30.0
CATCH_UP_PAGE = 500
# The node named as the source of messages caught up from the database.
CATCH_UP = "catch-up"


class RoomEvents:
    """
    One node's room channels and room-message deliveries.

    @param connections: the node's L{chatd.fanout.connections.Connections}.
    @param outbox: its L{chatd.fanout.outbox.Outbox}, held while a local
        join's subscription is confirmed.
    @param view: the core's L{chatd.interfaces.IDirectoryView}.
    @param deliver: called with C{(node, event)} to hand a room message to the core.
    """

    def __init__(self, connections: "Connections", outbox: "Outbox", view: IDirectoryView,
                 deliver: Callable[[str, Dict[str, Any]], None]) -> None:
        self._connections = connections
        self._outbox = outbox
        self._view = view
        self._deliver = deliver
        # The rooms with local members (folded name -> name), and what was
        # delivered lately per room.
        self.wanted: Dict[str, str] = {}
        self._delivered: Dict[str, Delivered] = {}

    def channel(self, room: str) -> str:
        """
        The channel of C{room} (a name, in any case).
        """
        return self._connections.roomChannel(fold(room))

    def record(self, key: str, timestamp: int, sender: str, envelope: bytes) -> bool:
        """
        Remember a message of the room whose folded name is C{key} as delivered.

        @return: whether it was not delivered before.
        """
        delivered = self._delivered.get(key)
        if delivered is None:
            delivered = self._delivered[key] = Delivered()
        return delivered.add(timestamp, envelopeKey(sender, envelope))

    def received(self, node: str, event: Dict[str, Any]) -> None:
        """
        Hand a room message (checked already) to the core unless it was
        delivered here already.
        """
        if self.record(fold(event["room"]), event["ts"], event["sender"], event["envelope"]):
            self._deliver(node, event)

    def prune(self, floor: float) -> None:
        """
        Forget deliveries older than C{floor} (ms).
        """
        for delivered in self._delivered.values():
            delivered.prune(floor)

    # -- subscriptions --------------------------------------------------------

    def check(self, key: str, local: bool = False,
              event: Optional[Dict[str, Any]] = None) -> None:
        """
        Subscribe to or unsubscribe from the room whose folded name is C{key},
        as it has local members or not.

        @param local: whether a local user's event caused the check.
        @param event: a presence event being published or applied; a C{left}
            event counts its user as gone already.
        """
        room = self._view.room(key)
        leaving = None
        if event is not None and event["t"] == "left" and fold(event["room"]) == key:
            leaving = fold(event["user"])
        wanted = room is not None and bool(room.localMembers - {leaving})
        if wanted and key not in self.wanted:
            self.wanted[key] = room.name
            self._subscribe(key, local)
        elif not wanted and key in self.wanted:
            del self.wanted[key]
            subscriber = self._connections.subscriber
            if subscriber is not None:
                maybeDeferred(subscriber.unsubscribe, self._connections.roomChannel(key)
                              ).addErrback(failedWrite, "UNSUBSCRIBE")

    def checkAll(self) -> None:
        """
        L{check} every room wanted now or with local members.
        """
        keys = set(self.wanted)
        for user in self._view.localUsers():
            keys.update(fold(name) for name in user.rooms)
        for key in keys:
            self.check(key)

    def _subscribe(self, key, local):
        """
        Listen to a room's channel. For a local join, publishing waits until
        the subscription is confirmed; for a join learnt from another node, the
        messages sent before it are caught up from the database.
        """
        subscriber = self._connections.subscriber
        if subscriber is None:
            return  # every wanted room is subscribed on reconnecting
        if local:
            self._outbox.hold()
        since = self._connections.clock.seconds()
        d = maybeDeferred(subscriber.subscribe, self._connections.roomChannel(key))

        def done(result):
            if not isinstance(result, Failure) and key in self.wanted and not local:
                self._catchUpLater([key], since)
            if local:
                self._outbox.release()
        d.addBoth(done)

    async def resubscribe(self, protocol: Any) -> None:
        """
        A new subscriber connection: listen to every wanted room on it.
        """
        await gatherResults([protocol.subscribe(self._connections.roomChannel(key))
                             for key in self.wanted])

    # -- catching up ----------------------------------------------------------

    def _catchUpLater(self, keys, since):
        Deferred.fromCoroutine(self.catchUp(keys, since)).addErrback(
            lambda f: log.failure("catching up", f))

    async def catchUp(self, keys: Iterable[str], since: float) -> None:
        """
        Deliver to local members the stored messages of rooms C{keys} from
        C{CATCH_UP_MARGIN} seconds before C{since} that were not delivered here.
        """
        after = int((since - CATCH_UP_MARGIN) * 1000)
        delivered = 0
        for key in keys:
            name = self.wanted.get(key)
            cursor = after
            while name is not None:
                rows = await self._view.messagesSince(name, cursor, CATCH_UP_PAGE)
                for row in rows:
                    event = {"t": "message", "room": name, "sender": row.sender,
                             "ts": row.timestamp, "envelope": row.envelope}
                    if self.record(key, row.timestamp, row.sender, row.envelope):
                        delivered += 1
                        self._deliver(CATCH_UP, event)
                if len(rows) < CATCH_UP_PAGE:
                    break
                cursor = rows[-1].timestamp
        if delivered:
            log.info("caught up {count} room message(s) from the database", count=delivered)
