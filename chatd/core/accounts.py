# -*- test-case-name: chatd.test.test_service -*-
"""
Requests about who a session is: hello, register, login, challenge and auth,
keys, and a guest's nick.
"""

from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from chatd import e2e, registration
from chatd.core.base import SessionBase
from chatd.core.directory import ROOM, USER
from chatd.core.events import UserOffline
from chatd.core.online import User
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited
from chatd.model import Account
from chatd.names import fold, isGuestName, isUserName
from chatd.ratelimit import inWholeSeconds

log = Logger()

# Version 2 adds the moderation events and the topic in JOIN's answer;
# version 3 devices (chatd.core.devices).
PROTOCOL_VERSIONS = (1, 2, 3)


class AccountRequests(SessionBase):
    """
    The account requests of a L{chatd.core.session.Session}, mixed into it.
    """

    def hello(self, version: int, guest: bool = True) -> Optional[str]:
        """
        Greet the server.

        @param guest: whether the session becomes a guest now; a door without
            guests greets with L{False}, leaving the session nobody until it
            registers or logs in (so does every door when the server allows no
            guests).
        @return: the assigned guest name, or L{None}.
        """
        if self.greeted:
            raise Conflict("already greeted")
        if version not in PROTOCOL_VERSIONS:
            raise BadRequest("protocol version %d is not spoken here; this server speaks %s"
                             % (version, ", ".join(map(str, PROTOCOL_VERSIONS))))
        self.greeted = True
        self.version = version
        self._cancelHelloTimer()
        if not (guest and self.service.settings.allowGuests):
            return None
        user = User(self.service.nextGuestName())
        self._attach(user)
        return user.name


    def nick(self, name: str) -> "Deferred[str]":
        """
        A guest takes another name.

        @return: a L{Deferred} firing with the new name.
        """
        user = self._greeted()
        if user.account:
            raise Forbidden("an account cannot change its name")
        if not isUserName(name):
            raise BadRequest("invalid name %r: 1-32 of A-Z a-z 0-9 _ . -" % (name,))
        if fold(name) == fold(user.name):
            if name != user.name:
                self._rename(user, name)
            return succeed(name)
        if isGuestName(name):
            raise Conflict("names like %s are reserved for guests" % (name,))
        if self.service.directory.nameInUse(name):
            raise Conflict("name in use: %s" % (name,))
        return Deferred.fromCoroutine(self._nick(user, name))

    async def _nick(self, user, name):
        directory = self.service.directory
        if await self.service.store.getAccount(name) is not None or directory.nameInUse(name):
            raise Conflict("name in use: %s" % (name,))
        await self._refuseBannedName(user, name)
        if self.user is not user:
            raise BadRequest("the session closed meanwhile")
        self._rename(user, name)
        return name

    def _rename(self, user, name):
        self.service.happened(self.service.directory.rename(user, name, user.account), self)


    def register(self, name: str, password: str, publicKey: bytes,
                 invite: Optional[str] = None) -> "Deferred[None]":
        """
        Create an account and log this session in as it. An empty password makes
        an account that logs in by challenge-response only.

        @param invite: an invite token, which C{--registration invite} needs
            (L{chatd.registration}); ignored otherwise.
        @return: a L{Deferred} that fires when the account is stored.
        """
        self._notLoggedIn()
        return Deferred.fromCoroutine(self._register(name, password, publicKey, invite))

    async def _register(self, name, password, publicKey, invite, devices=None, recovery=b"",
                        check=None):
        """
        @param devices: for a device's registration (L{chatd.core.devices}),
            a list that C{check} puts the checked L{chatd.model.DeviceList}
            in; L{None} otherwise.
        @param check: run once the name is known to be valid and before
            anything is stored.
        """
        service = self.service
        wait = await service.registrations.hit(self.address)
        if wait is not None:
            raise RateLimited("too many registrations from your address; retry in %s"
                              % inWholeSeconds(wait))
        if not isUserName(name):
            raise BadRequest("invalid name %r: 1-32 of A-Z a-z 0-9 _ . -" % (name,))
        if isGuestName(name):
            raise Conflict("names like %s are reserved for guests" % (name,))
        size = len(password.encode("utf-8"))
        if password and not 8 <= size <= 72:
            raise BadRequest("passwords are 8 to 72 bytes")
        e2e.loadPublicKey(publicKey)
        if check is not None:
            check()
        invite = registration.admit(service.settings.registration, invite)
        if service.directory.nameInUse(name) and (
                self.user is None or fold(name) != fold(self.user.name)):
            raise Conflict("name in use: %s" % (name,))
        service.directory.claim(name)
        try:
            passwordHash = None
            if password:
                passwordHash = await service.credentials.hashPassword(password)
            if devices is None:
                await service.store.createAccount(name, passwordHash, publicKey, invite)
            else:
                await service.store.createAccount(name, passwordHash, publicKey, invite,
                                                  devices[0], recovery)
        finally:
            service.directory.unclaim(name)
        service.metrics.registered()
        log.info("registered {name} from {address}", name=name, address=self.address)
        await self._becomeAccount(name, publicKey)

    def login(self, name: str, password: str) -> "Deferred[None]":
        """
        Log in with a password.

        @return: a L{Deferred} that fires once logged in; an unknown name and a
            wrong password fail alike, after the same work.
        """
        self._notLoggedIn()
        return Deferred.fromCoroutine(self._login(name, password))

    async def _login(self, name, password):
        account = await self._checkPassword(name, password)
        await self._refuseListed(account)
        log.info("{name} logged in from {address}", name=account.name, address=self.address)
        await self._becomeAccount(account.name, account.publicKey)

    async def _refuseListed(self, account):
        """
        A legacy login (naming no device) to an account with a device list
        is refused: its key is not the only one any more.
        """
        if (await self.service.store.getDevices(account.name)).devices:
            raise Forbidden("this account uses devices: log in with a device"
                            " (protocol version 3)")

    async def _checkPassword(self, name, password):
        """
        Check a password login's name and password, under the failure limits.

        @return: the L{chatd.model.Account}.
        """
        service = self.service
        try:
            attempt = await service.failures.attempt("user:" + fold(name), self.address)
        except RateLimited:
            log.info("login as {name!r} from {address} refused: too many failures",
                     name=name, address=self.address)
            raise
        account = await service.store.getAccount(name) if isUserName(name) else None
        ok = await service.credentials.checkPassword(
            password, account.passwordHash if account else None)
        if not (ok and account):
            service.metrics.loggedIn("password", False)
            log.info("failed login as {name!r} from {address}", name=name, address=self.address)
            raise Forbidden("wrong user name or password")
        await attempt.succeeded()
        registration.checkNotBanned(account)
        service.metrics.loggedIn("password", True)
        return account

    def challenge(self) -> bytes:
        """
        A fresh challenge for AUTH, replacing any earlier one.
        """
        self._hello()
        value = self.service.randomBytes(32)
        lifetime = self.service.settings.challengeLifetime
        self._challenge = (value, self.service.clock.seconds() + lifetime)
        return value

    def auth(self, name: str, signature: bytes) -> "Deferred[None]":
        """
        Log in by signing the outstanding challenge; the challenge is used up
        whatever the outcome.

        @return: a L{Deferred} that fires once logged in.
        """
        self._notLoggedIn()
        challenge, self._challenge = self._challenge, None
        return Deferred.fromCoroutine(self._auth(name, signature, challenge))

    async def _auth(self, name, signature, challenge):
        # A valid signature is never limited (it cannot be guessed, and costs
        # little to check): only failures are counted, after the check.
        service = self.service
        account = await service.store.getAccount(name) if isUserName(name) else None
        account = await self._checkSignature(
            name, account, account.publicKey if account else None, challenge, signature)
        await self._refuseListed(account)
        log.info("{name} logged in by key from {address}", name=account.name,
                 address=self.address)
        await self._becomeAccount(account.name, account.publicKey)

    async def _checkSignature(self, name: str, account: Optional[Account], key: Optional[bytes],
                              challenge: Any, signature: bytes,
                              device: Optional[str] = None) -> Account:
        """
        Check a key login's signature of C{challenge} by C{key} (the
        account's, or a device's), counting a failure against the name, and
        that the account is not banned. A valid signature is never limited.

        @return: the account, once checked.
        @raise Forbidden: for a bad or late signature, or no such account or key.
        """
        service = self.service
        live = challenge is not None and challenge[1] > service.clock.seconds()
        ok = await service.credentials.verifyAuth(
            key, challenge[0] if challenge else bytes(32), name, signature, device)
        if not (ok and account and live and key):
            service.metrics.loggedIn("key", False)
            log.info("failed key login as {name!r} from {address}", name=name,
                     address=self.address)
            await service.failures.failed("user:" + fold(name), self.address)
            raise Forbidden("authentication failed")
        registration.checkNotBanned(account)
        service.metrics.loggedIn("key", True)
        return account

    async def _becomeAccount(self, name, publicKey):
        """
        Make this session a session of account C{name}.

        When the account is online already, the session joins it (a guest
        leaves its rooms first). Otherwise a guest becomes the account:
        co-members see RENAMED (and KEY_CHANGED when the key differs) and its
        rooms become the account's. Either way the session then hears a JOINED
        for each room of the account it did not ask for.
        """
        service = self.service
        if self.ended:
            raise BadRequest("the session closed meanwhile")
        # An account made by the operator (chatd.admin create-user) has no
        # key until its first login publishes one (SET_KEY).
        publicKey = publicKey or None
        guest = self.user
        if guest is not None:
            await self._leaveBannedRooms(guest, name)
            if self.ended or self.user is not guest:
                raise BadRequest("the session closed meanwhile")
        online = service.directory.user(name)
        if online is not None and online is not guest:
            if guest is not None:
                # The guest goes offline with this session still in it, so
                # that the session hears it leave its rooms; the session then
                # belongs to the account.
                service.happened([UserOffline(guest.name)])
                service.goOffline(guest)
                service.directory.detach(self, guest)
            self._attach(online)
            for room in online.rooms.values():
                service.broadcast([self], "userJoined", room.name, online.name, online.key)
            return
        if guest is None:
            user = User(name, publicKey, account=True)
            self._attach(user)
        else:
            user = guest
            service.happened(service.directory.rename(guest, name, True), self)
            if publicKey is not None and guest.key != publicKey:
                self._changeKey(guest, publicKey)
            for room in list(user.rooms.values()):
                await service.store.addMember(room.name, user.name)
        for roomName in await service.store.roomsOf(name):
            stored = service.directory.rooms.get(fold(roomName))
            if stored is not None and fold(name) not in stored.members and self.user is user:
                service.happened(service.directory.join(stored, user))

    def setKey(self, publicKey: bytes) -> "Deferred[None]":
        """
        Publish (a guest) or replace (an account) this user's public key.

        @return: a L{Deferred} that fires when the key is stored.
        """
        user = self._greeted()
        e2e.loadPublicKey(publicKey)
        if publicKey == user.key:
            return succeed(None)
        self._changeKey(user, publicKey)
        if user.account:
            return self.service.store.setPublicKey(user.name, publicKey)
        return succeed(None)

    def _changeKey(self, user, publicKey):
        self.service.happened(self.service.directory.changeKey(user, publicKey), self)

    def getKeys(self, kind: int, name: str) -> "Deferred[List[Tuple[str, Optional[bytes]]]]":
        """
        The public keys of a room's members, or of one user.

        @return: a L{Deferred} firing with sorted C{(name, key)} pairs.
        """
        user = self._greeted()
        if kind == ROOM:
            room = self.service.directory.room(name)
            if room.passwordHash is not None and fold(user.name) not in room.members:
                raise Forbidden("the members of %s are private" % (room.name,))
            return Deferred.fromCoroutine(self._membersFor(room))
        if kind != USER:
            raise BadRequest("keys are asked for a room (0) or a user (1), not %d" % (kind,))
        if not isUserName(name):
            raise BadRequest("invalid user name %r" % (name,))
        online = self.service.directory.user(name)
        if online is not None:
            if online.key is None:
                raise BadRequest("%s has not published a key" % (online.name,))
            if not online.account:
                return succeed([(online.name, online.key)])
        # An account's list is held too, for the door to send with its key.
        return Deferred.fromCoroutine(self._accountKey(name, online))

    async def _accountKey(self, name, online):
        held = await self.service.devices.load(name)
        if held is None:
            raise NotFound("no such user: %s" % (name,))
        if online is not None:
            return [(online.name, online.key)]
        return [(held[0], held[1] or b"")]
