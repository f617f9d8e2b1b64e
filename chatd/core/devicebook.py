# -*- test-case-name: chatd.test.test_devices_core -*-
"""
What one node holds about accounts' devices, for every session: the lists
and identity keys of the accounts its answers and events name, the sessions
of pending devices, the recipients a version 2 envelope must name, and the
delivered marks written now and then (never once per delivery).
"""

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chatd import e2e
from chatd.core.online import User
from chatd.model import NO_DEVICES, DeviceList
from chatd.names import fold

log = Logger()

# How long a raised mark may wait before it is written: a crash replays at
# most this much again, which clients drop by envelope id.
MARK_INTERVAL = 5.0


class DeviceBook:
    """
    A node's device state.

    @ivar lists: folded account name -> (name, identity key, L{DeviceList}),
        for the accounts held (online here, or named by a recent answer).
    @ivar pending: (folded account, device) -> the pending sessions here.
    """

    def __init__(self, store: Any, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        self.lists: Dict[str, Tuple[str, Optional[bytes], DeviceList]] = {}
        self.pending: Dict[Tuple[str, str], Set] = {}
        # (folded account, device) -> expiry (ms) of the pending requests
        # other nodes told of.
        self.remotePending: Dict[Tuple[str, str], int] = {}
        self._dirty: Dict[Tuple[str, str], int] = {}
        self._flush: Optional[IDelayedCall] = None

    # -- lists ------------------------------------------------------------

    def held(self, name: str) -> DeviceList:
        entry = self.lists.get(fold(name))
        return entry[2] if entry is not None else NO_DEVICES

    def entryKeyOf(self, session: Any) -> str:
        """
        The entry key a session reads by: C{user/device} for a device of an
        account with a list, its user's bare name otherwise.
        """
        user = session.user
        if session.device and user.account and self.held(user.name).devices:
            return e2e.entryKey(user.name, session.device)
        return user.name

    def hold(self, name: str, key: Optional[bytes], devices: DeviceList) -> None:
        self.lists[fold(name)] = (name, key, devices)

    async def load(self, name: str
                   ) -> Optional[Tuple[str, Optional[bytes], DeviceList]]:
        """
        The account's C{(name, identity key, list)}, from the store when not
        held; L{None} for no such account.
        """
        entry = self.lists.get(fold(name))
        if entry is None:
            account = await self._store.getAccount(name)
            if account is None:
                return None
            devices = await self._store.getDevices(name)
            entry = (account.name, account.publicKey or None, devices)
            self.lists.setdefault(fold(name), entry)
        return entry

    def recipientsOf(self, name: str, key: Optional[bytes],
                     devices: DeviceList) -> Dict[str, Optional[bytes]]:
        """
        Entry key -> SPKI DER of every reader of user C{name}: each device
        of its list, or the bare name with its key.
        """
        if devices.devices:
            return {e2e.entryKey(name, device): spki for device, spki in devices.devices}
        return {name: key}

    async def expected(self, users: Iterable[User], accounts: Iterable[str]
                       ) -> Tuple[Dict[str, Optional[str]], List[Tuple[str, Optional[bytes]]]]:
        """
        The key map a version 2 envelope must carry: entry key -> key id, for
        C{users} (online L{chatd.core.online.User}s) and the stored
        C{accounts} (names) not among them.

        @return: (that map, the C{(name, key)} pairs of the members, sorted).
        """
        expected: Dict[str, Optional[str]] = {}
        members = {}
        for user in users:
            devices = NO_DEVICES
            if user.account:
                held = await self.load(user.name)
                devices = held[2] if held is not None else NO_DEVICES
            members[fold(user.name)] = (user.name, user.key)
            for entry, spki in self.recipientsOf(user.name, user.key, devices).items():
                expected[entry] = e2e.keyId(spki) if spki is not None else None
        for name in accounts:
            if fold(name) in members:
                continue
            held = await self.load(name)
            if held is None:
                continue
            account, key, devices = held
            members[fold(account)] = (account, key)
            for entry, spki in self.recipientsOf(account, key, devices).items():
                expected[entry] = e2e.keyId(spki) if spki is not None else None
        return expected, sorted(members.values())

    # -- pending sessions ---------------------------------------------------

    def addPending(self, name: str, device: str, session: Any) -> None:
        self.pending.setdefault((fold(name), device), set()).add(session)

    def dropPending(self, session: Any) -> None:
        for key, sessions in list(self.pending.items()):
            sessions.discard(session)
            if not sessions:
                del self.pending[key]

    def waiting(self, name: str, device: str, nowMs: int) -> bool:
        """
        Whether device C{device} of C{name} waits for approval on a node of
        the cluster: a session here, or a request another node told of.
        """
        if self.pendingSessions(name, device):
            return True
        return self.remotePending.get((fold(name), device), 0) > nowMs

    def pendingSessions(self, name: str, device: Optional[str] = None) -> List:
        return [s for (user, dev), sessions in self.pending.items() for s in sessions
                if user == fold(name) and (device is None or dev == device)]

    # -- marks --------------------------------------------------------------

    def delivered(self, session: Any, sequence: int) -> None:
        """
        C{session} was given the stored message C{sequence}: its device's
        mark is raised here, and written within L{MARK_INTERVAL}.
        """
        if not sequence or session.device is None or session.pending or session.user is None:
            return
        if sequence <= session.mark:
            return
        session.mark = sequence
        self._dirty[(session.user.name, session.device)] = max(
            sequence, self._dirty.get((session.user.name, session.device), 0))
        if self._flush is None:
            self._flush = self._clock.callLater(MARK_INTERVAL, self.flush)

    def flush(self) -> Optional[Deferred]:
        """
        Write the raised marks, all in one store call.

        @return: the store's L{Deferred}, or L{None} when there was nothing.
        """
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return None
        d = self._store.setMarks([(user, device, seq) for (user, device), seq in dirty.items()])
        d.addErrback(lambda f: log.failure("writing device marks", f))
        return d
