# -*- test-case-name: chatd.test.test_service -*-
"""
One connection's state: its user, its idle and HELLO timers, and the guards
every request family checks first. The requests themselves live in one module
per family (L{accounts}, L{rooms}, L{messages}, L{files}); L{Session} mixes
them in, so that a door calls every request on the one session object.
"""

from typing import TYPE_CHECKING, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from chatd.core.accounts import AccountRequests
from chatd.core.devices import DeviceRequests
from chatd.core.files import FileRequests
from chatd.core.messages import MessageRequests
from chatd.core.moderation import ModerationRequests
from chatd.core.rooms import RoomRequests
from chatd.core.sharing import SharingRequests
from chatd.core.waiting import WaitingRequests
from chatd.errors import NotFound
from chatd.interfaces import IChatClient
from chatd.isession import ISession
from chatd.names import fold
from chatd.quotas import WARNING_NO_HELLO
from chatd.ratelimit import inWholeSeconds

if TYPE_CHECKING:
    from chatd.core.service import ChatService

log = Logger()

WARNING_IDLE = 0x03


@implementer(ISession)
class Session(AccountRequests, RoomRequests, MessageRequests, FileRequests,
              ModerationRequests, DeviceRequests, WaitingRequests, SharingRequests):
    """
    One connection's state and the requests it can make.

    Methods are named for the requests; each returns a value or a L{Deferred}, or
    raises L{ChatError}. The front door serialises a connection's requests, so a
    session never runs two at once.
    """

    def __init__(self, service: "ChatService", client: IChatClient, address: str) -> None:
        self.service = service
        self.client = client
        self.address = address
        # The door's name, for the metrics: a client may say which it is.
        self.door = getattr(client, "door", "other")
        self.user = None
        self.greeted = False
        # The protocol version the client said in HELLO (the text and
        # WebSocket doors greet with 1 and show every event anyway).
        self.version = 1
        # The device a device session logged in as (chatd.core.devices), and
        # whether it waits to be approved.
        self.device = None
        self.pending = False
        self.ended = False
        self.transfers = set()
        self._challenge = None
        self._lastReceived = service.clock.seconds()
        self._warned = False
        self._timer: Optional[IDelayedCall] = service.clock.callLater(
            service.settings.idleWarning, self._idleCheck)
        self._helloTimer: Optional[IDelayedCall] = service.clock.callLater(
            service.settings.helloTimeout, self._noHello)

    # -- connection events ------------------------------------------------

    def received(self) -> None:
        """
        Bytes arrived from the client: the idle clock starts again.
        """
        self._lastReceived = self.service.clock.seconds()
        if self._warned:
            self._warned = False
            if self._timer is not None and self._timer.active():
                self._timer.reset(self.service.settings.idleWarning)

    def _idleCheck(self):
        settings = self.service.settings
        idle = self.service.clock.seconds() - self._lastReceived
        if idle >= settings.idleTimeout:
            self._timer = None
            log.info("closing idle session {name}", name=self.user and self.user.name)
            self.client.disconnect()
            return
        if idle >= settings.idleWarning:
            if not self._warned:
                self._warned = True
                self.client.warning(WARNING_IDLE, "idle for %s; disconnecting at %s without traffic"
                                    % (inWholeSeconds(idle),
                                       inWholeSeconds(settings.idleTimeout)))
            due = self._lastReceived + settings.idleTimeout
        else:
            self._warned = False
            due = self._lastReceived + settings.idleWarning
        self._timer = self.service.clock.callLater(
            max(0, due - self.service.clock.seconds()), self._idleCheck)

    def _noHello(self, late=False):
        if not late:
            # A server too busy to run for the whole deadline runs its timers
            # before it reads: give bytes that came meanwhile (the HELLO) one
            # turn of the reactor before closing.
            self._helloTimer = self.service.clock.callLater(0, self._noHello, True)
            return
        self._helloTimer = None
        log.info("closing a connection from {address} that never said hello",
                 address=self.address)
        self.client.warning(WARNING_NO_HELLO, "no hello within %s; closing the connection"
                            % inWholeSeconds(self.service.settings.helloTimeout))
        self.client.disconnect()

    def _cancelHelloTimer(self):
        if self._helloTimer is not None and self._helloTimer.active():
            self._helloTimer.cancel()
        self._helloTimer = None

    def closed(self) -> None:
        """
        The connection is gone: forget the session, and the user with its last one.
        """
        if not self.ended:
            self.service.quotas.disconnect(self.address)
            self.service.metrics.disconnected(self.door)
        self.ended = True
        self._cancelHelloTimer()
        for transfer in list(self.transfers):
            transfer.sessionGone(self, "disconnected")
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        user, self.user = self.user, None
        if user is not None:
            self._detach(user)
        self.service.sessions.discard(self)
        # A device's mark is written when its session closes.
        self.service.devices.dropPending(self)
        if self.device is not None:
            self.service.devices.flush()

    def _attach(self, user):
        self.user = user
        self.service.happened(self.service.directory.attach(self, user))

    def _detach(self, user):
        """
        This session no longer belongs to C{user}; with its last session in the
        cluster gone, the user goes offline.
        """
        self.service.happened(self.service.directory.detach(self, user))

    def heartbeat(self) -> None:
        """
        Nothing to do: the bytes themselves reset the idle clock.
        """

    # -- queries for the doors ----------------------------------------------
    # The doors (chatd/protocols/door.py) answer with the core's spelling of
    # names and check membership through these, never through the core's
    # dictionaries.

    # The requests, by method name, whose answers a door may await together: a
    # message's checks finish before its store write starts, so several writes
    # can share a transaction. Every other request waits for those before it
    # (so that a HISTORY sees the message just sent) and holds up those after.
    overlapping = frozenset({"roomMessage", "directMessage"})

    @property
    def name(self) -> Optional[str]:
        """
        The name of the session's user (guest or account), or L{None} before
        HELLO gave it one or a login.
        """
        return self.user.name if self.user is not None else None

    def isMember(self, roomName: str) -> bool:
        """
        Whether the session's user is in the room C{roomName}.

        @raise BadRequest: for a name no room can have.
        @raise NotFound: when there is no such room, so that a door can say so.
        """
        room = self.service.directory.room(roomName)
        return self.user is not None and fold(room.name) in self.user.rooms

    def roomSpelling(self, name: str) -> str:
        """
        The core's spelling of the room C{name} (its creator's), or C{name}
        itself when there is no such room.

        @raise BadRequest: for a name no room can have.
        """
        try:
            return self.service.directory.room(name).name
        except NotFound:
            return name

    def isGuest(self, name: str) -> bool:
        """
        Whether C{name} is a guest: a name online without an account. An
        account is never one, online or not, nor is a name nobody has.
        """
        online = self.service.directory.user(name)
        return online is not None and not online.account

    def userSpelling(self, name: str) -> str:
        """
        The spelling of the online user C{name}, or C{name} itself.
        """
        online = self.service.directory.user(name)
        return online.name if online is not None else name
