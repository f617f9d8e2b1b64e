# -*- test-case-name: chatd.test.test_service -*-
"""
What every request family of a session stands on: the session's state and the
guards each request starts with, declared once, so that each family module
(L{accounts}, L{rooms}, L{messages}, L{files}, L{moderation}) reads, and is
type-checked, on its own, although all are mixed into one
L{chatd.core.session.Session}.
"""

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Set, Tuple

from twisted.logger import Logger

from chatd.core.online import User
from chatd.errors import AuthRequired, BadRequest, ChatError, Conflict, Forbidden, Unavailable
from chatd.names import fold

log = Logger()

if TYPE_CHECKING:
    from chatd.core.service import ChatService


class SessionBase:
    """
    A session's state (set by L{chatd.core.session.Session}) and its guards.

    @ivar user: the L{User} the session belongs to, or L{None} (nobody yet).
    @ivar transfers: the file transfers it takes part in.
    """

    service: "ChatService"
    client: Any
    address: str
    user: Optional[User]
    greeted: bool
    ended: bool
    version: int
    device: Optional[str]
    pending: bool
    transfers: Set[Any]
    _challenge: Optional[Tuple[bytes, float]]

    if TYPE_CHECKING:
        # What one family calls of another's (they are all one object).
        def _attach(self, user: User) -> None: ...
        def _cancelHelloTimer(self) -> None: ...
        def _rename(self, user: User, name: str) -> None: ...
        def _checkRoomPassword(self, password: str) -> None: ...
        async def _underMessageLimit(self, user: User, check: Any) -> Any: ...
        async def _refuseBanned(self, user: User, room: Any) -> Optional[str]: ...
        async def _refuseBannedName(self, user: User, name: str) -> None: ...
        async def _leaveBannedRooms(self, user: User, name: str) -> None: ...
        async def _register(self, name: str, password: str, publicKey: bytes,
                            invite: Any, devices: Any = None, recovery: bytes = b"",
                            check: Any = None) -> None: ...
        async def _checkPassword(self, name: str, password: str) -> Any: ...
        async def _checkSignature(self, name: str, account: Any, key: Any, challenge: Any,
                                  signature: bytes, device: Any = None) -> Any: ...
        async def _becomeAccount(self, name: str, publicKey: Any) -> None: ...
        async def _catchUp(self, fresh: bool = False) -> None: ...
        async def _roomRecipients(self, room: Any, envelope: Any) -> Any: ...
        def _signer(self, envelope: Any) -> Any: ...
        def _storesDirect(self, user: User, peer: Any) -> bool: ...
        async def _storedDirect(self, user: User, peer: Any, name: str, data: bytes) -> Any: ...
        def _directHistory(self, user: User, peer: str, limit: int, before: int) -> Any: ...
        def _wantShares(self, room: Any, newcomer: User) -> None: ...
        async def _membersFor(self, room: Any) -> Any: ...

    def _hello(self) -> Optional[User]:
        if not self.greeted:
            raise AuthRequired("say hello first")
        if self.pending:
            # Only chatd.core.devices.PENDING_ALLOWED skip this guard.
            raise Forbidden("device not approved yet")
        return self.user

    def _greeted(self) -> User:
        user = self._hello()
        if user is None:
            raise AuthRequired("authentication required: register or log in first")
        return user

    def _notLoggedIn(self):
        user = self._hello()
        if user is not None and user.account:
            raise Conflict("already logged in as %s" % (user.name,))

    def _hasKey(self, user):
        if user.key is None:
            raise BadRequest("publish a public key first")

    async def _stored(self, replayKey: Tuple[str, str], store: Callable[[], Awaitable[Any]],
                      target: str) -> Any:
        """
        Store a checked message whose id is C{replayKey} (C{store()}), and say
        why it failed if it did.

        A message that could not be stored, for a reason that is no refusal
        (a L{ChatError}) of its own, is refused with L{Unavailable}
        (0x0a: try again later, as it is), never 0x01 (the request is
        broken): its sender sends the same envelope again, which members
        that got it ahead of the commit drop. Its id is forgotten, so that
        the retry is taken; except on L{Conflict}, the database holding that
        id already, which the retry must meet too.
        """
        try:
            return await store()
        except Conflict:
            raise
        except ChatError:
            # A refusal of its own (the store's outage, Unavailable, is logged
            # once, by the store, not per message).
            self.service.replays.discard(replayKey)
            raise
        except Exception:
            self.service.replays.discard(replayKey)
            log.failure("storing a message to {target}", target=target)
            raise Unavailable("the message could not be stored; try again")

    @staticmethod
    def _owner(user):
        """
        The key of a user's limits: an account's outlive its sessions; a guest's
        go with it (keyed by the guest itself, so that renaming does not reset
        them).
        """
        return fold(user.name) if user.account else "guest:%d" % (id(user),)
