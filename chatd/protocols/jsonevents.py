# -*- test-case-name: chatd.test.test_text,chatd.test.test_websocket -*-
"""
The chat events of the doors that speak JSON objects (text and WebSocket), said
once: each door only says how an event object goes out.
"""

from chatd.names import fold
from chatd.protocols import jsonwire


class JSONEvents:
    """
    L{chatd.interfaces.IChatClient}'s events as the JSON objects of the text and
    WebSocket doors.

    A door mixing this in provides C{_event(obj)} to send one encoded object,
    C{session}, and C{activeRoom}: the room its plain messages go to, forgotten
    when its own user leaves that room.
    """

    activeRoom = None

    def roomMessage(self, room, sender, timestamp, envelope):
        self._event(jsonwire.chatMessage(room, sender, timestamp, envelope))

    def directMessage(self, sender, timestamp, envelope):
        self._event(jsonwire.directMessage(sender, timestamp, envelope))

    def userJoined(self, room, user, publicKey):
        self._event(jsonwire.userJoined(room, user, publicKey))

    def userLeft(self, room, user):
        own = self.session is not None and self.session.user is not None and (
            fold(user) == fold(self.session.user.name))
        if own and self.activeRoom is not None and fold(room) == fold(self.activeRoom):
            self.activeRoom = None
        self._event(jsonwire.userLeft(room, user))

    def userRenamed(self, old, new):
        self._event(jsonwire.renamed(old, new))

    def keyChanged(self, user, publicKey):
        self._event(jsonwire.keyChanged(user, publicKey))

    def warning(self, code, message):
        self._event(jsonwire.warning(code, message))
