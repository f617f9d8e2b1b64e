# -*- test-case-name: chatd.test.test_door -*-
"""
The requests every door can make of the core, by one name each.

Each door maps its own words to these names (a binary opcode, a text command,
a WebSocket message type) and L{chatd.protocols.door.Door.call} maps the name to
the session method that carries it out. A request a door adds (a new family of
the core) is one line here and one line in each door's own table.
"""

from typing import Mapping

# Request name -> the method of the core's session that carries it out.
REQUESTS: Mapping[str, str] = {
    "hello": "hello",
    "register": "register",
    "login": "login",
    "challenge": "challenge",
    "auth": "auth",
    "nick": "nick",
    "set_key": "setKey",
    "get_keys": "getKeys",
    "list_users": "listUsers",
    "list_rooms": "listRooms",
    "create": "create",
    "join": "join",
    "leave": "leave",
    "history": "history",
    "room_message": "roomMessage",
    "direct_message": "directMessage",
    "file_offer": "offer",
    "file_answer": "answer",
    "file_chunk": "fileChunk",
    "file_ack": "fileAck",
    "file_done": "fileDone",
    "file_cancel": "fileCancel",
    "kick": "kick",
    "ban": "ban",
    "unban": "unban",
    "set_role": "setRole",
    "set_topic": "setTopic",
    "set_password": "setRoomPassword",
    "destroy_room": "destroy",
    "room_info": "roomInfo",
    # Protocol version 3: devices (chatd.core.devices).
    "register_device": "registerDevice",
    "login_device": "loginDevice",
    "auth_device": "authDevice",
    "get_devices": "getDevices",
    "request_device": "requestDevice",
    "publish_devices": "publishDevices",
    "approve": "approve",
    "get_recovery": "getRecovery",
    "set_recovery": "setRecovery",
    "share_history": "shareHistory",
    "reset_identity": "resetIdentity",
}
