# -*- test-case-name: chatd.test.test_fanout,chatd.test.test_cluster_outage -*-
"""
What a node does with a message another node published: read it strictly,
drop its own echoes and what it heard already, check the event as a client's
request would be checked, and hand it to the part it concerns or to the core.
"""

from typing import TYPE_CHECKING, Any, Optional, Union

from twisted.logger import Logger

from chatd.core.events import fromWire
from chatd.fanout.checks import Dropped, InvalidEvent, checkEvent
from chatd.fanout.events import MalformedEvent, Message, decodeMessage
from chatd.interfaces import IDirectoryView

if TYPE_CHECKING:
    from chatd.core.service import ChatService
    from chatd.fanout.directlog import DirectLog
    from chatd.fanout.nodes import Nodes
    from chatd.fanout.outbox import Outbox
    from chatd.fanout.presence import Presence
    from chatd.fanout.rooms import RoomEvents

log = Logger()

# The kinds of event that change who is online or in which room.
PRESENCE = frozenset(["online", "offline", "renamed", "key", "joined", "left", "room",
                      "kicked", "destroyed"])


class Reader:
    """
    Reads and checks messages from other nodes, live or kept.

    @param view: the core's L{chatd.interfaces.IDirectoryView}, whose keys
        signatures are checked with.
    @param invalid: the L{chatd.fanout.checks.Dropped} that counts what is dropped.
    """

    def __init__(self, view: IDirectoryView, invalid: Dropped) -> None:
        self._view = view
        self._invalid = invalid

    def read(self, channel: str, data: Union[str, bytes]) -> Optional[Message]:
        """
        Decode a message read from C{channel}.

        @return: the decoded L{chatd.fanout.events.Message}, or L{None} when it
            is malformed (said once per kind).
        """
        try:
            return decodeMessage(data)
        except MalformedEvent as e:
            self._invalid(channel, "malformed", str(e))
            return None

    def valid(self, node: str, event: Any) -> bool:
        """
        Whether an event from C{node} passes the checks a client's request
        would (L{chatd.fanout.checks}); one that fails is counted and dropped.
        """
        try:
            checkEvent(event, self._keyOf)
        except InvalidEvent as e:
            self._invalid(node, event.get("t") if isinstance(event, dict) else None, str(e))
            return False
        return True

    def _keyOf(self, name):
        user = self._view.user(name)
        return None if user is None else user.key


class Receiver:
    """
    Hands each message on a subscribed channel to where it belongs.

    @param nodeId: this node's id: its own echoes are dropped.
    @param reader: the node's L{Reader}.
    @param core: what applies other nodes' events: C{remoteEvent(node, event)}.
    @param nodes: the node's L{chatd.fanout.nodes.Nodes}.
    @param rooms: its L{chatd.fanout.rooms.RoomEvents}.
    @param presence: its L{chatd.fanout.presence.Presence}.
    @param directs: its L{chatd.fanout.directlog.DirectLog}.
    @param outbox: its L{chatd.fanout.outbox.Outbox}.
    """

    def __init__(self, nodeId: str, reader: Reader, core: "ChatService", nodes: "Nodes",
                 rooms: "RoomEvents", presence: "Presence", directs: "DirectLog",
                 outbox: "Outbox") -> None:
        self._nodeId = nodeId
        self._reader = reader
        self._core = core
        self._nodes = nodes
        self._rooms = rooms
        self._presence = presence
        self._directs = directs
        self._outbox = outbox

    def __call__(self, channel: str, data: Union[str, bytes]) -> None:
        """
        A message on a subscribed channel. Nothing raised here may reach the
        protocol, which would drop the connection.
        """
        try:
            self._handle(channel, data)
        except Exception:
            log.failure("handling a message on {channel}", channel=channel)

    def _handle(self, channel, data):
        message = self._reader.read(channel, data)
        if message is None:
            return
        node = message.node
        if node == self._nodeId:
            return
        if message.control == "sync":
            self._nodes.changing(node)
            assert message.entries is not None  # a sync holds them
            self._nodes.apply(node, message.entries, removals=True)
            return
        if message.control == "bye":
            self._nodes.gone(node)
            return
        if not self._nodes.fresh(message):
            return
        event = message.event
        assert event is not None  # a message that is neither sync nor bye holds one
        if not self._reader.valid(node, event):
            return
        kind = event["t"]
        if kind == "message":
            self._rooms.received(node, event)
            return
        if kind == "direct" and not self._directs.fresh(event):
            return  # caught up from the kept direct messages already
        if kind in PRESENCE:
            self._nodes.changing(node)
        self._core.remoteEvent(node, fromWire(event))
        if kind in PRESENCE:
            self._presence.changed(event, local=False)
            self._outbox.flush()
