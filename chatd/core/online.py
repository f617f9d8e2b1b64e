# -*- test-case-name: chatd.test.test_events,chatd.test.test_service -*-
"""
The entries of the directory (L{chatd.core.directory}): a user online, with
its sessions, rooms and peers, and a room, with its online members. The
directory alone changes them; the rest of the core reads them.
"""

from typing import Any, Dict, List, Optional, Set, Tuple

from chatd import e2e


class User:
    """
    A name online: a guest with its one session, or an account with all of its.

    @ivar key: the public key (SubjectPublicKeyInfo DER), or L{None} for a guest
        that has not published one.
    @ivar rooms: the rooms it is in, by folded name.
    @ivar peers: users it has exchanged direct messages with while online, who
        must hear of its key changes.
    @ivar nodes: the other cluster nodes where it has sessions; a user known
        only from other nodes has no C{sessions} here.
    @ivar bans: the rooms it was banned from while online, by folded name: a
        guest that renames stays banned (L{chatd.core.moderation}).
    """

    def __init__(self, name: str, key: Optional[bytes] = None, account: bool = False) -> None:
        self.name = name
        self.account = account
        # The core's sessions here (L{chatd.core.session.Session}), opaque to
        # the directory.
        self.sessions: List[Any] = []
        self.nodes: Set[str] = set()
        self.rooms: Dict[str, Room] = {}
        self.peers: Set[User] = set()
        self.bans: Set[str] = set()
        self.setKey(key)

    def setKey(self, key: Optional[bytes]) -> None:
        self.key = key
        self.keyId = e2e.keyId(key) if key is not None else None


class Room:
    """
    A room and its online members.

    @ivar lastTimestamp: the newest server timestamp given to one of its messages;
        the next is strictly greater, so that HISTORY pages without gaps.
    """

    def __init__(self, name: str, passwordHash: Optional[bytes] = None, lastTimestamp: int = 0,
                 history: int = 0) -> None:
        self.name = name
        self.passwordHash = passwordHash
        self.lastTimestamp = lastTimestamp
        # How many of its latest messages a new member may be given.
        self.history = history
        self.members: Dict[str, User] = {}
        self._keyIds: Optional[Dict[str, Optional[str]]] = None
        # The accounts remembered in it (read from the store when needed),
        # and a count of membership changes, so that a read that raced a
        # change is not kept.
        self.storedAccounts: Optional[List[str]] = None
        self.generation = 0
        self._sessions: Optional[Tuple[Any, ...]] = None

    @property
    def hasHistory(self) -> bool:
        return self.lastTimestamp > 0

    def keyIds(self) -> Dict[str, Optional[str]]:
        """
        The key map an envelope to this room must carry: member name -> key id.
        Cached until membership or a member's key changes.
        """
        if self._keyIds is None:
            self._keyIds = {u.name: u.keyId for u in self.members.values()}
        return self._keyIds

    def sessions(self) -> Tuple[Any, ...]:
        """
        The sessions here of its members, member by member: each of its
        messages goes to all of them. Cached until membership changes or a
        member's session comes or goes (L{changed}, L{sessionsChanged}).
        """
        if self._sessions is None:
            self._sessions = tuple(
                session for member in self.members.values() for session in member.sessions)
        return self._sessions

    def sessionsChanged(self) -> None:
        """
        A member's session came or went.
        """
        self._sessions = None

    def changed(self) -> None:
        """
        Its members changed: what was worked out from them is forgotten,
        the accounts remembered in it included (a version 2 envelope names
        their devices, chatd.core.waiting).
        """
        self._keyIds = None
        self._sessions = None
        self.storedAccounts = None
        self.generation += 1

    def memberKeys(self) -> List[Tuple[str, Optional[bytes]]]:
        return sorted((u.name, u.key) for u in self.members.values())
