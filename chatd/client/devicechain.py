# -*- test-case-name: chatd.test.test_devicechain -*-
"""
What the terminal client makes of the devices the server lists for a user
(docs/client.rst, "Devices"; DEVICES.md's properties 1 and 3): the checks of
L{chatd.devicelist} (signature by the pinned identity key, chaining from the
held list) turned into what to encrypt to and what to tell the person.

- No list from a user we hold none for: a legacy account, its one key.
- No list from a user we hold one for: a rollback, loud.
- A list that is not signed by the pinned identity key, does not chain
  (older, forked) or brings a removed key back: loud, and nothing is sent to
  that user while it lasts (the server's exact-recipients rule would refuse
  a message that left the user's devices out, and encrypting to them is what
  must not happen).
- A device the server lists that the list does not name with that key: a
  warning, and never a key.
"""

from dataclasses import dataclass, field

from chatd import devicelist
from chatd.devicelist import DeviceChain, DeviceListError, Head, readServerList
from chatd.errors import ChatError

# What a user's devices are, once judged.
LEGACY = "legacy"        # no list: one device, the user's key, the bare name
VERIFIED = "verified"    # a list verified and held: its devices
REFUSED = "refused"      # nothing this client can believe: encrypt to none


@dataclass
class Verdict:
    """
    What a client makes of the devices the server gave for one user.

    @ivar state: L{LEGACY}, L{VERIFIED} or L{REFUSED}.
    @ivar verified: the L{devicelist.VerifiedList} (for L{VERIFIED}).
    @ivar changed: whether the chain moved on and must be kept.
    @ivar added: ids of devices the new list added (a quiet notice).
    @ivar removed: ids of devices the new list removed (a quiet notice).
    @ivar warnings: sentences to show: devices that get no key.
    @ivar alarm: a sentence to show loudly (rollback, fork, bad signature,
        a removed key back), or L{None}.
    """

    state: str
    verified: devicelist.VerifiedList | None = None
    changed: bool = False
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    alarm: str | None = None

    def recipients(self, user, identity):
        """
        Entry key to SPKI DER of every device to encrypt to (none when
        L{REFUSED}).
        """
        if self.state == LEGACY:
            return {user: identity}
        if self.state == VERIFIED:
            assert self.verified is not None  # a verified verdict holds its list
            return self.verified.recipients(identity)
        return {}


def _unverified(user, devices):
    return ["the server lists a device %s of %s that no list signed by %s's identity key "
            "names with that key; it gets no key" % (device, user, user)
            for device, _ in devices]


def judge(user, identity, chain, text, signature, devices):
    """
    Judge the devices the server lists for C{user}, moving C{chain} on when
    the list is a verified successor of the held one.

    @param identity: C{user}'s identity key as this client pinned it (SPKI
        DER): the only key that may sign the list.
    @param chain: the L{DeviceChain} held for C{user}; changed in place.
    @param text: the list's canonical bytes (empty: the server says C{user}
        has no list).
    @param signature: the list's signature (empty: none).
    @param devices: C{[(device id, SPKI DER)]} as the server gave them.
    @rtype: L{Verdict}
    """
    if not text:
        if chain.held is not None:
            return Verdict(REFUSED, alarm=(
                "the server says %s has no device list, but this client holds %s's list "
                "version %d: a rollback; nothing is sent to %s"
                % (user, user, chain.held.version, user)))
        return Verdict(LEGACY, warnings=_unverified(
            user, [(d, der) for d, der in devices if der != identity]))
    first = chain.held is None
    try:
        verified = readServerList(user, identity, text, signature, devices)
        added, removed = chain.accept(verified.list)
    except (DeviceListError, ChatError) as e:
        return Verdict(REFUSED, alarm="%s's devices cannot be believed: %s; nothing is sent to %s"
                                      % (user, e, user))
    warnings = _unverified(user, verified.unverified)
    assert verified.list is not None  # accepted by the chain above
    missing = sorted(set(verified.list.ids()) - set(verified.keys))
    if missing:
        warnings.append("the server gave no key for %s's device%s %s, which get%s nothing"
                        % (user, "" if len(missing) == 1 else "s", ", ".join(missing),
                           "s" if len(missing) == 1 else ""))
    # A first list is a first contact (its identity key was pinned just as
    # quietly): only the changes after it are news.
    return Verdict(VERIFIED, verified, changed=bool(first or added or removed),
                   added=[] if first else sorted(added), removed=sorted(removed),
                   warnings=warnings)


def newerHead(chain, head):
    """
    Whether an envelope naming the sender's list C{head} means a newer list
    must be fetched (and verified) before sending to that user again.

    @return: L{True}, L{False}, or a sentence to show loudly (a fork).
    """
    try:
        return chain.isNewer(Head(*head))
    except ChatError as e:
        return str(e)


__all__ = ["DeviceChain", "LEGACY", "REFUSED", "VERIFIED", "Verdict", "judge", "newerHead"]
