# -*- test-case-name: chatd.test.test_client -*-
"""
The terminal client's logic, without a terminal: who we are, which rooms we are
in, whose keys we trust, and the end-to-end encryption of everything we send and
receive.

Trust is the person's, not the server's: every key is pinned on first sight
(L{chatd.client.keystore.KnownKeys}); a pinned key that changes is reported
loudly and nothing is encrypted to that user until the person runs C{/verify}
or C{/trust}. Incoming envelopes are checked against the pinned key, the key
commitment and the replay set before anything is shown.

RSA private-key work (signing, unwrapping, key generation) runs through an
injected C{runInThread}, and incoming messages are opened one after another so
that they are shown in the order they arrived.

Reconnecting: a L{ClientService} redials with backoff, and its
C{prepareConnection} brings each new connection back to where the last one was
(greeted, logged in, rooms rejoined) before any command may use it. That
preparation never fails: L{ClientService} cannot take a connection that is lost
while it is being prepared and then reported as failed (automat raises
C{NoTransition} for the loss), so a preparation that goes wrong closes its
connection, waits until it is gone and returns; the service then sees an
ordinary disconnection and redials. What cannot get better by redialling (a
refused certificate, a refused login) stops the client instead.
"""

from collections import OrderedDict

from OpenSSL import SSL
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd import e2e
from chatd.client.connection import CertificateRefused, ClientProtocol, ServerError
from chatd.client.files import CHUNK_SIZE, FileTransfers
from chatd.client.keystore import KeystoreError, publicKeyDer
from chatd.client.ownkey import OwnKey
from chatd.client.replay import SeenEnvelopes
from chatd.names import fold, isGuestName
from chatd.protocols.opcodes import KIND_ROOM, KIND_USER, Op

log = Logger()

RATE_LIMITED = 0x02
# What /trust asks the person to type: this many last characters of the
# fingerprint they compared.
TRUST_CODE_LENGTH = 4
CONFLICT = 0x07
STALE = 0x09

# How many times a command waits for a fresh connection before giving up; each
# wait ends with a connection, or a failed attempt.
CONNECT_TRIES = 3

# How many times a message is sealed and sent when the server keeps saying its
# readers changed (0x09): the browser client's number too (docs/client.rst).
SEND_ATTEMPTS = 4


class ClientError(Exception):
    """
    A command that cannot be carried out; the message says why.
    """


class Held(ClientError):
    """
    An envelope from a user whose key changed and is neither accepted nor
    rejected yet: a message waits for the person's decision.
    """


class Room:
    """
    A room we are in: its name as the server spells it, and its members' keys.
    """

    def __init__(self, name, password=""):
        self.name = name
        self.password = password
        self.members = {}


class ChatClient:
    """
    One person's chat: the connection (reconnected with backoff), identity,
    rooms, pins and the commands the console offers.

    @param home: a L{chatd.client.keystore.Home}.
    @param ui: an L{chatd.interfaces.IClientUI}.
    @param endpoint: the L{IStreamClientEndpoint} of the server.
    @param clock: an L{IReactorTime}: heartbeats, redials, envelope times.
    @param checkPeer: called with the server's certificate on TLS connections;
        raises to refuse it, may return a sentence to show. L{None} when nothing
        needs checking.
    @param passphrase: the identity key's passphrase, when known in advance
        (C{CHATD_PASSPHRASE}); otherwise the UI is asked when a key needs one.
    @param runInThread: runs slow RSA work, and the disk and cipher work of
        file transfers; C{maybeDeferred} in tests.
    @param downloads: the folder accepted files go to by default
        (C{~/Downloads/chatd} when L{None}).
    @param chunkSize: the size of the chunks of files we send.

    @ivar user: our name on the server (a guest name until logged in).
    @ivar account: whether we are logged in to an account.
    @ivar active: the name of the room plain text goes to, or L{None}.
    @ivar rooms: our rooms, by folded name.
    @ivar blocked: folded names whose pinned key changed and is not yet trusted.
    @ivar changes: folded name to C{(name, key)}: the new key a blocked user
        was last seen with, the one the person is shown and may accept.
    @ivar ownKey: the L{OwnKey} that checks what the server says our key is.
    @ivar seenEnvelopes: the L{SeenEnvelopes} that catch replays, kept with
        the account's key once logged in.
    @ivar files: the L{FileTransfers}: offers, sending and receiving.
    """

    def __init__(self, home, ui, endpoint, clock, checkPeer=None, passphrase=None,
                 runInThread=deferToThread, retryPolicy=None, downloads=None,
                 chunkSize=CHUNK_SIZE):
        self.home = home
        self.ui = ui
        self.clock = clock
        self.checkPeer = checkPeer
        self.passphrase = passphrase
        self.runInThread = runInThread
        self.user = None
        self.account = False
        self.privateKey = None
        self.rooms = OrderedDict()
        self.active = None
        self.keys = {}
        self.blocked = set()
        self.changes = {}
        self._held = {}
        self._rejected = set()
        self.protocol = None
        self._preparing = None
        self._becoming = None
        self._becomingKey = None
        self._unchecked = set()
        self._restoredNames = set()
        self._everConnected = False
        self._stopping = False
        self._connectionWaiters = []
        self.seenEnvelopes = SeenEnvelopes()
        self._inbound = succeed(None)
        self.ownKey = OwnKey(lambda *told: self._tell(self.ui.ownKeyChanged, *told))
        self.files = FileTransfers(self, downloads, chunkSize)
        self._service = ClientService(
            endpoint, Factory.forProtocol(self._buildProtocol),
            retryPolicy=retryPolicy or backoffPolicy(maxDelay=30),
            clock=clock, prepareConnection=self._prepare)

    # -- connection -------------------------------------------------------

    def start(self):
        """
        Connect, and keep reconnecting when the connection drops.
        """
        self._service.startService()

    def stop(self):
        """
        Close the connection for good.

        @return: a L{Deferred} that fires once it is closed.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self):
        self._stopping = True
        self._stopWaiting()
        if self._preparing is not None:
            # ClientService cannot be stopped while a connection is being
            # prepared (it would cancel the preparation and then trip over the
            # connection's loss): close that connection, let the service see
            # an ordinary disconnection, then stop it.
            preparing = self._preparing
            preparing.transport.loseConnection()
            await preparing.prepared
            await deferLater(self.clock, 0)
        await self._service.stopService()
        # The connection is gone, and with it every transfer: let their
        # temporary files be deleted before the process may end.
        await self.files.settled()

    def _buildProtocol(self):
        # Events carry the connection they came on: a file transfer lives and
        # dies with its connection.
        protocol = ClientProtocol(self.clock, None, self.checkPeer)
        protocol.onEvent = lambda op, values: self._event(op, values, protocol)
        return protocol

    async def _prepare(self, proxy):
        """
        Make a new connection usable (see the module docstring for why this
        never fails).

        @param proxy: what L{ClientService} wraps our protocol in.
        """
        if self._stopping:
            await self._drop(proxy)
            return
        self._preparing = proxy
        proxy.prepared = Deferred()
        try:
            await self._prepareOn(proxy)
        finally:
            self._preparing = None
            proxy.prepared.callback(None)

    async def _prepareOn(self, proxy):
        try:
            protocol = await proxy.ready
            if protocol.peerNotice:
                self.ui.notice(protocol.peerNotice)
            await self._resume(protocol)
        except Exception as e:
            failure = Failure()
            wasLost = not proxy.connected
            await self._drop(proxy)
            if self._stopping:
                return
            if isinstance(e, CertificateRefused):
                self._fatal(str(e))
            elif isinstance(e, SSL.Error):
                self._fatal("TLS with the server failed, so nothing was sent: %s. Is the "
                            "certificate right for this host (--ca), and does the server "
                            "speak TLS on this port?" % (_sslReason(e),))
            elif isinstance(e, ServerError) and e.status != RATE_LIMITED:
                self._fatal("the server refused to resume the session: %s" % (e.message,))
            elif isinstance(e, (ServerError, ClientError)):
                self.ui.notice("could not resume the session (%s); trying again" % (e,))
            elif not wasLost:
                log.failure("preparing a connection", failure)
            return
        if self._stopping:
            await self._drop(proxy)
            return
        self.protocol = protocol
        protocol.lost.addCallback(self._lost, protocol)
        waiters, self._connectionWaiters = self._connectionWaiters, []
        for d in waiters:
            d.callback(None)

    @property
    def connected(self) -> bool:
        """
        Whether a connection is ready for commands (greeted, logged in again,
        rooms rejoined).
        """
        return self.protocol is not None

    def whenConnected(self):
        """
        Wait, however many attempts it takes, until a connection is ready.

        @return: a L{Deferred} that fires with L{None} then, or fails with
            L{ClientError} when the client stops first.
        """
        if self.protocol is not None:
            return succeed(None)
        if self._stopping:
            return fail(ClientError("the client has stopped"))
        d = Deferred()
        self._connectionWaiters.append(d)
        return d

    def _stopWaiting(self):
        waiters, self._connectionWaiters = self._connectionWaiters, []
        for d in waiters:
            d.errback(ClientError("the client has stopped"))

    async def _drop(self, proxy):
        """
        Close a connection we will not use, and wait until it is gone.
        """
        if proxy.lost.called:
            return
        proxy.transport.loseConnection()
        await proxy.lost

    def _fatal(self, message):
        """
        Stop for good and tell the person why. Called as a preparation ends;
        the telling (which may stop the client) waits a turn of the reactor,
        until the service has seen the connection go.
        """
        self._stopping = True
        self._stopWaiting()

        def tell():
            self.ui.fatal(message)
            return self._service.stopService()
        self.clock.callLater(0, tell)

    def _lost(self, reason, protocol):
        self.files.connectionLost(protocol)
        if self.protocol is protocol:
            self.protocol = None
            if not self._stopping:
                self._tell(self.ui.notice, "connection to the server lost; reconnecting")

    async def _resume(self, protocol):
        """
        Bring a new connection to where the last one was: greeted, logged in (by
        challenge-response with our key), key published, rooms joined.
        """
        (guestName,) = await protocol.request(Op.HELLO)
        resuming, self._everConnected = self._everConnected, True
        if self.account:
            self._restoredNames = set()
            await self._authenticate(protocol, self.user, self.privateKey)
            # The server put us back in our stored rooms (JOINED came before
            # the response); a room that went away while empty is made again.
            await self._rejoin(protocol, [room for room in self.rooms.values()
                                          if fold(room.name) not in self._restoredNames])
        else:
            named = self.user is not None and not isGuestName(self.user)
            if named and fold(self.user) != fold(guestName):
                try:
                    await protocol.request(Op.NICK, self.user)
                except ServerError as e:
                    self.ui.notice("could not take the name %s again (%s); you are %s"
                                   % (self.user, e.message, guestName))
                    self._renamed(self.user, guestName)
            elif self.user != guestName:
                if self.user is not None:
                    self._renamed(self.user, guestName)
                self.user = guestName
            protocol.keyPublished = False
            if self.privateKey is not None or self.rooms:
                await self._publishGuestKey(protocol)
            await self._rejoin(protocol, list(self.rooms.values()))
        if resuming:
            self._tell(self.ui.notice, "reconnected as %s" % (self.user,))

    async def _rejoin(self, protocol, rooms):
        for room in rooms:
            try:
                await self._joinOn(protocol, room.name, room.password)
            except ServerError as e:
                self._forget(room.name)
                self.ui.notice("could not rejoin %s: %s" % (room.name, e.message))

    async def _connected(self):
        """
        The connection commands may use, waiting for one when there is none.

        The service hands out connections (and failures) from inside its state
        machine, which must not be asked anything before it has finished; so
        every wait ends with a turn of the reactor.

        @raise ClientError: when none comes (the server cannot be reached, or
            the client stopped).
        """
        for _ in range(CONNECT_TRIES):
            if self.protocol is not None:
                return self.protocol
            try:
                protocol = await self._service.whenConnected(failAfterFailures=1)
            except CancelledError:
                await deferLater(self.clock, 0)
                raise ClientError("not connected to the server") from None
            except Exception as e:
                await deferLater(self.clock, 0)
                raise ClientError("cannot reach the server: %s" % (e,)) from None
            await deferLater(self.clock, 0)
            if protocol is self.protocol:
                return protocol
        raise ClientError("not connected to the server")

    async def call(self, op, *values):
        """
        One request on the current connection.
        """
        protocol = await self._connected()
        return await protocol.request(op, *values)

    # -- identity ---------------------------------------------------------

    @property
    def publicKey(self):
        return publicKeyDer(self.privateKey)

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
        """
        self._notLoggedIn()
        key = await self._loadIdentity(user, True)
        tail = (invite,) if invite else ()
        await self._asAccount(user, key, self.call(Op.REGISTER, user, password,
                                                   publicKeyDer(key), *tail))

    async def login(self, user, password):
        """
        Log in with a password; our local identity key must exist, since only it
        opens what is sent to us. When the server holds another key for us, ours
        is published (the others are told).
        """
        self._notLoggedIn()
        key = await self._loadIdentity(user, False)
        replaced = None
        self.ownKey.setAside()
        try:
            await self._asAccount(user, key, self.call(Op.LOGIN, user, password))
            replaced = await self._settle(user, publish=True)
        finally:
            self.ownKey.resume(replaced)

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
        finally:
            self._becoming = self._becomingKey = None
        self._becomeAccount(user, key)

    async def _authenticate(self, protocol, user, key):
        (challenge,) = await protocol.request(Op.CHALLENGE)
        signature = await self.runInThread(e2e.signAuth, key, challenge, user)
        await protocol.request(Op.AUTH, user, signature)

    def _notLoggedIn(self):
        if self.account:
            raise ClientError("already logged in as %s" % (self.user,))

    def _becomeAccount(self, user, key):
        old = self.user
        self.user, self.account, self.privateKey = user, True, key
        self.seenEnvelopes.attach(self.home.seenPath(user))
        self.keys[fold(user)] = self.publicKey
        for room in self.rooms.values():
            if old is not None:
                room.members.pop(old, None)
            room.members[user] = self.publicKey

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
            self.keys[fold(name)] = self.publicKey
        if publish and stored != self.publicKey:
            await self.call(Op.SET_KEY, self.publicKey)
            self.ui.notice("the server had another key for %s; published this device's key"
                           % (name,))
            return stored
        self.ownKey.check(name, stored, self.publicKey)
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

    async def _withKey(self):
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
            return publicKeyDer(self._becomingKey)
        return self.publicKey if self.privateKey is not None else None

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

    # -- keys and trust ---------------------------------------------------

    def _sawKey(self, user, der):
        """
        Pin or check C{user}'s key. Guests' names are reused by others, so their
        keys are shown but never pinned. Our own key is only compared with the
        one this device holds (L{OwnKey}).
        """
        if self._isMe(user):
            self.ownKey.check(user, der, self._ourKey(user))
            return
        old = self.keys.get(fold(user))
        self.keys[fold(user)] = der
        self._unchecked.discard(fold(user))
        if isGuestName(user):
            return
        state = self.home.knownKeys.check(user, der)
        if state == "new":
            self.home.knownKeys.pin(user, der)
            self._tell(self.ui.notice, "first contact with %s: key %s pinned"
                       % (user, e2e.fingerprint(der)))
        elif state == "changed":
            if fold(user) not in self.blocked or old != der:
                self.blocked.add(fold(user))
                self._rejected.discard(fold(user))
                self.changes[fold(user)] = (user, der)
                pinned, _ = self.home.knownKeys.pinned(user)
                self._tell(self.ui.keyChanged, user, e2e.fingerprint(pinned), e2e.fingerprint(der))
        else:
            self._unblock(user)

    def _unblock(self, user):
        """
        C{user}'s key is trusted again: what was held from them is opened now,
        checked with that key, in the order it came.
        """
        self.blocked.discard(fold(user))
        self._rejected.discard(fold(user))
        self.changes.pop(fold(user), None)
        for held in self._held.pop(fold(user), []):
            self._openInOrder(*held)

    def _checkRenamed(self, names):
        """
        Check the keys of users who were renamed since we last looked: a guest
        that logs in is renamed before its account key arrives (KEY_CHANGED), so
        its temporary key must not be pinned under the account's name at the
        rename.
        """
        for name in names:
            if fold(name) in self._unchecked and fold(name) in self.keys:
                self._sawKey(name, self.keys[fold(name)])

    def _trustedKey(self, user):
        """
        The key to check C{user}'s signatures with: the pinned one, for guests
        the one the server gave, and for us the one this device holds.
        """
        if self._isMe(user):
            return self._ourKey(user)
        if not isGuestName(user):
            pinned = self.home.knownKeys.pinned(user)
            if pinned is not None:
                return pinned[0]
        return self.keys.get(fold(user))

    def fingerprint(self, user=None):
        """
        Our own fingerprint, or the one we hold for C{user}.
        """
        if user is None or self._isMe(user):
            if self.privateKey is None:
                raise ClientError("no key yet: /register, /auth, or /join as a guest")
            return e2e.fingerprint(self.publicKey)
        self._checkRenamed([user])
        der = self._trustedKey(user)
        if der is None:
            raise ClientError("no key known for %s; try /keys user %s" % (user, user))
        return e2e.fingerprint(der)

    async def keysOf(self, kind, name):
        """
        The keys the server gives for a room or a user, each checked against our
        pins: C{[(user, fingerprint, state)]} with state C{verified}, C{tofu},
        C{changed}, C{guest} or C{self}.
        """
        (members,) = await self.call(Op.GET_KEYS, KIND_ROOM if kind == "room" else KIND_USER, name)
        result = []
        for user, der in members:
            self._sawKey(user, der)
            result.append((user, e2e.fingerprint(der), self._state(user, der)))
        return result

    def _state(self, user, der):
        if self._isMe(user):
            return "self" if der == self._ourKey(user) else "changed"
        if isGuestName(user):
            return "guest"
        pinned = self.home.knownKeys.pinned(user)
        if pinned is None or pinned[0] != der:
            return "changed"
        return pinned[1]

    async def verify(self, user, fingerprint):
        """
        Mark C{user}'s current key verified when C{fingerprint} (as the person
        read it from the other person) matches it.
        """
        name, der = await self._keyToAccept(user)
        try:
            matched = self.home.knownKeys.verify(name, fingerprint, der)
        except KeystoreError as e:
            raise ClientError(str(e)) from None
        if not matched:
            raise ClientError("fingerprint does not match %s's key %s; nothing changed"
                              % (name, e2e.fingerprint(der)))
        self._unblock(name)
        return e2e.fingerprint(der)

    async def trust(self, user, lastFour):
        """
        Accept C{user}'s new key once the person has compared it with the
        person it belongs to: C{lastFour}, the last 4 characters of its
        fingerprint as the person typed them, must match. One confirmation
        would be clicked through; typing what was compared is a real check.
        """
        name, der = await self._keyToAccept(user)
        typed = "".join(lastFour.split()).lower()
        expected = e2e.fingerprint(der).replace(" ", "")[-TRUST_CODE_LENGTH:]
        if typed != expected:
            raise ClientError("%s are not the last 4 characters of %s's new fingerprint; "
                              "compare it with %s again; nothing changed"
                              % (lastFour, name, name))
        self.home.knownKeys.trust(name, der)
        self._unblock(name)
        return e2e.fingerprint(der)

    def reject(self, user):
        """
        Refuse C{user}'s new key: what was held from them is dropped, and
        they stay blocked (the pinned key is kept) until their key changes
        again.
        """
        if fold(user) not in self.blocked:
            raise ClientError("%s's key has not changed; there is nothing to reject" % (user,))
        name, der = self.changes[fold(user)]
        self._rejected.add(fold(user))
        for _blob, sender, to, _show in self._held.pop(fold(user), []):
            where = "in room %s" % (to[1],) if to is not None else "(direct)"
            self._tell(self.ui.dropped, "dropped a message from %s %s: you rejected %s's new key"
                       % (sender, where, name))
        return e2e.fingerprint(der)

    async def _keyToAccept(self, user):
        """
        The key a C{/verify} or C{/trust} of C{user} is about: while a change
        is pending, the new key the person was shown (and compared); otherwise
        the one the server holds now.
        """
        change = self.changes.get(fold(user))
        if change is None:
            return await self._currentKey(user)
        return change

    async def _userKey(self, user):
        """
        The server's C{(name, key)} for one user, the name spelled as its owner
        spells it.
        """
        (members,) = await self.call(Op.GET_KEYS, KIND_USER, user)
        [(name, der)] = members
        return name, der

    async def _currentKey(self, user):
        """
        The key the server holds for C{user} now, which is the one we will
        encrypt to; our rooms are told of it too.
        """
        if isGuestName(user):
            raise ClientError("%s is a guest; guests' keys are never pinned" % (user,))
        if self._isMe(user):
            raise ClientError("that is you")
        name, der = await self._userKey(user)
        self.keys[fold(name)] = der
        self._unchecked.discard(fold(name))
        for room in self.rooms.values():
            if name in room.members:
                room.members[name] = der
        return name, der

    # -- rooms ------------------------------------------------------------

    def room(self, name=None):
        """
        The room named C{name} (ignoring case), or the active room.
        """
        if name is None:
            if self.active is None:
                raise ClientError("no active room: /join or /switch to one")
            name = self.active
        try:
            return self.rooms[fold(name)]
        except KeyError:
            raise ClientError("not in %s" % (name,)) from None

    async def create(self, name, password=""):
        await self.call(Op.CREATE, name, password)

    async def join(self, name, password=""):
        """
        Join (or create) a room and make it the active one.
        """
        room = await self._joinOn(await self._withKey(), name, password)
        self.active = room.name
        return room

    async def _joinOn(self, protocol, name, password):
        (members,) = await protocol.request(Op.JOIN, name, password)
        (names,) = await protocol.request(Op.LIST_ROOMS)
        spelled = next((n for n in names if fold(n) == fold(name)), name)
        room = self.rooms.get(fold(name)) or Room(spelled, password)
        room.name = spelled
        room.password = password
        self.rooms[fold(name)] = room
        self._setMembers(room, members)
        return room

    def _setMembers(self, room, members):
        room.members = {}
        for user, der in members:
            self._sawKey(user, der)
            room.members[user] = der
        room.members = self._withOurKey(room.members)

    async def leave(self, name=None):
        room = self.room(name)
        await self.call(Op.LEAVE, room.name)
        self._forget(room.name)
        return room.name

    def _forget(self, name):
        self.rooms.pop(fold(name), None)
        if self.active is not None and fold(self.active) == fold(name):
            self.active = next(iter(self.rooms.values())).name if self.rooms else None

    def switch(self, name):
        self.active = self.room(name).name
        return self.active

    async def listRooms(self):
        (names,) = await self.call(Op.LIST_ROOMS)
        return names

    async def listUsers(self, room=""):
        (names,) = await self.call(Op.LIST_USERS, room)
        return names

    # -- sending ----------------------------------------------------------

    async def send(self, text, room=None):
        """
        Encrypt C{text} to the members of a room (the active one by default) and
        post it; when the server says the members changed, update them and try
        once more.

        @return: the signed time of the message and the room's name.
        """
        name, to, recipients, update = await self._audience("room", room)
        timestamp = await self._post(Op.ROOM_MSG, name, to, recipients, update, text)
        return timestamp, name

    async def pm(self, user, text):
        """
        Encrypt C{text} to C{user} (and ourselves, for our other sessions).

        @return: the signed time of the message and the user's name as the
            server spells it.
        """
        name, to, recipients, update = await self._audience("user", user)
        timestamp = await self._post(Op.DM, name, to, recipients, update, text)
        return timestamp, name

    async def _audience(self, kind, name):
        """
        Whom an envelope to a room (the active one when C{name} is L{None}) or
        to a user goes to.

        @return: C{(name, to, recipients, update)}: the target's name as the
            server spells it, the envelope's C{to}, a function giving the
            current readers and their keys (for a user: that user and us, for
            our other sessions), and a function taking the server's 0x09
            member list.
        """
        if kind == "room":
            target = self.room(name)

            def update(members):
                self._setMembers(target, members)
            return target.name, ("room", target.name), lambda: dict(target.members), update
        await self._withKey()
        name, der = await self._userKey(name)
        self._sawKey(name, der)
        peer = {name: der}

        def recipients():
            return dict(peer, **{self.user: self.publicKey})

        def update(members):
            for member, key in members:
                self._sawKey(member, key)
                if not self._isMe(member):
                    peer.clear()
                    peer[member] = key
        return name, ("user", name), recipients, update

    async def _post(self, op, target, to, recipients, update, text):
        """
        @return: the signed time of the envelope the server took.
        """
        sent = []

        def request(blob):
            sent.append(blob)
            return self.call(op, target, blob)
        await self._sealAndCall(to, recipients, update, text.encode("utf-8"), request)
        return e2e.Envelope.parse(sent[-1]).ts

    async def _sealAndCall(self, to, recipients, update, plaintext, request, domain=e2e.MESSAGE):
        """
        Seal C{plaintext} to the current C{recipients()} and hand the envelope
        to C{request}; when the server says the readers changed (0x09), take
        its list (C{update}), seal again and try once more.

        @param request: takes the envelope, returns a L{Deferred} of the
            response's values.
        @param domain: L{e2e.MESSAGE}, or L{e2e.FILE} for a file envelope.
        @return: what C{request} gave.
        """
        await self._withKey()
        for attempt in range(1, SEND_ATTEMPTS + 1):
            refusal = self.ownKey.refusal()
            if refusal is not None:
                raise ClientError(refusal)
            members = self._withOurKey(recipients())
            self._checkRenamed(members)
            refused = sorted(m for m in members if fold(m) in self.blocked)
            if refused:
                raise ClientError("not sent: the key of %s changed; compare fingerprints and "
                                  "/verify USER FINGERPRINT, or /trust USER"
                                  % (", ".join(refused),))
            blob = await self.runInThread(e2e.seal, self.user, self.privateKey, to, members,
                                          plaintext, domain=domain,
                                          ts=int(self.clock.seconds() * 1000))
            try:
                result = await request(blob)
            except ServerError as e:
                if e.status != STALE or attempt == SEND_ATTEMPTS:
                    raise
                update(e.members)
                continue
            # Our own envelope, seen again from the server, is a replay.
            self._remember(e2e.Envelope.parse(blob))
            return result

    # -- files ------------------------------------------------------------

    async def sendFile(self, kind, name, path):
        """
        Offer a file to a room (C{kind} C{"room"}) or a user; it is sent in the
        background once recipients accept, and the UI hears how it goes.

        @return: the L{chatd.client.files.Outgoing} transfer.
        """
        return await self.files.send(kind, name, path)

    async def acceptFile(self, number=None, folder=None):
        """
        Accept file offer C{number} (the newest when L{None}) into C{folder}
        (the download folder when L{None}).

        @return: the L{chatd.client.files.Incoming} transfer.
        """
        return await self.files.accept(number, folder)

    async def declineFile(self, number=None):
        """
        Decline file offer C{number} (the newest when L{None}).
        """
        return await self.files.decline(number)

    async def cancelFile(self, number):
        """
        Stop file transfer C{number}: one we send, for everyone; one we
        receive, for us.
        """
        return await self.files.cancel(number)

    def fileTransfers(self):
        """
        The running transfers and pending offers, oldest first.
        """
        return self.files.running()

    # -- receiving --------------------------------------------------------

    def _event(self, op, values, protocol=None):
        """
        An event from the server, on C{protocol} (the current connection when
        L{None}).
        """
        if op in _FILE_EVENTS:
            protocol = protocol or self.protocol
            if op == Op.OFFERED:
                self.files.offered(protocol, *values)
            else:
                self.files.event(protocol, op, *values)
            return
        handler = self._events.get(op)
        if handler is not None:
            handler(self, *values)

    def _onRoomMessage(self, room, sender, timestamp, blob):
        # The time shown is the one the sender signed; the server's is only
        # its word.
        def show(text, envelope):
            self.ui.messageReceived(room, sender, envelope.ts, text)
        self._openInOrder(blob, sender, ("room", room), show)

    def _onDirectMessage(self, sender, timestamp, blob):
        def show(text, envelope):
            peer = envelope.toName if self._isMe(sender) else sender
            self.ui.directMessageReceived(sender, peer, envelope.ts, text)
        self._openInOrder(blob, sender, None, show)

    def _openInOrder(self, blob, sender, to, show):
        """
        Open an incoming envelope after every earlier one, then show it; drop
        (and say so) what fails any check.

        @param to: C{("room", name)} for a room message; L{None} for a direct
            message, which must be addressed to us unless it is our own copy.
        """
        def open_(_):
            return Deferred.fromCoroutine(self._open(blob, sender, to))

        def shown(result):
            envelope, data = result
            show(data.decode("utf-8", "replace"), envelope)

        def refused(failure):
            where = "in room %s" % (to[1],) if to is not None else "(direct)"
            if failure.check(Held):
                self._held.setdefault(fold(sender), []).append((blob, sender, to, show))
                self.ui.held("held a message from %s %s until you accept or reject %s's new key"
                             % (sender, where, sender))
                return
            self.ui.dropped("dropped a message from %s %s: %s"
                            % (sender, where, failure.getErrorMessage()))

        self._inbound.addCallback(open_).addCallbacks(shown, refused).addErrback(
            lambda f: log.failure("showing a message from {sender}", f, sender=sender))

    async def _open(self, blob, sender, to, domain=e2e.MESSAGE):
        """
        Check and decrypt one incoming envelope (a file envelope when C{domain}
        is L{e2e.FILE}: file and message ids share one replay set).

        @return: the envelope and its plaintext.
        @raise Exception: whatever check fails.
        """
        envelope = e2e.Envelope.parse(blob)
        if envelope.sender != sender:
            raise ClientError("envelope claims to be from %s" % (envelope.sender,))
        if to is not None and (envelope.toKind, envelope.toName) != to:
            raise ClientError("envelope is addressed to %s %s" % (envelope.toKind, envelope.toName))
        if to is None and (envelope.toKind != "user"
                           or not (self._isMe(sender) or self._isMe(envelope.toName))):
            raise ClientError("direct message addressed to %s %s"
                              % (envelope.toKind, envelope.toName))
        self._refuseReplay(envelope)
        self._checkRenamed([sender])
        key = self._trustedKey(sender)
        if key is None:
            # A direct message from someone we share no room with: this is
            # our first contact with them.
            name, der = await self._userKey(sender)
            self._sawKey(name, der)
            key = self._trustedKey(sender)
        if fold(sender) in self._rejected:
            raise ClientError("you rejected %s's new key" % (sender,))
        if fold(sender) in self.blocked:
            raise Held("%s's key changed and is not trusted yet" % (sender,))
        self._refuseReplay(envelope)
        data = await self.runInThread(e2e.openEnvelope, envelope, self.user, self.privateKey, key,
                                      domain)
        self._remember(envelope)
        return envelope, data

    def _refuseReplay(self, envelope):
        replayed = self.seenEnvelopes.replayed(envelope.sender, envelope.id, envelope.ts)
        if replayed is not None:
            raise ClientError(replayed)

    def _remember(self, envelope):
        self.seenEnvelopes.remember(envelope.sender, envelope.id, envelope.ts,
                                    int(self.clock.seconds() * 1000))

    def _tell(self, f, *args):
        """
        Show something after every message still being opened, so that the
        person sees events in the order the server sent them (a member's LEFT
        after the last message it sent, not before).
        """
        self._inbound.addCallback(lambda _: f(*args)).addErrback(
            lambda failure: log.failure("showing an event", failure))

    def _onJoined(self, room, user, der):
        if self._isMe(user):
            self.ownKey.check(user, der, self._ourKey(user))
            self._restoredNames.add(fold(room))
            d = Deferred.fromCoroutine(self._restored(room, user, der))
            d.addErrback(self._restoreFailed, room)
            return
        target = self.rooms.get(fold(room))
        if target is not None:
            self._sawKey(user, der)
            target.members[user] = der
        self._tell(self.ui.memberJoined, room, user, e2e.fingerprint(der))

    def _restoreFailed(self, failure, room):
        if not self._stopping:
            self.ui.notice("could not load the members of %s: %s"
                           % (room, failure.getErrorMessage()))

    async def _restored(self, name, user, der):
        """
        The server put us in a room (memberships restored at login, or a join
        from another session of ours): learn its members.
        """
        room = self.rooms.get(fold(name)) or Room(name)
        self.rooms[fold(name)] = room
        (members,) = await self.call(Op.GET_KEYS, KIND_ROOM, name)
        self._setMembers(room, members)
        if self.active is None:
            self.active = room.name
        self._tell(self.ui.memberJoined, room.name, user, e2e.fingerprint(der))

    def _onLeft(self, room, user):
        if self._isMe(user):
            self._forget(room)
        else:
            target = self.rooms.get(fold(room))
            if target is not None:
                target.members.pop(user, None)
        self._tell(self.ui.memberLeft, room, user)

    def _renamed(self, old, new):
        if self.user is not None and fold(old) == fold(self.user):
            self.user = new
        key = self.keys.pop(fold(old), None)
        if key is not None:
            self.keys[fold(new)] = key
        for room in self.rooms.values():
            if old in room.members:
                room.members[new] = room.members.pop(old)

    def _onRenamed(self, old, new):
        self._renamed(old, new)
        if not isGuestName(new) and not self._isMe(new) and fold(new) in self.keys:
            self._unchecked.add(fold(new))
        self._tell(self.ui.renamed, old, new)

    def _onKeyChanged(self, user, der):
        self._sawKey(user, der)
        if self._isMe(user):
            return
        for room in self.rooms.values():
            if user in room.members:
                room.members[user] = der

    def _onWarning(self, code, message):
        self._tell(self.ui.notice, "server: %s" % (message,))

    _events = {
        Op.ROOM_MSG: _onRoomMessage,
        Op.DM: _onDirectMessage,
        Op.JOINED: _onJoined,
        Op.LEFT: _onLeft,
        Op.RENAMED: _onRenamed,
        Op.KEY_CHANGED: _onKeyChanged,
        Op.WARNING: _onWarning,
    }

    # -- history ----------------------------------------------------------

    async def history(self, room=None, limit=0):
        """
        The room's stored messages we can read, decrypted: C{[(sender, timestamp,
        text, problem)]}, oldest first, with the time the sender signed (the
        server's, for one that cannot be shown); C{text} is L{None} and
        C{problem} says why for one that fails its checks.

        @return: the room's name and the rows.
        """
        target = self.room(room)
        (rows,) = await self.call(Op.HISTORY, target.name, limit, 0)
        shown = []
        for sender, timestamp, blob in rows:
            self._checkRenamed([sender])
            key = self._trustedKey(sender) or await self._keyOrNone(sender)
            try:
                envelope = e2e.Envelope.parse(blob)
                place = (envelope.sender, envelope.toKind, envelope.toName)
                if place != (sender, "room", target.name):
                    raise ClientError("envelope does not match its place in the history")
                if key is None:
                    raise ClientError("no key known for %s" % (sender,))
                data = await self.runInThread(e2e.openEnvelope, envelope, self.user,
                                              self.privateKey, key)
                shown.append((sender, envelope.ts, data.decode("utf-8", "replace"), None))
            except Exception as e:
                shown.append((sender, timestamp, None, str(e)))
        return target.name, shown

    async def _keyOrNone(self, user):
        try:
            name, der = await self._userKey(user)
        except ServerError:
            return None
        self._sawKey(name, der)
        return self._trustedKey(name)


_FILE_EVENTS = frozenset({Op.OFFERED, Op.START, Op.CHUNK, Op.NEXT, Op.DONE, Op.CANCEL})


def _sslReason(error):
    """
    The readable part of an OpenSSL error (its reason strings).
    """
    reasons = [entry[-1] for entry in (error.args[0] if error.args else [])
               if isinstance(entry, tuple) and entry]
    return ", ".join(reasons) or str(error)
