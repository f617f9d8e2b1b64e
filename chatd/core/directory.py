# -*- test-case-name: chatd.test.test_service -*-
"""
The users online and the rooms, with their memberships.
"""

from chatd import e2e

# The two kinds of target a request names (GET_KEYS, OFFER).
ROOM, USER = 0, 1


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

    def __init__(self, name, key=None, account=False):
        self.name = name
        self.account = account
        self.sessions = []
        self.nodes = set()
        self.rooms = {}
        self.peers = set()
        self.bans = set()
        self.setKey(key)

    def setKey(self, key):
        self.key = key
        self.keyId = e2e.keyId(key) if key is not None else None


class Room:
    """
    A room and its online members.

    @ivar lastTimestamp: the newest server timestamp given to one of its messages;
        the next is strictly greater, so that HISTORY pages without gaps.
    """

    def __init__(self, name, passwordHash=None, lastTimestamp=0):
        self.name = name
        self.passwordHash = passwordHash
        self.lastTimestamp = lastTimestamp
        self.members = {}
        self._keyIds = None

    @property
    def hasHistory(self):
        return self.lastTimestamp > 0

    def keyIds(self):
        """
        The key map an envelope to this room must carry: member name -> key id.
        Cached until membership or a member's key changes.
        """
        if self._keyIds is None:
            self._keyIds = {u.name: u.keyId for u in self.members.values()}
        return self._keyIds

    def changed(self):
        self._keyIds = None

    def memberKeys(self):
        return sorted((u.name, u.key) for u in self.members.values())
