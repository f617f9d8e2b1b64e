# -*- test-case-name: chatd.test.test_service -*-
"""
Requests that send envelopes: room and direct messages, under the message limit.
"""

from twisted.internet.defer import Deferred

from chatd.core.base import SessionBase
from chatd.core.waiting import parsedOrNone
from chatd.errors import BadRequest, NotFound, RateLimited, StaleRecipients
from chatd.names import fold, isUserName
from chatd.ratelimit import inWholeSeconds
from chatd.store.entries import Stamp


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
            is stored; it has been delivered to the other members by then (on
            a store that numbers its own messages, before it was stored).
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
        stamp = await self._stored(
            replayKey, lambda: self._timestampAndStore(user, room, data, envelope), room.name)
        service.metrics.message("room")
        # The sending device has it: it is not replayed to it.
        service.devices.delivered(self, stamp.sequence)
        return int(stamp)

    async def _timestampAndStore(self, user, room, data, envelope):
        timestamp = await self.service.fanout.timestamp(room.name, self.service.now(),
                                                        room.lastTimestamp)
        return await self._storeAndDeliver(user, room, timestamp, data, envelope)

    def _storeAndDeliver(self, user, room, timestamp, data, envelope) -> "Deferred[Stamp]":
        """
        Store a checked message and deliver it to the room.

        On a store that numbers its own messages (L{IMessageStore.numbering})
        the message is delivered at once, while its commit runs: the
        recipients do not wait for the disk. Should the commit fail, the
        sender is refused and retries with the same envelope id, which
        clients that saw the first one drop; the number it had is never
        handed out again (L{chatd.store.numbering}). A store shared by nodes
        numbers messages in the commit, so they are delivered after it.

        @return: a L{Deferred} firing with the L{Stamp} stored once committed.
        """
        service, store = self.service, self.service.store
        numbering = store.numbering
        if numbering is None:
            service.directory.advance(room, timestamp)
            stored = store.appendMessage(room.name, user.name, timestamp, envelope.id, data,
                                         envelope.readers())
            return stored.addCallback(self._deliverRoomMessage, user, room, data, envelope)
        stamp = numbering.take(room.name, timestamp)
        stored = store.appendMessage(room.name, user.name, int(stamp), envelope.id, data,
                                     envelope.readers(), stamp.sequence)
        if stored.called:
            # Answered at once (in memory): deliver only what it kept.
            return stored.addCallback(self._deliverRoomMessage, user, room, data, envelope)
        self._deliverRoomMessage(stamp, user, room, data, envelope)
        return stored

    def _deliverRoomMessage(self, stamp, user, room, data, envelope):
        service = self.service
        service.happened(service.directory.roomMessage(
            room, user.name, int(stamp), data, envelope, sequence=stamp.sequence), self)
        return stamp

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
