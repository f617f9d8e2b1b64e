# -*- test-case-name: chatd.test.test_roomrace -*-
"""
The rooms whose existence this node is settling with the store right now: a
new room that a session is creating, an emptied one that the store is deciding
whether to drop.

A new room is known here only once stored, and its creator joins it only then;
an emptied room is gone from the store a moment before this node hears so. A
request for a room of that name meanwhile (a JOIN, a CREATE) waits until it is
settled, and then finds the room stored (with its creator in it), or finds no
room and may create it itself. Without the wait, a JOIN took the room for one
that exists, or for one that does not, and asked the store about a room it did
not have: "no such room".
"""

from typing import Dict, Optional

from chatd.core.directory import Directory
from chatd.core.online import Room
from chatd.names import fold
from chatd.observer import OneShotObserver


class Settling:
    """
    The names being settled here (folded), each with the observer its waiters
    are woken by.
    """

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._pending: Dict[str, OneShotObserver] = {}

    async def settled(self, name: str) -> Optional[Room]:
        """
        Wait until no room named C{name} is being settled here.

        @return: the room of that name then, or L{None} when there is none. The
            caller may L{begin} settling it before its next C{await}: waiters
            are woken one after the other, so the next finds it begun.
        """
        key = fold(name)
        while key in self._pending:
            await self._pending[key].whenFired()
        return self._directory.rooms.get(key)

    def busy(self, name: str) -> bool:
        """
        @return: whether a room named C{name} is being settled here.
        """
        return fold(name) in self._pending

    def begin(self, name: str) -> None:
        """
        Start settling the room C{name} (creating or dropping it); L{end} must
        be called however that ends.
        """
        key = fold(name)
        assert key not in self._pending, "%s is being settled already" % (name,)
        self._pending[key] = OneShotObserver()

    def end(self, name: str) -> None:
        """
        The room C{name} is settled (stored and joined by its creator, kept,
        dropped, or its creation failed): wake the requests that wait for it.
        """
        self._pending.pop(fold(name)).fire(None)
