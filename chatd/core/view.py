# -*- test-case-name: chatd.test.test_fanout -*-
"""
The directory as the cluster fan-out reads it (L{IDirectoryView}): frozen
snapshots, so that the fan-out never holds the core's dictionaries.
"""

from typing import List, Optional

from twisted.internet.defer import Deferred
from zope.interface import implementer

from chatd.core.directory import Directory
from chatd.core.online import User
from chatd.interfaces import IDirectoryView
from chatd.istore import IMessageStore
from chatd.model import HistoryRow, RoomRecord, RoomView, UserView
from chatd.names import fold


def _userView(user: User) -> UserView:
    return UserView(name=user.name, key=user.key, account=user.account,
                    rooms=tuple(sorted(room.name for room in user.rooms.values())),
                    nodes=frozenset(user.nodes), local=bool(user.sessions))


@implementer(IDirectoryView)
class DirectoryView:
    """
    The directory as the cluster fan-out reads it: frozen snapshots, so that
    nothing the fan-out does with them can change the core, and the stored
    rooms and messages it catches up from.

    @param directory: the L{Directory}.
    @param store: the L{chatd.istore.IMessageStore}.
    """

    def __init__(self, directory: Directory, store: IMessageStore) -> None:
        self._directory = directory
        self._store = store

    def user(self, name: str) -> Optional[UserView]:
        user = self._directory.user(name)
        return None if user is None else _userView(user)

    def localUsers(self) -> List[UserView]:
        return [_userView(user) for user in self._directory.users.values() if user.sessions]

    def usersOn(self, node: str) -> List[UserView]:
        return [_userView(user) for user in self._directory.usersOn(node)]

    def room(self, name: str) -> Optional[RoomView]:
        room = self._directory.rooms.get(fold(name))
        if room is None:
            return None
        return RoomView(name=room.name, localMembers=frozenset(
            key for key, user in room.members.items() if user.sessions))

    def storedRooms(self) -> "Deferred[List[RoomRecord]]":
        return self._store.loadRooms()

    def messagesSince(self, room: str, after: int, limit: int) -> "Deferred[List[HistoryRow]]":
        return self._store.messagesAfter(room, after, limit)
