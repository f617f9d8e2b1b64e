# -*- test-case-name: chatd.test.test_console -*-
"""
What the terminal client's logic tells the person using it (L{IClientUI}),
provided by L{chatd.client.console.Console}.

It lives with the client, not in L{chatd.interfaces}, because it is between
two parts of the client, not between the server's core, doors and store.
"""

from zope.interface import Interface


class IClientUI(Interface):
    """
    What the terminal client's logic tells the person using it. Every call is one
    thing to show; texts are already decrypted and verified.
    """

    def messageReceived(room, sender, timestamp, text):
        """
        A room message, decrypted and its signature verified.

        @param timestamp: the time the sender signed (the envelope's C{ts}),
            ms since the epoch; the server's own timestamp is not shown.
        """

    def directMessageReceived(sender, peer, timestamp, text):
        """
        A direct message between this user and C{peer}: from C{peer}, or (when
        C{sender} is this user) a copy of one sent from another session.
        C{timestamp} is the signed one, as for L{messageReceived}.
        """

    def memberJoined(room, user, fingerprint):
        """
        C{user} is now in C{room} (this user too, when the server put it there).
        """

    def memberLeft(room, user):
        """
        C{user} left C{room}.
        """

    def renamed(old, new):
        """
        A user changed name.
        """

    def keyChanged(user, old, new):
        """
        A pinned key changed: loud, and sending to C{user} is refused until the
        person verifies or trusts the new key. C{old} and C{new} are fingerprints.
        """

    def ownKeyChanged(user, ours, claimed):
        """
        The server gives our own name C{user} another key than the one this
        device holds: the server lies, or someone with our password (perhaps
        another device of ours) published a key. Loud, and nothing more is
        sent. C{ours} and C{claimed} are fingerprints.
        """

    def notice(text):
        """
        Something to tell the person: a first-contact pin, a reconnect, a
        server warning.
        """

    def dropped(text):
        """
        Something that arrived and was refused: a bad signature, a replay, an
        envelope that does not open.
        """

    def held(text):
        """
        A message from a user whose key changed was kept back: it is shown once
        the person accepts the new key, and dropped if the person rejects it.
        """

    def askSecret(prompt, optional=False):
        """
        Ask the person for a secret (a password, a key's passphrase) without
        showing it as it is typed.

        @param optional: whether going without is fine (a new key's passphrase):
            where nobody can be asked (a script), the answer is then empty
            instead of a failure.
        @return: a L{Deferred} that fires with the secret, L{str}; or fails with
            L{chatd.client.chat.ClientError} when nobody can be asked.
        """

    def fatal(text):
        """
        The client stopped for good and will not reconnect (the server's
        certificate changed, the server refused to resume the session): say so
        loudly and end with a non-zero status.
        """

    def fileOffered(number, sender, room, name, size):
        """
        Someone offers us a file; its envelope opened and verified with the
        sender's pinned key, and its sizes are the signed ones.

        @param number: the local number C{/accept} and C{/decline} take.
        @param room: the room it was offered in, or L{None} for a direct offer.
        @param name: the file name the sender chose, unchecked (show it
            cleaned; it is made safe only when the file is saved).
        @param size: its size in bytes.
        """

    def fileProgress(number, direction, name, done, total):
        """
        File transfer C{number} moved on: C{done} of C{total} bytes sent
        (C{direction} C{"sending"}) or written (C{"receiving"}). Called for
        every chunk; showing it is the UI's to pace.
        """

    def fileEnded(number, text, failed):
        """
        The last word on file transfer or offer C{number}: C{text} says how it
        ended (delivered, saved and where, declined, cancelled and why);
        C{failed} tells success from the rest.
        """
