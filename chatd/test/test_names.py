"""
Tests for L{chatd.names}: which names users and rooms may take, and how they
are compared.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatd.names import fold, isGuestName, isRoomName, isUserName


class NameTests(SynchronousTestCase):
    """
    The rules every door and store share.
    """

    def test_userNames(self):
        """
        1 to 32 ASCII letters, digits, C{_}, C{.} or C{-}.
        """
        for good in ("a", "Alice", "bob_2", "x.y-z", "A" * 32):
            self.assertTrue(isUserName(good), good)
        for bad in ("", "A" * 33, "al ice", "#alice", "alice\n", "alicé", "a/b", "a:b"):
            self.assertFalse(isUserName(bad), bad)

    def test_roomNames(self):
        """
        A user name's characters with an optional C{#} first, which does not
        count toward the 32.
        """
        for good in ("#general", "general", "#" + "r" * 32, "R.1-_"):
            self.assertTrue(isRoomName(good), good)
        for bad in ("", "#", "##a", "#" + "r" * 33, "a#b", "room name", "#caf\u00e9"):
            self.assertFalse(isRoomName(bad), bad)

    def test_guestNames(self):
        """
        C{rand} and digits, in any case, is the form the server gives guests.
        """
        for guest in ("rand1", "RAND42", "Rand007"):
            self.assertTrue(isGuestName(guest), guest)
        for other in ("rand", "rand1a", "xrand1", "random1"):
            self.assertFalse(isGuestName(other), other)

    def test_foldIgnoresAsciiCase(self):
        """
        Names differing only in ASCII case fold to one key; others do not.
        """
        self.assertEqual(fold("Alice"), fold("aLICE"))
        self.assertEqual(fold("#General"), "#general")
        self.assertNotEqual(fold("alice"), fold("alice_"))
