# -*- test-case-name: chatd.test.test_jsonmoderation -*-
"""
The JSON objects of room moderation, for the text and WebSocket doors: the
answers to C{kick}, C{ban}, C{unban}, C{set_role}, C{set_topic},
C{set_password}, C{destroy_room} and C{room_info}, and the events kicks, bans,
topics, roles and destroyed rooms cause (docs/protocol.rst, Moderation).

The requests' fields are parsed with the others, by
L{chatd.protocols.jsonrequests.parseRequest}; the objects are built the same
way as its own, in a module of their own only to keep that one to a size.
"""

from chatd.protocols.jsonrequests import _ROLE_NAMES
from chatd.protocols.jsonwire import NO_ID, _event, _response

# The JSON name of each of the core's roles.
ROLE_NAMES = {role: name for name, role in _ROLE_NAMES.items()}


def kicked(roomId, userId, requestId=NO_ID):
    return _response("kicked", requestId, roomId=roomId, userId=userId)


def banned(roomId, userId, requestId=NO_ID):
    return _response("banned", requestId, roomId=roomId, userId=userId)


def unbanned(roomId, userId, requestId=NO_ID):
    return _response("unbanned", requestId, roomId=roomId, userId=userId)


def roleSet(roomId, userId, role, requestId=NO_ID):
    return _response("role_set", requestId, roomId=roomId, userId=userId,
                     role=ROLE_NAMES[role])


def topicSet(roomId, topic, requestId=NO_ID):
    return _response("topic_set", requestId, roomId=roomId, topic=topic or "")


def passwordSet(roomId, requestId=NO_ID):
    return _response("password_set", requestId, roomId=roomId)


def destroyed(roomId, requestId=NO_ID):
    return _response("destroyed", requestId, roomId=roomId)


def roomInfo(roomId, info, requestId=NO_ID):
    """
    @param info: the core's answer: topic, owners, operators and the names
        banned (empty for someone who may not see them).
    """
    topic, owners, operators, bans = info
    return _response("room_info", requestId, roomId=roomId, topic=topic or "",
                     owners=list(owners), operators=list(operators), banned=list(bans))


def userKicked(roomId, userId, by, banned, reason):
    """
    The event of a kick, or of a ban (C{banned}) of a member.
    """
    return _event("user_banned" if banned else "user_kicked", roomId=roomId, userId=userId,
                  by=by, reason=reason)


def topicChanged(roomId, by, topic):
    return _event("topic_changed", roomId=roomId, by=by, topic=topic or "")


def roleChanged(roomId, userId, by, role):
    return _event("role_changed", roomId=roomId, userId=userId, by=by,
                  role=ROLE_NAMES[role])


def roomDestroyed(roomId, by):
    return _event("room_destroyed", roomId=roomId, by=by)
