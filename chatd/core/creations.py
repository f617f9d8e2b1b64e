# -*- test-case-name: chatd.test.test_roomrace -*-
"""
The rooms that sessions of this node are creating right now.

A new room is in the directory a while before the store has it, and its
creator joins it only once it is stored. A request for a room of that name
meanwhile (a JOIN, a CREATE) waits until the creation has ended, and then finds
the room stored with its creator in it, or, when the creation failed, finds no
room and may create it itself. Without the wait, a second JOIN took the room
for an existing one and asked the store about a room it did not have yet.
"""

from typing import Dict, Optional

from chatd.core.directory import Directory
from chatd.core.online import Room
from chatd.names import fold
from chatd.observer import OneShotObserver


class Creations:
    """
    The names being created here (folded), each with the observer its waiters
    are woken by.
    """

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._pending: Dict[str, OneShotObserver] = {}

    async def settled(self, name: str) -> Optional[Room]:
        """
        Wait until no session here is creating a room named C{name}.

        @return: the room of that name then, or L{None} when there is none. The
            caller may L{begin} creating it before its next C{await}: waiters
            are woken one after the other, so the next finds it begun.
        """
        key = fold(name)
        while key in self._pending:
            await self._pending[key].whenFired()
        return self._directory.rooms.get(key)

    def begin(self, name: str) -> None:
        """
        A session here starts creating a room named C{name}; it must call
        L{end} however that ends.
        """
        key = fold(name)
        assert key not in self._pending, "%s is being created already" % (name,)
        self._pending[key] = OneShotObserver()

    def end(self, name: str) -> None:
        """
        The creation of C{name} has ended (stored and joined by its creator, or
        failed): wake the requests that wait for it.
        """
        self._pending.pop(fold(name)).fire(None)
