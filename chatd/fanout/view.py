# -*- test-case-name: chatd.test.test_fanout -*-
"""
L{IDirectoryView} over today's L{chatd.service.ChatService}: the one place the
fan-out reads the core's users, rooms and store, answering with frozen
snapshots.
"""

from zope.interface import implementer

from chatd.interfaces import IDirectoryView
from chatd.model import RoomView, UserView
from chatd.names import fold


def _userView(user):
    return UserView(name=user.name, key=user.key, account=user.account,
                    rooms=tuple(sorted(room.name for room in user.rooms.values())),
                    nodes=frozenset(user.nodes), local=bool(user.sessions))


@implementer(IDirectoryView)
class ServiceView:
    """
    Read-only answers from a L{chatd.service.ChatService}.
    """

    def __init__(self, service):
        self._service = service

    def user(self, name):
        user = self._service.users.get(fold(name))
        return None if user is None else _userView(user)

    def localUsers(self):
        return [_userView(user) for user in self._service.users.values() if user.sessions]

    def usersOn(self, node):
        return [_userView(user) for user in self._service.users.values() if node in user.nodes]

    def room(self, name):
        room = self._service.rooms.get(fold(name))
        if room is None:
            return None
        return RoomView(name=room.name, localMembers=frozenset(
            key for key, user in room.members.items() if user.sessions))

    def storedRooms(self):
        return self._service.store.loadRooms()

    def messagesSince(self, room, after, limit):
        return self._service.messagesSince(room, after, limit)
