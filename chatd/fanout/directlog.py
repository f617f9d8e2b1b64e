# -*- test-case-name: chatd.test.test_cluster_outage -*-
"""
Direct messages kept in Redis for a while, so that one published while the
recipient's node could not hear Redis still reaches it.

Room messages are stored, and a node that was cut off catches its members up
from the database; direct messages are stored nowhere, and pub/sub forgets a
message as soon as it is sent. So every node also adds each direct message it
publishes to one sorted set in Redis, scored by its publishing time, and trims
what is older than C{KEEP} seconds. A node whose subscriber connection comes
back reads the set from C{CATCH_UP_MARGIN} seconds before it was cut and
delivers what it missed; direct messages are known by sender and envelope id,
so none is delivered twice, whichever way it came.

The set holds what the channel carried (ciphertext and metadata), for at most
C{KEEP} seconds.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict

from twisted.logger import Logger

from chatd.fanout.delivered import Delivered, envelopeKey

if TYPE_CHECKING:
    from chatd.fanout.connections import Connections
    from chatd.fanout.outbox import Outbox
    from chatd.fanout.receiving import Reader

log = Logger()

KEY = "chatd:direct"
# How long a direct message waits in Redis for a node that could not hear it.
KEEP = 300.0
# The commands that keep a direct message: sent again after a reconnect, like
# the publish itself (adding one member twice is harmless).
COMMANDS = frozenset(["ZADD", "ZREMRANGEBYSCORE"])


class DirectLog:
    """
    One node's side of the kept direct messages.

    @param nodeId: this node's id (its own messages are not caught up).
    @param connections: the node's L{chatd.fanout.connections.Connections},
        through which the set is read.
    @param outbox: its L{chatd.fanout.outbox.Outbox}, through which the set is
        written, in order with the publishes.
    @param reader: the node's L{chatd.fanout.receiving.Reader}: a kept
        payload is read and checked as a live one is.
    @param deliver: called with C{(node, event)} to hand a direct message to
        the core.
    """

    def __init__(self, nodeId: str, connections: "Connections", outbox: "Outbox",
                 reader: "Reader", deliver: Callable[[str, Dict[str, Any]], None]) -> None:
        self._nodeId = nodeId
        self._connections = connections
        self._outbox = outbox
        self._reader = reader
        self._deliver = deliver
        self._delivered = Delivered()

    def keep(self, payload: str) -> None:
        """
        Queue the commands that keep the published message C{payload}.
        """
        now = int(self._connections.clock.seconds() * 1000)
        self._outbox.enqueue(("ZADD", KEY, "%d" % (now,), payload))
        self._outbox.enqueue(("ZREMRANGEBYSCORE", KEY, "-inf",
                              "(%d" % (now - int(KEEP * 1000),)))

    def fresh(self, event: Dict[str, Any]) -> bool:
        """
        Whether the direct message C{event} (already checked) was not delivered
        here yet; it counts as delivered from now on.
        """
        return self._delivered.add(event["ts"], envelopeKey(event["sender"], event["envelope"]))

    def prune(self, now: float) -> None:
        """
        Forget deliveries older than any the set can still hold.
        """
        self._delivered.prune(int((now - 2 * KEEP) * 1000))

    async def catchUp(self, since: float, margin: float) -> None:
        """
        Deliver the kept direct messages published from C{margin} seconds
        before C{since} that this node has not delivered.
        """
        kept = await self._connections.command("ZRANGEBYSCORE", KEY,
                                               "%d" % ((since - margin) * 1000,), "+inf")
        delivered = 0
        for payload in kept:
            message = self._reader.read(KEY, payload)
            if message is None:
                continue
            event = message.event
            if message.node == self._nodeId or event is None or event["t"] != "direct":
                continue
            if self._reader.valid(message.node, event) and self.fresh(event):
                delivered += 1
                self._deliver(message.node, event)
        if delivered:
            log.info("caught up {count} direct message(s) from redis", count=delivered)
