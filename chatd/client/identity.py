# -*- test-case-name: chatd.test.test_client -*-
"""
Who the terminal client is: its identity key (loaded, or made on first use),
the account it registers or logs in to, and the key a guest makes for one run.

Our own key is ours: what the server says it is is only compared with the one
this device holds (L{chatd.client.ownkey.OwnKey}).
"""

from typing import Any

from chatd import loginsig
from chatd.client.errors import ClientError
from chatd.client.keystore import KeystoreError, publicKeyDer
from chatd.names import fold
from chatd.protocols.opcodes import Op


class Identity:
    """
    The identity part of L{chatd.client.chat.ChatClient}, which it is mixed
    into (a mixin so that splitting the module changed no behaviour); it uses
    the client's C{home}, C{ui}, C{passphrase}, C{runInThread}, C{rooms},
    C{keys}, C{ownKey}, C{seenEnvelopes}, C{call}, C{_connected},
    C{_userKey} and C{_renamed}.

    @ivar user: our name on the server (a guest name until logged in).
    @ivar account: whether we are logged in to an account.
    """

    # What the object this is mixed into provides (for type checkers).
    _connected: Any
    _renamed: Any
    _userKey: Any
    _authDevice: Any
    _loggedIn: Any
    _loginDevice: Any
    _whilePending: Any
    _registerDevice: Any
    call: Any
    deviceSession: Any
    home: Any
    keys: Any
    ownKey: Any
    passphrase: Any
    rooms: Any
    runInThread: Any
    seenEnvelopes: Any
    ui: Any

    def _initIdentity(self):
        self.user = None
        self.account = False
        self.privateKey = None
        self._becoming = None
        self._becomingKey = None

    @property
    def publicKey(self):
        """
        This device's key (SPKI DER).
        """
        return publicKeyDer(self.privateKey)

    @property
    def identityKey(self):
        """
        Our account's identity key: the one this device adopted (at
        registration, approval or recovery), or, for an account without
        devices, this device's own.
        """
        device = getattr(self, "device", None)
        if device is not None and device.identity is not None:
            return device.identity
        return self.publicKey

    async def _loadIdentity(self, user, generate):
        """
        Our identity key for C{user}: loaded (asking for its passphrase when it
        is protected and none was given), or made on first use.
        """
        try:
            exists = self.home.hasIdentity(user)
        except KeystoreError as e:
            raise ClientError(str(e)) from None
        if exists:
            passphrase = None
            if self.home.isEncrypted(user):
                passphrase = self.passphrase
                if not passphrase:
                    passphrase = await self.ui.askSecret("passphrase of %s's key: " % (user,))
        elif generate:
            passphrase = self.passphrase
            if passphrase is None:
                passphrase = await self.ui.askSecret(
                    "passphrase to protect %s's new key (Enter for none): " % (user,),
                    optional=True)
        else:
            raise ClientError("there is no key for %s in %s; only the device that registered "
                              "%s can read its messages (copy its key file to keys/ here)"
                              % (user, self.home.path, user))
        try:
            key = await self.runInThread(self.home.identity, user, passphrase or None, generate)
        except KeystoreError as e:
            raise ClientError(str(e)) from None
        if passphrase:
            self.passphrase = passphrase
        return key

    async def register(self, user, password="", invite=None):
        """
        Create an account with our identity key (made on first use), with the
        invite token a server with C{--registration invite} needs.

        @return: in a device session, the recovery code to show once
            (L{chatd.client.devices}); else L{None}.
        """
        self._notLoggedIn()
        key = await self._loadIdentity(user, True)
        if self.deviceSession(await self._connected()):
            codes = []

            async def registering():
                codes.append(await self._registerDevice(user, password, key, invite))
            await self._asAccount(user, key, registering())
            return codes[0]
        tail = (invite,) if invite else ()
        await self._asAccount(user, key, self.call(Op.REGISTER, user, password,
                                                   publicKeyDer(key), *tail))
        return None

    async def login(self, user, password):
        """
        Log in with a password; our local identity key must exist, since only it
        opens what is sent to us. When the server holds another key for us, ours
        is published (the others are told).
        """
        self._notLoggedIn()
        if self.deviceSession(await self._connected()):
            # A device without a key yet is a new device: its key is made
            # here, and it waits for approval.
            key = await self._loadIdentity(user, True)
            return await self._loginAsDevice(user, password, key)
        key = await self._loadIdentity(user, False)
        replaced = None
        self.ownKey.setAside()
        try:
            await self._asAccount(user, key, self.call(Op.LOGIN, user, password))
            replaced = await self._settle(user, publish=True)
        finally:
            self.ownKey.resume(replaced)
        return True

    async def _loginAsDevice(self, user, password, key):
        """
        A version-3 login: approved, as after any login; or pending, which
        is not yet being logged in (see L{chatd.client.devices}).

        @return: whether this device is approved.
        """
        self._becoming, self._becomingKey = user, key
        try:
            approved = await self._loginDevice(user, password, key)
        except BaseException:
            # Nothing is opened for a login that failed.
            self._becoming = self._becomingKey = None
            self._whilePending = []
            raise
        self._becoming = self._becomingKey = None
        if approved:
            self._becomeAccount(user, key)
            await self._settle(user)
        return approved

    async def auth(self, user):
        """
        Log in by signing a challenge with our identity key.
        """
        self._notLoggedIn()
        key = await self._loadIdentity(user, False)
        protocol = await self._connected()
        await self._asAccount(user, key, self._authenticate(protocol, user, key))
        await self._settle(user)

    async def _asAccount(self, user, key, loggingIn):
        """
        Wait for a login request; while it runs, the server may already put
        C{user} in its stored rooms (JOINED events come before the response),
        and those events are ours.
        """
        self._becoming, self._becomingKey = user, key
        try:
            await loggingIn
        except BaseException:
            # Nothing is opened for a login that failed.
            self._becoming = self._becomingKey = None
            self._whilePending = []
            raise
        self._becoming = self._becomingKey = None
        self._becomeAccount(user, key)

    async def _authenticate(self, protocol, user, key):
        if self.deviceSession(protocol):
            return await self._authDevice(protocol, user, key)
        (challenge,) = await protocol.request(Op.CHALLENGE)
        signature = await self.runInThread(loginsig.signAuth, key, challenge, user)
        await protocol.request(Op.AUTH, user, signature)

    def _notLoggedIn(self):
        if self.account:
            raise ClientError("already logged in as %s" % (self.user,))

    def _becomeAccount(self, user, key):
        old = self.user
        self.user, self.account, self.privateKey = user, True, key
        self.seenEnvelopes.attach(self.home.seenPath(user))
        self.keys[fold(user)] = self.identityKey
        for room in self.rooms.values():
            if old is not None:
                room.members.pop(old, None)
            room.members[user] = self.identityKey
        self._loggedIn()

    async def _settle(self, user, publish=False):
        """
        After a login: take the account's name as the server spells it (the
        person may have typed it in another case, and envelopes must name the
        sender exactly), and, after a password login, publish this device's key
        when the server holds another (the others are told). After a login by
        key, the server must hold our key: it checked our signature with it.

        @return: the key this replaced on the server, or L{None}.
        """
        name, stored = await self._userKey(user)
        if name != self.user:
            self._renamed(self.user, name)
            self.keys[fold(name)] = self.identityKey
        if publish and stored != self.publicKey:
            await self.call(Op.SET_KEY, self.publicKey)
            self.ui.notice("the server had another key for %s; published this device's key"
                           % (name,))
            return stored
        self.ownKey.check(name, stored, self.identityKey)
        return None

    async def _publishGuestKey(self, protocol):
        """
        A guest needs a key to join or send; it is made for this run only, and
        only when first needed, since most runs log in before they chat.
        """
        if self.privateKey is None:
            self.privateKey = await self.runInThread(self.home.ephemeral)
        await protocol.request(Op.SET_KEY, self.publicKey)
        protocol.keyPublished = True
        self.keys[fold(self.user)] = self.publicKey

    async def withKey(self):
        """
        The connection, with our key published on it.
        """
        protocol = await self._connected()
        if not self.account and not getattr(protocol, "keyPublished", False):
            await self._publishGuestKey(protocol)
        return protocol

    def _isMe(self, name):
        return fold(name) in {fold(n) for n in (self.user, self._becoming) if n}

    def _ourKey(self, name):
        """
        The key this device holds for our name C{name} (the account being
        logged in to, while a login runs), or L{None} while it holds none.
        """
        if self._becoming is not None and fold(name) == fold(self._becoming):
            device = getattr(self, "device", None)
            if device is not None and device.identity is not None:
                return device.identity
            return publicKeyDer(self._becomingKey)
        return self.identityKey if self.privateKey is not None else None

    def _withOurKey(self, members):
        """
        C{members} (reader to key) with our own entry sealed to the key this
        device holds, whatever the server said ours is.
        """
        return {name: (self._ourKey(name) or der) if self._isMe(name) else der
                for name, der in members.items()}

    async def nick(self, name):
        (name,) = await self.call(Op.NICK, name)
        self._renamed(self.user, name)
        return name
