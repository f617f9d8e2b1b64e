# -*- test-case-name: chatd.test.test_service -*-
"""
Requests that send envelopes: room and direct messages, under the message limit.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.core.base import SessionBase
from chatd.core.waiting import parsedOrNone
from chatd.errors import BadRequest, Conflict, NotFound, RateLimited, StaleRecipients, Unavailable
from chatd.names import fold, isUserName
from chatd.ratelimit import inWholeSeconds

log = Logger()


class MessageRequests(SessionBase):
    """
    The message requests of a L{chatd.core.session.Session}, mixed into it.
    """

    async def _underMessageLimit(self, user, check):
        """
        Run C{check} (the envelope checks of a message, DM or offer) under the
        user's message limit. A request over the limit is refused before
        anything else and does not count; every other request counts, except
        one refused only because the recipients changed (0x09), which the client
        retries at once through no fault of its own.

        @return: what C{check} returns.
        """
        limit, seconds = self.service.settings.rateLimit
        window, owner = self.service.messageLimit, self._owner(user)
        slot = await window.reserve(owner)
        if slot.wait is not None:  # not granted
            raise RateLimited("more than %d messages in %s; retry in %s"
                              % (limit, inWholeSeconds(seconds), inWholeSeconds(slot.wait)))
        try:
            return check()
        except (StaleRecipients, RateLimited):
            await window.release(owner, slot.token)
            raise


    def roomMessage(self, roomName: str, data: bytes) -> "Deferred[int]":
        """
        Post an envelope to a room.

        @return: a L{Deferred} firing with the server timestamp once the message
            is stored; it has been delivered to the other members by then.
        """
        user = self._greeted()
        room = self.service.directory.room(roomName)
        if fold(user.name) not in room.members:
            raise BadRequest("not a member of %s" % (room.name,))
        return Deferred.fromCoroutine(self._roomMessage(user, room, data))

    async def _roomMessage(self, user, room, data):
        service = self.service
        # A malformed envelope is refused under the limit (and counts), by
        # checkEnvelope; a good one says which recipients it must name.
        parsed = parsedOrNone(data)
        expected, members = await self._roomRecipients(room, parsed)
        envelope = await self._underMessageLimit(user, lambda: service.checkEnvelope(
            user, data, "room", room.name, expected, members, envelope=parsed,
            signer=self._signer(parsed)))
        replayKey = (fold(user.name), envelope.id)
        service.replays.add(replayKey)
        try:
            timestamp = await service.fanout.timestamp(room.name, service.now(),
                                                       room.lastTimestamp)
            service.directory.advance(room, timestamp)
            timestamp = await service.store.appendMessage(
                room.name, user.name, timestamp, envelope.id, data, envelope.readers())
        except Conflict:
            raise
        except Unavailable:
            # The store's outage is logged once, by the store, not per message.
            service.replays.discard(replayKey)
            raise
        except Exception:
            service.replays.discard(replayKey)
            log.failure("storing a message to {room}", room=room.name)
            raise BadRequest("the message could not be stored; try again")
        service.metrics.message("room")
        sequence = getattr(timestamp, "sequence", 0)
        service.happened(service.directory.roomMessage(
            room, user.name, timestamp, data, envelope, sequence=sequence), self)
        # The sending device has it: it is not replayed to it.
        service.devices.delivered(self, sequence)
        return int(timestamp)

    def directMessage(self, userName: str, data: bytes) -> "Deferred[int]":
        """
        Send an envelope to one user: to one online, not stored, from a
        legacy session; stored, to an account online or not, from a device
        session (L{chatd.core.waiting}).

        @return: a L{Deferred} firing with the server timestamp.
        """
        service = self.service
        user = self._greeted()
        if not isUserName(userName):
            raise BadRequest("invalid user name %r" % (userName,))
        peer = service.directory.user(userName)
        if self._storesDirect(user, peer):
            return Deferred.fromCoroutine(self._storedDirect(user, peer, userName, data))
        if peer is None:
            raise NotFound("%s is not online" % (userName,))
        self._hasKey(user)
        if peer.key is None:
            raise BadRequest("%s has not published a key" % (peer.name,))
        return Deferred.fromCoroutine(self._directMessage(user, peer, data))

    async def _directMessage(self, user, peer, data):
        service = self.service
        expected = {user.name: user.keyId, peer.name: peer.keyId}
        envelope = await self._underMessageLimit(user, lambda: service.checkEnvelope(
            user, data, "user", peer.name, expected,
            lambda: sorted({(user.name, user.key), (peer.name, peer.key)})))
        service.replays.add((fold(user.name), envelope.id))
        timestamp = service.now()
        service.metrics.message("direct")
        service.happened(service.directory.directMessage(user, peer, timestamp, data, envelope),
                         self)
        return timestamp
