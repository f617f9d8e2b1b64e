# -*- test-case-name: chatd.test.test_moderation_doors -*-
"""
The moderation requests of the two doors that speak JSON objects (text and
WebSocket): each calls the core's request of the same name and answers with
the object L{chatd.protocols.jsonmoderation} builds, naming the room and the
user as the server spells them. The WebSocket door calls these with the
request's id and fields; the text door with L{NO_ID} and its arguments.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict

from chatd.errors import BadRequest
from chatd.protocols import jsonmoderation
from chatd.protocols.jsonrequests import _ROLE_NAMES
from chatd.protocols.jsonwire import NO_ID


class JSONModeration:
    """
    Mixed into a L{chatd.protocols.jsondoor.JSONDoor} that is also a
    L{chatd.protocols.door.Door}.
    """

    if TYPE_CHECKING:
        # What the door it is mixed into provides.
        def _roomName(self, room: str) -> str: ...
        def _userName(self, user: str) -> str: ...
        def call(self, request: str, *args: Any, **kwargs: Any) -> Any: ...

    def _onUser(self, request, build, requestId, roomId, userId, *args):
        room, user = self._roomName(roomId), self._userName(userId)
        return self.call(request, roomId, userId, *args).addCallback(
            lambda _: build(room, user, requestId))

    def _modKick(self, requestId, roomId, userId, reason=""):
        return self._onUser("kick", jsonmoderation.kicked, requestId, roomId, userId, reason)

    def _modBan(self, requestId, roomId, userId, reason=""):
        return self._onUser("ban", jsonmoderation.banned, requestId, roomId, userId, reason)

    def _modUnban(self, requestId, roomId, userId):
        return self._onUser("unban", jsonmoderation.unbanned, requestId, roomId, userId)

    def _modSetRole(self, requestId, roomId, userId, role):
        room, user = self._roomName(roomId), self._userName(userId)
        return self.call("set_role", roomId, userId, role).addCallback(
            lambda _: jsonmoderation.roleSet(room, user, role, requestId))

    def _modSetTopic(self, requestId, roomId, topic):
        room = self._roomName(roomId)
        return self.call("set_topic", roomId, topic).addCallback(
            lambda _: jsonmoderation.topicSet(room, topic, requestId))

    def _modSetPassword(self, requestId, roomId, password=""):
        room = self._roomName(roomId)
        return self.call("set_password", roomId, password).addCallback(
            lambda _: jsonmoderation.passwordSet(room, requestId))

    def _modDestroy(self, requestId, roomId):
        room = self._roomName(roomId)
        return self.call("destroy_room", roomId).addCallback(
            lambda _: jsonmoderation.destroyed(room, requestId))

    def _modRoomInfo(self, requestId, roomId):
        room = self._roomName(roomId)
        return self.call("room_info", roomId).addCallback(
            lambda info: jsonmoderation.roomInfo(room, info, requestId))


def textCommands():
    """
    The text door's moderation commands, as entries of its command table:
    handler, fewest and most arguments, usage, what it does. C{REASON} and
    C{TOPIC} are the rest of the line.
    """
    def role(self, room, user, name):
        if name not in _ROLE_NAMES:
            raise BadRequest("usage: /role ROOM USER owner|operator|none")
        return self._modSetRole(NO_ID, room, user, _ROLE_NAMES[name])

    return {
        "/kick": (lambda self, room, user, reason="": self._modKick(NO_ID, room, user, reason),
                  2, 3, "/kick ROOM USER [REASON]", "take a member out of a room you moderate"),
        "/ban": (lambda self, room, user, reason="": self._modBan(NO_ID, room, user, reason),
                 2, 3, "/ban ROOM USER [REASON]", "keep a user out of a room you moderate"),
        "/unban": (lambda self, room, user: self._modUnban(NO_ID, room, user),
                   2, 2, "/unban ROOM USER", "lift a ban"),
        "/role": (role, 3, 3, "/role ROOM USER owner|operator|none",
                  "give or take a role in a room you own"),
        "/topic": (lambda self, room, topic="": self._modSetTopic(NO_ID, room, topic),
                   1, 2, "/topic ROOM [TOPIC]", "set or remove a room's topic"),
        "/password": (lambda self, room, password="": self._modSetPassword(NO_ID, room, password),
                      1, 2, "/password ROOM [PASSWORD]", "set or remove a room's password"),
        "/destroy": (lambda self, room: self._modDestroy(NO_ID, room),
                     1, 1, "/destroy ROOM", "delete a room you own, with its history"),
        "/info": (lambda self, room: self._modRoomInfo(NO_ID, room),
                  1, 1, "/info ROOM", "a room's topic, owners and operators"),
    }


# Each text command's and WebSocket type's name in
# L{chatd.protocols.requests.REQUESTS}.
TEXT_REQUESTS = {"/kick": "kick", "/ban": "ban", "/unban": "unban", "/role": "set_role",
                 "/topic": "set_topic", "/password": "set_password",
                 "/destroy": "destroy_room", "/info": "room_info"}
TEXT_REST_OF_LINE = frozenset({"/kick", "/ban", "/topic"})
WEBSOCKET_HANDLERS: Dict[str, Callable[..., Any]] = {
    "kick": JSONModeration._modKick, "ban": JSONModeration._modBan,
    "unban": JSONModeration._modUnban, "set_role": JSONModeration._modSetRole,
    "set_topic": JSONModeration._modSetTopic, "set_password": JSONModeration._modSetPassword,
    "destroy_room": JSONModeration._modDestroy, "room_info": JSONModeration._modRoomInfo,
}
