# -*- test-case-name: chatd.test.test_waiting -*-
"""
Messages that wait (protocol version 3): direct messages stored when both
parties are accounts, the recipients a version 2 envelope must name, and the
catch-up a device session gets after it logs in (or is approved): every
stored message of its account's rooms and conversations above its device's
mark that has its entry, oldest first, then CAUGHT_UP.

Version 1 and 2 sessions keep today's rules: their direct messages go to
users online only and are not stored.
"""



from typing import Optional

from chatd import e2e
from chatd.core.base import SessionBase
from chatd.errors import BadRequest, ChatError, Forbidden, NotFound
from chatd.interfaces import IDeviceClient
from chatd.names import fold

# How many stored messages one catch-up read takes.
CATCH_UP_PAGE = 200


def readable(rows, entry):
    """
    Stored history C{rows} as reader C{entry} (an entry key) receives them:
    C{(sender, timestamp, cut envelope)} triples of the rows it has a key
    entry in, each cut by the entry it reads that envelope by
    (L{chatd.e2e.Envelope.entryFor}). The store matches a device's entry or
    its bare name; a version 2 envelope filed under the bare name only (sent
    before the account had devices) is not this device's to read.
    """
    found = []
    for row in rows:
        envelope = e2e.Envelope.parse(row.envelope)
        reader = envelope.entryFor(entry)
        if reader in envelope.encryptedKeys:
            found.append((row.sender, row.timestamp, envelope.cutFor(reader)))
    return found


class _V2:
    """
    Stands for any version 2 envelope, when only the recipients are asked.
    """

    version = 2


def parsedOrNone(data: bytes) -> Optional[e2e.Envelope]:
    """
    C{data} parsed as an envelope, or L{None} when it is not one: a
    malformed envelope is refused later, under the message limit, by
    L{chatd.core.service.ChatService.checkEnvelope}.
    """
    try:
        return e2e.Envelope.parse(data)
    except ChatError:
        return None


class WaitingRequests(SessionBase):
    """
    The waiting-message parts of a L{chatd.core.session.Session}, mixed into it.
    """

    deviceKey: Optional[bytes]
    mark: int

    def _signer(self, envelope):
        """
        The key C{envelope} must be signed with: a device session's own key
        (and a version 2 envelope names this device), else the user's.
        """
        if envelope is None:
            return None
        if envelope.version == 2 and envelope.device != (self.device or ""):
            raise Forbidden("envelope 'dev' is %r, not this device (%r)"
                            % (envelope.device, self.device or ""))
        return self.deviceKey if self.device is not None else None

    async def _roomRecipients(self, room, envelope):
        """
        The key map an envelope to C{room} must carry, and the members for a
        refusal: version 2 names every device of every member, the members
        being those online in it and the accounts remembered in it.
        """
        if envelope is None or envelope.version != 2:
            return room.keyIds(), room.memberKeys
        accounts = room.storedAccounts
        if accounts is None:
            generation = room.generation
            accounts = await self.service.store.membersOf(room.name)
            if room.generation == generation:
                room.storedAccounts = accounts
        expected, members = await self.service.devices.expected(
            list(room.members.values()), accounts)
        return expected, lambda: members

    async def _membersFor(self, room):
        """
        The members a JOIN or GET_KEYS answers with: for a device session,
        those a version 2 envelope must name (online or remembered in the
        room), with their lists held so that the door can send them; for a
        legacy session, those online, as in version 2.
        """
        if self.device is None:
            return room.memberKeys()
        return (await self._roomRecipients(room, _V2))[1]()

    def _storesDirect(self, user, peer):
        """
        Whether a direct message from this session is stored: from a device
        session, between accounts (the recipient may be offline).
        """
        return self.device is not None and user.account and (peer is None or peer.account)

    async def _storedDirect(self, user, peer, userName, data):
        """
        A version 2 direct message between accounts: stored, then given to
        the sessions online; the recipient may have none.
        """
        service = self.service
        held = await service.devices.load(userName)
        if held is None:
            raise NotFound("no such user: %s" % (userName,))
        peerName = held[0]
        envelope = parsedOrNone(data)
        if envelope is not None and envelope.version != 2:
            if peer is None:
                raise NotFound("%s is not online" % (userName,))
            raise BadRequest("a device sends direct messages in envelopes of version 2")
        users = [user] + ([peer] if peer is not None and peer is not user else [])
        expected, members = await service.devices.expected(users, [peerName])
        envelope = await self._underMessageLimit(user, lambda: service.checkEnvelope(
            user, data, "user", peerName, expected, lambda: members, envelope=envelope,
            signer=self._signer(envelope)))
        replayKey = (fold(user.name), envelope.id)
        service.replays.add(replayKey)
        stamp = await self._stored(replayKey, lambda: service.store.appendDirect(
            user.name, peerName, service.now(), envelope.id, data, envelope.readers()),
            "@" + peerName)
        service.metrics.message("direct")
        service.happened(service.directory.directMessage(
            user, peer, int(stamp), data, envelope, sequence=stamp.sequence,
            peerName=peerName), self)
        service.devices.delivered(self, stamp.sequence)
        return int(stamp)

    def _directHistory(self, user, peerName, limit, before):
        """
        HISTORY C{@user}: the stored direct messages between this account and
        C{peerName} that this session's entry key reads.
        """
        if not user.account:
            raise BadRequest("only accounts have stored direct messages")
        entry = self.service.devices.entryKeyOf(self)
        d = self.service.store.directHistory(user.name, peerName, entry, limit, before)
        return d.addCallback(readable, entry)

    async def _catchUp(self, fresh=False):
        """
        Replay what this device missed since its mark, then say CAUGHT_UP.

        @param fresh: the device is new (registered, or reset): it starts at
            the current sequence, with nothing to replay.
        """
        service, user, device = self.service, self.user, self.device
        if user is None or device is None or self.ended:
            return
        store = service.store
        mark = None if fresh else await store.getMark(user.name, device)
        count = 0
        if mark is None:
            # Seen for the first time: nothing of before is its to replay.
            mark = await store.currentSequence()
            self.mark = max(self.mark, mark)
            await store.setMarks([(user.name, device, mark)])
        else:
            count = await self._replay(user, mark)
        if not self.ended and IDeviceClient.providedBy(self.client):
            self.client.caughtUp(count)

    async def _replay(self, user, after):
        service = self.service
        entry = service.devices.entryKeyOf(self)
        count = 0
        while not self.ended:
            batch = await service.store.catchUp(user.name, entry, after, CATCH_UP_PAGE)
            for message in batch:
                if self.ended:
                    break
                envelope = e2e.Envelope.parse(message.envelope)
                reader = envelope.entryFor(entry)
                if reader not in envelope.encryptedKeys:
                    continue  # filed under the bare name only: see readable
                cut = envelope.sharedCut(reader)
                if message.room is not None:
                    service.broadcast([self], "roomMessage", message.room, message.sender,
                                      message.timestamp, cut)
                else:
                    service.broadcast([self], "directMessage", message.sender,
                                      message.timestamp, cut)
                service.devices.delivered(self, message.sequence)
                count += 1
            if len(batch) < CATCH_UP_PAGE:
                break
            after = batch[-1].sequence
        return count



