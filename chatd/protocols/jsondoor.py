# -*- test-case-name: chatd.test.test_text,chatd.test.test_websocket -*-
"""
What the two doors that speak JSON objects (text and WebSocket) share: their
chat events, and naming rooms and users as the server spells them. Each door
only says how an object goes out.
"""

from typing import TYPE_CHECKING, Any, Dict, Optional

from twisted.internet.defer import Deferred

from chatd.isession import ISession
from chatd.names import fold
from chatd.protocols import jsonmoderation, jsonwire


def then(result, callback):
    """
    Apply C{callback} to a core result, now or when its L{Deferred} fires: the
    core answers some requests at once and others later.
    """
    if isinstance(result, Deferred):
        return result.addCallback(callback)
    return callback(result)


class JSONDoor:
    """
    L{chatd.interfaces.IChatClient}'s events as the JSON objects of the text and
    WebSocket doors, and the names their answers use.

    A door mixing this in provides C{_event(obj)} to send one encoded object,
    C{service}, C{session}, and C{activeRoom}: the room its plain messages go
    to, forgotten when its own user leaves that room.
    """

    activeRoom: Optional[str] = None

    if TYPE_CHECKING:
        # What the door it is mixed into provides.
        session: Optional[ISession]

        @property
        def _live(self) -> ISession: ...
        def _event(self, obj: Dict[str, Any]) -> None: ...

    def _roomName(self, room):
        """
        The name the core knows C{room} by (its first writer's spelling), or
        C{room} itself for a room that does not exist yet.
        """
        return self._live.roomSpelling(room)

    def _historyName(self, name):
        """
        What a history answer names: the room as L{_roomName} spells it, or
        for C{@user} (the stored direct messages with C{user}, protocol
        version 3) that user as L{_userName} spells it.
        """
        if name.startswith("@"):
            return "@" + self._userName(name[1:])
        return self._roomName(name)

    def _userName(self, user):
        """
        The name the core knows an online C{user} by, or C{user} itself.
        """
        return self._live.userSpelling(user)

    def roomMessage(self, room, sender, timestamp, envelope):
        self._event(jsonwire.chatMessage(room, sender, timestamp, envelope))

    def directMessage(self, sender, timestamp, envelope):
        self._event(jsonwire.directMessage(sender, timestamp, envelope))

    def _isGuest(self, name):
        """
        Whether the user C{name} is a guest, as the events and lists say.
        """
        return self.session is not None and self.session.isGuest(name)

    def _guests(self, members):
        """
        The names that are guests among C{members}: C{(name, key)} pairs, or
        names.
        """
        names = (member if isinstance(member, str) else member[0] for member in members)
        return frozenset(name for name in names if self._isGuest(name))

    def _lists(self, members):
        """
        For a device session, the list of each of C{members} (C{(name, key)}
        pairs) by name; L{None} for a legacy session.
        """
        if self.session is None or self.session.device is None:
            return None
        return {member[0]: self.session.devicesOf(member[0]) for member in members}

    def _listOf(self, user):
        lists = self._lists([(user, None)])
        return None if lists is None else lists[user]

    def userJoined(self, room, user, publicKey):
        self._event(jsonwire.userJoined(room, user, publicKey, self._isGuest(user),
                                        self._listOf(user)))

    def _out(self, room, user=None):
        """
        Forget the active room when this session's user is out of it (C{user}
        L{None}: everyone is).
        """
        own = user is None or self.session is not None and self.session.name is not None \
            and fold(user) == fold(self.session.name)
        if own and self.activeRoom is not None and fold(room) == fold(self.activeRoom):
            self.activeRoom = None

    def userLeft(self, room, user):
        self._out(room, user)
        self._event(jsonwire.userLeft(room, user))

    def kicked(self, room, user, by, banned, reason):
        self._out(room, user)
        self._event(jsonmoderation.userKicked(room, user, by, banned, reason))

    def topicChanged(self, room, by, topic):
        self._event(jsonmoderation.topicChanged(room, by, topic))

    def roleChanged(self, room, user, by, role):
        self._event(jsonmoderation.roleChanged(room, user, by, role))

    def roomDestroyed(self, room, by):
        self._out(room)
        self._event(jsonmoderation.roomDestroyed(room, by))

    def userRenamed(self, old, new):
        self._event(jsonwire.renamed(old, new, guest=self._isGuest(new)))

    def keyChanged(self, user, publicKey):
        self._event(jsonwire.keyChanged(user, publicKey, self._isGuest(user),
                                        self._listOf(user)))

    def warning(self, code, message):
        self._event(jsonwire.warning(code, message))
