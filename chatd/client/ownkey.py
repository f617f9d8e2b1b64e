# -*- test-case-name: chatd.test.test_client -*-
"""
Our own key is ours: the server's word about it is checked, never used.

The client seals its own entry of every envelope with the key this device holds
and checks its own signatures with that key; the key the server gives for our
name is only compared with it. A server that lists us with another key (in a
JOIN answer, a member list, JOINED, KEY_CHANGED, GET_KEYS or a 0x09 refusal) is
lying, or someone with our password published another key: either way whoever
holds that key could read what is sent to us, so the person is told loudly and
nothing more is sent in this run (see docs/security.rst).

One exception is the person's own act: a password login on a device whose key
the server does not hold publishes this device's key. Until it has, the server
still lists the key being replaced, so what the server says during such a login
is set aside and checked once the login is over.
"""

from chatd import e2e


class OwnKey:
    """
    The server's claims about our own key, against the one this device holds.

    @ivar conflict: the key the server claimed for us that is not ours, once
        it has; sending is refused from then on.
    """

    def __init__(self, warn):
        """
        @param warn: called as C{warn(user, ours, claimed)} with fingerprints,
            once for each different key the server claims for us.
        """
        self._warn = warn
        self.conflict = None
        self._setAside = None

    def check(self, user, claimed, ours):
        """
        The server says our name C{user} has key C{claimed}; C{ours} is the key
        this device holds for it (L{None} while it holds none, which leaves
        nothing to compare).
        """
        if ours is None or claimed == ours:
            return
        if self._setAside is not None:
            self._setAside.append((user, claimed, ours))
            return
        if claimed != self.conflict:
            self.conflict = claimed
            self._warn(user, e2e.fingerprint(ours), e2e.fingerprint(claimed))

    def setAside(self):
        """
        A password login starts: keep what the server says until L{resume}.
        """
        self._setAside = []

    def resume(self, replaced=None):
        """
        The login is over; check what was set aside, except claims of the key
        the login replaced (the server's key before this device's was
        published), which were true when made.
        """
        claims, self._setAside = self._setAside or [], None
        for user, claimed, ours in claims:
            if claimed != replaced:
                self.check(user, claimed, ours)

    def refusal(self):
        """
        Why nothing may be sent, or L{None} when it may.
        """
        if self.conflict is None:
            return None
        return ("not sent: the server lists you with a key that is not this device's (%s); "
                "the server, or someone with your password, changed your key"
                % (e2e.fingerprint(self.conflict),))
