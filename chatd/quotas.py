# -*- test-case-name: chatd.test.test_quotas -*-
"""
Limits on the requests that cost the server more than they cost the client.

A CREATE is a stored row (and, with a password, a bcrypt hash); a JOIN is a
fan-out to every member; a connection is a file descriptor and a session. Each
is cheap alone and ruinous by the thousand, so each is counted per user and per
client address, with defaults a small team never meets. A guest, which anyone
can become by connecting, may create only a few rooms and never one with a
password: hashing a room password is bcrypt work, and twenty guests doing it at
once would hold the threads a member's login needs.

The address is the one the door hands the core (for the web door, the client
address its proxy settings give); sliding windows are shared by the cluster's
nodes through the fan-out, connection counts are this node's own.
"""

from typing import Dict
from weakref import WeakKeyDictionary

from chatd.errors import Forbidden, RateLimited
from chatd.ratelimit import inWholeSeconds

WARNING_NO_HELLO = 0x05


class Quotas:
    """
    The create, join and connection limits of one node.

    @param fanout: the L{chatd.interfaces.IFanout} whose windows count.
    @param settings: a L{chatd.config.Settings}.
    """

    def __init__(self, fanout, settings):
        self.settings = settings
        self._creates = fanout.window("creates", *settings.createLimit)
        self._addressCreates = fanout.window("address-creates", *settings.createAddressLimit)
        self._joins = fanout.window("joins", *settings.joinLimit)
        self._addressJoins = fanout.window("address-joins", *settings.joinAddressLimit)
        self._guestRooms: WeakKeyDictionary[object, int] = WeakKeyDictionary()
        self.connections: Dict[str, int] = {}

    # -- connections ------------------------------------------------------

    def connect(self, address):
        """
        Count a new connection from C{address}.

        @raise RateLimited: when the address already holds as many as allowed;
            nothing is counted then.
        """
        cap = self.settings.addressConnections
        held = self.connections.get(address, 0)
        if held >= cap:
            raise RateLimited("too many connections from your address (at most %d); "
                              "close one and try again" % (cap,))
        self.connections[address] = held + 1

    def disconnect(self, address):
        """
        A connection counted by L{connect} is gone.
        """
        held = self.connections.get(address, 0) - 1
        if held > 0:
            self.connections[address] = held
        else:
            self.connections.pop(address, None)

    # -- rooms ------------------------------------------------------------

    async def checkJoin(self, owner, address):
        """
        Count a JOIN by the user whose limits are kept under C{owner}, from
        C{address}.

        @raise RateLimited: over either limit; a refused JOIN does not count.
        """
        await self._hit("join requests", self._joins, self._addressJoins, owner, address,
                        self.settings.joinLimit, self.settings.joinAddressLimit)

    def checkGuestCreate(self, user, password):
        """
        Refuse what a guest may not create, before any work is done for it.

        @raise Forbidden: for a guest's password room, or a guest past its
            share of rooms.
        """
        if user.account:
            return
        if password:
            raise Forbidden("guests cannot create rooms with a password; register or log in")
        cap = self.settings.guestRooms
        if self._guestRooms.get(user, 0) >= cap:
            raise Forbidden("a guest may create at most %d room%s; register or log in for more"
                            % (cap, "" if cap == 1 else "s"))

    async def checkCreate(self, owner, address):
        """
        Count a new room by the user whose limits are kept under C{owner}, from
        C{address}.

        @raise RateLimited: over either limit; a refused CREATE does not count.
        """
        await self._hit("rooms created", self._creates, self._addressCreates, owner, address,
                        self.settings.createLimit, self.settings.createAddressLimit)

    def created(self, user):
        """
        C{user} created a room: it counts against a guest's share.
        """
        if not user.account:
            self._guestRooms[user] = self._guestRooms.get(user, 0) + 1

    async def _hit(self, what, userWindow, addressWindow, owner, address, userLimit, addressLimit):
        # Each window checks and counts in one step (one script in a cluster),
        # so requests arriving together cannot all find room; the user's slot
        # is given back when the address refuses.
        slot = await userWindow.reserve(owner)
        if not slot.granted:
            raise RateLimited("more than %d %s in %s; retry in %s"
                              % (userLimit[0], what, inWholeSeconds(userLimit[1]),
                                 inWholeSeconds(slot.wait)))
        wait = await addressWindow.hit(address)
        if wait is not None:
            await userWindow.release(owner, slot.token)
            raise RateLimited("more than %d %s from your address in %s; retry in %s"
                              % (addressLimit[0], what, inWholeSeconds(addressLimit[1]),
                                 inWholeSeconds(wait)))
